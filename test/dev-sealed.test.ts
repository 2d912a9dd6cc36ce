// `nle dev` with model.sealed: true, as a user runs it: it seals the model under its dev key, builds
// an image that carries nle-sealed.json and no weight, serves the sealed files from the weights
// server, and `nle chat --once` gets an answer from the model the enclave opened in memory. A canary
// in the weight file is in no sealed file, the image or any log. Loopback and Unix sockets only.
import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {appendFile, readFile, readdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {recordManifest} from '../src/lib/model/save.js'
import {SEALED_MANIFEST_FILE} from '../src/lib/model/seal/format.js'
import {synthModel} from '../src/lib/model/synth.js'
import {BIN, jsonResult, runCli} from '../src/test-support/cli.js'
import {processesMentioning} from '../src/test-support/processes.js'
import {tempDir} from '../src/test-support/tmp.js'

const CANARY = Buffer.from(`NLE-CANARY-${randomBytes(8).toString('hex')}`)
const tmp = tempDir('nle-devsealed-')
const project = join(tmp.dir, 'proj')
let dev: ChildProcess | undefined
let ready: Record<string, unknown> = {}
let devOutput = ''

beforeAll(async () => {
  expect((await runCli(['init', project, '--name', 'devsealed'])).exitCode).toBe(0)
  const yaml = join(project, 'nle.yaml')
  await writeFile(yaml, (await readFile(yaml, 'utf8')).replace(/^ {2}# sealed: true.*$/m, '  sealed: true'))
  // The dev model, saved before `nle dev` would generate it: its ONNX file carries the canary.
  const model = join(project, 'model')
  await synthModel({preset: 'tiny', outDir: model, seed: 4})
  await appendFile(join(model, 'onnx', 'model.onnx'), Buffer.concat([Buffer.from([0x32, CANARY.length]), CANARY]))
  await recordManifest(model, 'fp32', {kind: 'synth', preset: 'tiny', seed: 4})
  dev = spawn(process.execPath, [BIN, 'dev', '--json'], {cwd: project, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
  dev.stderr!.on('data', (d: Buffer) => (devOutput += d.toString()))
  dev.stdout!.on('data', (d: Buffer) => (devOutput += d.toString()))
  ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({input: dev!.stdout!}).once('line', (line) => resolve(JSON.parse(line) as Record<string, unknown>))
    dev!.once('exit', (code) => reject(new Error(`nle dev exited ${code}:\n${devOutput}`)))
  })
}, 240_000)

afterAll(async () => {
  if (dev && dev.exitCode === null) {
    const exited = new Promise((resolve) => dev!.once('exit', resolve))
    dev.kill('SIGINT')
    await exited
  }
  for (const pid of processesMentioning(project)) process.kill(pid, 'SIGKILL')
  tmp.cleanup()
}, 30_000)

describe('nle dev with a sealed model', () => {
  it('answers nle chat --once from the model opened in the enclave', async () => {
    expect(ready, devOutput).toMatchObject({ok: true, event: 'ready'})
    const r = await runCli(['chat', '--once', 'Are the weights sealed?', '--max-tokens', '6', '--json'], {cwd: project})
    expect(r.exitCode, r.stderr).toBe(0)
    expect(jsonResult<{answer: string}>(r).answer.length).toBeGreaterThan(0)
  }, 60_000)

  it('keeps the weights out of the image and every plaintext byte off the sealed files and the logs', async () => {
    const lock = JSON.parse(await readFile(join(project, 'nle.lock.json'), 'utf8')) as {inputs: Record<string, string>}
    expect(lock.inputs.sealedManifest).toMatch(/^sha256:/)
    const eif = readFileSync(join(project, 'build', 'enclave.eif'))
    // The image's files are searchable (the sealed manifest is found), and no weight is among them.
    expect(eif.includes(Buffer.from('"nle:model-manifest"'))).toBe(true)
    expect(eif.includes(CANARY)).toBe(false)
    const sealedDir = join(project, 'model.sealed')
    expect(await readdir(sealedDir)).toContain(SEALED_MANIFEST_FILE)
    for (const name of await readdir(sealedDir)) expect(readFileSync(join(sealedDir, name)).includes(CANARY), name).toBe(false)
    expect(devOutput.includes(CANARY.toString())).toBe(false)
  })
})
