/**
 * The chat-completions body the enclave opens and the answers it seals: OpenAI's chat shapes,
 * text only, one choice. The server validates requests with `chatRequestSchema`; the client,
 * the gateway and the chat TUI build and read these types.
 */
import {z} from 'zod'

export type ChatRole = 'system' | 'user' | 'assistant'

export interface ChatMessage {
  role: ChatRole
  content: string
}

export type ChatFinishReason = 'stop' | 'length'

/** The request, as the enclave accepts it (limits included: a hostile caller sends anything). */
export const chatRequestSchema = z.object({
  model: z.string().max(256).optional(),
  messages: z.array(z.object({role: z.enum(['system', 'user', 'assistant']), content: z.string().max(1_000_000)})).min(1).max(1024),
  stream: z.boolean().optional(),
  max_tokens: z.number().int().min(1).optional(),
  max_completion_tokens: z.number().int().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stop: z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).optional(),
  seed: z.number().int().optional(),
  n: z.literal(1).optional(),
})

export type ChatCompletionRequest = z.infer<typeof chatRequestSchema>

export interface ChatUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: {index: 0; message: {role: 'assistant'; content: string}; finish_reason: ChatFinishReason}[]
  usage: ChatUsage
}

export interface ChatCompletionChunk {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  choices: {index: 0; delta: {role?: 'assistant'; content?: string}; finish_reason: ChatFinishReason | null}[]
  usage?: ChatUsage
}

/** An error answered inside the sealed channel (only the client can read it). */
export interface SealedErrorBody {
  /**
   * `context` and `promptTokens` (ENGINE_PROMPT_TOO_LONG only): the model's context and the
   * prompt's size in tokens, so that the client can say so and keep a conversation within it.
   */
  error: {code: string; message: string; context?: number; promptTokens?: number}
}
