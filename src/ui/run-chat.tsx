import {render} from 'ink'
import React from 'react'

import type {ChatBackend} from '../lib/chat/types.js'
import {ChatApp} from './ChatApp.js'

/** Runs the chat TUI until the user quits. */
export async function runChatTui(backend: ChatBackend): Promise<void> {
  const instance = render(<ChatApp backend={backend} />, {exitOnCtrlC: false})
  await instance.waitUntilExit()
}
