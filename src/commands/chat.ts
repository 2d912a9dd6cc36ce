import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {enclaveClientFlags, enclaveModeFlags, enclaveTrustFlags} from '../cli/flags.js'
import {channelBackend} from '../lib/chat/backend.js'
import {openEnclaveClient} from '../lib/client/open.js'
import {NleError} from '../lib/errors.js'

export interface ChatOnceResult {
  answer: string
  mode: 'attested' | 'kms'
  attestation: {moduleId: string; pcr0: string; debug: boolean; timestamp: string; root: string}
  target: string
}

export default class Chat extends BaseCommand<typeof Chat> {
  static override summary = 'Chat with the enclave from the terminal; nothing is sent before its attestation verifies.'
  static override description = `Fetches the enclave's attestation with a fresh nonce, verifies it against the measurements in nle.lock.json, then seals every question to the enclave's attested key: the host and the proxy relay only ciphertext. The answer streams in as it is generated.

Inside a project where \`nle dev\` is running, the target, the dev root and the proxy certificate are found automatically. Against a real host, give --url and keep the default (AWS) root.

Keys in the chat: Enter sends; Alt+Enter, or a trailing \\ then Enter, starts a new line; a pasted text keeps its line breaks (bracketed paste) and is sent by the Enter after it; ↑/↓ walk the history; Esc cancels an answer; /attest /mode /clear /help /quit. When the conversation grows longer than the model's context, the oldest turns are left out (the chat says so).
With --mode kms, each question is also encrypted under a key wrapped by KMS Encrypt with your own AWS identity (kms.keyId of nle.yaml, or --kms-key-id; credentials from the standard AWS chain). Only an enclave whose measurements the key policy admits can unwrap it. Against \`nle dev\`, its local KMS and development client identity are used.

With --once "question" there is no TUI: the answer goes to stdout and the exit code says whether it worked (2 a question longer than the model's context, CLIENT_CONTEXT_TOO_LONG; 5 attestation failed; 7 enclave unreachable).`
  static override examples = [
    '<%= config.bin %> chat',
    '<%= config.bin %> chat --once "What does my plan cover?"',
    '<%= config.bin %> chat --url https://enclave-host:8443 --lockfile nle.lock.json',
  ]
  static override flags = {
    ...enclaveTrustFlags,
    ...enclaveModeFlags,
    url: Flags.string({description: 'The parent proxy URL (https://…), or unix:/path.sock for the enclave socket. Default: the running `nle dev` stack.'}),
    once: Flags.string({description: 'Ask one question without the TUI and print the answer.'}),
    'max-tokens': Flags.integer({description: 'Longest answer, in tokens.', min: 1}),
    temperature: Flags.string({description: 'Sampling temperature (0 = greedy).'}),
  }

  async run(): Promise<ChatOnceResult | void> {
    const f = this.flags
    if (this.jsonEnabled() && f.once === undefined) {
      throw new NleError('USAGE', '--json needs --once: the interactive chat has no JSON form.', {hint: 'Add --once "question".'})
    }
    const temperature = f.temperature === undefined ? undefined : Number(f.temperature)
    if (temperature !== undefined && !(temperature >= 0 && temperature <= 2)) {
      throw new NleError('USAGE', '--temperature must be a number from 0 to 2.')
    }
    const connection = await openEnclaveClient({
      flags: enclaveClientFlags(f.url, f),
      warn: (m) => this.warn(m),
      noTarget: () =>
        new NleError('CHAT_NO_TARGET', 'No enclave to talk to: no --url, and no `nle dev` running in this folder.', {
          hint: 'Start `nle dev` in this project, or pass --url https://HOST:PORT.',
        }),
    })
    const target = connection.target
    const backend = channelBackend(connection, {...(f['max-tokens'] ? {maxTokens: f['max-tokens']} : {}), ...(temperature === undefined ? {} : {temperature})})
    try {
      if (f.once === undefined) {
        const {runChatTui} = await import('../ui/run-chat.js')
        await runChatTui(backend)
        return
      }
      const summary = await backend.attest()
      if (!this.jsonEnabled()) process.stderr.write(`attestation verified: PCR0 ${summary.pcr0.slice(0, 16)}… (${summary.root})${summary.debug ? ' DEBUG MODE' : ''} · mode ${backend.mode}\n`)
      let answer = ''
      for await (const delta of backend.send([{role: 'user', content: f.once}], new AbortController().signal)) {
        answer += delta
        if (!this.jsonEnabled()) process.stdout.write(delta)
      }
      if (!this.jsonEnabled()) process.stdout.write('\n')
      return {answer, mode: backend.mode, attestation: {...summary, timestamp: summary.timestamp.toISOString()}, target}
    } finally {
      backend.close()
    }
  }
}
