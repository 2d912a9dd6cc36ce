import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {type RunModelResult, runModel} from '../../lib/engine/index.js'
import {DTYPES} from '../../lib/model/index.js'

export default class ModelRun extends BaseCommand<typeof ModelRun> {
  static override summary = 'Generate text on this machine with the engine the enclave runs.'
  static override description = `Loads a model folder (as \`nle model save\` or \`nle model synth\` writes it; a saved model runs the file its manifest names) and continues a prompt, chat messages (through the model's chat template) or token ids. Greedy by default (--temperature 0), so a run is reproducible and can be checked against a reference; with a temperature, --seed makes sampling reproducible and the seed used is reported.
The text streams to stdout as it is generated; timings go to stderr. With --json nothing streams: one JSON object gives the prompt and generated token ids, the text, why generation stopped, the seed and the metrics (TTFT, prefill and decode tokens per second).
Nothing leaves this machine; this is not the attested path (\`nle chat\` is).`
  static override examples = [
    '<%= config.bin %> model run model --prompt "The patient reports"',
    '<%= config.bin %> model run model --messages conversation.json --max-tokens 128',
    '<%= config.bin %> model run ../shared/testdata/models/llama --ids 15496,11,616,1438,318 --max-tokens 20 --json',
    'echo \'[{"role":"user","content":"Hi"}]\' | <%= config.bin %> model run model --messages - --temperature 0.7 --seed 1',
  ]
  static override args = {
    dir: Args.directory({description: 'The model folder.', required: true, exists: true}),
  }
  static override flags = {
    prompt: Flags.string({description: 'Text to continue.', exactlyOne: ['prompt', 'messages', 'ids']}),
    messages: Flags.string({description: 'A JSON file of chat messages, [{"role", "content"}, …] (- for standard input), rendered by the chat template.'}),
    ids: Flags.string({description: 'Prompt token ids, separated by commas.'}),
    'max-tokens': Flags.integer({description: 'Most tokens to generate (also bounded by the context).', default: 64, min: 1}),
    temperature: Flags.string({description: 'Sampling temperature, 0 to 2; 0 is greedy.', default: '0'}),
    seed: Flags.integer({description: 'Seed for sampling (drawn at random and reported when not given).', min: 0}),
    dtype: Flags.option({options: DTYPES, description: "Which ONNX variant (default: the saved model's manifest, else fp32)."})(),
    threads: Flags.integer({description: 'Intra-op threads (default: every CPU of this machine).', min: 1}),
  }

  async run(): Promise<RunModelResult> {
    const {flags, args} = this
    const temperature = Number(flags.temperature)
    const input = flags.prompt !== undefined ? {prompt: flags.prompt} : flags.ids !== undefined ? {ids: flags.ids} : {messagesFile: flags.messages as string}
    const streaming = !this.jsonEnabled()
    const result = await runModel({
      dir: args.dir,
      input,
      maxTokens: flags['max-tokens'],
      temperature,
      ...(flags.seed === undefined ? {} : {seed: flags.seed}),
      ...(flags.dtype === undefined ? {} : {dtype: flags.dtype}),
      ...(flags.threads === undefined ? {} : {threads: flags.threads}),
      ...(streaming ? {onText: (text: string) => void process.stdout.write(text)} : {}),
    })
    if (streaming) {
      process.stdout.write('\n')
      const m = result.metrics
      process.stderr.write(
        `${m.promptTokens} prompt + ${m.generatedTokens} generated tokens (${result.finishReason}); TTFT ${m.ttftMs.toFixed(0)} ms, decode ${m.decodeTokensPerSecond.toFixed(1)} tok/s; ${result.model.dtype} ${result.model.onnxFile}${temperature > 0 ? `, seed ${result.seed}` : ''}\n`,
      )
    }
    return result
  }
}
