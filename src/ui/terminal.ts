/**
 * Terminal modes the chat turns on, and turns off again however it ends: normally, on an error
 * (the caller's finally), on process exit, and on SIGTERM/SIGHUP/SIGINT. Left on, bracketed paste
 * would wrap every later paste in the user's shell in ESC[200~ … ESC[201~.
 */
import {DISABLE_BRACKETED_PASTE, ENABLE_BRACKETED_PASTE} from '../lib/chat/keys.js'

const SIGNALS = ['SIGTERM', 'SIGHUP', 'SIGINT'] as const

/** The parts of `process` used here (a fake in tests). */
export interface ProcessLike {
  readonly pid: number
  on(event: 'exit' | (typeof SIGNALS)[number], listener: () => void): unknown
  off(event: 'exit' | (typeof SIGNALS)[number], listener: () => void): unknown
  listenerCount(event: string): number
  kill(pid: number, signal: string): unknown
}

/** Turns bracketed paste on (on a TTY); returns the function that turns it off (idempotent). */
export function enableBracketedPaste(out: {isTTY?: boolean; write(s: string): unknown}, proc: ProcessLike = process): () => void {
  if (!out.isTTY) return () => undefined
  out.write(ENABLE_BRACKETED_PASTE)
  let restored = false
  const handlers = new Map<string, () => void>()
  const restore = (): void => {
    if (restored) return
    restored = true
    out.write(DISABLE_BRACKETED_PASTE)
    proc.off('exit', restore)
    for (const [signal, handler] of handlers) proc.off(signal as (typeof SIGNALS)[number], handler)
  }
  proc.on('exit', restore)
  for (const signal of SIGNALS) {
    const handler = (): void => {
      restore()
      // Others listening (Ink restores the cursor and raw mode) end the process themselves;
      // alone, end it the way the signal would have.
      if (proc.listenerCount(signal) === 0) proc.kill(proc.pid, signal)
    }
    handlers.set(signal, handler)
    proc.on(signal, handler)
  }
  return restore
}
