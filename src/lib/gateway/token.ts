/**
 * The gateway's access token: given (NLE_GATEWAY_TOKEN, never a flag: argv is visible to every
 * user in `ps`), or kept in a file only this user can read (0600), made on first use.
 */
import {randomBytes} from 'node:crypto'
import {constants} from 'node:fs'
import {mkdir, open} from 'node:fs/promises'
import {dirname} from 'node:path'

import {writeFileAtomic} from '../files.js'
import {gatewayError} from './errors.js'

export const TOKEN_ENV = 'NLE_GATEWAY_TOKEN'
export const DEFAULT_TOKEN_FILE = '.nle/gateway.token'

export interface GatewayToken {
  token: string
  /** Where it is kept (absent when it came from the environment). */
  file?: string
  created: boolean
}

const unsafe = (file: string, why: string): never => {
  throw gatewayError('GATEWAY_TOKEN_FILE_UNSAFE', `The token file ${file} ${why}.`, {hint: `Remove it (a new one is made, mode 0600), or fix it: chmod 600 ${file}.`})
}

/** The token from the environment, else the file's (checked: a regular file of this user, mode 0600), else a new one written there. */
export async function gatewayToken(file: string, env: NodeJS.ProcessEnv = process.env): Promise<GatewayToken> {
  const given = env[TOKEN_ENV]
  if (given !== undefined && given !== '') {
    if (given.length < 16) throw gatewayError('GATEWAY_TOKEN_REQUIRED', `${TOKEN_ENV} is shorter than 16 characters.`)
    return {token: given, created: false}
  }
  let handle
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOENT') unsafe(file, `cannot be read (${code ?? 'error'})`)
  }
  if (handle) {
    try {
      const info = await handle.stat()
      if (!info.isFile()) unsafe(file, 'is not a regular file')
      if (process.getuid && info.uid !== process.getuid()) unsafe(file, 'belongs to another user')
      if ((info.mode & 0o077) !== 0) unsafe(file, `has mode ${(info.mode & 0o777).toString(8)}, not 600`)
      const token = (await handle.readFile('utf8')).trim()
      if (token.length < 16) unsafe(file, 'holds no token of 16 characters or more')
      return {token, file, created: false}
    } finally {
      await handle.close()
    }
  }
  const token = `nle-gw-${randomBytes(32).toString('base64url')}`
  try {
    await mkdir(dirname(file), {recursive: true, mode: 0o700})
    await writeFileAtomic(file, token + '\n', {mode: 0o600})
  } catch (error) {
    unsafe(file, `cannot be written (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  return {token, file, created: true}
}
