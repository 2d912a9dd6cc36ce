import {hasCode} from '../lib/errors.js'

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
export async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!hasCode(error, code)) throw new Error(`expected ${code}, got ${String((error as {code?: string} | undefined)?.code ?? error)}`)
}
