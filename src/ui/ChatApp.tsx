/**
 * The `nle chat` terminal UI. Logic lives in src/lib/chat (state machine, slash commands,
 * history); this file only renders it and wires keys. Finished turns go into <Static> so they
 * are printed once and never re-rendered; the streaming answer is flushed at word boundaries.
 */
import {Box, Static, Text, useApp, useInput} from 'ink'
import React, {useCallback, useEffect, useReducer, useRef, useState} from 'react'

import {isNleError} from '../lib/errors.js'
import {type ChatState, History, SLASH_HELP, conversation, initialState, parseSlash, reduce} from '../lib/chat/state.js'
import type {ChatBackend, ChatMode} from '../lib/chat/types.js'

export interface ChatAppProps {
  backend: ChatBackend
  /** How often buffered streamed text is flushed to the screen (ms). */
  flushMs?: number
}

export function ChatApp({backend, flushMs = 40}: ChatAppProps): React.JSX.Element {
  const {exit} = useApp()
  const [state, dispatch] = useReducer(reduce, backend.mode, initialState)
  // Keys can arrive faster than React re-renders: keep the input in a ref so every key sees the
  // latest text, and mirror it into state to render.
  const inputRef = useRef('')
  const [input, setInputState] = useState('')
  const setInput = useCallback((value: string) => {
    inputRef.current = value
    setInputState(value)
  }, [])
  const history = useRef(new History())
  const abort = useRef<AbortController | undefined>(undefined)
  const stateRef = useRef<ChatState>(state)
  stateRef.current = state

  const attest = useCallback(async () => {
    dispatch({type: 'attest-start'})
    try {
      const summary = await backend.attest()
      dispatch({type: 'attest-ok', summary, at: new Date()})
      return true
    } catch (error) {
      dispatch({type: 'attest-failed', code: isNleError(error) ? error.code : 'ATTEST_FAILED', message: (error as Error).message})
      return false
    }
  }, [backend])

  useEffect(() => {
    void attest()
    return () => abort.current?.abort()
  }, [attest])

  const ask = useCallback(
    async (question: string) => {
      if (stateRef.current.attest.status !== 'verified') {
        dispatch({type: 'notice', kind: 'error', text: 'Not sent: the enclave\'s attestation is not verified. /attest to retry.'})
        return
      }
      const messages = conversation(stateRef.current, question)
      dispatch({type: 'ask', question})
      const controller = new AbortController()
      abort.current = controller
      let buffer = ''
      const flush = (): void => {
        if (buffer) dispatch({type: 'delta', text: buffer})
        buffer = ''
      }
      const timer = setInterval(() => {
        // Flush up to the last word boundary so words do not flicker in half.
        const cut = buffer.search(/\s\S*$/)
        if (cut > 0) {
          dispatch({type: 'delta', text: buffer.slice(0, cut + 1)})
          buffer = buffer.slice(cut + 1)
        }
      }, flushMs)
      try {
        for await (const delta of backend.send(messages, controller.signal)) buffer += delta
        flush()
        dispatch({type: 'done'})
      } catch (error) {
        flush()
        const text = controller.signal.aborted ? 'cancelled' : isNleError(error) ? `[${error.code}] ${error.message}` : (error as Error).message
        dispatch({type: 'failed', message: text})
      } finally {
        clearInterval(timer)
        abort.current = undefined
      }
    },
    [backend, flushMs],
  )

  const submit = useCallback(
    async (line: string) => {
      history.current.push(line)
      const slash = parseSlash(line)
      if (!slash) return ask(line)
      switch (slash.name) {
        case 'quit':
          return exit()
        case 'clear':
          return dispatch({type: 'clear'})
        case 'help':
          return dispatch({type: 'notice', kind: 'info', text: SLASH_HELP})
        case 'attest':
          return void (await attest())
        case 'mode': {
          if (!slash.mode) return dispatch({type: 'notice', kind: 'info', text: `mode: ${stateRef.current.mode} (use /mode attested|kms)`})
          if (!backend.setMode) return dispatch({type: 'notice', kind: 'error', text: 'This enclave offers one mode only.'})
          try {
            await backend.setMode(slash.mode)
            dispatch({type: 'mode', mode: slash.mode as ChatMode})
            await attest()
          } catch (error) {
            dispatch({type: 'notice', kind: 'error', text: (error as Error).message})
          }
          return
        }
        case 'unknown':
          return dispatch({type: 'notice', kind: 'error', text: `Unknown command ${slash.input}. ${SLASH_HELP}`})
      }
    },
    [ask, attest, backend, exit],
  )

  const busy = state.current !== undefined
  useInput((char, key) => {
    const input = inputRef.current
    if (key.ctrl && char === 'c') {
      if (busy) abort.current?.abort()
      else exit()
      return
    }
    if (key.escape && busy) return abort.current?.abort()
    if (busy) return
    if (key.return) {
      // A trailing backslash continues the question on a new line.
      if (input.endsWith('\\')) return setInput(input.slice(0, -1) + '\n')
      const line = input
      setInput('')
      if (line.trim()) void submit(line)
      return
    }
    if (key.upArrow && !input.includes('\n')) return setInput(history.current.previous(input))
    if (key.downArrow && !input.includes('\n')) return setInput(history.current.next())
    if (key.backspace || key.delete) return setInput(input.slice(0, -1))
    if (char && !key.ctrl && !key.meta && !key.tab) setInput(input + char)
  })

  return (
    <Box flexDirection="column">
      <Static items={state.log}>
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
          <Text color="cyan">› {state.current.question}</Text>
          <Text>{state.current.answer}▌</Text>
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
  return (
    <Box flexDirection="column" borderStyle="round" borderColor={a.status === 'verified' ? (a.summary.debug ? 'yellow' : 'green') : a.status === 'failed' ? 'red' : 'gray'} paddingX={1}>
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
      {a.status === 'failed' ? (
        <Text color="red">
          [{a.code}] {a.message}
        </Text>
      ) : null}
      <Text dimColor>Enter sends · \ then Enter for a new line · ↑↓ history · {SLASH_HELP}</Text>
    </Box>
  )
}
