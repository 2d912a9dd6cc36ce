/**
 * The one source of truth for `nle.yaml`. Validation (src/lib/config/load.ts), the committed
 * JSON Schema (schema/nle.schema.json, for editor completion) and the TypeScript type all come
 * from this definition. Every object is strict: an unknown key is an error, never ignored.
 */
import {z} from 'zod'

import {DTYPES} from '../model/layout.js'
import {PRESET_NAMES} from '../model/synth-presets.js'

const positiveInt = z.number().int().positive()
const path = z.string().min(1)

export const CONFIG_VERSION = 1

const modelSchema = z
  .strictObject({
    source: z
      .enum(['local', 'hub', 'synth'])
      .default('synth')
      .describe('Where the model comes from: a local Hugging Face ONNX folder, the Hugging Face Hub, or the generated test model.'),
    path: path.default('model').describe('Folder the saved model lives in (relative to nle.yaml).'),
    repo: z.string().min(1).optional().describe('Hugging Face repo id when source is hub, e.g. "bigscience/bloom-560m".'),
    revision: z.string().min(1).optional().describe('Hub revision (commit sha preferred) when source is hub.'),
    dtype: z.enum(DTYPES).default('fp32').describe('Which ONNX variant to use, as transformers.js names them: fp32 (onnx/model.onnx), fp16, q8 (model_quantized), int8, uint8, q4, q4f16, bnb4.'),
    preset: z
      .enum(PRESET_NAMES)
      .default('tiny')
      .describe('Generated model preset when source is synth: tiny (GPT-2, tests), gpt2-medium, llama-tiny, llama-0.5b (Qwen2.5-0.5B\'s shape, 1.8 GB).'),
    digest: z
      .string()
      .regex(/^sha256:[0-9a-f]{64}$/)
      .optional()
      .describe('Expected sha256 of the model manifest ("sha256:<hex>"); the build fails when it differs.'),
    sealed: z
      .boolean()
      .default(false)
      .describe('Keep the weights out of the image: the enclave streams them, sealed (`nle model seal`), from the parent at start and only it can open them (KMS Decrypt with its attestation).'),
    sealedPath: path.default('model.sealed').describe('Folder of the sealed model files (`nle model seal` writes it; relative to nle.yaml).'),
    weightsVsockPort: z
      .number()
      .int()
      .min(1)
      .max(4294967295)
      .default(8003)
      .describe('Sealed model: vsock port of the parent\'s weights server, which serves the sealed files to the enclave.'),
  })
  .describe('The model the enclave serves.')

const enclaveSchema = z
  .strictObject({
    cpuCount: positiveInt.default(2).describe('vCPUs given to the enclave (nitro-cli --cpu-count).'),
    memoryMiB: z
      .union([z.literal('auto'), positiveInt])
      .default('auto')
      .describe('Enclave memory in MiB, or "auto" (at least 4x the EIF size plus the model working set).'),
    cid: z.number().int().min(4).max(4294967294).default(16).describe('Enclave vsock CID (nitro-cli --enclave-cid).'),
    debug: z.boolean().default(false).describe('Debug mode: console access, but PCRs read as zeros and attestation is refused by default.'),
    vsockPort: z.number().int().min(1).max(4294967295).default(5000).describe('vsock port the enclave server listens on.'),
  })
  .describe('Enclave resources.')

const kmsSchema = z
  .strictObject({
    keyId: z.string().min(1).optional().describe('KMS key id, alias ("alias/…") or ARN.'),
    modelKeyId: z
      .string()
      .min(1)
      .optional()
      .describe('KMS key id, alias or ARN of a separate key that seals the model (model.sealed); when absent the project key kms.keyId seals it. `nle policy apply|check` treat its policy like the project key\'s (only the attested enclave may Decrypt).'),
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/).optional().describe('AWS region of the key, e.g. "eu-west-1".'),
    hostRoleArn: z
      .string()
      .regex(/^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/)
      .optional()
      .describe('IAM role the enclave host runs as; the key policy lets only this role decrypt, and only with attestation.'),
    keepPrevious: z.number().int().min(0).max(10).default(1).describe('Previous measurement sets kept in the key policy during a rollout.'),
    operations: z
      .array(z.enum(['Decrypt', 'GenerateDataKey', 'GenerateRandom']))
      .min(1)
      .default(['Decrypt'])
      .describe('KMS operations the attested enclave may call.'),
    vsockPort: z
      .number()
      .int()
      .min(1)
      .max(4294967295)
      .default(8001)
      .describe('KMS mode: vsock port of the parent\'s vsock-proxy to kms.<region>.amazonaws.com:443 (not 8000, which AWS\'s own nitro-enclaves-vsock-proxy.service takes).'),
    credentialsVsockPort: z
      .number()
      .int()
      .min(1)
      .max(4294967295)
      .default(8002)
      .describe('KMS mode: vsock port of the parent\'s bridge to the parent proxy\'s credentials endpoint (proxy.credentials.socket).'),
  })
  .describe('The KMS key that guards the enclave\'s secrets.')

const proxySchema = z
  .strictObject({
    host: z.string().min(1).default('0.0.0.0').describe('Address the parent proxy listens on.'),
    port: z.number().int().min(1).max(65535).default(8443).describe('TCP port of the parent proxy.'),
    tls: z
      .strictObject({
        cert: path.describe('PEM certificate chain.'),
        key: path.describe('PEM private key.'),
      })
      .optional()
      .describe('TLS for the proxy. Without it the dev stack makes a self-signed certificate.'),
    bodyLimitBytes: positiveInt.default(1_048_576).describe('Largest request body the proxy accepts.'),
    concurrency: positiveInt.default(4).describe('Requests forwarded to the enclave at once; more wait or get 429.'),
    queue: z.number().int().min(0).default(16).describe('Requests that may wait for a free slot; beyond them the proxy answers 429.'),
    upstreamTimeoutMs: positiveInt.default(60_000).describe('Time the enclave has to start answering (504 after it), and the longest pause inside a streamed answer.'),
    drainTimeoutMs: z.number().int().min(0).default(10_000).describe('On shutdown, how long in-flight streams may finish before they are cut.'),
    maxConnections: positiveInt.default(512).describe('Client connections open at once; beyond them a new connection is closed on accept.'),
    maxConnectionsPerClient: positiveInt.default(128).describe('Client connections open at once from one address (IPv6: one /64); above the 64 an nle client opens.'),
    maxBufferedBytes: positiveInt.default(33_554_432).describe('Request-body bytes the proxy holds at once; a body that does not fit is refused unread (429 + Retry-After).'),
    headersTimeoutMs: positiveInt.default(10_000).describe('Time a client has for the TLS handshake and the request headers (408 and closed after it).'),
    requestTimeoutMs: positiveInt.default(30_000).describe('Time a client has to send its whole request, body included (408 and closed after it).'),
    httpPort: z.number().int().min(0).max(65535).optional().describe('Also serve plain HTTP on 127.0.0.1 at this port (loopback only, for local tools).'),
    upstreams: z
      .array(path)
      .min(1)
      .optional()
      .describe('Enclave server sockets (Unix socket paths) to forward to, round-robin; --upstream overrides.'),
    credentials: z
      .strictObject({
        socket: path.describe('Unix socket (mode 0600) of the endpoint; the enclave reaches it over vsock (kms.credentialsVsockPort).'),
        source: z
          .enum(['env', 'imds'])
          .default('imds')
          .describe('imds: the instance role through IMDSv2 (an EC2 host); env: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN of the proxy process.'),
      })
      .optional()
      .describe('KMS mode: serve the host role\'s AWS credentials to the enclave (GET /v1/credentials), on a Unix socket only; --credentials-socket/--credentials-source override.'),
  })
  .describe('The parent-side proxy on the host.')

const runtimeSchema = z
  .strictObject({
    threads: z.union([z.literal('auto'), positiveInt]).default('auto').describe('Inference threads ("auto" = enclave vCPUs).'),
    maxTokens: positiveInt.max(32_768).default(256).describe('Upper bound on generated tokens per answer.'),
    sampling: z
      .strictObject({
        temperature: z.number().min(0).max(2).default(0.7),
        topP: z.number().gt(0).max(1).default(0.95),
        topK: z.number().int().min(0).default(50),
      })
      .prefault({})
      .describe('Default sampling; a request may override within these bounds.'),
  })
  .describe('The inference runtime inside the enclave.')

const buildSchema = z
  .strictObject({
    builder: z.enum(['docker', 'native']).default('docker').describe('docker + nitro-cli, or nle\'s docker-free native builder.'),
    blobs: z
      .string()
      .min(1)
      .optional()
      .describe('native builder: the kernel, init and nsm.ko: nitro (/usr/share/nitro_enclaves/blobs), qemu (the local QEMU kernel of scripts/qemu-nitro.sh), placeholder (not bootable) or a folder like nitro-cli\'s. Unset: NITRO_CLI_BLOBS, else nitro-cli\'s folder if present, else placeholder.'),
    imageTag: z.string().min(1).default('nle-enclave:latest').describe('Docker image tag of the enclave image.'),
    eifPath: path.default('build/enclave.eif').describe('Where the EIF is written.'),
    lockfile: path.default('nle.lock.json').describe('The measurements lockfile.'),
    signing: z
      .strictObject({
        certificate: path.describe('PEM signing certificate (its hash becomes PCR8).'),
        privateKey: path.describe('PEM EC private key (P-256 or P-384).'),
      })
      .optional()
      .describe('Sign the EIF.'),
  })
  .describe('How the enclave image is built.')

export const configSchema = z
  .strictObject({
    version: z.literal(CONFIG_VERSION).describe('Config format version.'),
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, at most 63')
      .describe('Project name; names the image, the KMS policy statements and the systemd units.'),
    model: modelSchema.prefault({}),
    enclave: enclaveSchema.prefault({}),
    kms: kmsSchema.prefault({}),
    proxy: proxySchema.prefault({}),
    runtime: runtimeSchema.prefault({}),
    build: buildSchema.prefault({}),
  })
  .describe('nle project configuration (nle.yaml).')

export type NleConfig = z.output<typeof configSchema>
export type NleConfigInput = z.input<typeof configSchema>

/** The JSON Schema of nle.yaml's input form (defaults shown, nothing required that has one). */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(configSchema, {io: 'input', target: 'draft-2020-12'}),
    title: 'nle.yaml',
  }
}
