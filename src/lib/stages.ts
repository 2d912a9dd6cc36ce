/**
 * The stages of a long command (`nle build`, `nle model synth`), timed: what `--json` reports as
 * `stages: [{stage, label, ms}]` (the shape `nle demo` gives its steps) and what the CLI draws on
 * a terminal as each one starts and ends. No rendering here.
 */
export interface StageTiming {
  /** A stable id (scripts match on it). */
  stage: string
  /** What a person reads. */
  label: string
  ms: number
}

export type StageListener = (stage: string, label: string) => void

export class StageClock {
  readonly done: StageTiming[] = []
  private current: {stage: string; label: string; t0: number} | undefined

  constructor(private readonly onStart?: StageListener) {}

  /** Ends the stage in progress (if any) and starts this one. */
  start(stage: string, label: string): void {
    this.end()
    this.current = {stage, label, t0: performance.now()}
    this.onStart?.(stage, label)
  }

  /** Ends the stage in progress; returns every stage timed so far. */
  end(): StageTiming[] {
    if (this.current) {
      this.done.push({stage: this.current.stage, label: this.current.label, ms: Math.round(performance.now() - this.current.t0)})
      this.current = undefined
    }
    return this.done
  }
}
