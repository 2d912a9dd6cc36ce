/**
 * Real HTTP clients against the gateway: Python's requests (streaming) and curl, for chat
 * completions and the Responses API, whole and streamed, and each error with its status and body.
 * Upstream is a real enclave server (child process, Unix socket, NSM simulator) running the real
 * onnxruntime engine on the generated tiny model, whose 256-token context a long prompt overflows
 * for real. A missing client skips its test with a printed reason; .ci/run installs them.
 */
import {createHash, randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {execa} from 'execa'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {NleClient} from '../src/lib/client/index.js'
import {type Gateway, modelIdFromLockfile, startGateway} from '../src/lib/gateway/index.js'
import {type Lockfile, writeLockfile} from '../src/lib/lockfile.js'
import {synthModel} from '../src/lib/model/index.js'
import {REPO_ROOT} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {type Child, startRuntime} from './e2e-support.js'
import {executables, pythonsWith, skipNote} from './real-clients/support.js'

const digest = (label: string): string => createHash('sha384').update(label).digest('hex')
const LOCK: Lockfile = {
  version: 1,
  measurements: {PCR0: digest('real clients 0'), PCR1: digest('real clients 1'), PCR2: digest('real clients 2')},
  eif: {sha384: digest('eif'), size: 1, version: 4, signed: false},
  builder: {name: 'real-clients-test', version: '0'},
  inputs: {},
}
const MODEL_ID = modelIdFromLockfile(LOCK)
const MAX_TOKENS = 8
const TOKEN = `gw-real-${randomBytes(16).toString('hex')}`
/** Far more than the tiny model's 256 positions. */
const LONG_PROMPT = 'covered '.repeat(600)

const {dir, cleanup} = tempDir('nle-real-gw-')
let server: Child
let gateway: Gateway
let base: string
const CURL = executables('curl')[0]

beforeAll(async () => {
  const model = join(dir, 'tiny')
  await synthModel({preset: 'tiny', outDir: model, seed: 5})
  const lockPath = join(dir, 'nle.lock.json')
  await writeLockfile(lockPath, LOCK)
  const socket = join(dir, 'enclave.sock')
  server = startRuntime('enclave-server', ['--socket', socket, '--engine', 'onnx', '--model', model, '--nsm', 'simulator', '--lockfile', lockPath, '--sim-root-out', join(dir, 'root.pem'), '--max-tokens', String(MAX_TOKENS)])
  await server.waitFor('listening', 90_000)
  const client = await NleClient.fromLockfile(lockPath, {target: `unix:${socket}`, insecureDevRoot: insecureDevRoot(await readFile(join(dir, 'root.pem'), 'utf8'))})
  const started = await startGateway({upstream: client, upstreamDisplay: 'test enclave', listen: '127.0.0.1:0', token: TOKEN, modelId: MODEL_ID, limits: {maxTokens: MAX_TOKENS}})
  gateway = started.gateway
  base = `${started.url}/v1`
  expect(started.attestation.status).toBe('verified')
}, 120_000)

afterAll(async () => {
  await gateway?.stop()
  if (server && server.proc.exitCode === null) server.proc.kill('SIGTERM')
  await server?.exited
  cleanup()
})

const errorShape = (code: string, param: string | null): object => ({error: {message: expect.any(String), type: 'invalid_request_error', code, param}})

describe('Python requests against nle gateway', () => {
  it('chat completions and Responses, whole and streamed; every error with its status and shape', async (ctx) => {
    const pythons = await pythonsWith(['requests'])
    if (pythons.length === 0) return ctx.skip(skipNote('Python requests', 'no python3 that imports requests (Debian package python3-requests)'))
    const {python, versions} = pythons[0]!
    const r = await execa(python, [join(REPO_ROOT, 'test/real-clients/gateway_requests.py')], {input: JSON.stringify({base, token: TOKEN, longPrompt: LONG_PROMPT}), reject: false, timeout: 240_000})
    expect(r.exitCode, String(r.stderr)).toBe(0)
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the script's JSON, checked field by field below
    const out = JSON.parse(String(r.stdout)) as Record<string, any>
    const fingerprint = `nle-${LOCK.measurements.PCR0.slice(0, 16)}`

    expect(out.chat).toMatchObject({status: 200, object: 'chat.completion', model: MODEL_ID, fingerprint, content: expect.any(String), usage: {prompt_tokens: expect.any(Number)}})
    expect(out.chatStream).toMatchObject({status: 200, contentType: 'text/event-stream; charset=utf-8', last: '[DONE]', finalChoices: [], finalUsage: {completion_tokens: expect.any(Number)}, fingerprints: [fingerprint], models: [MODEL_ID]})
    // include_usage: every chunk has the usage key; all but the last carry null.
    const keys = out.chatStream.usageKeys as [boolean, boolean][]
    expect(keys.length).toBeGreaterThan(1)
    expect(keys.every(([has]) => has)).toBe(true)
    expect(keys.slice(0, -1).every(([, isNull]) => isNull)).toBe(true)
    expect(keys.at(-1)![1]).toBe(false)

    expect(out.responses).toMatchObject({status: 200, object: 'response', model: MODEL_ID, usage: {input_tokens: expect.any(Number), output_tokens: expect.any(Number)}})
    expect(['completed', 'incomplete']).toContain(out.responses.state)
    expect(out.responses.output).toEqual([{type: 'message', id: expect.stringMatching(/^msg_/), status: expect.any(String), role: 'assistant', content: [{type: 'output_text', text: expect.any(String), annotations: [], logprobs: []}]}])
    const names = out.responsesStream.names as string[]
    expect(out.responsesStream).toMatchObject({status: 200, contentType: 'text/event-stream; charset=utf-8', typesMatch: true})
    expect(names.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added'])
    expect(names.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', expect.stringMatching(/^response\.(completed|incomplete)$/)])
    expect(names.slice(4, -4).every((n) => n === 'response.output_text.delta')).toBe(true)
    expect(out.responsesStream.sequence).toEqual(names.map((_, i) => i))
    expect(out.responsesStream.doneText).toBe(out.responsesStream.deltas)
    expect(out.responsesStream.final.output[0].content[0].text).toBe(out.responsesStream.deltas)

    const e = out.errors
    for (const name of ['contextWhole', 'contextStream']) expect(e[name]).toEqual({status: 400, contentType: 'application/json', retry: 'false', body: errorShape('context_length_exceeded', 'messages')})
    expect(e.contextResponses).toEqual({status: 400, contentType: 'application/json', retry: 'false', body: errorShape('context_length_exceeded', 'input')})
    for (const name of ['responseFormat', 'responseFormatStream']) expect(e[name]).toMatchObject({status: 400, contentType: 'application/json', body: errorShape('unsupported_parameter', 'response_format')})
    expect(e.maxTokens).toMatchObject({status: 400, body: errorShape('GATEWAY_BAD_REQUEST', 'max_tokens')})
    expect(e.tools).toMatchObject({status: 400, body: errorShape('unsupported_parameter', 'tools')})
    expect(e.image).toMatchObject({status: 400, body: errorShape('unsupported_parameter', 'messages.[0].content.[0].type')})
    expect(e.previousResponse).toMatchObject({status: 400, body: errorShape('unsupported_parameter', 'previous_response_id')})
    expect(e.unauthorized).toMatchObject({status: 401, body: {error: {code: 'GATEWAY_UNAUTHORIZED'}}})
    expect(e.unknownModel).toMatchObject({status: 404, body: {error: {code: 'model_not_found', param: 'model'}}})
    expect(out.toolMessage).toEqual({status: 200, object: 'chat.completion'})
    expect(out.models).toMatchObject({status: 200, body: {object: 'list', data: [{id: MODEL_ID, object: 'model', nle_attestation: {status: 'verified', pcr0: LOCK.measurements.PCR0}}]}})
    process.stderr.write(`[real clients] ${python} requests ${versions.requests}: chat ${out.chat.status}, stream ${out.chatStream.status} (${keys.length} chunks), responses ${out.responses.status} ${out.responses.state}, responses stream ${names.length} events; context overflow ${e.contextStream.status} ${e.contextStream.body.error.code}; response_format ${e.responseFormat.status} ${e.responseFormat.body.error.code}\n`)
  }, 300_000)
})

describe('curl against nle gateway', () => {
  /** curl, as a shell user would run it: status, headers and body. */
  async function curl(path: string, body?: unknown, extra: string[] = []): Promise<{status: number; type: string; body: string}> {
    const headersFile = join(dir, `h-${randomBytes(4).toString('hex')}`)
    const args = ['-sS', '-N', '-D', headersFile, '-H', `Authorization: Bearer ${TOKEN}`, ...extra]
    if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', '@-')
    const r = await execa(CURL!, [...args, `${base}${path}`], {reject: false, timeout: 120_000, stripFinalNewline: false, ...(body !== undefined ? {input: JSON.stringify(body)} : {})})
    expect(r.exitCode, String(r.stderr)).toBe(0)
    const head = await readFile(headersFile, 'utf8')
    return {status: Number(/^HTTP\/[\d.]+ (\d{3})/.exec(head)?.[1]), type: /^content-type: *(.+?)\r?$/im.exec(head)?.[1] ?? '', body: String(r.stdout)}
  }
  const user = [{role: 'user', content: 'Is my visit covered?'}]

  it('chat completions and Responses, whole and streamed; errors with their status and body', async (ctx) => {
    if (!CURL) return ctx.skip(skipNote('curl', 'no `curl` on PATH (Debian package curl)'))
    const version = (await execa(CURL, ['--version'])).stdout.split('\n')[0]

    const chat = await curl('/chat/completions', {messages: user, max_tokens: 3})
    expect(chat).toMatchObject({status: 200, type: 'application/json'})
    expect(JSON.parse(chat.body)).toMatchObject({object: 'chat.completion', model: MODEL_ID, system_fingerprint: expect.stringMatching(/^nle-/)})

    const stream = await curl('/chat/completions', {messages: user, max_tokens: 3, stream: true})
    expect(stream).toMatchObject({status: 200, type: 'text/event-stream; charset=utf-8'})
    const frames = stream.body.split('\n\n').filter(Boolean)
    expect(frames.at(-1)).toBe('data: [DONE]')
    for (const f of frames.slice(0, -1)) expect(JSON.parse(f.replace(/^data: /, ''))).toMatchObject({object: 'chat.completion.chunk', model: MODEL_ID})

    const whole = await curl('/responses', {input: 'Is my visit covered?', max_output_tokens: 3})
    expect(whole).toMatchObject({status: 200, type: 'application/json'})
    expect(JSON.parse(whole.body)).toMatchObject({object: 'response', model: MODEL_ID, output: [{type: 'message', role: 'assistant'}]})

    const events = await curl('/responses', {input: 'Is my visit covered?', max_output_tokens: 3, stream: true})
    expect(events).toMatchObject({status: 200, type: 'text/event-stream; charset=utf-8'})
    const parsed = events.body
      .split('\n\n')
      .filter(Boolean)
      .map((f) => {
        const [eventLine, dataLine] = f.split('\n')
        return {name: eventLine!.replace(/^event: /, ''), data: JSON.parse(dataLine!.replace(/^data: /, '')) as {type: string}}
      })
    expect(parsed[0]!.name).toBe('response.created')
    expect(parsed.at(-1)!.name).toMatch(/^response\.(completed|incomplete)$/)
    expect(parsed.every((p) => p.name === p.data.type)).toBe(true)
    expect(events.body).not.toContain('[DONE]')

    const overflow = await curl('/chat/completions', {messages: [{role: 'user', content: LONG_PROMPT}], stream: true})
    expect(overflow).toMatchObject({status: 400, type: 'application/json'})
    expect(JSON.parse(overflow.body)).toEqual(errorShape('context_length_exceeded', 'messages'))
    const format = await curl('/responses', {input: 'x', text: {format: {type: 'json_object'}}})
    expect(format.status).toBe(400)
    expect(JSON.parse(format.body)).toEqual(errorShape('unsupported_parameter', 'text'))
    const notJson = await curl('/chat/completions', undefined, ['-H', 'Content-Type: text/plain', '--data-binary', 'hello'])
    expect(notJson.status).toBe(415)
    const models = await curl('/models')
    expect(JSON.parse(models.body)).toMatchObject({data: [{id: MODEL_ID, nle_attestation: {status: 'verified'}}]})
    process.stderr.write(`[real clients] ${version}: chat ${chat.status}, stream ${stream.status} (${frames.length} frames), responses ${whole.status}, responses stream ${parsed.length} events; overflow ${overflow.status}; text.format ${format.status}; text/plain ${notJson.status}\n`)
  }, 300_000)
})
