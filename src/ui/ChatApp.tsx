/**
 * The `nle chat` terminal UI. Logic lives in src/lib/chat (state machine, slash commands, the
 * input editor, the context window); this file only renders it and wires keys and the backend.
 * Finished turns go into <Static> so they are printed once and never re-rendered; the streaming
 * answer is flushed at word boundaries. When the terminal gets narrower, the screen is cleared and
 * the transcript printed again at the new width (the live part below it is laid out anew), so no
 * broken copy of the old, wider layout is left behind.
 */
import {Box, Static, Text, useApp, useStdout} from 'ink'
import React, {useCallback, useEffect, useReducer, useRef, useState} from 'react'

import {LineEditor} from '../lib/chat/editor.js'
import type {Key} from '../lib/chat/keys.js'
import {type ChatState, HELP_TEXT, conversation, initialState, isEnclaveLost, parseSlash, reduce} from '../lib/chat/state.js'
import type {AttestationSummary, ChatBackend, ChatMessage, ChatMode} from '../lib/chat/types.js'
import {tailRows} from '../lib/chat/view.js'
import {contextInfo, droppedNotice, fitToContext, tooLongNotice} from '../lib/chat/window.js'
import {isNleError} from '../lib/errors.js'
import {useKeys} from './use-keys.js'

export interface ChatAppProps {
  backend: ChatBackend
  /** How often buffered streamed text is flushed to the screen (ms). */
  flushMs?: number
}

/** Clears the screen and its scrollback and homes the cursor (before the transcript is printed again). */
export const CLEAR_SCREEN = '\u001B[2J\u001B[3J\u001B[H'
/** Retries after CLIENT_CONTEXT_TOO_LONG before giving up (each drops at least one turn). */
const MAX_FIT_ATTEMPTS = 8

type SendOutcome = {ok: true; streamed: boolean} | {ok: false; error: unknown; streamed: boolean}
type AttestOutcome = {ok: true; summary: AttestationSummary} | {ok: false; code: string; message: string}

export function ChatApp({backend, flushMs = 40}: ChatAppProps): React.JSX.Element {
  const {exit} = useApp()
  const {stdout} = useStdout()
  const [state, dispatch] = useReducer(reduce, backend.mode, initialState)
  const editor = useRef(new LineEditor())
  // Keys can arrive faster than React re-renders: the editor holds the text; this mirrors it to render.
  const [input, setInput] = useState('')
  const abort = useRef<AbortController | undefined>(undefined)
  // Set from the moment a question is taken until its answer is filed: keys later in the same
  // chunk ("q1\rq2\r") see it before React has re-rendered.
  const asking = useRef(false)
  const stateRef = useRef<ChatState>(state)
  stateRef.current = state
  // A new <Static> (new key) prints the whole transcript again: after /clear and on a narrower terminal.
  const [epoch, setEpoch] = useState(0)
  const [columns, setColumns] = useState(stdout.columns || 80)

  useEffect(() => {
    let last = stdout.columns || 80
    const onResize = (): void => {
      const now = stdout.columns || 80
      if (now < last) {
        stdout.write(CLEAR_SCREEN)
        setEpoch((e) => e + 1)
      }
      last = now
      setColumns(now)
    }
    // Before Ink's own handler, so the screen is clean when Ink draws the live part again.
    stdout.prependListener('resize', onResize)
    return () => {
      stdout.off('resize', onResize)
    }
  }, [stdout])

  const attest = useCallback(async (): Promise<AttestOutcome> => {
    dispatch({type: 'attest-start'})
    try {
      const summary = await backend.attest()
      dispatch({type: 'attest-ok', summary, at: new Date()})
      return {ok: true, summary}
    } catch (error) {
      const code = isNleError(error) ? error.code : 'ATTEST_FAILED'
      const message = (error as Error).message
      dispatch({type: 'attest-failed', code, message})
      return {ok: false, code, message}
    }
  }, [backend])

  useEffect(() => {
    void attest()
    return () => abort.current?.abort()
  }, [attest])

  /** One request: streams into the current turn; says whether any text came before it failed. */
  const sendOnce = useCallback(
    async (messages: ChatMessage[], controller: AbortController): Promise<SendOutcome> => {
      let buffer = ''
      let streamed = false
      const timer = setInterval(() => {
        // Flush up to the last word boundary so words do not flicker in half.
        const cut = buffer.search(/\s\S*$/)
        if (cut > 0) {
          dispatch({type: 'delta', text: buffer.slice(0, cut + 1)})
          buffer = buffer.slice(cut + 1)
        }
      }, flushMs)
      try {
        for await (const delta of backend.send(messages, controller.signal)) {
          streamed = true
          buffer += delta
        }
        return {ok: true, streamed}
      } catch (error) {
        return {ok: false, error, streamed}
      } finally {
        clearInterval(timer)
        if (buffer) dispatch({type: 'delta', text: buffer})
      }
    },
    [backend, flushMs],
  )

  const askNow = useCallback(
    async (question: string) => {
      // The enclave was found gone: attest again (fresh nonce) before anything is sent.
      const status = stateRef.current.attest.status
      const verified = status === 'verified' || (status === 'lost' && (await attest()).ok)
      if (!verified) {
        dispatch({type: 'notice', kind: 'error', text: 'Not sent: the enclave\'s attestation is not verified. /attest to retry.'})
        return
      }
      let messages = conversation(stateRef.current, question)
      dispatch({type: 'ask', question})
      const controller = new AbortController()
      abort.current = controller
      try {
        for (let attempt = 1; ; attempt++) {
          const r = await sendOnce(messages, controller)
          if (r.ok) return dispatch({type: 'done'})
          const {error} = r
          if (isNleError(error) && error.code === 'CLIENT_CONTEXT_TOO_LONG' && !r.streamed && !controller.signal.aborted) {
            const info = contextInfo(error.details)
            const fit = attempt < MAX_FIT_ATTEMPTS ? fitToContext(messages, info) : ({ok: false} as const)
            if (!fit.ok) return dispatch({type: 'failed', message: `[${error.code}] ${tooLongNotice(info)}`})
            messages = fit.messages
            dispatch({type: 'drop', turns: fit.droppedTurns})
            dispatch({type: 'notice', kind: 'info', text: droppedNotice(fit.droppedTurns, info)})
            continue
          }
          const code = isNleError(error) ? error.code : undefined
          if (!controller.signal.aborted && isEnclaveLost(code)) dispatch({type: 'lost', code: code!, message: (error as Error).message})
          const text = controller.signal.aborted ? 'cancelled' : isNleError(error) ? `[${error.code}] ${error.message}` : (error as Error).message
          return dispatch({type: 'failed', message: text})
        }
      } finally {
        abort.current = undefined
      }
    },
    [attest, sendOnce],
  )

  const ask = useCallback(
    async (question: string) => {
      if (asking.current) return
      asking.current = true
      try {
        await askNow(question)
      } finally {
        asking.current = false
      }
    },
    [askNow],
  )

  const submit = useCallback(
    async (line: string) => {
      const slash = parseSlash(line)
      if (!slash) return ask(line)
      const info = (text: string): void => dispatch({type: 'notice', kind: 'info', text})
      const error = (text: string): void => dispatch({type: 'notice', kind: 'error', text})
      const attestAndSay = async (what: string): Promise<void> => {
        const a = await attest()
        if (a.ok) info(`${what}: ✓ attestation verified · PCR0 ${a.summary.pcr0.slice(0, 16)}… · ${a.summary.root}`)
        else error(`${what}: ✗ attestation failed [${a.code}] ${a.message}`)
      }
      switch (slash.name) {
        case 'quit':
          return exit()
        case 'clear':
          dispatch({type: 'clear'})
          setEpoch((e) => e + 1)
          return info('Conversation cleared: the next question starts a new conversation.')
        case 'help':
          return info(HELP_TEXT)
        case 'attest':
          return attestAndSay('/attest')
        case 'bad-mode':
          return error(`Unknown mode "${slash.mode}": use /mode attested or /mode kms.`)
        case 'mode': {
          if (!slash.mode) return info(`mode: ${stateRef.current.mode} (/mode attested or /mode kms switches)`)
          if (slash.mode === stateRef.current.mode) return info(`Already in mode ${slash.mode}.`)
          if (!backend.setMode) return error('This enclave offers one mode only.')
          try {
            await backend.setMode(slash.mode)
          } catch (e) {
            return error(`Mode not changed (still ${stateRef.current.mode}): ${isNleError(e) ? `[${e.code}] ` : ''}${(e as Error).message}`)
          }
          dispatch({type: 'mode', mode: slash.mode as ChatMode})
          return attestAndSay(`mode ${slash.mode}`)
        }
        case 'unknown':
          return error(`Unknown command ${slash.input}. /help lists the commands.`)
      }
    },
    [ask, attest, backend, exit],
  )

  const busy = state.current !== undefined
  const busyRef = useRef(busy)
  busyRef.current = busy
  useKeys(
    useCallback(
      (key: Key) => {
        const action = editor.current.apply(key, asking.current || busyRef.current)
        setInput(editor.current.text)
        if (!action) return
        if (action.kind === 'cancel') abort.current?.abort()
        else if (action.kind === 'quit') exit()
        else void submit(action.line)
      },
      [exit, submit],
    ),
  )

  const rows = stdout.rows || 24
  return (
    <Box flexDirection="column">
      <Static key={epoch} items={state.log}>
        {(entry) =>
          entry.type === 'turn' ? (
            <Box key={`t${entry.id}`} flexDirection="column" marginBottom={1}>
              <Text color="cyan">› {entry.question}</Text>
              <Text>{entry.answer}</Text>
              {entry.error ? <Text color="red">✗ {entry.error}</Text> : null}
            </Box>
          ) : (
            <Text key={`n${entry.id}`} color={entry.kind === 'error' ? 'red' : 'gray'}>
              {entry.text}
            </Text>
          )
        }
      </Static>
      {state.current ? (
        <Box flexDirection="column" marginBottom={1}>
          <Text color="cyan">› {tailRows(state.current.question, columns, 3)}</Text>
          {/* Only the end of a long answer while it streams (all of it goes to the transcript when done): the live part stays shorter than the screen. */}
          <Text>{tailRows(state.current.answer, columns, Math.max(3, rows - 14))}▌</Text>
        </Box>
      ) : null}
      <Header state={state} target={backend.target} />
      {busy ? (
        <Text dimColor>answering… (Esc to cancel)</Text>
      ) : (
        <Text>
          <Text color="cyan">› </Text>
          {input}
          <Text inverse> </Text>
        </Text>
      )}
    </Box>
  )
}

function Header({state, target}: {state: ChatState; target: string}): React.JSX.Element {
  const a = state.attest
  const color = a.status === 'verified' ? (a.summary.debug ? 'yellow' : 'green') : a.status === 'failed' || a.status === 'lost' ? 'red' : 'gray'
  return (
    <Box flexDirection="column" borderStyle="round" borderColor={color} paddingX={1}>
      <Text>
        <Text bold>nle chat</Text> · mode {state.mode} · {target}
      </Text>
      {a.status === 'pending' ? <Text color="gray">… verifying the enclave&apos;s attestation</Text> : null}
      {a.status === 'verified' ? (
        <Text color="green">
          ✓ attestation verified · PCR0 {a.summary.pcr0.slice(0, 16)}… · {a.summary.moduleId} · {a.summary.root}
        </Text>
      ) : null}
      {a.status === 'verified' && a.summary.debug ? (
        <Text color="yellow" bold>
          ⚠ DEBUG-MODE ENCLAVE: PCRs are zero and the host can read its memory. Do not send real data.
        </Text>
      ) : null}
      {a.status === 'failed' ? <Text color="red">✗ attestation failed: nothing will be sent</Text> : null}
      {a.status === 'lost' ? <Text color="red">✗ not verified: the enclave is gone (disconnected); the next question attests again first</Text> : null}
      {a.status === 'failed' || a.status === 'lost' ? (
        <Text color="red">
          [{a.code}] {a.message}
        </Text>
      ) : null}
      <Text dimColor>Enter sends · Alt+Enter (or \ Enter) new line · ↑↓ history · Esc cancels · /help</Text>
    </Box>
  )
}
