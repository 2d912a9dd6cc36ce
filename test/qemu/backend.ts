// nle's vhost-user-vsock back-end (src/lib/vsock, compiled: test/global-setup.ts builds dist/)
// as a child of the test: started with NLE_EXIT_WITH_PARENT=1 and a stdin pipe, so it also ends
// when the test worker dies, and killed at the worker's exit whatever happens.
import {type ChildProcess, spawn} from 'node:child_process'
import {join} from 'node:path'

import {REPO} from './image.js'

export const BACKEND_ENTRY = join(REPO, 'dist/lib/vsock/main.js')

const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL')
})

export interface Backend {
  child: ChildProcess
  stderr: () => string
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

/** Start nle's back-end; resolves once it prints `listening <socket>`. */
export async function startBackend(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Backend> {
  const child = spawn(process.execPath, [BACKEND_ENTRY, ...args], {stdio: ['pipe', 'pipe', 'pipe'], env: {...process.env, NLE_EXIT_WITH_PARENT: '1', ...env}})
  live.add(child)
  let err = ''
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()))
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child)
      resolve({code, signal})
    }),
  )
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      if (out.includes('listening ')) resolve()
    })
    void exited.then(({code}) => reject(new Error(`the vsock back-end exited (${code}) before listening: ${err}`)))
  })
  return {child, stderr: () => err, exited}
}
