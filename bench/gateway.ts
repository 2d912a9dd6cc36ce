// The gateway's added latency: the same chat completion through NleClient directly (what `nle chat
// --once` does, attestation cached) and through `nle gateway` (plain OpenAI HTTP on loopback → the
// same kind of client), both → parent proxy (loopback HTTP) → enclave server (NSM simulator, echo
// engine), child processes. Requests alternate A/B so both see the same machine state.
//   npx tsx scripts/bench.ts gateway
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {performance} from 'node:perf_hooks'

import type {BenchRow} from '../scripts/bench.js'
import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {NleClient} from '../src/lib/client/index.js'
import {startGateway} from '../src/lib/gateway/index.js'
import {tempDir} from '../src/test-support/tmp.js'
import {startRuntime} from '../test/e2e-support.js'
import {writeBenchLockfile} from './_fixtures.js'

const ITERATIONS = 200
const WARMUP = 20

function p50(values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

export default async function bench(): Promise<BenchRow[]> {
  const {dir, cleanup} = tempDir('nle-bench-gateway-')
  const lock = await writeBenchLockfile(dir)
  const server = startRuntime('enclave-server', ['--socket', join(dir, 's.sock'), '--engine', 'echo', '--nsm', 'simulator', '--lockfile', lock, '--sim-root-out', join(dir, 'root.pem')])
  const proxy = startRuntime('parent-proxy', ['--upstream', `unix:${join(dir, 's.sock')}`, '--http-port', '0', '--concurrency', '16', '--queue', '16'])
  try {
    const target = `http://${String((await proxy.waitFor('listening')).http)}`
    await server.waitFor('listening')
    const root = insecureDevRoot(await readFile(join(dir, 'root.pem'), 'utf8'))
    const direct = await NleClient.fromLockfile(lock, {target, insecureDevRoot: root})
    await direct.attest()
    const {gateway, url} = await startGateway({upstream: await NleClient.fromLockfile(lock, {target, insecureDevRoot: root}), upstreamDisplay: target, listen: '127.0.0.1:0', token: 'bench-token-0123456789'})
    const body = JSON.stringify({model: 'x', messages: [{role: 'user', content: 'What does my plan cover for physiotherapy?'}]})
    const viaGateway = async (): Promise<void> => {
      const r = await fetch(`${url}/v1/chat/completions`, {method: 'POST', headers: {'content-type': 'application/json', authorization: 'Bearer bench-token-0123456789'}, body})
      if (r.status !== 200) throw new Error(`gateway HTTP ${r.status}`)
      await r.json()
    }
    const viaClient = async (): Promise<void> => {
      await direct.chat({messages: [{role: 'user', content: 'What does my plan cover for physiotherapy?'}]})
    }
    const a: number[] = []
    const b: number[] = []
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      let t = performance.now()
      await viaClient()
      const tc = performance.now() - t
      t = performance.now()
      await viaGateway()
      const tg = performance.now() - t
      if (i >= WARMUP) {
        a.push(tc)
        b.push(tg)
      }
    }
    await gateway.stop()
    direct.close()
    const added = p50(b) - p50(a)
    return [
      {name: 'chat via NleClient (as nle chat --once), p50', value: p50(a), unit: 'ms'},
      {name: 'chat via nle gateway (OpenAI HTTP), p50', value: p50(b), unit: 'ms', peer: {name: 'NleClient', value: p50(a)}},
      {name: 'added latency of the gateway, p50', value: added, unit: 'ms', target: '< 5 ms', pass: added < 5},
    ]
  } finally {
    for (const c of [server, proxy]) if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
    cleanup()
  }
}
