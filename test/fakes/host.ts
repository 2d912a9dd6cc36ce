// Test harness for the fake host tools in this folder: a temporary "host" whose PATH holds only
// the fakes (so no real docker/systemctl on this machine is ever reached), an argv log, and the
// fakes' shared state (images, enclaves, units).
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {initProject} from '../../src/lib/init.js'
import {TEST_CACHE_DIR} from '../../src/test-support/node-cache.js'
import {tempDir} from '../../src/test-support/tmp.js'
import {untilFile} from '../../src/test-support/wait.js'

export const FAKES_DIR = fileURLToPath(new URL('.', import.meta.url))

export interface Call {
  tool: string
  argv: string[]
  pid: number
  SOURCE_DATE_EPOCH?: string
}

export interface FakeHost {
  dir: string
  env: NodeJS.ProcessEnv
  calls(tool?: string): Call[]
  /**
   * The calls of `tool` once there are at least `count` (each fake records itself when it starts,
   * which may be after the command that started it returned): waits on the log's changes, never on a guess.
   */
  callsWhen(tool: string, count: number, timeoutMs?: number): Promise<Call[]>
  state<T>(name: string, fallback: T): T
  writeState(name: string, value: unknown): void
  /** Live (non-zombie) processes whose command line mentions this host's folder: must be none after stop. */
  leftovers(): {pid: number; cmdline: string}[]
  /** An env whose PATH holds only the named fakes (the others are "not installed"). */
  envWithOnly(tools: readonly string[]): NodeJS.ProcessEnv
  cleanup(): void
}

/** The complete lines of the argv log (a line still being appended is not a call yet). */
function parseCalls(text: string): Call[] {
  const lines = text.split('\n')
  lines.pop()
  return lines.filter(Boolean).map((l) => JSON.parse(l) as Call)
}

export function fakeHost(extra: NodeJS.ProcessEnv = {}): FakeHost {
  const t = tempDir('nle-host-')
  const stateDir = join(t.dir, 'fake-state')
  mkdirSync(stateDir)
  const log = join(t.dir, 'calls.jsonl')
  writeFileSync(log, '')
  const env: NodeJS.ProcessEnv = {
    PATH: FAKES_DIR,
    HOME: t.dir,
    NLE_FAKE_NODE: process.execPath,
    // The pinned enclave Node, fetched once by global-setup (the fakes' PATH has no npm).
    NLE_CACHE_DIR: TEST_CACHE_DIR,
    NLE_FAKES_DIR: FAKES_DIR,
    NLE_FAKE_STATE: stateDir,
    NLE_FAKE_LOG: log,
    // No parent proxy unless a test asks for the fake one (never the real `nle proxy` on :8443).
    NLE_PARENT_PROXY: 'none',
    ...extra,
  }
  return {
    dir: t.dir,
    env,
    calls: (tool) =>
      parseCalls(readFileSync(log, 'utf8')).filter((c) => tool === undefined || c.tool === tool),
    callsWhen(tool, count, timeoutMs) {
      return untilFile(
        log,
        (text) => parseCalls(text).filter((c) => c.tool === tool),
        (found) => found.length >= count,
        {...(timeoutMs === undefined ? {} : {timeoutMs}), describe: (found) => `${tool}: ${found.length} of ${count} calls recorded`},
      )
    },
    state: (name, fallback) => {
      try {
        return JSON.parse(readFileSync(join(stateDir, name), 'utf8'))
      } catch {
        return fallback
      }
    },
    writeState: (name, value) => writeFileSync(join(stateDir, name), JSON.stringify(value)),
    leftovers: () => leftovers(),
    envWithOnly: (tools) => {
      const bin = join(t.dir, `bin-${tools.join('-') || 'none'}`)
      mkdirSync(bin, {recursive: true})
      for (const tool of tools) symlinkSync(join(FAKES_DIR, tool), join(bin, tool))
      return {...env, PATH: bin}
    },
    // A test that failed half-way may leave fakes running (tests assert leftovers() themselves):
    // kill them before the folder goes, so one failure does not leave processes behind.
    cleanup: () => {
      for (const p of leftovers()) {
        try {
          process.kill(p.pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      t.cleanup()
    },
  }

  function leftovers(): {pid: number; cmdline: string}[] {
    const out: {pid: number; cmdline: string}[] = []
    for (const name of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
      try {
        const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ')
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
        if (cmdline.includes(t.dir) && !/^\d+ \(.*\) [ZX]/s.test(stat)) out.push({pid: Number(name), cmdline})
      } catch {
        // exited while we looked
      }
    }
    return out
  }
}

/**
 * A project made by `nle init`, with a small saved model (a manifest and a GPT-2-shaped
 * config.json: 2 layers, 64 hidden, 128 positions).
 */
export async function fakeProject(host: FakeHost, name = 'demo', yamlEdit?: (text: string) => string): Promise<string> {
  const dir = join(host.dir, 'project')
  await initProject({dir, name})
  if (yamlEdit) writeFileSync(join(dir, 'nle.yaml'), yamlEdit(readFileSync(join(dir, 'nle.yaml'), 'utf8')))
  const model = join(dir, 'model')
  mkdirSync(model, {recursive: true})
  const config = Buffer.from(JSON.stringify({model_type: 'gpt2', n_layer: 2, n_head: 2, n_embd: 64, n_positions: 128, vocab_size: 100}))
  // 3 MiB in all, which the memory rules see as the model's size.
  const weights = Buffer.alloc(3 * 1024 * 1024 - config.length, 7)
  mkdirSync(join(model, 'onnx'), {recursive: true})
  writeFileSync(join(model, 'config.json'), config)
  writeFileSync(join(model, 'onnx', 'model.onnx'), weights)
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
  const manifest = {
    schemaVersion: 1,
    source: {kind: 'local', path: '/models/fake'},
    dtype: 'fp32',
    modelType: 'gpt2',
    onnx: {file: 'onnx/model.onnx', numLayers: 2, inputs: ['input_ids'], outputs: ['logits']},
    files: [
      {path: 'config.json', size: config.length, sha256: sha(config)},
      {path: 'onnx/model.onnx', size: weights.length, sha256: sha(weights)},
    ],
    totalBytes: 3 * 1024 * 1024,
  }
  writeFileSync(join(model, 'nle-model.json'), JSON.stringify(manifest) + '\n')
  return dir
}
