// Unit tests of the gateway's pieces, with a fake upstream (no enclave, no network but loopback).
import {chmodSync, statSync} from 'node:fs'
import {request as httpRequest} from 'node:http'
import {connect as netConnect} from 'node:net'
import {join} from 'node:path'

import {describe, expect, it} from 'vitest'

import type {VerifiedAttestation} from '../attestation/verify.js'
import type {AttestationCause, AttestationEvent, AttestationListener} from '../client/index.js'
import type {ChatCompletion, ChatCompletionChunk, ChatRequest} from '../client/index.js'
import {clientError} from '../client/index.js'
import {NleError} from '../errors.js'
import {toHttpFailure} from './errors.js'
import {type GatewayEvent, type GatewayUpstream, startGateway} from './gateway.js'
import {parseListen} from './listen.js'
import {TOKEN_ENV, gatewayToken} from './token.js'
import {tempDir} from '../../test-support/tmp.js'
import {parseChatBody, parseCompletionBody} from './openai.js'
import {parseResponsesBody} from './responses.js'

function attestation(pcr0: string): VerifiedAttestation {
  const now = new Date()
  return {moduleId: 'i-0-enc0', digest: 'SHA384', timestamp: now, debug: false, pcrs: {0: pcr0, 1: 'b'.repeat(96), 2: 'c'.repeat(96)}, pcrChecks: [], publicKey: null, userData: null, nonce: null, chain: [], root: 'insecure-dev-root', verifiedAt: now, ageMs: 0}
}

/** Reports its attestations as NleClient does: to every listener, before the call settles. */
class FakeUpstream implements GatewayUpstream {
  current = attestation('a'.repeat(96))
  fetches = 0
  /** Every attest() call, fresh or not: the gateway must not poll. */
  calls = 0
  sent: ChatRequest[] = []
  failAttest: NleError | null = null
  private readonly listeners = new Set<AttestationListener>()
  async attest(options: {fresh?: boolean} = {}): Promise<VerifiedAttestation> {
    this.calls++
    if (options.fresh) {
      this.fetches++
      if (this.failAttest) {
        this.emit({ok: false, cause: 'requested', code: this.failAttest.code, error: this.failAttest})
        throw this.failAttest
      }
      this.emit({ok: true, cause: 'requested', attestation: this.current})
    }
    return this.current
  }
  onAttestation(listener: AttestationListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
  /** What the client does by itself after a 421 (or its own TTL): verify a new document, or fail to. */
  reattest(outcome: VerifiedAttestation | NleError, cause: AttestationCause = 'rotated'): void {
    if (outcome instanceof NleError) return this.emit({ok: false, cause, code: outcome.code, error: outcome})
    this.current = outcome
    this.emit({ok: true, cause, attestation: outcome})
  }
  get subscribed(): number {
    return this.listeners.size
  }
  private emit(event: AttestationEvent): void {
    for (const listener of this.listeners) listener(event)
  }
  async chat(request: ChatRequest): Promise<ChatCompletion> {
    this.sent.push(request)
    return {id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'fake', choices: [{index: 0, message: {role: 'assistant', content: 'ok'}, finish_reason: 'stop'}], usage: {prompt_tokens: 1, completion_tokens: 1, total_tokens: 2}}
  }
  async *chatStream(request: ChatRequest): AsyncGenerator<ChatCompletionChunk, void, void> {
    this.sent.push(request)
    yield {id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'fake', choices: [{index: 0, delta: {role: 'assistant', content: ''}, finish_reason: null}]}
    yield {id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'fake', choices: [{index: 0, delta: {content: 'par'}, finish_reason: null}]}
    throw clientError('CLIENT_STREAM_INTERRUPTED', 'The connection broke while the answer was arriving (ECONNRESET).')
  }
  close(): void {}
}

const TOKEN = 'test-token-0123456789abcdef'
const auth = {authorization: `Bearer ${TOKEN}`}
const ask = (url: string, body: unknown, path = '/v1/chat/completions'): Promise<Response> =>
  fetch(`${url}${path}`, {method: 'POST', headers: {'content-type': 'application/json', ...auth}, body: JSON.stringify(body)})

describe('gateway listen address', () => {
  it('accepts loopback forms and refuses the rest', () => {
    expect(parseListen('8787')).toEqual({host: '127.0.0.1', port: 8787})
    expect(parseListen('127.0.0.2:1')).toEqual({host: '127.0.0.2', port: 1})
    expect(parseListen('[::1]:0')).toEqual({host: '::1', port: 0})
    expect(parseListen('localhost:9')).toEqual({host: '127.0.0.1', port: 9})
    expect(parseListen(':1')).toEqual({host: '127.0.0.1', port: 1}) // no host: loopback, never all interfaces
    for (const bad of ['0.0.0.0:1', '[::]:1', '10.0.0.1:1', 'host.local:1']) {
      expect(() => parseListen(bad)).toThrow(expect.objectContaining({code: 'GATEWAY_LISTEN_NOT_LOOPBACK'}))
    }
    expect(() => parseListen('127.0.0.1:99999')).toThrow(expect.objectContaining({code: 'GATEWAY_LISTEN_INVALID'}))
    expect(() => parseListen('nonsense')).toThrow(expect.objectContaining({code: 'GATEWAY_LISTEN_INVALID'}))
  })
})

describe('gateway status mapping', () => {
  it('maps every failure family to its documented status', () => {
    const s = (e: unknown): number => toHttpFailure(e).status
    expect(s(new NleError('ATTEST_PCR_MISMATCH', 'x'))).toBe(503)
    expect(s(new NleError('ATTEST_BAD_SIGNATURE', 'x'))).toBe(503)
    expect(s(clientError('CLIENT_ENCLAVE_UNAVAILABLE', 'x'))).toBe(503)
    expect(s(clientError('CLIENT_UNREACHABLE', 'x'))).toBe(502)
    expect(s(clientError('CLIENT_UNREACHABLE', 'x', {details: {errno: 'ETIMEDOUT'}}))).toBe(504)
    expect(s(clientError('CLIENT_UPSTREAM_TIMEOUT', 'x'))).toBe(504)
    expect(s(clientError('CLIENT_STREAM_INTERRUPTED', 'x'))).toBe(502)
    expect(s(new NleError('CHANNEL_RESPONSE_AUTH_FAILED', 'x'))).toBe(502)
    expect(s(clientError('CLIENT_REQUEST_TOO_LARGE', 'x'))).toBe(413)
    expect(s(clientError('CLIENT_SERVER_ERROR', 'x', {details: {serverCode: 'SERVER_BAD_REQUEST'}}))).toBe(400)
    expect(s(new Error('boom'))).toBe(500)
    // KMS mode: the gateway's identity may not Encrypt; the key policy does not admit the enclave; KMS unreachable.
    expect(toHttpFailure(new NleError('KMS_ACCESS_DENIED', 'x'))).toMatchObject({status: 403, body: {error: {type: 'permission_error'}}})
    expect(toHttpFailure(clientError('CLIENT_REQUEST_REFUSED', 'x', {details: {serverCode: 'CHANNEL_KMS_DENIED'}}))).toMatchObject({status: 403, body: {error: {code: 'CHANNEL_KMS_DENIED'}}})
    expect(s(clientError('CLIENT_REQUEST_REFUSED', 'x', {details: {serverCode: 'CHANNEL_REPLAY'}}))).toBe(502)
    expect(s(new NleError('KMS_AWS_ERROR', 'x'))).toBe(502)
    const limited = toHttpFailure(clientError('CLIENT_RATE_LIMITED', 'x', {details: {retryAfter: 3}}))
    expect(limited).toMatchObject({status: 429, retryAfter: '3', body: {error: {type: 'rate_limit_error', code: 'CLIENT_RATE_LIMITED', param: null}}})
    expect(toHttpFailure(new NleError('ATTEST_PCR_MISMATCH', 'x'))).toMatchObject({shouldRetry: false, body: {error: {type: 'attestation_error'}}})
    // A prompt longer than the context: 400 context_length_exceeded (never a 500 the SDKs retry),
    // matched on the enclave's code whichever client code carries it.
    for (const e of [
      clientError('CLIENT_SERVER_ERROR', 'x', {details: {serverCode: 'ENGINE_PROMPT_TOO_LONG'}}),
      clientError('CLIENT_CONTEXT_TOO_LONG', 'x', {details: {serverCode: 'ENGINE_PROMPT_TOO_LONG'}}),
      clientError('CLIENT_CONTEXT_TOO_LONG', 'x', {details: {serverCode: 'ENGINE_PROMPT_TOO_LONG', context: 256, promptTokens: 300}}),
    ]) {
      expect(toHttpFailure(e)).toMatchObject({status: 400, shouldRetry: false, body: {error: {type: 'invalid_request_error', code: 'context_length_exceeded', param: 'messages'}}})
    }
    expect(toHttpFailure(new NleError('GATEWAY_UNSUPPORTED_PARAMETER', 'x', {details: {param: 'response_format'}}))).toMatchObject({status: 400, body: {error: {code: 'unsupported_parameter', param: 'response_format'}}})
  })
})

describe('gateway request shapes', () => {
  const chat = (body: unknown): ReturnType<typeof parseChatBody> => parseChatBody(Buffer.from(JSON.stringify(body)))
  const refusal = (fn: () => unknown): {code: string; param: unknown} => {
    try {
      fn()
    } catch (error) {
      const e = error as NleError
      return {code: e.code, param: e.details?.param}
    }
    throw new Error('expected a refusal')
  }
  const user = [{role: 'user', content: 'x'}]

  it('normalises chat messages (text parts, developer role) and refuses what the enclave cannot do, naming the param', () => {
    const r = chat({model: 'm', messages: [{role: 'developer', content: 'sys'}, {role: 'user', content: [{type: 'text', text: 'a'}, {type: 'text', text: 'b'}]}], stream: true, max_tokens: 5, user: 'ignored'})
    expect(r).toEqual({request: {model: 'm', max_tokens: 5, messages: [{role: 'system', content: 'sys'}, {role: 'user', content: 'ab'}]}, stream: true, includeUsage: false})
    expect(refusal(() => chat({messages: [{role: 'user', content: [{type: 'image_url', image_url: {url: 'x'}}]}]}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'messages.[0].content.[0].type'})
    expect(refusal(() => chat({messages: user, n: 2}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'n'})
    expect(refusal(() => chat({messages: user, tools: [{}]}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'tools'})
    expect(refusal(() => chat({messages: user, response_format: {type: 'json_object'}}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'response_format'})
    expect(refusal(() => chat({messages: user, logprobs: true}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'logprobs'})
    expect(refusal(() => chat({messages: user, presence_penalty: 0.5}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'presence_penalty'})
    expect(refusal(() => chat({messages: user, no_such_thing: 1}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'no_such_thing'})
    expect(refusal(() => chat({messages: [{role: 'user', content: 3}]}))).toEqual({code: 'GATEWAY_BAD_REQUEST', param: 'messages.[0].content'})
    expect(refusal(() => chat({messages: [{role: 'user', content: 'x'}], temperature: 9}))).toEqual({code: 'GATEWAY_BAD_REQUEST', param: 'temperature'})
    // Values that change nothing are accepted: the neutral settings OpenAI clients send by default.
    expect(chat({messages: user, response_format: {type: 'text'}, tools: [], tool_choice: 'none', logprobs: false, presence_penalty: 0, frequency_penalty: 0, store: false, parallel_tool_calls: true}).request.messages).toEqual(user)
  })

  it('refuses max_tokens above what the enclave generates, when the gateway knows it', () => {
    const limits = {maxTokens: 64}
    expect(parseChatBody(Buffer.from(JSON.stringify({messages: user, max_tokens: 64})), limits).request.max_tokens).toBe(64)
    expect(refusal(() => parseChatBody(Buffer.from(JSON.stringify({messages: user, max_tokens: 65})), limits))).toEqual({code: 'GATEWAY_BAD_REQUEST', param: 'max_tokens'})
    expect(refusal(() => parseChatBody(Buffer.from(JSON.stringify({messages: user, max_completion_tokens: 4096})), limits))).toEqual({code: 'GATEWAY_BAD_REQUEST', param: 'max_completion_tokens'})
  })

  it('renders tool messages and earlier tool calls as text when no tools are offered', () => {
    const r = chat({
      messages: [
        {role: 'user', content: 'weather?'},
        {role: 'assistant', content: null, tool_calls: [{id: 'call_1', type: 'function', function: {name: 'weather', arguments: '{"city":"Oslo"}'}}]},
        {role: 'tool', tool_call_id: 'call_1', content: 'rain'},
      ],
    })
    expect(r.request.messages).toEqual([
      {role: 'user', content: 'weather?'},
      {role: 'assistant', content: '[called weather({"city":"Oslo"})]'},
      {role: 'user', content: '[result of tool call call_1]\nrain'},
    ])
    expect(refusal(() => chat({messages: [{role: 'tool', content: [{type: 'image_url'}]}]}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'messages.[0].content.[0].type'})
    expect(refusal(() => chat({messages: [{role: 'critic', content: 'x'}]}))).toEqual({code: 'GATEWAY_BAD_REQUEST', param: 'messages.[0].role'})
  })

  it('maps a completion prompt to one user message', () => {
    expect(parseCompletionBody(Buffer.from(JSON.stringify({prompt: ['p'], temperature: 0})))).toEqual({request: {temperature: 0, messages: [{role: 'user', content: 'p'}]}, stream: false, includeUsage: false})
    expect(refusal(() => parseCompletionBody(Buffer.from(JSON.stringify({prompt: 'p', echo: true}))))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'echo'})
  })

  it('maps a Responses request: instructions, string or item input; refuses what is not honoured', () => {
    const resp = (body: unknown): ReturnType<typeof parseResponsesBody> => parseResponsesBody(Buffer.from(JSON.stringify(body)))
    expect(resp({input: 'hi', instructions: 'be brief', max_output_tokens: 9}).request).toEqual({messages: [{role: 'system', content: 'be brief'}, {role: 'user', content: 'hi'}], max_tokens: 9})
    expect(resp({input: [{role: 'user', content: [{type: 'input_text', text: 'a'}]}, {type: 'message', role: 'assistant', content: [{type: 'output_text', text: 'b'}]}]}).request.messages).toEqual([
      {role: 'user', content: 'a'},
      {role: 'assistant', content: 'b'},
    ])
    expect(refusal(() => resp({input: 'x', previous_response_id: 'resp_1'}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'previous_response_id'})
    expect(refusal(() => resp({input: 'x', store: true}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'store'})
    expect(refusal(() => resp({input: 'x', text: {format: {type: 'json_schema'}}}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'text'})
    expect(refusal(() => resp({input: [{role: 'user', content: [{type: 'input_image', image_url: 'x'}]}]}))).toEqual({code: 'GATEWAY_UNSUPPORTED_PARAMETER', param: 'input.[0].content.[0].type'})
    expect(resp({input: 'x', store: false, tools: [], text: {format: {type: 'text'}}}).request.messages).toEqual([{role: 'user', content: 'x'}])
  })
})

describe('gateway attestation policy', () => {
  it('re-verifies when the attestation ages out, and records a key rotation the client made', async () => {
    const up = new FakeUpstream()
    const events: GatewayEvent[] = []
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN, attestationTtlMs: 0, log: (e) => events.push(e)})
    try {
      expect(up.fetches).toBe(1)
      expect((await ask(url, {messages: [{role: 'user', content: 'q'}]})).status).toBe(200)
      expect(up.fetches).toBe(2) // TTL 0: every request verifies afresh
      expect(events).toContainEqual(expect.objectContaining({event: 'attested', reason: 'ttl'}))
      up.reattest(attestation('d'.repeat(96))) // as after a 421: the client verified a new document
      const state = (await (await fetch(`${url}/nle/attestation`, {headers: auth})).json()) as {pcrs: {PCR0: string}}
      expect(state.pcrs.PCR0).toBe('d'.repeat(96))
    } finally {
      await gateway.stop()
    }
  })

  it("follows the client's attestation events without polling it: a re-attestation, a refusal, unsubscribed on stop", async () => {
    const up = new FakeUpstream()
    const events: GatewayEvent[] = []
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN, failureRetryMs: 60_000, log: (e) => events.push(e)})
    try {
      expect(up.calls).toBe(1) // the verification at start
      expect(up.subscribed).toBe(1)
      // The client verified a new document by itself: the state changes on the event, with no call.
      up.reattest(attestation('e'.repeat(96)))
      expect(gateway.state()).toMatchObject({status: 'verified', reason: 'rotated', pcrs: {PCR0: 'e'.repeat(96)}})
      expect(events.at(-1)).toEqual({event: 'attested', reason: 'rotated', pcr0: 'e'.repeat(96), moduleId: 'i-0-enc0'})
      const answer = (await (await ask(url, {messages: [{role: 'user', content: 'q'}]})).json()) as {system_fingerprint: string}
      expect(answer.system_fingerprint).toBe(`nle-${'e'.repeat(16)}`)
      expect(up.calls).toBe(1) // answering asked nothing of the client's attestation
      // The client's own TTL ran out and it re-verified: recorded as a TTL re-verification.
      up.reattest(attestation('f'.repeat(96)), 'expired')
      expect(gateway.state()).toMatchObject({status: 'verified', reason: 'ttl', pcrs: {PCR0: 'f'.repeat(96)}})
      // A re-attestation that did not verify fails the state at once: 503, nothing sent.
      up.reattest(new NleError('ATTEST_PCR_MISMATCH', 'PCR0 differs.'))
      expect(gateway.state()).toMatchObject({status: 'failed', error: {code: 'ATTEST_PCR_MISMATCH'}})
      expect(events.at(-1)).toEqual({event: 'attestation_failed', reason: 'rotated', code: 'ATTEST_PCR_MISMATCH'})
      const sent = up.sent.length
      const refused = await ask(url, {messages: [{role: 'user', content: 'q'}]})
      expect(refused.status).toBe(503)
      expect(await refused.json()).toMatchObject({error: {code: 'ATTEST_PCR_MISMATCH'}})
      expect(up.sent).toHaveLength(sent)
      expect(up.calls).toBe(1)
      // A connection failure the client met on its own leaves the verified state to the request that
      // met it, and marks it stale: the next request verifies afresh (reconnect).
      up.reattest(attestation('a'.repeat(96)))
      up.reattest(clientError('CLIENT_UNREACHABLE', 'The proxy is not listening.'))
      expect(gateway.state().status).toBe('verified')
      expect((await ask(url, {messages: [{role: 'user', content: 'q'}]})).status).toBe(200)
      expect(up.fetches).toBe(2)
      expect(gateway.state().reason).toBe('reconnect')
    } finally {
      await gateway.stop()
    }
    expect(up.subscribed).toBe(0)
  })

  it('refuses (503) without sending while verification fails, then serves once it verifies', async () => {
    const up = new FakeUpstream()
    up.failAttest = new NleError('ATTEST_PCR_MISMATCH', 'PCR0 differs.')
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN, failureRetryMs: 0})
    try {
      const r = await ask(url, {messages: [{role: 'user', content: 'q'}]})
      expect(r.status).toBe(503)
      expect(await r.json()).toMatchObject({error: {code: 'ATTEST_PCR_MISMATCH', type: 'attestation_error'}})
      expect(up.sent).toHaveLength(0)
      up.failAttest = null
      expect((await ask(url, {messages: [{role: 'user', content: 'q'}]})).status).toBe(200)
      expect(up.sent).toHaveLength(1)
    } finally {
      await gateway.stop()
    }
  })

  it('a stream that breaks after it started ends with an OpenAI error event and no [DONE]', async () => {
    const up = new FakeUpstream()
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN})
    try {
      const r = await ask(url, {messages: [{role: 'user', content: 'q'}], stream: true})
      expect(r.status).toBe(200)
      const text = await r.text()
      expect(text).not.toContain('[DONE]')
      const last = text.trim().split('\n\n').pop()!
      expect(JSON.parse(last.slice(6))).toMatchObject({error: {code: 'CLIENT_STREAM_INTERRUPTED', type: 'server_error'}})
      expect(gateway.state().status).toBe('verified')
      // The broken connection marks the attestation stale: the next request verifies afresh.
      const before = up.fetches
      await ask(url, {messages: [{role: 'user', content: 'q'}]})
      expect(up.fetches).toBe(before + 1)
      expect(gateway.state().reason).toBe('reconnect')
    } finally {
      await gateway.stop()
    }
  })
})

/** The enclave's refusal as the client reports it: CLIENT_CONTEXT_TOO_LONG (what it throws now), or the older CLIENT_SERVER_ERROR form. */
const tooLong = {
  CLIENT_CONTEXT_TOO_LONG: () => clientError('CLIENT_CONTEXT_TOO_LONG', "The conversation exceeds the model's context of 256 tokens.", {details: {serverCode: 'ENGINE_PROMPT_TOO_LONG', context: 256, promptTokens: 300}}),
  CLIENT_SERVER_ERROR: () => clientError('CLIENT_SERVER_ERROR', 'The enclave answered with an error: Generation failed.', {details: {serverCode: 'ENGINE_PROMPT_TOO_LONG'}}),
}

class TooLongUpstream extends FakeUpstream {
  constructor(private readonly as: keyof typeof tooLong) {
    super()
  }
  override async chat(): Promise<ChatCompletion> {
    throw tooLong[this.as]()
  }
  override async *chatStream(): AsyncGenerator<ChatCompletionChunk, void, void> {
    // What the enclave does: the stream opens (role chunk), then the engine refuses the prompt.
    yield {id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'fake', choices: [{index: 0, delta: {role: 'assistant', content: ''}, finish_reason: null}]}
    throw tooLong[this.as]()
  }
}

describe('gateway answers', () => {
  it.each(Object.keys(tooLong) as (keyof typeof tooLong)[])('a prompt longer than the context (%s) is a 400 context_length_exceeded before any stream starts', async (as) => {
    const {gateway, url} = await startGateway({upstream: new TooLongUpstream(as), upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN})
    try {
      for (const [path, body, param] of [
        ['/v1/chat/completions', {messages: [{role: 'user', content: 'q'}]}, 'messages'],
        ['/v1/chat/completions', {messages: [{role: 'user', content: 'q'}], stream: true}, 'messages'],
        ['/v1/responses', {input: 'q', stream: true}, 'input'],
      ] as const) {
        const r = await ask(url, body, path)
        expect(r.status).toBe(400)
        expect(r.headers.get('content-type')).toBe('application/json')
        expect(r.headers.get('x-should-retry')).toBe('false')
        expect(await r.json()).toEqual({error: {type: 'invalid_request_error', code: 'context_length_exceeded', param, message: expect.any(String)}})
      }
    } finally {
      await gateway.stop()
    }
  })

  it('/v1/models lists one stable id with the attestation; 503 while attestation fails', async () => {
    const up = new FakeUpstream()
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN, modelId: 'nle-0123456789ab', failureRetryMs: 0})
    try {
      const list = (await (await fetch(`${url}/v1/models`, {headers: auth})).json()) as {data: {id: string; nle_attestation: {status: string; pcr0: string}}[]}
      expect(list.data).toEqual([expect.objectContaining({id: 'nle-0123456789ab', object: 'model', nle_attestation: expect.objectContaining({status: 'verified', pcr0: 'a'.repeat(96)})})])
      expect((await fetch(`${url}/v1/models/nle-0123456789ab`, {headers: auth})).status).toBe(200)
      const missing = await fetch(`${url}/v1/models/gpt-4o`, {headers: auth})
      expect(missing.status).toBe(404)
      expect(((await missing.json()) as {error: {code: string}}).error.code).toBe('model_not_found')
      // Answers carry the same id and the attested image's fingerprint.
      const answer = (await (await ask(url, {model: 'gpt-4o', messages: [{role: 'user', content: 'q'}]})).json()) as {model: string; system_fingerprint: string}
      expect(answer).toMatchObject({model: 'nle-0123456789ab', system_fingerprint: `nle-${'a'.repeat(16)}`})
      up.failAttest = new NleError('ATTEST_PCR_MISMATCH', 'PCR0 differs')
      await fetch(`${url}/nle/attestation?fresh=1`, {headers: auth})
      const failing = await fetch(`${url}/v1/models`, {headers: auth})
      expect(failing.status).toBe(503)
      expect(((await failing.json()) as {error: {code: string}}).error.code).toBe('ATTEST_PCR_MISMATCH')
    } finally {
      await gateway.stop()
    }
  })
})

describe('gateway access: token, origins, content types', () => {
  it('every route needs the bearer token; a wrong or missing one is 401 in OpenAI shape and nothing is sent', async () => {
    const up = new FakeUpstream()
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN})
    try {
      for (const headers of [{} as Record<string, string>, {authorization: 'Bearer wrong-token-0123456789'}, {authorization: TOKEN}, {authorization: `Bearer ${TOKEN}x`}]) {
        const r = await fetch(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json', ...headers}, body: JSON.stringify({messages: [{role: 'user', content: 'q'}]})})
        expect(r.status).toBe(401)
        expect(await r.json()).toMatchObject({error: {code: 'GATEWAY_UNAUTHORIZED', type: 'invalid_request_error', param: null}})
        expect((await fetch(`${url}/v1/models`, {headers})).status).toBe(401)
        expect((await fetch(`${url}/nle/attestation`, {headers})).status).toBe(401)
      }
      expect(up.sent).toHaveLength(0)
      expect((await ask(url, {messages: [{role: 'user', content: 'q'}]})).status).toBe(200)
    } finally {
      await gateway.stop()
    }
  })

  it('refuses Origin: null and every origin not allowed by name (loopback ones too); an allowed one gets CORS', async () => {
    const up = new FakeUpstream()
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN, allowOrigins: ['http://localhost:3000']})
    try {
      for (const origin of ['null', 'https://evil.example', 'http://127.0.0.1:8080', 'http://localhost:3001']) {
        const r = await fetch(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json', origin, ...auth}, body: JSON.stringify({messages: [{role: 'user', content: 'q'}]})})
        expect(r.status, origin).toBe(403)
        expect(await r.json()).toMatchObject({error: {code: 'GATEWAY_FORBIDDEN_ORIGIN'}})
      }
      expect(up.sent).toHaveLength(0)
      const pre = await fetch(`${url}/v1/chat/completions`, {method: 'OPTIONS', headers: {origin: 'http://localhost:3000', 'access-control-request-method': 'POST'}})
      expect(pre.status).toBe(204)
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://localhost:3000')
      expect(pre.headers.get('access-control-allow-headers')).toContain('authorization')
      expect((await fetch(`${url}/v1/chat/completions`, {method: 'OPTIONS', headers: {origin: 'null'}})).status).toBe(403)
      const r = await fetch(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json', origin: 'http://localhost:3000', ...auth}, body: JSON.stringify({messages: [{role: 'user', content: 'q'}]})})
      expect(r.status).toBe(200)
      expect(r.headers.get('access-control-allow-origin')).toBe('http://localhost:3000')
    } finally {
      await gateway.stop()
    }
  })

  it('a POST that is not application/json (a form, text/plain: what a page may send without a preflight) is 415 and never sent', async () => {
    const up = new FakeUpstream()
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN})
    try {
      const body = JSON.stringify({messages: [{role: 'user', content: 'q'}]})
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', undefined]) {
        const r = await fetch(`${url}/v1/chat/completions`, {method: 'POST', headers: {...(type ? {'content-type': type} : {}), ...auth}, body: type === undefined ? new Uint8Array(Buffer.from(body)) : body})
        expect(r.status, String(type)).toBe(415)
        expect(await r.json()).toMatchObject({error: {code: 'GATEWAY_UNSUPPORTED_MEDIA_TYPE', type: 'invalid_request_error'}})
      }
      expect(up.sent).toHaveLength(0)
      const ok = await fetch(`${url}/v1/completions`, {method: 'POST', headers: {'content-type': 'application/json; charset=utf-8', ...auth}, body: JSON.stringify({prompt: 'p'})})
      expect(ok.status).toBe(200)
    } finally {
      await gateway.stop()
    }
  })

  it('no token only on a Unix socket, which only this user may connect to', async () => {
    await expect(startGateway({upstream: new FakeUpstream(), upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: null})).rejects.toMatchObject({code: 'GATEWAY_TOKEN_REQUIRED'})
    const {dir, cleanup} = tempDir('nle-gw-sock-')
    const socketPath = join(dir, 'gw.sock')
    const {gateway, url} = await startGateway({upstream: new FakeUpstream(), upstreamDisplay: 'fake', socketPath, token: null})
    try {
      expect(url).toBe(`unix:${socketPath}`)
      expect(statSync(socketPath).mode & 0o777).toBe(0o600)
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest({socketPath, path: '/v1/models', headers: {host: 'localhost'}}, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on('error', reject)
        req.end()
      })
      expect(status).toBe(200)
    } finally {
      await gateway.stop()
      cleanup()
    }
  })
})

describe('gateway access token file', () => {
  it('is made 0600 on first use, reused after, refused when others may read it; the environment wins', async () => {
    const {dir, cleanup} = tempDir('nle-gw-token-')
    try {
      const file = join(dir, '.nle', 'gateway.token')
      const first = await gatewayToken(file, {})
      expect(first).toMatchObject({file, created: true})
      expect(first.token.length).toBeGreaterThanOrEqual(32)
      expect(statSync(file).mode & 0o777).toBe(0o600)
      expect(await gatewayToken(file, {})).toEqual({token: first.token, file, created: false})
      chmodSync(file, 0o644)
      await expect(gatewayToken(file, {})).rejects.toMatchObject({code: 'GATEWAY_TOKEN_FILE_UNSAFE'})
      expect(await gatewayToken(file, {[TOKEN_ENV]: TOKEN})).toEqual({token: TOKEN, created: false})
    } finally {
      cleanup()
    }
  })
})

describe('gateway against slow local clients', () => {
  it('unfinished headers and unfinished bodies are answered 408 and closed; nothing is sent', async () => {
    const up = new FakeUpstream()
    const {gateway, url} = await startGateway({upstream: up, upstreamDisplay: 'fake', listen: '127.0.0.1:0', token: TOKEN, headersTimeoutMs: 300, requestTimeoutMs: 600})
    try {
      const port = Number(new URL(url).port)
      const slow = (head: string): Promise<string> =>
        new Promise((resolve) => {
          const s = netConnect(port, '127.0.0.1', () => s.write(head))
          let got = ''
          s.on('data', (d: Buffer) => (got += d.toString('latin1')))
          s.on('error', () => undefined)
          s.on('close', () => resolve(got))
        })
      const [headers, body] = await Promise.all([
        slow('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor'),
        slow(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"messages"`),
      ])
      expect(headers).toMatch(/^HTTP\/1\.1 408/)
      expect(body).toMatch(/^HTTP\/1\.1 408/)
      expect(up.sent).toHaveLength(0)
    } finally {
      await gateway.stop()
    }
  })
})
