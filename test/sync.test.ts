// The committed generated files must match their sources: oclif.manifest.json (every command and
// flag), schema/nle.schema.json (the config schema) and schema/json/ (each command's --json
// output, src/cli/results.ts). `npm run build` regenerates them.
import {readFileSync, readdirSync} from 'node:fs'
import {join, relative} from 'node:path'
import {pathToFileURL} from 'node:url'

import type {Command} from '@oclif/core'
import {describe, expect, it} from 'vitest'

import {jsonSchemaFiles} from '../src/cli/results.js'
import {configJsonSchema} from '../src/lib/config/schema.js'
import {REPO_ROOT} from '../src/test-support/cli.js'

interface ManifestCommand {
  id: string
  flags: Record<string, unknown>
  args: Record<string, unknown>
}

const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, ManifestCommand>}

function commandFiles(dir = join(REPO_ROOT, 'src/commands')): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? commandFiles(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  )
}

const files = commandFiles()
const ids = files.map((f) => relative(join(REPO_ROOT, 'src/commands'), f).replace(/\.ts$/, '').replace(/\/index$/, '').replaceAll('/', ':'))

describe('oclif.manifest.json', () => {
  it('lists exactly the commands in src/commands', () => {
    expect(Object.keys(manifest.commands).sort(), 'run `npm run build` and commit oclif.manifest.json').toEqual([...ids].sort())
  })

  it.each(files.map((f, i) => [ids[i]!, f] as const))('has every flag and arg of %s', async (id, file) => {
    const mod = (await import(pathToFileURL(file).href)) as {default: typeof Command}
    const cmd = mod.default
    const flags = Object.keys({...cmd.baseFlags, ...cmd.flags, ...(cmd.enableJsonFlag ? {json: true} : {})}).sort()
    const entry = manifest.commands[id]
    expect(entry, `${id} missing from the manifest: run \`npm run build\``).toBeDefined()
    expect(Object.keys(entry!.flags).sort(), `flags of ${id} out of sync: run \`npm run build\``).toEqual(flags)
    expect(Object.keys(entry!.args).sort()).toEqual(Object.keys(cmd.args ?? {}).sort())
  })
})

describe('schema/nle.schema.json', () => {
  it('is generated from the current config schema', () => {
    const committed = JSON.parse(readFileSync(join(REPO_ROOT, 'schema/nle.schema.json'), 'utf8')) as unknown
    expect(committed, 'run `npm run build` and commit schema/nle.schema.json').toEqual(configJsonSchema())
  })
})

describe('schema/json/', () => {
  const files = jsonSchemaFiles()
  it('holds exactly one file per command and error.schema.json', () => {
    expect(readdirSync(join(REPO_ROOT, 'schema/json')).sort(), 'run `npm run build` and commit schema/json/').toEqual(Object.keys(files).sort())
  })

  it.each(Object.keys(files))('%s is generated from src/cli/results.ts', (name) => {
    const committed = JSON.parse(readFileSync(join(REPO_ROOT, 'schema/json', name), 'utf8')) as unknown
    expect(committed, 'run `npm run build` and commit schema/json/').toEqual(files[name])
  })
})
