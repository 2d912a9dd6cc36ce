// The result schemas (src/cli/results.ts) against the commands: every command has one, and the
// type each command returns fits its schema (checked by the compiler: a field the schema lacks or
// types otherwise fails `npm run typecheck`). test/json-output.test.ts runs the commands.
import {readdirSync} from 'node:fs'
import {join, relative} from 'node:path'

import {describe, expect, it} from 'vitest'
import type {z} from 'zod'

import {REPO_ROOT} from '../test-support/cli.js'
import type Allocator from '../commands/allocator.js'
import type AttestVerify from '../commands/attest/verify.js'
import type Build from '../commands/build.js'
import type Chat from '../commands/chat.js'
import type Console from '../commands/console.js'
import type Demo from '../commands/demo.js'
import type Doctor from '../commands/doctor.js'
import type EifBuild from '../commands/eif/build.js'
import type EifDescribe from '../commands/eif/describe.js'
import type Init from '../commands/init.js'
import type ModelQuantize from '../commands/model/quantize.js'
import type ModelRun from '../commands/model/run.js'
import type ModelSave from '../commands/model/save.js'
import type ModelSeal from '../commands/model/seal.js'
import type ModelSynth from '../commands/model/synth.js'
import type Pcr from '../commands/pcr.js'
import type PolicyApply from '../commands/policy/apply.js'
import type PolicyCheck from '../commands/policy/check.js'
import type PolicyShow from '../commands/policy/show.js'
import type Run from '../commands/run.js'
import type Status from '../commands/status.js'
import type Stop from '../commands/stop.js'
import type {listeningEvent} from '../lib/gateway/serve.js'
import type {kmsListeningEvent} from '../lib/kms/local/serve.js'
import {EVENTS, RESULTS, type ResultCommand, envelopeSchema, jsonSchemaFiles, schemaFile} from './results.js'
import {failureEnvelope, successEnvelope} from './json.js'
import {NleError} from '../lib/errors.js'

/** What a command's run() resolves to when it prints a result. */
type Returned<C> = C extends abstract new (...args: never[]) => {run(): Promise<infer R>} ? Exclude<R, void | undefined> : never

interface Commands {
  allocator: typeof Allocator
  'attest verify': typeof AttestVerify
  build: typeof Build
  chat: typeof Chat
  console: typeof Console
  demo: typeof Demo
  doctor: typeof Doctor
  'eif build': typeof EifBuild
  'eif describe': typeof EifDescribe
  init: typeof Init
  'model quantize': typeof ModelQuantize
  'model run': typeof ModelRun
  'model save': typeof ModelSave
  'model seal': typeof ModelSeal
  'model synth': typeof ModelSynth
  pcr: typeof Pcr
  'policy apply': typeof PolicyApply
  'policy check': typeof PolicyCheck
  'policy show': typeof PolicyShow
  run: typeof Run
  status: typeof Status
  stop: typeof Stop
}

/** The commands whose returned type does not fit their schema: must be none. */
type Misfits = {[K in ResultCommand]: Returned<Commands[K]> extends z.output<(typeof RESULTS)[K]> ? never : K}[ResultCommand]
const allFit: [Misfits] extends [never] ? true : Misfits = true
/** The same for the event payloads built in src/lib. */
const eventsFit: [ReturnType<typeof listeningEvent>, ReturnType<typeof kmsListeningEvent>] extends [z.output<typeof EVENTS.gateway.listening>, z.output<(typeof EVENTS)['kms serve']['listening']>] ? true : false = true

function commandIds(dir = join(REPO_ROOT, 'src/commands')): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? commandIds(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [relative(join(REPO_ROOT, 'src/commands'), join(dir, e.name)).replace(/\.ts$/, '').replaceAll('/', ' ')] : [],
  )
}

describe('result schemas', () => {
  it('hold every command, once: a result or events', () => {
    expect(allFit && eventsFit).toBe(true)
    const covered = [...Object.keys(RESULTS), ...Object.keys(EVENTS)]
    expect(new Set(covered).size).toBe(covered.length)
    expect(covered.sort()).toEqual(commandIds().sort())
  })

  it('name one file per command, and one for any failure', () => {
    const files = Object.keys(jsonSchemaFiles())
    expect(files).toContain(schemaFile('policy check'))
    expect(files).toContain('policy-check.schema.json')
    expect(files).toContain('error.schema.json')
    expect(files).toHaveLength(Object.keys(RESULTS).length + Object.keys(EVENTS).length + 1)
  })

  it('accept the envelopes json.ts builds, and refuse a result with a field the schema lacks', () => {
    const schema = envelopeSchema('console')
    expect(schema.safeParse(successEnvelope('console', {attached: true})).success).toBe(true)
    expect(schema.safeParse(failureEnvelope('console', new NleError('USAGE', 'bad flag'))).success).toBe(true)
    expect(schema.safeParse(successEnvelope('console', {attached: true, extra: 1})).success).toBe(false)
    expect(schema.safeParse(successEnvelope('stop', {attached: true})).success).toBe(false)
  })
})
