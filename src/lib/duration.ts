/**
 * The one duration syntax of every nle flag: `1500ms`, `90s`, `5m`, `3h`, `1d`, or a bare number
 * of seconds (`120`). Settings files keep their explicit units (`…Ms` keys in milliseconds).
 */
import {NleError} from './errors.js'

const UNITS: Record<string, number> = {ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}

/** Milliseconds; throws USAGE (naming `what`, e.g. the flag) for anything else. */
export function parseDuration(text: string, what = 'duration'): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim())
  if (!match) throw new NleError('USAGE', `${what}: not a duration: ${JSON.stringify(text)}.`, {hint: 'Use e.g. 1500ms, 90s, 5m, 3h or 1d (a bare number is seconds).'})
  return Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!)
}

/** How nle prints a duration back: the largest unit that divides it (`90s`, `5m`, `1500ms`). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNITS[unit]! && ms % UNITS[unit]! === 0) return `${ms / UNITS[unit]!}${unit}`
  }
  return `${ms}ms`
}
