/**
 * Streamed answers: the client's opened chunks re-encoded as OpenAI server-sent events — chat
 * chunks, text-completion chunks or the Responses API's typed events — framed by `sseEvent`.
 *
 * The opening (the role-only chunk) is held until the first chunk that says something, so that
 * whatever fails before the first token — a prompt longer than the context, a refused parameter —
 * is answered as an HTTP error with its status, not as a 200 and an error event. Once the headers
 * are out, a failure goes in the stream (OpenAI SDKs raise it) and no `[DONE]` nor
 * response.completed follows: the client sees a failed answer, never a silently shorter one.
 */
import type {ServerResponse} from 'node:http'

import type {ChatCompletionChunk} from '../client/index.js'
import {sseEvent} from '../protocol/sse.js'
import type {HttpFailure} from './errors.js'
import {type AnswerStamp, type ParsedRequest, chatChunks, isEmptyChunk, textChunks} from './openai.js'
import {type ParsedResponsesRequest, ResponsesEventStream} from './responses.js'

/** Which OpenAI API an answer is shaped for. */
export type AnswerShape = 'chat' | 'text' | 'responses'

type Chunks = AsyncGenerator<ChatCompletionChunk, void, void>

/** The start of a stream, read before any header is sent. */
export interface StreamOpening {
  /** The chunks read so far: empty ones, then the first that says something (if any). */
  held: ChatCompletionChunk[]
  /** The stream ended within the opening. */
  ended: boolean
}

/** Read up to the first chunk that says something (an error the upstream answers first throws here). */
export async function readOpening(it: Chunks): Promise<StreamOpening> {
  const held: ChatCompletionChunk[] = []
  let next = await it.next()
  while (!next.done && isEmptyChunk(next.value)) {
    held.push(next.value)
    next = await it.next()
  }
  if (!next.done) held.push(next.value)
  return {held, ended: next.done === true}
}

/** One answer's chunks as OpenAI SSE frames. */
export class OpenAiEventEncoder {
  private readonly responses: ResponsesEventStream | null

  constructor(
    private readonly shape: AnswerShape,
    private readonly parsed: ParsedRequest,
    private readonly stamp: AnswerStamp,
  ) {
    this.responses = shape === 'responses' ? new ResponsesEventStream(parsed as ParsedResponsesRequest, stamp) : null
  }

  chunk(c: ChatCompletionChunk): string[] {
    if (this.responses) return this.responses.chunk(c)
    const events = this.shape === 'chat' ? chatChunks(c, this.parsed.includeUsage, this.stamp) : textChunks(c, this.parsed.includeUsage, this.stamp)
    return events.map((event) => sseEvent(JSON.stringify(event)))
  }

  /** The closing frames of a complete answer. */
  end(): string[] {
    return this.responses ? this.responses.end() : [sseEvent('[DONE]')]
  }

  /** The frames of a failure met once the stream started (and nothing after them). */
  error(f: HttpFailure): string[] {
    return this.responses ? this.responses.error(f) : [sseEvent(JSON.stringify(f.body))]
  }
}

export interface RelayOptions {
  encoder: OpenAiEventEncoder
  /** Cancelled when the local client went away: the upstream stream is closed, nothing more is written. */
  signal: AbortSignal
  /** Bytes written (for the access log). */
  wrote: (bytes: number) => void
  /** How a failure met mid-stream is answered (and noted). */
  failure: (error: unknown) => HttpFailure
}

/** Send the headers, then every chunk of the stream as events, then the end or the failure. */
export async function relayStream(res: ServerResponse, it: Chunks, opening: StreamOpening, o: RelayOptions): Promise<void> {
  res.writeHead(200, {'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no'})
  res.flushHeaders()
  const write = (frames: string[]): void => {
    for (const frame of frames) {
      o.wrote(Buffer.byteLength(frame))
      res.write(frame)
    }
  }
  try {
    for (const chunk of opening.held) write(o.encoder.chunk(chunk))
    if (!opening.ended) {
      for (;;) {
        if (o.signal.aborted) {
          await it.return(undefined).catch(() => undefined)
          return
        }
        const r = await it.next()
        if (r.done) break
        write(o.encoder.chunk(r.value))
      }
    }
  } catch (error) {
    const f = o.failure(error)
    if (!o.signal.aborted && !res.destroyed) {
      write(o.encoder.error(f))
      res.end()
    }
    return
  }
  write(o.encoder.end())
  res.end()
}
