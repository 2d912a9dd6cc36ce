import {describe, expect, it} from 'vitest'

import {expectCode} from '../../test-support/rejection.js'
import {KV_RESERVE_BYTES, KvBudget, MAX_AUTO_BATCH, MIB, autoBatchLimit, autoKvBudgetBytes} from './kv-budget.js'

describe('KvBudget', () => {
  it('refuses a sequence that can never fit with SERVER_KV_BUDGET, and reserves nothing for it', async () => {
    const kv = new KvBudget(1000)
    await expectCode(kv.acquire(1001), 'SERVER_KV_BUDGET')
    expect(kv.reservedBytes).toBe(0)
    expect(await kv.acquire(1000)).toBe(true)
    expect(kv.reservedBytes).toBe(1000)
  })

  it('makes a sequence that fits once others end wait for them, in order', async () => {
    const kv = new KvBudget(1000)
    expect(await kv.acquire(600)).toBe(true)
    const order: string[] = []
    const big = kv.acquire(700).then((ok) => order.push(`big:${ok}`))
    // A small one that would fit now still waits behind the first waiter (no starvation of big ones).
    const small = kv.acquire(100).then((ok) => order.push(`small:${ok}`))
    await Promise.resolve()
    expect(order).toEqual([])
    kv.release(600)
    await Promise.all([big, small])
    expect(order).toEqual(['big:true', 'small:true'])
    expect(kv.reservedBytes).toBe(800)
  })

  it('a waiter whose client left gives up its place, and the next one is admitted', async () => {
    const kv = new KvBudget(1000)
    expect(await kv.acquire(900)).toBe(true)
    const ac = new AbortController()
    const gone = kv.acquire(800, ac.signal)
    const next = kv.acquire(100)
    ac.abort()
    expect(await gone).toBe(false)
    expect(await next).toBe(true)
    expect(kv.reservedBytes).toBe(1000)
  })
})

describe('automatic sizing', () => {
  it('budgets half of the free memory less the reserve, never below 0', () => {
    expect(autoKvBudgetBytes(KV_RESERVE_BYTES + 2000 * MIB)).toBe(1000 * MIB)
    expect(autoKvBudgetBytes(KV_RESERVE_BYTES / 2)).toBe(0)
  })

  it('batches what the budget holds of typical sequences, capped by the vCPUs and the engine default, at least 1', () => {
    const perToken = 24 * 1024 // Qwen2.5-0.5B's shape, fp32
    const s = {freeBytes: 0, vcpus: 2, bytesPerToken: perToken, contextTokens: 32_768, maxTokens: 256}
    // (1024 + 256) tokens x 24 KiB = 30 MiB a sequence.
    expect(autoBatchLimit(100 * MIB, s)).toBe(3)
    expect(autoBatchLimit(10_000 * MIB, s)).toBe(MAX_AUTO_BATCH)
    expect(autoBatchLimit(10_000 * MIB, {...s, vcpus: 1})).toBe(4)
    expect(autoBatchLimit(0, s)).toBe(1)
    // A short context bounds the typical sequence: 256 tokens x 24 KiB = 6 MiB.
    expect(autoBatchLimit(13 * MIB, {...s, contextTokens: 256})).toBe(2)
  })
})
