// Tokenization through @huggingface/tokenizers (tokenizer.json) and chat templates through
// @huggingface/jinja (tokenizer_config.json's chat_template): the same libraries transformers.js uses.
import {join} from 'node:path'

import {Template} from '@huggingface/jinja'
import {Tokenizer} from '@huggingface/tokenizers'

import {readModelText} from '../model/memory.js'
import {EngineError} from './errors.js'

/** A message as a chat template renders it (the wire's ChatMessage, or any role a template knows). */
export interface TemplateMessage {
  role: 'system' | 'user' | 'assistant' | (string & {})
  content: string
}

export class TextTokenizer {
  private readonly template: Template | undefined

  private constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: Record<string, unknown>,
  ) {
    const tpl = config.chat_template
    const source = typeof tpl === 'string' ? tpl : Array.isArray(tpl) ? defaultTemplate(tpl) : undefined
    this.template = source === undefined ? undefined : compile(source)
  }

  static async load(dir: string): Promise<TextTokenizer> {
    const tokenizerJson = await readJson(join(dir, 'tokenizer.json'))
    const config = await readJson(join(dir, 'tokenizer_config.json'))
    let tokenizer: Tokenizer
    try {
      tokenizer = new Tokenizer(tokenizerJson, config)
    } catch (cause) {
      throw new EngineError('ENGINE_TOKENIZER_INVALID', `${join(dir, 'tokenizer.json')} is not a tokenizer this engine can load.`, {cause})
    }
    return new TextTokenizer(tokenizer, config)
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, {add_special_tokens: addSpecialTokens}).ids
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return ''
    return this.tokenizer.decode([...ids], {skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false})
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token)
  }

  get hasChatTemplate(): boolean {
    return this.template !== undefined
  }

  /** The id of a special token named in tokenizer_config.json (e.g. "eos_token"), if any. */
  specialTokenId(key: string): number | undefined {
    const v = this.config[key]
    const content = typeof v === 'string' ? v : typeof v === 'object' && v !== null && 'content' in v ? String((v as {content: unknown}).content) : undefined
    return content === undefined ? undefined : this.tokenizer.token_to_id(content)
  }

  /** Renders messages through the model's chat template (jinja). */
  applyChatTemplate(messages: readonly TemplateMessage[], addGenerationPrompt = true): string {
    if (this.template === undefined) {
      throw new EngineError('ENGINE_CHAT_TEMPLATE_MISSING', 'The model has no chat template in tokenizer_config.json.', {
        hint: 'Send a plain prompt instead of messages, or add "chat_template" to tokenizer_config.json.',
      })
    }
    const special = (key: string): string => {
      const v = this.config[key]
      return typeof v === 'string' ? v : typeof v === 'object' && v !== null && 'content' in v ? String((v as {content: unknown}).content) : ''
    }
    try {
      return this.template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: special('bos_token'),
        eos_token: special('eos_token'),
        unk_token: special('unk_token'),
        pad_token: special('pad_token'),
      })
    } catch (cause) {
      // Templates refuse conversations they cannot express (raise_exception: roles that do not
      // alternate, a system message the model has no place for): say which, from the template itself.
      const why = cause instanceof Error ? cause.message.split('\n')[0]?.slice(0, 200) : undefined
      throw new EngineError('ENGINE_CHAT_TEMPLATE_FAILED', `The model's chat template refused these messages${why ? `: ${why}` : ''}.`, {
        cause,
        hint: 'Shape the conversation as this model expects (some templates need alternating user/assistant turns, or have no system role).',
      })
    }
  }
}

function compile(source: string): Template {
  try {
    return new Template(source)
  } catch (cause) {
    throw new EngineError('ENGINE_CHAT_TEMPLATE_FAILED', 'The chat template in tokenizer_config.json does not parse.', {cause})
  }
}

/** tokenizer_config may hold a list of named templates; "default" is the one used for chat. */
function defaultTemplate(list: unknown[]): string | undefined {
  for (const item of list) {
    if (typeof item === 'object' && item !== null && (item as {name?: unknown}).name === 'default') {
      const t = (item as {template?: unknown}).template
      if (typeof t === 'string') return t
    }
  }
  return undefined
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readModelText(path)
  } catch (cause) {
    throw new EngineError('ENGINE_TOKENIZER_MISSING', `${path} is missing.`, {
      cause,
      hint: 'The model folder must hold tokenizer.json and tokenizer_config.json (run `nle model save`).',
      details: {path},
    })
  }
  try {
    const v = JSON.parse(text) as unknown
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object')
    return v as Record<string, unknown>
  } catch (cause) {
    throw new EngineError('ENGINE_TOKENIZER_INVALID', `${path} is not valid JSON.`, {cause, details: {path}})
  }
}
