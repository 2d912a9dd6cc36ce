// The next steps nle prints, as data: each is a command a person can type where they stand, and
// why. test/newcomer.test.ts runs the dev path's commands in order in a scratch project, and
// next-steps.test.ts checks that every command here names a real command and real flags.
// (`nle build` keeps its own "Next:" line in src/commands/build.ts; the newcomer test runs it too.)
import {constants} from 'node:fs'
import {access} from 'node:fs/promises'

export interface NextStep {
  /** What to type, exactly. */
  command: string
  /** Why, in a few words (shown after a #). */
  why: string
}

/** Where the user stands: on a Nitro Enclaves host, or anywhere else (a laptop, a CI runner). */
export type Place = 'nitro-host' | 'dev'

export const NITRO_DEVICE = '/dev/nitro_enclaves'

/** A Nitro host is a machine with the Nitro Enclaves device (the nitro_enclaves driver loaded). */
export async function detectPlace(nitroDevice = NITRO_DEVICE): Promise<Place> {
  return access(nitroDevice, constants.F_OK).then(
    () => 'nitro-host' as const,
    () => 'dev' as const,
  )
}

/** What to do after `nle init`, from where the user stands. `cd` is the folder to enter first, if any. */
export function initSteps(place: Place, cd?: string): NextStep[] {
  const enter: NextStep[] = cd === undefined ? [] : [{command: `cd ${shellWord(cd)}`, why: 'the project folder'}]
  if (place === 'dev') {
    return [
      ...enter,
      {command: 'nle doctor', why: 'what this machine can run (here: the dev workflow)'},
      {command: 'nle model synth', why: 'the tiny test model into model/ (a real one: nle model save SOURCE)'},
      {command: 'nle build --builder native', why: 'the enclave image and nle.lock.json, without docker (measurable, not bootable)'},
      {command: 'nle dev', why: 'the whole stack here on simulated Nitro parts; then `nle chat` in another terminal'},
    ]
  }
  return [
    ...enter,
    {command: 'nle doctor', why: 'which Nitro host parts are here, with install hints'},
    {command: 'nle model synth', why: 'the tiny test model into model/ (a real one: nle model save SOURCE)'},
    {command: 'nle build', why: 'docker + nitro-cli: the EIF and nle.lock.json'},
    {command: 'nle allocator', why: 'the CPUs and memory to reserve; --apply writes them'},
    {command: 'nle policy apply', why: 'the KMS key policy diff, once kms.keyId, region and hostRoleArn are set; --apply writes it'},
    {command: 'nle run', why: 'the enclave, the vsock bridge and the parent proxy'},
  ]
}

/** The one line about the other place, printed under the steps. */
export function otherPlaceNote(place: Place): string {
  return place === 'dev'
    ? `No Nitro Enclaves device here (${NITRO_DEVICE}). On a Nitro host the same project goes: nle doctor --for host, nle build, nle allocator, nle policy apply, nle run.`
    : 'Without a Nitro host (a laptop, CI), `nle dev` runs the whole stack on simulated Nitro parts.'
}

/** What plain `nle doctor` (no --for) says about the workflow it chose. */
export function doctorAutoNote(workflow: string, nitroDevice = NITRO_DEVICE): string {
  return workflow === 'dev'
    ? `No Nitro Enclaves device here (${nitroDevice}): checked what \`nle dev\` needs (simulated Nitro parts on this machine). On a Nitro host, check it with \`nle doctor --for host\`.`
    : `${nitroDevice} is here: checked everything a Nitro host runs. For the simulated stack only: \`nle doctor --for dev\`.`
}

/** Steps as aligned lines: `  command   # why`. */
export function formatSteps(steps: readonly NextStep[], indent = '  '): string[] {
  const width = Math.max(0, ...steps.map((s) => s.command.length))
  return steps.map((s) => `${indent}${s.command.padEnd(width)}   # ${s.why}`)
}

/** A printed step line back to its command (the newcomer test reads what a person reads). */
export function commandOf(line: string): string {
  return line.replace(/\s+#.*$/, '').trim()
}

function shellWord(s: string): string {
  return /^[\w./@%+=:,-]+$/.test(s) ? s : `'${s.replaceAll("'", String.raw`'\''`)}'`
}
