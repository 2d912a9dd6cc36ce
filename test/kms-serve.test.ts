/**
 * `nle kms serve` as a process: it listens on 127.0.0.1, writes its state file (0600), and answers
 * the real SDK with the identities it created. Stopped with SIGTERM by its own pid.
 */
import {readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {CreateKeyCommand, DecryptCommand, EncryptCommand, KMSClient} from '@aws-sdk/client-kms'
import {execa} from 'execa'
import {afterAll, describe, expect, it} from 'vitest'

import {type LocalState} from '../src/lib/kms/local/state.js'
import {BIN} from '../src/test-support/cli.js'
import {tempDir} from '../src/test-support/tmp.js'

const tmp = tempDir('nle-kms-serve-')
afterAll(() => tmp.cleanup())

describe('nle kms serve', () => {
  it('serves the SDK on loopback with the identities in its 0600 state file, and stops on SIGTERM', async () => {
    const statePath = join(tmp.dir, 'state', 'kms.json')
    const child = execa(process.execPath, [BIN, 'kms', 'serve', '--port', '0', '--state', statePath], {reject: false, env: {NO_COLOR: '1'}})
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = ''
        child.stdout!.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
          if (m) resolve(m[1]!)
        })
        void child.then((r) => reject(new Error(`kms serve exited ${r.exitCode}: ${r.stderr}`)))
      })
      expect(statSync(statePath).mode & 0o777).toBe(0o600)
      const state = JSON.parse(readFileSync(statePath, 'utf8')) as LocalState
      const [admin, host] = state.identities
      const kms = (id: typeof admin): KMSClient => new KMSClient({endpoint: url, region: 'us-east-1', credentials: {accessKeyId: id!.accessKeyId, secretAccessKey: id!.secretAccessKey}, maxAttempts: 1})
      const policy = {Version: '2012-10-17', Statement: [{Sid: 'admins', Effect: 'Allow', Principal: {AWS: admin!.arn}, Action: 'kms:*', Resource: '*'}, {Sid: 'host encrypts', Effect: 'Allow', Principal: {AWS: host!.arn}, Action: 'kms:Encrypt', Resource: '*'}]}
      const keyId = (await kms(admin).send(new CreateKeyCommand({Policy: JSON.stringify(policy)}))).KeyMetadata!.KeyId!
      const blob = (await kms(host).send(new EncryptCommand({KeyId: keyId, Plaintext: Buffer.from('hi')}))).CiphertextBlob
      await expect(kms(host).send(new DecryptCommand({CiphertextBlob: blob}))).rejects.toMatchObject({name: 'AccessDeniedException'})
      expect(Buffer.from((await kms(admin).send(new DecryptCommand({CiphertextBlob: blob}))).Plaintext!).toString()).toBe('hi')
      const saved = JSON.parse(readFileSync(statePath, 'utf8')) as LocalState
      expect(Object.keys(saved.keys)).toEqual([keyId])
    } finally {
      child.kill('SIGTERM')
    }
    const result = await child
    expect(result.exitCode).toBe(0)
    expect(result.stdout).not.toContain(JSON.parse(readFileSync(statePath, 'utf8')).identities[0].secretAccessKey)
    expect(result.stderr).toContain('kms:Decrypt by')
  }, 60_000)

  it('--json: stdout is one envelope per line (listening without secrets, stopped; a port in use is one error line)', async () => {
    const statePath = join(tmp.dir, 'json', 'kms.json')
    const child = execa(process.execPath, [BIN, 'kms', 'serve', '--port', '0', '--state', statePath, '--json'], {reject: false, env: {NO_COLOR: '1'}})
    let out = ''
    const listening = await new Promise<{event: string; url: string; identities: {arn: string; accessKeyId: string}[]}>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('\n')) {
          const line = JSON.parse(out.split('\n')[0]!) as {ok: boolean; command: string; event: string; result: Record<string, unknown>}
          expect(line).toMatchObject({ok: true, command: 'kms serve', schemaVersion: 1, exitCode: 0, event: 'listening'})
          resolve({event: line.event, ...line.result} as never)
        }
      })
      void child.then((r) => reject(new Error(`kms serve exited ${r.exitCode}: ${r.stderr}`)))
    })
    expect(listening).toMatchObject({event: 'listening', url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), state: statePath, created: true})
    expect(listening.identities.length).toBeGreaterThan(0)
    // The same port again: ADDRESS_IN_USE, exit 6, as one JSON line.
    const port = new URL(listening.url).port
    const second = await execa(process.execPath, [BIN, 'kms', 'serve', '--port', port, '--state', join(tmp.dir, 'json2', 'kms.json'), '--json'], {reject: false, env: {NO_COLOR: '1'}})
    expect(second.exitCode).toBe(6)
    const lines = second.stdout.trim().split('\n').map((l) => JSON.parse(l) as {event: string; error?: {code: string}})
    expect(lines.at(-1)).toMatchObject({ok: false, command: 'kms serve', exitCode: 6, event: 'error', error: {code: 'ADDRESS_IN_USE', exitCode: 6}})
    child.kill('SIGTERM')
    const result = await child
    expect(result.exitCode).toBe(0)
    const events = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as {event: string})
    expect(events.map((e) => e.event)).toEqual(['listening', 'stopped'])
    const secret = (JSON.parse(readFileSync(statePath, 'utf8')) as LocalState).identities[0]!.secretAccessKey
    expect(result.stdout).not.toContain(secret)
  }, 60_000)
})
