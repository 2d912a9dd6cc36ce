// Chat templates in the formats the mainstream families use (Llama 3, ChatML as Qwen2 uses it,
// Phi-3, Mistral, Gemma), written here to exercise what their templates rely on: whitespace control,
// slicing messages, namespace(), loop variables, filters, strftime_now, raise_exception and the
// special tokens. They render through @huggingface/jinja exactly as transformers renders them.
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {afterAll, beforeAll, describe, expect, it} from 'vitest'

import {hasCode} from '../errors.js'
import {GPT2_EOS, gpt2TokenizerJson} from '../model/gpt2-tokenizer.js'
import {type TemplateMessage, TextTokenizer} from './tokenizer.js'

const TEMPLATES = {
  llama3:
    "{{- bos_token }}{%- if not date_string is defined %}{%- if strftime_now is defined %}{%- set date_string = strftime_now('%d %b %Y') %}{%- else %}{%- set date_string = '1 Jan 2025' %}{%- endif %}{%- endif %}" +
    "{%- if messages[0]['role'] == 'system' %}{%- set system = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}{%- else %}{%- set system = '' %}{%- endif %}" +
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + 'Today Date: ' + date_string + '\\n\\n' + system + '<|eot_id|>' }}" +
    "{%- for m in messages %}{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{%- endfor %}" +
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
  chatml:
    "{%- set ns = namespace(has_system=false) %}{%- for m in messages %}{%- if m.role == 'system' %}{%- set ns.has_system = true %}{%- endif %}{%- endfor %}" +
    "{%- if not ns.has_system %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}" +
    "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}" +
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
  phi3:
    "{% for message in messages %}{% if message['role'] == 'system' and loop.first %}{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}{% else %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}{% endif %}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
  mistral:
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
  gemma:
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" +
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}" +
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
} as const

let dir: string
const tokenizers: Partial<Record<keyof typeof TEMPLATES, TextTokenizer>> = {}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nle-templates-'))
  for (const [name, chat_template] of Object.entries(TEMPLATES)) {
    const sub = join(dir, name)
    await mkdir(sub)
    await writeFile(join(sub, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson()))
    await writeFile(join(sub, 'tokenizer_config.json'), JSON.stringify({bos_token: '<s>', eos_token: GPT2_EOS, chat_template}))
    tokenizers[name as keyof typeof TEMPLATES] = await TextTokenizer.load(sub)
  }
})

afterAll(async () => {
  await rm(dir, {recursive: true, force: true})
})

const conversation: TemplateMessage[] = [
  {role: 'system', content: ' Answer briefly. '},
  {role: 'user', content: 'Is my MRI covered?'},
  {role: 'assistant', content: 'Yes, after the deductible.'},
  {role: 'user', content: 'How much is it?'},
]
const noSystem = conversation.slice(1)

const render = (name: keyof typeof TEMPLATES, messages: TemplateMessage[], generation = true): string => tokenizers[name]!.applyChatTemplate(messages, generation)

describe('chat templates of the mainstream families', () => {
  it('Llama 3: the system header with the date from strftime_now, trimmed turns, the assistant header', () => {
    const out = render('llama3', conversation)
    expect(out).toMatch(/^<s><\|start_header_id\|>system<\|end_header_id\|>\n\nToday Date: \d{2} [A-Z][a-z]{2} \d{4}\n\nAnswer briefly\.<\|eot_id\|>/)
    expect(out.endsWith('<|start_header_id|>user<|end_header_id|>\n\nHow much is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true)
    expect(out.match(/<\|eot_id\|>/g)).toHaveLength(4)
  })

  it('ChatML (Qwen2): a default system turn when none is given (namespace), im_start/im_end turns', () => {
    expect(render('chatml', noSystem.slice(0, 1))).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nIs my MRI covered?<|im_end|>\n<|im_start|>assistant\n')
    expect(render('chatml', conversation).startsWith('<|im_start|>system\n Answer briefly. <|im_end|>\n<|im_start|>user\n')).toBe(true)
  })

  it('Phi-3: <|role|> turns ended by <|end|>, and eos_token when no generation prompt is asked for', () => {
    expect(render('phi3', noSystem.slice(0, 1))).toBe('<|user|>\nIs my MRI covered?<|end|>\n<|assistant|>\n')
    expect(render('phi3', noSystem.slice(0, 2), false)).toBe(`<|user|>\nIs my MRI covered?<|end|>\n<|assistant|>\nYes, after the deductible.<|end|>\n${GPT2_EOS}`)
  })

  it('Mistral: [INST] turns with eos after answers; roles that do not alternate are refused with the template\'s own reason', () => {
    expect(render('mistral', noSystem)).toBe(`<s>[INST] Is my MRI covered? [/INST]Yes, after the deductible.${GPT2_EOS}[INST] How much is it? [/INST]`)
    let error: unknown
    try {
      render('mistral', [noSystem[0]!, noSystem[0]!])
    } catch (e) {
      error = e
    }
    expect(hasCode(error, 'ENGINE_CHAT_TEMPLATE_FAILED')).toBe(true)
    expect((error as Error).message).toContain('Conversation roles must alternate')
  })

  it('Gemma: user/model turns, and no system role', () => {
    expect(render('gemma', noSystem.slice(0, 2))).toBe('<s><start_of_turn>user\nIs my MRI covered?<end_of_turn>\n<start_of_turn>model\nYes, after the deductible.<end_of_turn>\n<start_of_turn>model\n')
    expect(() => render('gemma', conversation)).toThrow(/System role not supported/)
  })

  it('the special tokens the templates name are single tokens of the vocabulary when they are (eos), and text otherwise', () => {
    const t = tokenizers.phi3!
    const ids = t.encode(render('phi3', noSystem.slice(0, 2), false), false)
    expect(ids.at(-1)).toBe(t.tokenToId(GPT2_EOS))
  })
})
