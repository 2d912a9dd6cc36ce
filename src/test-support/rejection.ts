import {type ErrorCode, hasCode, isNleError} from '../lib/errors.js'

/** What `p` rejects with; fails the test when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (e) {
    return e
  }
  throw new Error('expected a failure')
}

/** Fails the test unless `p` rejects with an nle error of this code (the code, not the message, is the contract). */
export async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!hasCode(error, code)) throw new Error(`expected ${code}, got ${String((error as {code?: string} | undefined)?.code ?? error)}`)
}

/** The code of what was thrown: an NleError's code, `not-nle: …` for anything else, undefined when nothing was. */
function describe(error: unknown): string {
  return isNleError(error) ? error.code : `not-nle: ${String(error)}`
}

/**
 * The error code `p` (a promise, or a function run now) fails with — the one helper every test
 * uses to compare codes. A function that throws synchronously gives the code synchronously;
 * anything asynchronous gives a promise of it. Undefined when it does not fail.
 */
export function codeOf(p: Promise<unknown>): Promise<string | undefined>
export function codeOf(fn: () => Promise<unknown>): Promise<string | undefined>
export function codeOf(fn: () => unknown): string | undefined
export function codeOf(p: Promise<unknown> | (() => unknown)): string | undefined | Promise<string | undefined> {
  let result: unknown
  if (typeof p === 'function') {
    try {
      result = p()
    } catch (error) {
      return describe(error)
    }
  } else {
    result = p
  }
  if (result !== null && typeof result === 'object' && typeof (result as {then?: unknown}).then === 'function') {
    return (result as Promise<unknown>).then(
      () => undefined,
      (error: unknown) => describe(error),
    )
  }
  return undefined
}
