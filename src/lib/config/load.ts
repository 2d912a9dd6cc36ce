import {readFile} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {closest, distance} from 'fastest-levenshtein'
import {Document, LineCounter, type YAMLError, isNode, parseDocument} from 'yaml'
import {z} from 'zod'

import {type NleError, catalogueEntry} from '../errors.js'
import {type ConfigErrorCode, configError as newConfigError} from './errors.js'
import {type NleConfig, configSchema} from './schema.js'

export const DEFAULT_CONFIG_FILE = 'nle.yaml'

export type {ConfigErrorCode}

/** One problem found in a config file, with where it is. */
export interface ConfigProblem {
  code: Exclude<ConfigErrorCode, 'CONFIG_NOT_FOUND' | 'CONFIG_SYNTAX' | 'CONFIG_TOO_COMPLEX'>
  /** Dotted key path, e.g. "enclave.cpuCount". */
  path: string
  message: string
  /** For unknown keys: the closest valid key at that level, when one is close. */
  suggestion?: string
  line?: number
}

export interface LoadedConfig {
  config: NleConfig
  /** Absolute path of the file read. */
  file: string
  /** Folder relative paths in the config resolve against. */
  dir: string
}

/** Read and strictly validate nle.yaml. Every failure is an NleError with a CONFIG_* code. */
export async function loadConfig(file = DEFAULT_CONFIG_FILE): Promise<LoadedConfig> {
  const abs = resolve(file)
  let text: string
  try {
    text = await readFile(abs, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw newConfigError('CONFIG_NOT_FOUND', `Cannot read ${abs}: ${code ?? String(error)}`, {
      ...(code === 'ENOENT' ? {} : {hint: 'Check the file\'s permissions.'}),
      cause: error,
    })
  }
  return {config: parseConfig(text, abs), file: abs, dir: dirname(abs)}
}

/**
 * Aliases expanded at most while reading a config (the yaml library's limit on "billion laughs"
 * documents). nle.yaml needs none; a handful of anchors stays far below it.
 */
export const MAX_ALIASES = 100

/** Parse and validate config text. `source` names the file in messages. */
export function parseConfig(text: string, source = DEFAULT_CONFIG_FILE): NleConfig {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, {lineCounter, prettyErrors: true, uniqueKeys: true})
  if (doc.errors.length > 0) throw syntaxError(doc.errors[0]!, source)
  let data: unknown
  try {
    data = doc.toJS({maxAliasCount: MAX_ALIASES}) ?? {}
  } catch (error) {
    // The yaml library refuses a document whose aliases expand past the limit with a ReferenceError.
    throw newConfigError('CONFIG_TOO_COMPLEX', `${source}: YAML aliases expand too far (more than ${MAX_ALIASES} alias uses); refused as a resource-exhaustion attack.`, {
      hint: 'Write the values out instead of using YAML anchors and aliases (*name) in nle.yaml.',
      details: {maxAliasCount: MAX_ALIASES},
      cause: error,
    })
  }
  const result = configSchema.safeParse(data)
  if (result.success) return result.data
  const problems = result.error.issues.flatMap((issue) => describeIssue(issue, data)).map((p) => withLine(p, doc, lineCounter))
    .sort((a, b) => (a.line ?? 0) - (b.line ?? 0))
  throw configError(problems, source)
}

/**
 * A YAML syntax error as `file:line:col: message` followed by the code frame the yaml library
 * draws (prettyErrors: the line's text and a caret under the column).
 */
function syntaxError(error: YAMLError, source: string): NleError<ConfigErrorCode> {
  const pos = error.linePos?.[0]
  // With prettyErrors the message is "<what> at line L, column C:\n\n<the line>\n<caret>\n".
  const at = pos ? error.message.indexOf(` at line ${pos.line}, column ${pos.col}:`) : -1
  const what = (at >= 0 ? error.message.slice(0, at) : error.message.split('\n')[0]!).trim()
  const frame = at >= 0 ? error.message.slice(error.message.indexOf(':\n', at) + 2).replace(/^\n+|\s+$/g, '') : ''
  const where = pos ? `:${pos.line}:${pos.col}` : ''
  return newConfigError('CONFIG_SYNTAX', `${source}${where}: YAML syntax error: ${what}${frame ? `\n\n${frame}` : ''}`, {
    hint: 'Fix the YAML syntax at that position.',
    details: {yamlCode: error.code, ...(pos ? {line: pos.line, column: pos.col} : {})},
  })
}

function configError(problems: ConfigProblem[], source: string): NleError<ConfigErrorCode> {
  const first = problems[0]!
  const where = (p: ConfigProblem): string => `${source}${p.line ? `:${p.line}` : ''}: ${p.message}`
  const message = problems.length === 1 ? where(first) : `${problems.length} problems in ${source}:\n  - ${problems.map(where).join('\n  - ')}`
  // The catalogue's hint says where the keys are documented; a close key is named first.
  const suggestion = first.code === 'CONFIG_UNKNOWN_KEY' && first.suggestion ? first.suggestion : undefined
  return newConfigError(first.code, message, {
    ...(suggestion ? {hint: `Did you mean "${suggestion}"? ${catalogueEntry('CONFIG_UNKNOWN_KEY')?.hint ?? ''}`} : {}),
    details: {problems},
  })
}

function dotted(path: readonly PropertyKey[]): string {
  return path.map(String).join('.') || '(top level)'
}

function describeIssue(issue: z.core.$ZodIssue, data: unknown): ConfigProblem[] {
  const path = dotted(issue.path)
  if (issue.code !== 'unrecognized_keys' && issue.path.length > 0 && valueAt(data, issue.path) === undefined) {
    const expected = issue.code === 'invalid_type' ? ` (expected ${issue.expected})` : ''
    return [{code: 'CONFIG_MISSING_KEY', path, message: `missing required key "${path}"${expected}`}]
  }
  switch (issue.code) {
    case 'unrecognized_keys': {
      const valid = keysAt(configSchema, issue.path)
      return issue.keys.map((key) => {
        const suggestion = suggest(key, valid)
        const prefix = issue.path.length > 0 ? `${path}.` : ''
        return {
          code: 'CONFIG_UNKNOWN_KEY' as const,
          path: prefix + key,
          message: `unknown key "${prefix}${key}"${suggestion ? ` (did you mean "${prefix}${suggestion}"?)` : ''}`,
          ...(suggestion ? {suggestion: prefix + suggestion} : {}),
        }
      })
    }
    case 'invalid_type': {
      return [{code: 'CONFIG_TYPE', path, message: `"${path}" must be ${article(issue.expected)}, got ${typeName(valueAt(data, issue.path))}`}]
    }
    case 'invalid_union': {
      const expected = issue.errors
        .flat()
        .map((e) => (e.code === 'invalid_type' ? e.expected : e.code === 'invalid_value' ? e.values.map((v) => JSON.stringify(v)).join(' or ') : undefined))
        .filter((e): e is string => e !== undefined)
      return [{code: 'CONFIG_TYPE', path, message: `"${path}" must be ${expected.join(' or ')}, got ${JSON.stringify(valueAt(data, issue.path))}`}]
    }
    case 'invalid_value':
      return [
        {
          code: 'CONFIG_INVALID_VALUE',
          path,
          message: `"${path}" must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(valueAt(data, issue.path))}`,
        },
      ]
    default:
      return [{code: 'CONFIG_INVALID_VALUE', path, message: `"${path}": ${issue.message}`}]
  }
}

function withLine(problem: ConfigProblem, doc: Document, lc: LineCounter): ConfigProblem {
  const parts = problem.path === '(top level)' ? [] : problem.path.split('.')
  for (let n = parts.length; n >= 0; n--) {
    const node = doc.getIn(parts.slice(0, n), true)
    if (isNode(node) && node.range) return {...problem, line: lc.linePos(node.range[0]).line}
    // A key that exists only as a key (unknown key): find the pair itself.
    if (n === parts.length && n > 0) {
      const parent = n === 1 ? doc.contents : doc.getIn(parts.slice(0, n - 1), true)
      const pair = (parent as {items?: {key?: {value?: unknown; range?: [number, number, number]}}[]} | null)?.items?.find(
        (i) => i.key?.value === parts[n - 1],
      )
      if (pair?.key?.range) return {...problem, line: lc.linePos(pair.key.range[0]).line}
    }
  }
  return problem
}

function suggest(key: string, valid: readonly string[]): string | undefined {
  if (valid.length === 0) return undefined
  const best = closest(key, [...valid])
  const caseFold = valid.find((v) => v.toLowerCase() === key.toLowerCase().replaceAll(/[-_]/g, ''))
  if (caseFold) return caseFold
  return distance(key.toLowerCase(), best.toLowerCase()) <= Math.max(2, Math.floor(best.length / 3)) ? best : undefined
}

/** The valid keys of the object schema at `path` (unwrapping defaults and optionals). */
export function keysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let node: z.ZodType | undefined = unwrap(schema)
  for (const part of path) {
    if (!(node instanceof z.ZodObject)) return []
    node = unwrap((node.shape as Record<string, z.ZodType>)[String(part)])
  }
  return node instanceof z.ZodObject ? Object.keys(node.shape) : []
}

function unwrap(schema: z.ZodType | undefined): z.ZodType | undefined {
  let s = schema
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodPrefault || s instanceof z.ZodNullable) {
    s = s.unwrap() as z.ZodType
  }
  return s
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = data
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<PropertyKey, unknown>)[p]
  }
  return v
}

function typeName(v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return `${typeof v} ${JSON.stringify(v)}`
}

function article(expected: string): string {
  return expected === 'object' ? 'a mapping' : expected === 'array' ? 'a list' : `a ${expected}`
}
