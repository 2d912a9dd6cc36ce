/**
 * `nle demo`: the README's main job, run on its embedded defaults in a temporary folder that is
 * removed afterwards. Each step is timed and reported; the first failing step stops the demo.
 *
 * Today it scaffolds a project and checks it with `doctor --for dev`. The full flow (model, native
 * EIF build, lockfile, local KMS policy, dev stack, attested chat, drift check) grows here as
 * those parts land.
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {type DoctorEnv, defaultDoctorEnv, runDoctor} from './doctor.js'
import {ExitCode, NleError} from './errors.js'
import {initProject} from './init.js'

export interface DemoStep {
  name: string
  ok: boolean
  ms: number
  detail: string
}

export interface DemoResult {
  ok: boolean
  workdir: string
  kept: boolean
  steps: DemoStep[]
}

export interface DemoOptions {
  /** Keep the temporary project for inspection. */
  keep?: boolean
  onStep?: (step: DemoStep) => void
  /** Injected for tests. */
  doctorEnv?: (configFile: string) => DoctorEnv
}

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const workdir = await mkdtemp(join(tmpdir(), 'nle-demo-'))
  const project = join(workdir, 'demo')
  const steps: DemoStep[] = []
  const step = async (name: string, fn: () => Promise<string>): Promise<void> => {
    const start = performance.now()
    try {
      const detail = await fn()
      steps.push({name, ok: true, ms: performance.now() - start, detail})
    } catch (error) {
      steps.push({name, ok: false, ms: performance.now() - start, detail: error instanceof NleError ? `[${error.code}] ${error.message}` : String(error)})
      options.onStep?.(steps.at(-1)!)
      throw error
    }
    options.onStep?.(steps.at(-1)!)
  }
  try {
    await step('init', async () => {
      const r = await initProject({dir: project, name: 'demo'})
      return `${r.files.length} files in ${project}`
    })
    await step('doctor --for dev', async () => {
      const report = await runDoctor('dev', (options.doctorEnv ?? defaultDoctorEnv)(join(project, 'nle.yaml')))
      if (!report.ok) {
        throw new NleError('DEMO_STEP_FAILED', `doctor found ${report.missing.join(', ')} missing`, {exitCode: ExitCode.CHECK_FAILED})
      }
      const host = report.checks.filter((c) => !c.required && c.status === 'ok').map((c) => c.name)
      return `ready for dev; Nitro host parts present: ${host.length > 0 ? host.join(', ') : 'none (expected off a Nitro host)'}`
    })
    return {ok: true, workdir, kept: Boolean(options.keep), steps}
  } finally {
    if (!options.keep) await rm(workdir, {recursive: true, force: true})
  }
}
