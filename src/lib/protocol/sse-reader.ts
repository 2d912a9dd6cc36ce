/**
 * Reading server-sent events with eventsource-parser (any line ending, comments, multi-line
 * data), bounded: an event that grows past the limit without ending stops the stream instead of
 * growing the reader's memory.
 */
import {type EventSourceMessage, createParser} from 'eventsource-parser'

export class SseTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`An event is larger than ${limit} bytes.`)
  }
}

/** Events out of a stream of text, whatever its chunking. */
export class SseReader {
  private readonly parser
  private events: EventSourceMessage[] = []
  private tooLarge = false

  constructor(private readonly maxEventBytes: number) {
    this.parser = createParser({
      maxBufferSize: maxEventBytes,
      onEvent: (event) => this.events.push(event),
      onError: (error) => {
        if (error.type === 'max-buffer-size-exceeded') this.tooLarge = true
      },
    })
  }

  /** The events completed by this chunk; throws SseTooLarge once one grows past the limit. */
  push(text: string): EventSourceMessage[] {
    if (this.tooLarge) throw new SseTooLarge(this.maxEventBytes)
    try {
      this.parser.feed(text)
    } catch (error) {
      if (!this.tooLarge) throw error
    }
    if (this.tooLarge) throw new SseTooLarge(this.maxEventBytes)
    const out = this.events
    this.events = []
    return out
  }
}
