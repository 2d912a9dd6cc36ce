/**
 * The one way nle's long-running processes wait to be stopped (`nle dev`, `gateway`, `kms serve`,
 * the proxy, the enclave server): the first SIGINT or SIGTERM. Its listeners are removed when it
 * comes, so a second Ctrl-C during the drain that follows gets the default action and ends the
 * process at once (PID 1, the enclave server in the image, has no default action: it just drains).
 */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const
export type StopSignal = (typeof STOP_SIGNALS)[number]

/** Resolves with the first SIGINT or SIGTERM that arrives. */
export function untilStopSignal(): Promise<StopSignal> {
  return new Promise<StopSignal>((resolve) => {
    const listeners = STOP_SIGNALS.map((signal) => {
      const listener = (): void => {
        for (const [s, l] of listeners) process.off(s, l)
        resolve(signal)
      }
      return [signal, listener] as const
    })
    for (const [s, l] of listeners) process.on(s, l)
  })
}
