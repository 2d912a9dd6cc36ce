// Cancelling a generation mid-stream, the same way in every engine test.

/** Reads `stream` to its end, aborting `controller` once `after` chunks have arrived; returns the stream's result. */
export async function abortAfter<T>(stream: AsyncGenerator<unknown, T, void>, controller: AbortController, after: number): Promise<T> {
  let seen = 0
  for (;;) {
    const r = await stream.next()
    if (r.done) return r.value
    if (++seen === after) controller.abort()
  }
}
