/**
 * `nle demo`: the README's main job, on its embedded defaults, in a temporary folder that is
 * removed afterwards. Each step is timed; the first failing step stops the demo and everything
 * it started.
 *
 *   init → generate the tiny model → native EIF build (placeholder kernel, not bootable) → lockfile
 *   → dev stack (enclave server + NSM simulator, local KMS with the policy applied, proxy)
 *   → one chat round trip over the attested channel, one in KMS mode → policy check passes
 *   → change the model, rebuild → policy check reports drift (exit code 1) → stop everything
 */
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import {channelBackend} from './chat/backend.js'
import {openEnclaveClient} from './client/open.js'
import {devClientKms} from './client/kms.js'
import {loadConfig} from './config/load.js'
import {type DevStack, startDevStack} from './dev/stack.js'
import {type DoctorEnv, defaultDoctorEnv, runDoctor} from './doctor.js'
import {NleError} from './errors.js'
import {buildProject} from './host/build.js'
import {defaultHostContext} from './host/exec.js'
import {initProject} from './init.js'
import {runPolicyCheck} from './kms/service.js'
import {readLockfile} from './lockfile.js'
import {recordManifest, synthModel} from './model/index.js'

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
  /** PCR0 before and after the model changed. */
  pcr0: {first?: string; second?: string}
}

export interface DemoOptions {
  /** Keep the temporary project for inspection. */
  keep?: boolean
  onStep?: (step: DemoStep) => void
  /** Injected for tests. */
  doctorEnv?: (configFile: string) => DoctorEnv
  /** Stop after the doctor step (tests of the step runner). */
  only?: 'scaffold'
}

const QUESTION = 'In one sentence: what does my plan cover for a knee MRI?'

export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const workdir = await mkdtemp(join(tmpdir(), 'nle-demo-'))
  const project = join(workdir, 'demo')
  const configFile = join(project, 'nle.yaml')
  const steps: DemoStep[] = []
  const pcr0: DemoResult['pcr0'] = {}
  let stack: DevStack | undefined
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
  const build = async (seed: number): Promise<string> => {
    const loaded = await loadConfig(configFile)
    const modelDir = resolve(project, loaded.config.model.path)
    const synth = await synthModel({preset: 'tiny', outDir: modelDir, seed})
    await recordManifest(modelDir, 'fp32', {kind: 'synth', preset: 'tiny', seed: synth.seed})
    const report = await buildProject({loaded, ctx: defaultHostContext(), builder: 'native'})
    return report.measurements.PCR0
  }
  const check = async (): Promise<{verdict: string; exitCode: number}> => {
    const kms = stack!.kms
    return runPolicyCheck({
      configFile,
      keyId: kms.keyArn,
      roleArn: kms.hostRoleArn,
      source: {kind: 'aws', aws: {endpointUrl: kms.url, region: kms.region, credentials: kms.admin}},
      strict: false,
      allowDebug: false,
    })
  }
  try {
    await step('init', async () => {
      const r = await initProject({dir: project, name: 'demo'})
      return `${r.files.length} files in ${project}`
    })
    await step('doctor --for dev', async () => {
      const report = await runDoctor('dev', (options.doctorEnv ?? defaultDoctorEnv)(configFile))
      if (!report.ok) throw new NleError('DEMO_STEP_FAILED', `doctor found ${report.missing.join(', ')} missing`)
      const host = report.checks.filter((c) => !c.required && c.status === 'ok').map((c) => c.name)
      return `ready for dev; Nitro host parts present: ${host.length > 0 ? host.join(', ') : 'none (expected off a Nitro host)'}`
    })
    if (options.only === 'scaffold') return {ok: true, workdir, kept: Boolean(options.keep), steps, pcr0}

    await step('model + native EIF + lockfile', async () => {
      pcr0.first = await build(1)
      const lock = await readLockfile(join(project, 'nle.lock.json'))
      return `tiny GPT-2 model; EIF ${lock.eif.size} bytes (placeholder kernel: NOT bootable); PCR0 ${pcr0.first.slice(0, 16)}…`
    })
    await step('dev stack + key policy', async () => {
      stack = await startDevStack({configFile})
      return `proxy ${stack.endpoints.proxyUrl}; KMS ${stack.kms.url}; policy ${stack.policy.changed ? 'applied' : 'unchanged'}`
    })
    const chat = async (mode: 'attested' | 'kms'): Promise<string> => {
      const e = stack!.endpoints
      const connection = await openEnclaveClient({
        flags: {target: e.proxyUrl, lockfile: stack!.lockfile, devRoot: e.devRootFile, ca: e.caFile, mode},
        devStack: false,
        kms: () => devClientKms(e),
      })
      const backend = channelBackend(connection, {maxTokens: 16})
      try {
        const a = await backend.attest()
        let answer = ''
        for await (const delta of backend.send([{role: 'user', content: QUESTION}], new AbortController().signal)) answer += delta
        if (!answer) throw new NleError('DEMO_STEP_FAILED', 'the enclave answered with no text')
        // The answer is not printed: the demo shows the flow, not content (the model is random).
        const how = mode === 'kms' ? 'question key wrapped by KMS Encrypt (client identity), unwrapped in the enclave by KMS Decrypt + Recipient' : 'sealed question'
        return `attestation verified (PCR0 ${a.pcr0.slice(0, 16)}…, ${a.root}); ${how}; ${answer.length} characters of sealed answer streamed back`
      } finally {
        backend.close()
      }
    }
    await step('chat (attested channel)', () => chat('attested'))
    await step('chat (KMS mode)', () => chat('kms'))
    await step('policy check', async () => {
      const r = await check()
      if (r.exitCode !== 0) throw new NleError('DEMO_STEP_FAILED', `policy check said ${r.verdict} (exit ${r.exitCode}), expected ok`)
      return 'the key policy admits the current measurements (exit 0)'
    })
    await step('change model + rebuild', async () => {
      pcr0.second = await build(2)
      if (pcr0.second === pcr0.first) throw new NleError('DEMO_STEP_FAILED', 'PCR0 did not change with the model')
      return `new PCR0 ${pcr0.second.slice(0, 16)}…`
    })
    await step('policy check (drift)', async () => {
      const r = await check()
      if (r.exitCode !== 1) throw new NleError('DEMO_STEP_FAILED', `policy check said ${r.verdict} (exit ${r.exitCode}), expected drift (exit 1)`)
      return 'drift detected: the policy does not admit the new PCRs (exit 1, as CI would fail)'
    })
    await step('stop', async () => {
      await stack!.stop()
      stack = undefined
      return 'enclave server, proxy and KMS stopped'
    })
    return {ok: true, workdir, kept: Boolean(options.keep), steps, pcr0}
  } finally {
    await stack?.stop()
    if (!options.keep) await rm(workdir, {recursive: true, force: true})
  }
}
