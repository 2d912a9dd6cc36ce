// `nle attest verify` as a user runs it: real AWS documents from files, a lockfile in the working
// directory, and an enclave endpoint served on loopback by the NSM simulator.
import {mkdirSync, writeFileSync} from 'node:fs'
import {type IncomingMessage, type Server, type ServerResponse, createServer} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {NsmSimulator} from '../src/lib/attestation/simulator.js'
import {selfSignedCertificate} from '../src/lib/proxy/tls.js'
import {serializeLockfile} from '../src/lib/lockfile.js'
import {ATTESTATION_TESTDATA, describeVectors, vector} from '../src/test-support/attestation.js'
import {jsonFailure, jsonResult, runCli} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const turnkey = vector('turnkey_prod_attestation.bin')
const turnkeyFile = `${ATTESTATION_TESTDATA}${turnkey.file}`
const atTurnkey = new Date(turnkey.timestampMs + 1000).toISOString()
const pcrFlags = (p: Record<string, string>): string[] => ['--pcr0', p['0']!, '--pcr1', p['1']!, '--pcr2', p['2']!]
const h = (c: string): string => c.repeat(96)

const tmp = tempDir('nle-attest-')
afterAll(() => tmp.cleanup())

function lockfileWith(measurements: {PCR0: string; PCR1: string; PCR2: string}): string {
  return serializeLockfile({version: 1, measurements, eif: {sha384: h('e'), size: 1, version: 4, signed: false}, builder: {name: 'nle', version: '0.1.0'}, inputs: {}})
}

describeVectors('nle attest verify FILE', () => {
  it('verifies a real AWS document at its own time: exit 0 and a JSON report', async () => {
    const r = await runCli(['attest', 'verify', turnkeyFile, ...pcrFlags(turnkey.pcrs), '--at', atTurnkey, '--json'], {cwd: tmp.dir})
    expect(r.exitCode, r.stderr).toBe(0)
    const out = jsonResult<{verified: boolean; moduleId: string; timestamp: string; root: string; pcrs: {index: number; status: string}[]; chain: {role: string; subject: string}[]}>(r)
    expect(out.verified).toBe(true)
    expect(out.moduleId).toBe(turnkey.moduleId)
    expect(out.timestamp).toBe(new Date(turnkey.timestampMs).toISOString())
    expect(out.root).toBe('aws-nitro-enclaves-root-g1')
    expect(out.pcrs.filter((p) => p.index <= 2).map((p) => p.status)).toEqual(['match', 'match', 'match'])
    expect(out.chain.map((c) => c.role)).toEqual(['root', 'intermediate', 'intermediate', 'intermediate', 'leaf'])
  })

  it('the same document now: exit 5, ATTEST_CERT_EXPIRED', async () => {
    const r = await runCli(['attest', 'verify', turnkeyFile, ...pcrFlags(turnkey.pcrs), '--json'], {cwd: tmp.dir})
    expect(r.exitCode).toBe(5)
    expect(jsonFailure(r).code).toBe('ATTEST_CERT_EXPIRED')
  })

  it('reads ./nle.lock.json by default and marks each PCR; a different image exits 5 with the mismatch shown', async () => {
    const good = join(tmp.dir, 'good')
    const bad = join(tmp.dir, 'bad')
    for (const [dir, pcr2] of [[good, turnkey.pcrs['2']!], [bad, h('0')]] as const) {
      mkdirSync(dir, {recursive: true})
      writeFileSync(join(dir, 'nle.lock.json'), lockfileWith({PCR0: turnkey.pcrs['0']!, PCR1: turnkey.pcrs['1']!, PCR2: pcr2}))
    }
    const ok = await runCli(['attest', 'verify', turnkeyFile, '--at', atTurnkey], {cwd: good})
    expect(ok.exitCode, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/PCR0\s+[0-9a-f]{96}\s+match/)
    expect(ok.stdout).toContain(turnkey.moduleId)
    expect(ok.stdout).toContain('CN=aws.nitro-enclaves')
    expect(ok.stdout).toContain('VERIFIED against nle.lock.json')
    const no = await runCli(['attest', 'verify', turnkeyFile, '--at', atTurnkey], {cwd: bad})
    expect(no.exitCode).toBe(5)
    expect(no.stdout).toMatch(/PCR2\s+[0-9a-f]{96}\s+mismatch/)
    expect(no.stderr).toMatch(/^Error \[ATTEST_PCR_MISMATCH\]/)
  })

  it('without any expected measurements: exit 2, ATTEST_NO_EXPECTED_PCRS', async () => {
    const r = await runCli(['attest', 'verify', turnkeyFile, '--json'], {cwd: tmp.dir})
    expect(r.exitCode).toBe(2)
    expect(jsonFailure(r).code).toBe('ATTEST_NO_EXPECTED_PCRS')
  })

  it('a debug-mode document passes only with --allow-debug', async () => {
    const v = vector('evervault_debug_mode_attestation_doc.bin')
    const args = ['attest', 'verify', `${ATTESTATION_TESTDATA}${v.file}`, ...pcrFlags(v.pcrs), '--at', new Date(v.timestampMs).toISOString(), '--json']
    const refused = await runCli(args, {cwd: tmp.dir})
    expect(refused.exitCode).toBe(5)
    expect(jsonFailure(refused).code).toBe('ATTEST_DEBUG_ENCLAVE')
    const allowed = await runCli([...args, '--allow-debug'], {cwd: tmp.dir})
    expect(allowed.exitCode, allowed.stderr).toBe(0)
    expect(jsonResult<{debug: boolean}>(allowed).debug).toBe(true)
  })
})

describe('nle attest verify URL (simulated enclave on loopback)', () => {
  const measurements = {PCR0: h('1'), PCR1: h('2'), PCR2: h('3')}
  const sim = new NsmSimulator({measurements})
  let server: Server
  let tlsServer: Server
  let socketServer: Server
  let base: string
  let tlsBase: string
  let stale: Uint8Array | undefined
  const rootFile = join(tmp.dir, 'simulator-root.pem')
  const caFile = join(tmp.dir, 'proxy-cert.pem')
  const socket = join(tmp.dir, 'enclave.sock')

  beforeAll(async () => {
    writeFileSync(rootFile, sim.rootPem)
    stale = await sim.attestation({nonce: new Uint8Array(32)})
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      void (async () => {
        const url = new URL(req.url ?? '/', 'http://127.0.0.1')
        const nonce = new Uint8Array(Buffer.from(url.searchParams.get('nonce') ?? '', 'hex'))
        if (url.pathname === '/v1/attestation') {
          res.writeHead(200, {'content-type': 'application/cbor'}).end(await sim.attestation({nonce}))
        } else if (url.pathname === '/json/v1/attestation') {
          const document = Buffer.from(await sim.attestation({nonce})).toString('base64')
          res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({document}))
        } else if (url.pathname === '/replay/v1/attestation') {
          res.writeHead(200, {'content-type': 'application/cbor'}).end(stale)
        } else {
          res.writeHead(404).end()
        }
      })()
    }
    server = createServer(handler)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    // The same enclave behind a self-signed certificate (what `nle dev`'s proxy has), and on a Unix socket.
    const cert = await selfSignedCertificate(['127.0.0.1'])
    writeFileSync(caFile, cert.certPem)
    tlsServer = createHttpsServer({cert: cert.certPem, key: cert.keyPem}, handler)
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve))
    tlsBase = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`
    socketServer = createServer(handler)
    await new Promise<void>((resolve) => socketServer.listen(socket, resolve))
  })
  afterAll(async () => {
    for (const s of [server, tlsServer, socketServer]) await new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()))
  })

  const verify = (url: string, extra: string[] = []): ReturnType<typeof runCli> =>
    runCli(['attest', 'verify', url, '--pcr0', measurements.PCR0, '--pcr1', measurements.PCR1, '--pcr2', measurements.PCR2, '--json', ...extra], {cwd: tmp.dir})

  it('fetches with a fresh nonce and verifies under the simulator root (raw CBOR and JSON answers)', async () => {
    for (const url of [base, `${base}/json`]) {
      const r = await verify(url, ['--root', rootFile])
      expect(r.exitCode, r.stdout + r.stderr).toBe(0)
      const out = jsonResult<{verified: boolean; nonceChecked: boolean; nonce: string; root: string; source: string}>(r)
      expect(out).toMatchObject({verified: true, nonceChecked: true, root: 'insecure-dev-root'})
      expect(out.nonce).toMatch(/^[0-9a-f]{64}$/)
      expect(out.source).toContain(`/v1/attestation?nonce=${out.nonce}`)
    }
  })

  it('refuses a replayed document (ATTEST_NONCE_MISMATCH), the AWS root (ATTEST_ROOT_MISMATCH), a server that is not nle (CLIENT_HTTP_ERROR) and an unreachable enclave (CLIENT_UNREACHABLE), both exit 7', async () => {
    const replay = await verify(`${base}/replay`, ['--root', rootFile])
    expect(replay.exitCode).toBe(5)
    expect(jsonFailure(replay).code).toBe('ATTEST_NONCE_MISMATCH')
    const awsRoot = await verify(base)
    expect(awsRoot.exitCode).toBe(5)
    expect(jsonFailure(awsRoot).code).toBe('ATTEST_ROOT_MISMATCH')
    const notNle = await verify(`${base}/missing`, ['--root', rootFile])
    expect(notNle.exitCode).toBe(7)
    expect(jsonFailure(notNle).code).toBe('CLIENT_HTTP_ERROR')
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const {port} = probe.address() as AddressInfo
        probe.close(() => resolve(port))
      })
    })
    const down = await verify(`http://127.0.0.1:${closed}`, ['--root', rootFile])
    expect(down.exitCode).toBe(7)
    expect(jsonFailure(down).code).toBe('CLIENT_UNREACHABLE')
  })

  it('https:// with a self-signed certificate: CLIENT_TLS_UNTRUSTED, exit 5, and the hint names --ca', async () => {
    const r = await verify(tlsBase, ['--root', rootFile])
    expect(r.exitCode, r.stdout + r.stderr).toBe(5)
    const error = jsonFailure(r)
    expect(error.code).toBe('CLIENT_TLS_UNTRUSTED')
    expect(error.hint).toContain('--ca')
    // Said the same way to a person.
    const human = await runCli(['attest', 'verify', tlsBase, '--pcr0', measurements.PCR0, '--pcr1', measurements.PCR1, '--pcr2', measurements.PCR2, '--root', rootFile], {cwd: tmp.dir})
    expect(human.exitCode).toBe(5)
    expect(human.stderr).toContain('CLIENT_TLS_UNTRUSTED')
    expect(human.stderr).toContain('--ca')
    expect(human.stderr).not.toMatch(/is the enclave running|fetch failed/i)
  })

  it('https:// with --ca of that certificate: verifies, nonce checked', async () => {
    const r = await verify(tlsBase, ['--root', rootFile, '--ca', caFile])
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    expect(jsonResult<{verified: boolean; nonceChecked: boolean}>(r)).toMatchObject({verified: true, nonceChecked: true})
  })

  it('--ca of a missing file: CLIENT_FILE_UNREADABLE, exit 6', async () => {
    const r = await verify(tlsBase, ['--root', rootFile, '--ca', join(tmp.dir, 'no-such-ca.pem')])
    expect(r.exitCode).toBe(6)
    expect(jsonFailure(r).code).toBe('CLIENT_FILE_UNREADABLE')
  })

  it('unix:/path.sock of the enclave server: verifies, nonce checked', async () => {
    const r = await verify(`unix:${socket}`, ['--root', rootFile])
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    const out = jsonResult<{verified: boolean; nonceChecked: boolean; source: string}>(r)
    expect(out).toMatchObject({verified: true, nonceChecked: true})
    expect(out.source).toContain(socket)
  })
})
