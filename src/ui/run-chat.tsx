import {render} from 'ink'
import React from 'react'

import type {ChatBackend} from '../lib/chat/types.js'
import {NleError} from '../lib/errors.js'
import {ChatApp} from './ChatApp.js'
import {enableBracketedPaste} from './terminal.js'

/** Runs the chat TUI until the user quits. */
export async function runChatTui(backend: ChatBackend): Promise<void> {
  if (!process.stdin.isTTY) {
    throw new NleError('USAGE', 'The interactive chat needs a terminal, and stdin is not one.', {hint: 'Ask one question with --once "question" (the answer goes to stdout).'})
  }
  // Bracketed paste: a pasted text arrives marked, so its line breaks stay in the question
  // instead of sending each line (src/lib/chat/keys.ts).
  const restore = enableBracketedPaste(process.stdout)
  try {
    const instance = render(<ChatApp backend={backend} />, {exitOnCtrlC: false})
    await instance.waitUntilExit()
  } finally {
    restore()
  }
}
