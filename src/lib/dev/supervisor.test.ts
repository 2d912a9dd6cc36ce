import {afterEach, describe, expect, it} from 'vitest'

import {rejection} from '../../test-support/rejection.js'
import {Supervisor, stderrTail} from './supervisor.js'

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
afterEach(async () => sup?.stopAll())

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
    sup = new Supervisor({graceMs: 200})
    const c = await sup.start({name: 'stubborn', ...child('process.on("SIGTERM", () => {}); console.log(JSON.stringify({ready: true})); setInterval(() => {}, 1000)')})
    await sup.stopAll()
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

describe('stderrTail', () => {
  it('keeps the last lines, bounded in length, without terminal control characters', () => {
    const text = Array.from({length: 60}, (_, i) => `line ${i}`).join('\n') + '\n\u001B[2Jcleared\u0007 ' + 'x'.repeat(5000) + '\n'
    const t = stderrTail(text)
    const lines = t.split('\n')
    expect(lines).toHaveLength(20)
    expect(lines[0]).toBe('line 41')
    expect(lines.at(-1)!.startsWith('[2Jcleared ')).toBe(true)
    expect(lines.every((l) => l.length <= 400)).toBe(true)
    expect([...t].filter((c) => c !== '\n' && c.codePointAt(0)! < 0x20)).toEqual([])
  })

  it('a child that fails after writing much keeps only the bounded end in the error', async () => {
    sup = new Supervisor()
    const body = 'for (let i = 0; i < 5000; i++) console.error("noise " + i + " " + "y".repeat(50)); console.error("the cause"); process.exitCode = 4'
    const e = (await rejection(sup.start({name: 'loud', ...child(body)}))) as {code: string; details: {stderrTail: string}}
    expect(e.code).toBe('DEV_CHILD_FAILED')
    expect(e.details.stderrTail.split('\n').at(-1)).toBe('the cause')
    expect(e.details.stderrTail.length).toBeLessThanOrEqual(20 * 401)
  })
})
