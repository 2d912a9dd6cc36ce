/**
 * Structured logs of the enclave server and the parent proxy: one JSON object per line. Callers
 * pass only content-free fields (ids, sizes, codes, durations); there is deliberately no way to
 * attach a request or response body.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export type LogValue = string | number | boolean | null | undefined
export type LogFields = Record<string, LogValue>

export interface Logger {
  log(level: LogLevel, event: string, fields?: LogFields): void
}

const ORDER: Record<LogLevel, number> = {debug: 10, info: 20, warn: 30, error: 40}

/** A logger writing JSON lines to a stream (default stderr). */
export function jsonLogger(options: {component: string; level?: LogLevel; write?: (line: string) => void}): Logger {
  const min = ORDER[options.level ?? 'info']
  const write = options.write ?? ((line: string) => process.stderr.write(line))
  return {
    log(level, event, fields = {}) {
      if (ORDER[level] < min) return
      const entry: Record<string, LogValue> = {ts: new Date().toISOString(), level, component: options.component, event}
      for (const [k, v] of Object.entries(fields)) if (v !== undefined) entry[k] = v
      write(JSON.stringify(entry) + '\n')
    },
  }
}

export const silentLogger: Logger = {log() {}}
