/**
 * The sealed answer's stream framing: server-sent events (text/event-stream) whose data are
 * base64 sealed chunks, after one `event: nonce` with the response nonce. The server writes it with
 * `sseEvent` (and the gateway OpenAI's plain SSE); the client reads it with `SseReader`
 * (sse-reader.ts, apart so that the enclave server does not carry the parser).
 */
/** One event, framed: `event: NAME` (when named) and `data: …` lines, then a blank line. */
export function sseEvent(data: string, event?: string): string {
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}`)
  return `${event === undefined ? '' : `event: ${event}\n`}${lines.join('\n')}\n\n`
}

