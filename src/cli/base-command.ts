import {Command, Flags, Interfaces} from '@oclif/core'

import {ExitCode, NleError, isNleError} from '../lib/errors.js'
import {commandName, failureEnvelope, renderEnvelope, successEnvelope} from './json.js'
import {renderError} from './render.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Every nle command extends this. It adds `--json` and `--verbose`, and renders every outcome the
 * same way. With --json, stdout carries only the envelope of src/cli/json.ts: the value `run()`
 * returns as `result`, or the failure as `error` (docs/json.md). Without it, a failure is
 * `Error [CODE]: message` + `Hint: …` on stderr, no stack trace unless `--verbose` or `DEBUG` is
 * set. Either way the process exits with the error's exit code.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  /**
   * Long-running commands (proxy, kms serve, gateway, dev): with --json, stdout is one envelope per
   * line, each with its `event` (`listening`/`ready`, `stopped`), and a failure is one more line,
   * the failure envelope with `"event": "error"`.
   */
  static jsonLines = false
  static override baseFlags = {
    verbose: Flags.boolean({description: 'Print stack traces and extra diagnostics on failure.', helpGroup: 'GLOBAL'}),
  }

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>

  public override async init(): Promise<void> {
    await super.init()
    const {args, flags} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
  }

  /** The command as a user types it (`policy check`), as the envelope names it. */
  protected get commandName(): string | null {
    return commandName(this.id)
  }

  /** With --json on a jsonLines command: write one event envelope line on stdout. Never a secret in `result`. */
  protected emitEvent(event: string, result: Record<string, unknown> = {}, options: {exitCode?: number} = {}): void {
    process.stdout.write(renderEnvelope(successEnvelope(this.commandName, result, {event, ...options}), {line: true}))
  }

  /** oclif prints this for the value `run()` returned (with --json, when there is one). */
  protected override toSuccessJson(result: unknown): unknown {
    return successEnvelope(this.commandName, result, {exitCode: typeof process.exitCode === 'number' ? process.exitCode : 0})
  }

  /** One renderer for every envelope: no colours, whatever the terminal. */
  protected override logJson(json: unknown): void {
    process.stdout.write(renderEnvelope(json as Parameters<typeof renderEnvelope>[0]))
  }

  /** True when output goes to a person: a TTY and not `--json`. Spinners and colours only then. */
  protected get interactive(): boolean {
    return Boolean(process.stdout.isTTY) && !this.jsonEnabled()
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    const verbose = Boolean(this.argv.includes('--verbose') || process.env.DEBUG)
    // oclif's own exits (this.exit) and parse errors keep their behaviour, rendered our way.
    if (err.oclif?.exit === 0) throw err
    const nle: NleError = isNleError(err)
      ? err
      : err.oclif?.exit === ExitCode.USAGE || /Unexpected argument|Nonexistent flag|Missing required flag|Expected --|--\S+=\S* cannot also be provided|All of the following must be provided|Exactly one of the following|Missing \d+ required arg|Parsing --/.test(err.message)
        ? new NleError('USAGE', usageMessage(err.message), {
            hint: `Run \`nle ${this.id?.replaceAll(':', ' ') ?? ''} --help\` for usage.`,
          })
        : new NleError('INTERNAL', err.message, {
            hint: 'This is a bug in nle. Re-run with --verbose and report the output.',
            cause: err,
          })
    if (this.jsonEnabled()) {
      const lines = (this.ctor as unknown as typeof BaseCommand).jsonLines
      process.stdout.write(renderEnvelope(failureEnvelope(this.commandName, nle, lines ? {event: 'error'} : {}), {line: lines}))
    } else {
      process.stderr.write(renderError(nle, {verbose, color: Boolean(process.stderr.isTTY)}))
    }
    return this.exit(nle.exitCode)
  }
}

/** oclif's parse errors span several lines ("The following error occurred:", the fault, a help pointer): keep the facts. */
function usageMessage(message: string): string {
  const lines = message
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^The following errors? occurred:?$/.test(l) && !/^See more help with --help$/.test(l))
  return lines.reduce((acc, l) => (acc ? `${acc}${acc.endsWith(':') ? ' ' : '; '}${l.replaceAll(/\s+/g, ' ')}` : l.replaceAll(/\s+/g, ' ')), '') || message
}
