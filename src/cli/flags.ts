/** Flags shared by several commands, so one concept has one name and one syntax everywhere. */
import {Flags, type Interfaces} from '@oclif/core'

import {formatDuration, parseDuration} from '../lib/duration.js'
import type {ProxyFlag} from '../lib/proxy/flags.js'

/**
 * A duration flag: `1500ms`, `90s`, `5m`, `3h`, `1d` or a bare number of seconds; the command
 * gets milliseconds. `defaultMs` is shown in --help in the same syntax.
 */
export function durationFlag(options: {description: string; defaultMs?: number}) {
  const base = {
    description: `${options.description} (e.g. 1500ms, 90s, 5m; a bare number is seconds)`,
    helpValue: 'DURATION',
    parse: async (text: string, _context: unknown, flag: {name: string}) => parseDuration(text, `--${flag.name}`),
  }
  const make = Flags.custom<number>(base)
  return options.defaultMs === undefined ? make() : make({default: options.defaultMs, defaultHelp: async () => formatDuration(options.defaultMs!)})
}

/** oclif flags for a table of text flags that the lib parses itself (the proxy's, shared with its runtime entry). */
export function textFlags<T extends Record<string, ProxyFlag>>(table: T): {[K in keyof T]: Interfaces.OptionFlag<string | string[] | undefined>} {
  const out: Record<string, unknown> = {}
  for (const [name, flag] of Object.entries(table)) {
    const common = {
      description: flag.kind === 'duration' ? `${flag.description} (e.g. 1500ms, 90s, 5m)` : flag.description,
      helpValue: {file: 'FILE', directory: 'DIR', string: 'VALUE', strings: 'VALUE', count: 'N', port: 'PORT', duration: 'DURATION'}[flag.kind],
      ...(flag.char ? {char: flag.char} : {}),
      ...(flag.options ? {options: [...flag.options]} : {}),
      ...(flag.dependsOn ? {dependsOn: [...flag.dependsOn]} : {}),
    }
    out[name] = flag.kind === 'strings' ? Flags.string({...common, multiple: true}) : Flags.string(common)
  }
  return out as {[K in keyof T]: Interfaces.OptionFlag<string | string[] | undefined>}
}
