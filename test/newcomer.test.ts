// A newcomer's first steps, as printed: `nle init` in a scratch folder, then every next step it
// prints, in order, exactly as printed, each from the folder the previous ones leave the user in
// (`cd` included). Any step that exits non-zero fails the test. `nle dev` runs until Ctrl-C: it
// counts as working once it prints its own next step (`nle chat`), which is then run with --once
// (the chat's scripted form: the TUI needs a terminal), and it must stop cleanly on SIGINT.
import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {afterAll, describe, expect, it} from 'vitest'

import {NITRO_DEVICE, commandOf} from '../src/lib/next-steps.js'
import {BIN, type CliResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'
import {processesMentioning} from '../src/test-support/processes.js'

const tmp = tempDir('nle-newcomer-')
const running: ChildProcess[] = []

afterAll(async () => {
  for (const p of running) await stopDev(p).catch(() => p.kill('SIGKILL'))
  // Nothing of the scratch projects may be left running.
  for (const pid of processesMentioning(tmp.dir)) process.kill(pid, 'SIGKILL')
  tmp.cleanup()
}, 60_000)

const onNitroHost = existsSync(NITRO_DEVICE)
if (onNitroHost) console.log(`[skip] ${NITRO_DEVICE} is here: init prints the Nitro host's steps, which this test does not run.`)

/** The commands under "Next steps:" in what `nle init` printed. */
function nextSteps(stdout: string): string[] {
  const lines = stdout.split('\n')
  const start = lines.findIndex((l) => l.trim() === 'Next steps:')
  expect(start, stdout).toBeGreaterThanOrEqual(0)
  const steps: string[] = []
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break
    steps.push(commandOf(line))
  }
  return steps
}

/** The first `nle …` command in backticks on build's "Next:" line. */
function buildNext(stdout: string): string {
  const line = stdout.split('\n').find((l) => l.startsWith('Next:'))
  expect(line, stdout).toBeDefined()
  const first = /`(nle [^`]+)`/.exec(line!)?.[1]
  expect(first, line).toBeDefined()
  return first!
}

function argv(command: string): string[] {
  const words = command.split(/\s+/)
  expect(words[0]).toBe('nle')
  return words.slice(1)
}

interface Step {
  command: string
  result: CliResult
}

/** Runs one printed step from `cwd`; returns the folder the user is in afterwards. */
async function runStep(command: string, cwd: string, log: Step[]): Promise<string> {
  if (command.startsWith('cd ')) {
    const next = join(cwd, command.slice(3).trim())
    expect(existsSync(next), command).toBe(true)
    return next
  }
  if (command === 'nle dev') {
    const dev = await startDev(cwd)
    log.push({command, result: {exitCode: 0, stdout: dev.stdout, stderr: ''}})
    const chat = /(nle chat[^`\n]*)/.exec(dev.stdout)![1]!.trim()
    const r = await runCli([...argv(chat), '--once', 'Hello, is anyone there?'], {cwd})
    log.push({command: `${chat} --once …`, result: r})
    expect(r.exitCode, `${chat} --once:\n${r.stdout}\n${r.stderr}`).toBe(0)
    expect(await stopDev(dev.proc), 'nle dev on SIGINT').toBe(0)
    return cwd
  }
  const r = await runCli(argv(command), {cwd})
  log.push({command, result: r})
  expect(r.exitCode, `${command} (in ${cwd}):\n${r.stdout}\n${r.stderr}`).toBe(0)
  return cwd
}

/** Starts `nle dev` as a person does and waits until it prints its next step (`nle chat`). */
async function startDev(cwd: string): Promise<{proc: ChildProcess; stdout: string}> {
  const proc = spawn(process.execPath, [BIN, 'dev'], {cwd, stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}})
  running.push(proc)
  let stdout = ''
  let stderr = ''
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString()
      if (/nle chat/.test(stdout)) resolve()
    })
    proc.once('exit', (code) => reject(new Error(`nle dev exited ${code} before it was ready:\n${stdout}\n${stderr}`)))
  })
  return {proc, stdout}
}

async function stopDev(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  proc.kill('SIGINT')
  return exited
}

describe.skipIf(onNitroHost)('a newcomer follows the printed next steps (no Nitro device here)', () => {
  it('init → every step it prints, in order, from where the user stands → each exits 0', async () => {
    const init = await runCli(['init', 'first-project'], {cwd: tmp.dir})
    expect(init.exitCode, init.stderr).toBe(0)
    const steps = nextSteps(init.stdout)
    // The path a newcomer takes on a laptop: into the folder, a check, a model, a build, the dev stack.
    expect(steps).toEqual(['cd first-project', 'nle doctor', 'nle model synth', 'nle build --builder native', 'nle dev'])
    const log: Step[] = []
    let cwd = tmp.dir
    for (const step of steps) cwd = await runStep(step, cwd, log)
    expect(log.map((s) => s.command)).toEqual(['nle doctor', 'nle model synth', 'nle build --builder native', 'nle dev', 'nle chat --once …'])
    // doctor chose the workflow this machine can run, and said how to check a Nitro host.
    expect(log[0]!.result.stdout).toMatch(/Ready for "dev"/)
    expect(log[0]!.result.stdout).toContain('nle doctor --for host')
    // The model landed where the build reads it, and the build used it.
    expect(existsSync(join(cwd, 'model', 'nle-model.json'))).toBe(true)
    expect(existsSync(join(cwd, 'nle.lock.json'))).toBe(true)
    // The generated nle.yaml names no command that does not exist.
    expect(readFileSync(join(cwd, 'nle.yaml'), 'utf8')).not.toMatch(/`nle config`/)
  }, 300_000)

  // `nle build` keeps its own "Next:" line (src/commands/build.ts). After a native build it still
  // says `nle allocator` / `nle run`, which fail off a Nitro host (and `nle run` refuses a
  // placeholder-kernel EIF): a known defect (issue 22 item 5) fixed on the branch that changes that
  // line to name `nle dev`. Drop `.fails` when that lands; then this test guards it.
  it.fails("build's own next step after a native build works here", async () => {
    const project = join(tmp.dir, 'second-project')
    expect((await runCli(['init', project])).exitCode).toBe(0)
    expect((await runCli(['model', 'synth'], {cwd: project})).exitCode).toBe(0)
    const build = await runCli(['build', '--builder', 'native'], {cwd: project})
    expect(build.exitCode, build.stderr).toBe(0)
    await runStep(buildNext(build.stdout), project, [])
  }, 300_000)
})
