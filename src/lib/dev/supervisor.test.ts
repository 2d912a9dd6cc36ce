import {afterEach, describe, expect, it} from 'vitest'

import {Supervisor} from './supervisor.js'

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const child = (body: string): {command: string; args: string[]} => ({command: process.execPath, args: ['-e', body]})

let sup: Supervisor | undefined
afterEach(async () => sup?.stopAll(500))

describe('Supervisor', () => {
  it('waits for the ready line, returns its fields, and stops every child', async () => {
    sup = new Supervisor()
    const a = await sup.start({name: 'a', ...child('console.log("noise"); console.log(JSON.stringify({ready: true, port: 1234})); setInterval(() => {}, 1000)')})
    const b = await sup.start({name: 'b', ...child('process.on("SIGTERM", () => setTimeout(() => process.exit(0), 50)); console.log(JSON.stringify({ready: true})); setInterval(() => {}, 1000)')})
    expect(a.ready).toEqual({ready: true, port: 1234})
    expect(alive(a.pid) && alive(b.pid)).toBe(true)
    await sup.stopAll()
    expect(alive(a.pid) || alive(b.pid)).toBe(false)
  })

  it('kills a child that ignores SIGTERM after the grace period', async () => {
    sup = new Supervisor()
    const c = await sup.start({name: 'stubborn', ...child('process.on("SIGTERM", () => {}); console.log(JSON.stringify({ready: true})); setInterval(() => {}, 1000)')})
    await sup.stopAll(200)
    expect(alive(c.pid)).toBe(false)
  })

  it('fails with the stderr tail when a child dies before it is ready, and stops the others', async () => {
    sup = new Supervisor()
    const a = await sup.start({name: 'a', ...child('console.log(JSON.stringify({ready: true})); setInterval(() => {}, 1000)')})
    await expect(sup.start({name: 'bad', ...child('console.error("model file missing"); process.exit(3)')})).rejects.toMatchObject({
      code: 'DEV_CHILD_FAILED',
      message: 'bad exited (code 3) unexpectedly',
      details: {stderrTail: 'model file missing'},
    })
    expect(alive(a.pid)).toBe(false)
  })

  it('times out a child that never says it is ready', async () => {
    sup = new Supervisor()
    await expect(sup.start({name: 'slow', readyTimeoutMs: 200, ...child('setInterval(() => {}, 1000)')})).rejects.toMatchObject({code: 'DEV_CHILD_NOT_READY'})
    expect(sup.pids).toEqual([])
  })

  it('reports a child that exits later through `exited`', async () => {
    sup = new Supervisor()
    await sup.start({name: 'short', ...child('console.log(JSON.stringify({ready: true})); setTimeout(() => process.exit(5), 100)')})
    await expect(sup.exited).rejects.toMatchObject({code: 'DEV_CHILD_FAILED', message: 'short exited (code 5) unexpectedly'})
  })
})
