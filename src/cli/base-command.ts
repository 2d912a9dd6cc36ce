import {Command, Flags, Interfaces} from '@oclif/core'

import {ExitCode, NleError, isNleError} from '../lib/errors.js'
import {renderError} from './render.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Every nle command extends this. It adds `--json` (oclif's JSON flag: the value `run()` returns
 * is printed as JSON on stdout) and `--verbose`, and renders every failure the same way:
 * `Error [CODE]: message` + `Hint: …`, no stack trace unless `--verbose` or `DEBUG` is set, and
 * the process exits with the error's exit code.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  /**
   * Long-running commands (proxy, kms serve, gateway): with --json, stdout is line-delimited JSON
   * events (`{"event": "listening", …}`, `{"event": "stopped", …}`), and a failure is one more line,
   * `{"event": "error", "status": "error", "error": {…}}`.
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

  /** With --json on a jsonLines command: write one event line on stdout. Never a secret in `fields`. */
  protected emitEvent(event: string, fields: Record<string, unknown> = {}): void {
    process.stdout.write(JSON.stringify({event, ...fields}) + '\n')
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
      process.stdout.write((lines ? JSON.stringify({event: 'error', status: 'error', error: nle.toJSON()}) : JSON.stringify({status: 'error', error: nle.toJSON()}, null, 2)) + '\n')
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
