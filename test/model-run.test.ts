// `nle model run`: the engine the enclave runs, from the command line — how a user tries a model and
// how CI checks one against a reference (token ids in, token ids out).
import {readFileSync} from 'node:fs'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {synthModel} from '../src/lib/model/index.js'
import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {sharedTestdata} from '../src/test-support/testdata.js'
import {tempDir} from '../src/test-support/tmp.js'

interface RunJson {
  model: {dtype: string; onnxFile: string; lastLogitsOnly: boolean}
  promptIds: number[]
  tokenIds: number[]
  text: string
  finishReason: string
  seed: number
  metrics: {promptTokens: number; generatedTokens: number; ttftMs: number}
}

const tmp = tempDir('nle-model-run-')
const tiny = join(tmp.dir, 'tiny')
beforeAll(async () => {
  await synthModel({preset: 'tiny', outDir: tiny, seed: 3})
}, 60_000)
afterAll(() => tmp.cleanup())

describe('nle model run', () => {
  it('streams the continuation of a prompt to stdout and its timings to stderr; --json gives ids, text and metrics', async () => {
    const text = await runCli(['model', 'run', tiny, '--prompt', 'The enclave answers', '--max-tokens', '6'])
    expect(text.exitCode).toBe(0)
    expect(text.stderr).toMatch(/\d+ prompt \+ 6 generated tokens \(length\); TTFT \d+ ms/)
    const r = jsonResult<RunJson>(await runCli(['model', 'run', tiny, '--prompt', 'The enclave answers', '--max-tokens', '6', '--json']))
    expect(r.tokenIds).toHaveLength(6)
    expect(r.finishReason).toBe('length')
    expect(r.model).toMatchObject({dtype: 'fp32', onnxFile: 'onnx/model.onnx', lastLogitsOnly: true})
    expect(r.metrics).toMatchObject({promptTokens: r.promptIds.length, generatedTokens: 6})
    // Greedy: the streamed text is the JSON text, and a second run is the same.
    expect(text.stdout).toBe(r.text) // execa strips the final newline
    expect(jsonResult<RunJson>(await runCli(['model', 'run', tiny, '--ids', r.promptIds.join(','), '--max-tokens', '6', '--json'])).tokenIds).toEqual(r.tokenIds)
  })

  it('renders chat messages from a file or standard input through the chat template; a seed makes sampling reproducible', async () => {
    const messages = [{role: 'user', content: 'Is my visit covered?'}]
    const file = join(tmp.dir, 'messages.json')
    await writeFile(file, JSON.stringify(messages))
    const a = jsonResult<RunJson>(await runCli(['model', 'run', tiny, '--messages', file, '--temperature', '0.9', '--seed', '11', '--max-tokens', '8', '--json']))
    const b = jsonResult<RunJson>(await runCli(['model', 'run', tiny, '--messages', '-', '--temperature', '0.9', '--seed', '11', '--max-tokens', '8', '--json'], {input: JSON.stringify({messages})}))
    expect(a.seed).toBe(11)
    expect(b.tokenIds).toEqual(a.tokenIds)
    expect(b.promptIds).toEqual(a.promptIds)
  })

  it('refuses bad input with a code and exit 2: ids outside the vocabulary, malformed ids or messages, two inputs', async () => {
    const cases: [string[], string][] = [
      [['--ids', '999999'], 'ENGINE_BAD_OPTIONS'],
      [['--ids', '1,two'], 'ENGINE_BAD_OPTIONS'],
      [['--messages', join(tmp.dir, 'absent.json')], 'ENGINE_BAD_OPTIONS'],
      [['--prompt', 'a', '--ids', '1'], 'USAGE'],
      [['--prompt', 'a', '--temperature', 'hot'], 'ENGINE_BAD_OPTIONS'],
    ]
    for (const [flags, code] of cases) {
      const r = await runCli(['model', 'run', tiny, ...flags, '--json'])
      expect(r.exitCode, flags.join(' ')).toBe(2)
      expect(jsonFailure(r), flags.join(' ')).toMatchObject({code, hint: expect.any(String)})
    }
    const notJson = join(tmp.dir, 'bad.json')
    await writeFile(notJson, '[{"role": "user"}]')
    expect(jsonFailure(await runCli(['model', 'run', tiny, '--messages', notJson, '--json'])).code).toBe('ENGINE_BAD_OPTIONS')
  })

  const models = sharedTestdata('models/')
  it.skipIf(models === undefined)("checks a real export against PyTorch's reference from the command line (llama, ids in and out)", async () => {
    const dir = join(models ?? '', 'llama')
    const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as {prompts: {ids: number[]; greedy_cache: number[]}[]}
    for (const p of reference.prompts) {
      const r = jsonResult<RunJson>(await runCli(['model', 'run', dir, '--ids', p.ids.join(','), '--max-tokens', String(p.greedy_cache.length), '--json']))
      expect(r.tokenIds).toEqual(p.greedy_cache)
    }
  })
})
