// A process whose command line is `node …/bin/run.js dev [args]`, run in `cwd`: what
// readEndpoints accepts as the `nle dev` of a project, without starting a dev stack.
import {type ChildProcess, spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

export async function fakeNleDev(cwd: string, args: string[] = []): Promise<{pid: number; stop: () => Promise<void>}> {
  const home = mkdtempSync(join(tmpdir(), 'nle-fake-dev-'))
  mkdirSync(join(home, 'bin'))
  writeFileSync(join(home, 'bin', 'run.js'), "process.stdout.write('up\\n'); setInterval(() => {}, 1 << 30)\n")
  const child: ChildProcess = spawn(process.execPath, [join(home, 'bin', 'run.js'), 'dev', ...args], {cwd, stdio: ['ignore', 'pipe', 'ignore']})
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`fake nle dev exited ${code}`)))
  })
  return {
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      rmSync(home, {recursive: true, force: true})
    },
  }
}
