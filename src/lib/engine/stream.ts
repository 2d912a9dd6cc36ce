// Turning a growing list of token ids into text deltas that never split a UTF-8 character and
// never show any part of a stop string.

/** What the engine needs of a tokenizer here. */
export interface Decoder {
  decode(ids: readonly number[]): string
}

const REPLACEMENT = '\uFFFD'

/**
 * Incremental detokenizer (the prefix/read offset scheme of text-generation-inference): decodes a
 * short window of ids and emits only text that is complete. A byte-level token that holds part of a
 * multi-byte character decodes to U+FFFD; such text is held until the character is complete.
 */
export class IncrementalDecoder {
  private readonly ids: number[] = []
  private prefixOffset = 0
  private readOffset = 0

  constructor(private readonly tokenizer: Decoder) {}

  /** Adds one token; returns the newly complete text ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id)
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset))
    const newText = this.tokenizer.decode(this.ids.slice(this.prefixOffset))
    if (newText.length > prefixText.length && !newText.endsWith(REPLACEMENT) && newText.startsWith(prefixText)) {
      this.prefixOffset = this.readOffset
      this.readOffset = this.ids.length
      return newText.slice(prefixText.length)
    }
    return ''
  }

  /** At the end: whatever is still held (an incomplete character decodes to U+FFFD). */
  flush(): string {
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset))
    const newText = this.tokenizer.decode(this.ids.slice(this.prefixOffset))
    this.prefixOffset = this.readOffset = this.ids.length
    return newText.startsWith(prefixText) ? newText.slice(prefixText.length) : ''
  }
}

/**
 * Holds back text that could be the start of a stop string and finds the first stop string.
 * `push` returns the text safe to emit and, when a stop string appeared, which one (the text
 * before it is returned; the stop string and anything after it are not).
 */
export class StopMatcher {
  private text = ''
  private emitted = 0
  private readonly maxLen: number

  constructor(private readonly stops: readonly string[]) {
    this.maxLen = Math.max(0, ...stops.map((s) => s.length))
  }

  push(delta: string): {text: string; stop?: string} {
    this.text += delta
    if (this.stops.length === 0) return this.take(this.text.length)
    const from = Math.max(0, this.emitted - this.maxLen + 1)
    let at = -1
    let which: string | undefined
    for (const s of this.stops) {
      const i = this.text.indexOf(s, from)
      if (i !== -1 && (at === -1 || i < at)) {
        at = i
        which = s
      }
    }
    if (which !== undefined) return {...this.take(at), stop: which}
    let hold = 0
    for (let n = Math.min(this.maxLen - 1, this.text.length - this.emitted); n > 0; n--) {
      const tail = this.text.slice(this.text.length - n)
      if (this.stops.some((s) => s.startsWith(tail))) {
        hold = n
        break
      }
    }
    return this.take(this.text.length - hold)
  }

  /** At the end (no stop string seen): everything held back. */
  flush(): string {
    return this.take(this.text.length).text
  }

  private take(end: number): {text: string} {
    const out = this.text.slice(this.emitted, Math.max(end, this.emitted))
    this.emitted = Math.max(end, this.emitted)
    return {text: out}
  }
}

/** Runs a generation stream to its end and returns its result (`generate` of both engines). */
export async function toEnd<T>(it: AsyncGenerator<unknown, T, void>): Promise<T> {
  for (;;) {
    const r = await it.next()
    if (r.done) return r.value
  }
}
