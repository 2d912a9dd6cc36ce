/**
 * Keys from the terminal through KeyStream, whatever the chunking. Ink's own `useInput` hands a
 * whole chunk ("text\r", "\x7f\x7f\x7f", a paste) to its handler as one event; this hook reads the
 * same stdin Ink reads (the chunks Ink's raw-mode reader takes off it) and gives every key on its
 * own, in order.
 */
import {useStdin} from 'ink'
import {useEffect, useRef} from 'react'

import {type Key, KeyStream} from '../lib/chat/keys.js'

/**
 * How long an unfinished escape sequence (a lone ESC) waits for the rest before it counts as the
 * Escape key. Terminals send a sequence in one write; over SSH its parts may be a few ms apart.
 */
const ESCAPE_WAIT_MS = 50

export function useKeys(onKey: (key: Key) => void): void {
  const {stdin, setRawMode, isRawModeSupported} = useStdin()
  const handler = useRef(onKey)
  handler.current = onKey

  useEffect(() => {
    const keys = new KeyStream()
    let timer: NodeJS.Timeout | undefined
    const deliver = (list: Key[]): void => {
      for (const key of list) handler.current(key)
    }
    const onData = (data: string | Buffer): void => {
      clearTimeout(timer)
      deliver(keys.push(typeof data === 'string' ? data : data.toString('utf8')))
      if (keys.hasPending) timer = setTimeout(() => deliver(keys.flush()), ESCAPE_WAIT_MS)
    }
    // Raw mode through Ink, so that Ink reads stdin (and restores the terminal on exit); its reads
    // emit 'data' with each chunk, which is what this hook listens to.
    if (isRawModeSupported) setRawMode(true)
    stdin.on('data', onData)
    return () => {
      clearTimeout(timer)
      stdin.off('data', onData)
      if (isRawModeSupported) setRawMode(false)
    }
  }, [stdin, setRawMode, isRawModeSupported])
}
