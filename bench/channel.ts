// The secure path's cost: a chat completion through client (attestation cached) → parent proxy
// (loopback HTTP, child process) → enclave server (child process, NSM simulator, tiny model),
// against the same request on the engine called directly in this process. Also the channel's
// cryptography alone, and the proxy's throughput for small requests.
//   npx tsx scripts/bench.ts channel
import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {request, Agent} from 'node:http'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {performance} from 'node:perf_hooks'

import type {BenchRow} from '../scripts/bench.js'
import {insecureDevRoot} from '../src/lib/attestation/roots.js'
import {ServerKeyRing, decodeKeyConfig, openWholeResponse, sealRequest, sealWholeResponse} from '../src/lib/channel/index.js'
import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {NleClient} from '../src/lib/client/index.js'
import {ParentProxy} from '../src/lib/proxy/index.js'
import {EnclaveServer} from '../src/lib/server/app.js'
import {engineChat} from '../src/lib/server/chat.js'
import {Engine} from '../src/lib/engine/index.js'
import {synthModel} from '../src/lib/model/index.js'
import {tempDir} from '../src/test-support/tmp.js'
import {startRuntime} from '../test/e2e-support.js'
import {writeBenchLockfile} from './_fixtures.js'

const ITERATIONS = 200
const WARMUP = 20

/** The bench lockfile's measurements (./_fixtures.ts) for the in-process simulator. */
const digest = (l: string): string => createHash('sha384').update(l).digest('hex')

/**
 * Each timed call starts after a short pause, as an interactive client's next request would: what a
 * call leaves to do after it returns (the client's context for its next request, log lines of the
 * child processes, GC) then is not timed as part of the call that happens to follow it.
 */
const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 2))

/**
 * Runs the calls in turn, WARMUP + ITERATIONS times, each after the same pause (so work left over
 * from one call is not charged to the next); returns each call's timings after the warm-up.
 */
async function alternate<T extends (() => Promise<unknown>)[]>(calls: [...T]): Promise<{[K in keyof T]: number[]}> {
  const timings = calls.map(() => [] as number[])
  for (let i = 0; i < WARMUP + ITERATIONS; i++) {
    for (const [k, call] of calls.entries()) {
      await pause()
      const t = performance.now()
      await call()
      if (i >= WARMUP) timings[k]!.push(performance.now() - t)
    }
  }
  return timings as {[K in keyof T]: number[]}
}

/** The server and proxy run from dist/ (runtime/<entry>/index.js): compile it, as the tests' global setup does. */
function buildDist(): void {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const r = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], {cwd: root, encoding: 'utf8'})
  if (r.status !== 0) process.stderr.write(`bench: tsc reported errors (dist/ is still emitted):\n${r.stdout.split('\n').slice(0, 5).join('\n')}\n`)
}

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

async function throughput(fire: () => Promise<void>, concurrency: number, ms: number): Promise<number> {
  let done = 0
  const end = performance.now() + ms
  await Promise.all(
    Array.from({length: concurrency}, async () => {
      while (performance.now() < end) {
        await fire()
        done++
      }
    }),
  )
  return (done * 1000) / ms
}

function get(agent: Agent, target: {socketPath?: string; port?: number}, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({...target, host: '127.0.0.1', path, agent}, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end()
  })
}

export default async function bench(): Promise<BenchRow[]> {
  buildDist()
  const {dir, cleanup} = tempDir('nle-bench-channel-')
  const lock = await writeBenchLockfile(dir)
  await synthModel({preset: 'tiny', outDir: join(dir, 'model')})
  const server = startRuntime('enclave-server', ['--socket', join(dir, 's.sock'), '--model', join(dir, 'model'), '--nsm', 'simulator', '--lockfile', lock, '--sim-root-out', join(dir, 'root.pem')])
  const proxy = startRuntime('parent-proxy', ['--upstream', `unix:${join(dir, 's.sock')}`, '--http-port', '0', '--concurrency', '64', '--queue', '64'])
  const rows: BenchRow[] = []
  try {
    const listening = await proxy.waitFor('listening')
    await server.waitFor('listening')
    const client = await NleClient.fromLockfile(lock, {target: `http://${String(listening.http)}`, insecureDevRoot: insecureDevRoot(await readFile(join(dir, 'root.pem'), 'utf8'))})
    await client.attest()
    const socketClient = await NleClient.fromLockfile(lock, {target: `unix:${join(dir, 's.sock')}`, insecureDevRoot: insecureDevRoot(await readFile(join(dir, 'root.pem'), 'utf8'))})
    await socketClient.attest()
    const engine = await Engine.load(join(dir, 'model'))
    const messages = [{role: 'user' as const, content: 'What does my dental plan cover?'}]
    const [direct, secure, noProxy] = await alternate([
      () => engine.generate({messages}, {maxTokens: 8, temperature: 0}),
      () => client.chat({messages, max_tokens: 8, temperature: 0}),
      () => socketClient.chat({messages, max_tokens: 8, temperature: 0}),
    ])
    // The same secure path with server and proxy in this process: the protocol's own cost, without
    // the cross-process scheduling a loaded machine adds to every hop.
    const nsm = new NsmSimulator({measurements: {PCR0: digest('0'), PCR1: digest('1'), PCR2: digest('2')}})
    const inServer = new EnclaveServer({chat: engineChat(engine, 'tiny'), nsm, keyRing: await ServerKeyRing.create({maxRequestsPerKey: 1e9}), defaults: {maxTokens: 256, sampling: {temperature: 0, topP: 1, topK: 0}}})
    await inServer.listen(join(dir, 'in.sock'))
    const inProxy = new ParentProxy({upstreams: [join(dir, 'in.sock')], bodyLimitBytes: 1 << 20, concurrency: 8, upstreamTimeoutMs: 30_000})
    const inBound = await inProxy.listen({http: {port: 0}})
    const inClient = new NleClient({target: `http://127.0.0.1:${inBound.http!.port}`, expectedPcrs: {PCR0: digest('0'), PCR1: digest('1'), PCR2: digest('2')}, insecureDevRoot: nsm.root})
    await inClient.attest()
    const [inDirect, inSecure] = await alternate([() => engine.generate({messages}, {maxTokens: 8, temperature: 0}), () => inClient.chat({messages, max_tokens: 8, temperature: 0})])
    inClient.close()
    await inProxy.drain(1000)
    await inServer.drain(1000)
    await engine.close()
    const inAdded50 = pct(inSecure, 50) - pct(inDirect, 50)
    rows.push(
      {name: 'one process: secure path p50', value: pct(inSecure, 50), unit: 'ms', peer: {name: 'engine direct p50', value: pct(inDirect, 50)}},
      {name: 'one process: added latency p50', value: inAdded50, unit: 'ms', target: '<= 5 ms', pass: inAdded50 <= 5},
      {name: 'one process: added latency p99', value: pct(inSecure, 99) - pct(inDirect, 99), unit: 'ms'},
    )
    const added50 = pct(secure, 50) - pct(direct, 50)
    const added99 = pct(secure, 99) - pct(direct, 99)
    rows.push(
      {name: 'chat, 8 tokens, engine direct p50', value: pct(direct, 50), unit: 'ms'},
      {name: 'chat, 8 tokens, engine direct p99', value: pct(direct, 99), unit: 'ms'},
      {name: 'chat, 8 tokens, secure path p50', value: pct(secure, 50), unit: 'ms', peer: {name: 'engine direct p50', value: pct(direct, 50)}},
      {name: 'chat, 8 tokens, secure path p99', value: pct(secure, 99), unit: 'ms', peer: {name: 'engine direct p99', value: pct(direct, 99)}},
      {name: 'chat, 8 tokens, sealed, enclave socket without proxy p50', value: pct(noProxy, 50), unit: 'ms', peer: {name: 'engine direct p50', value: pct(direct, 50)}},
      {name: 'added latency of the secure path p50 (processes)', value: added50, unit: 'ms', target: '<= 5 ms', pass: added50 <= 5},
      {name: 'added latency of the secure path p99 (processes)', value: added99, unit: 'ms'},
    )

    // The channel's cryptography alone: seal request, open it, seal the response, open it.
    const ring = await ServerKeyRing.create({maxRequestsPerKey: 1e9})
    const config = decodeKeyConfig(await ring.keyConfig())
    const body = new TextEncoder().encode(JSON.stringify({messages}))
    const crypto: number[] = []
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      const t = performance.now()
      const sealed = await sealRequest(config, body)
      const opened = await ring.open(sealed.message)
      openWholeResponse(sealed.responseKeys, sealWholeResponse(opened.responseKeys, body))
      if (i >= WARMUP) crypto.push(performance.now() - t)
    }
    rows.push({name: 'channel crypto (HPKE seal+open, response seal+open) p50', value: pct(crypto, 50), unit: 'ms'})

    // Proxy throughput for small requests: /healthz relayed vs asked of the enclave socket directly.
    const agent = new Agent({keepAlive: true, maxSockets: 16})
    const port = Number(String(listening.http).split(':')[1])
    const viaProxy = await throughput(() => get(agent, {port}, '/healthz'), 16, 2000)
    const directSocket = await throughput(() => get(agent, {socketPath: join(dir, 's.sock')}, '/healthz'), 16, 2000)
    agent.destroy()
    rows.push({name: 'proxy throughput, small requests (16 concurrent)', value: viaProxy, unit: 'req/s', peer: {name: 'enclave socket direct', value: directSocket}})
    client.close()
    socketClient.close()
  } finally {
    server.proc.kill('SIGTERM')
    proxy.proc.kill('SIGTERM')
    await Promise.all([server.exited, proxy.exited])
    cleanup()
  }
  return rows
}
