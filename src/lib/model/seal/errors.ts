/**
 * Error codes of sealed models (`nle model seal`, the weights server, the enclave opening them).
 * Each way a sealed model can be wrong has its own code, so a start-up that stops says which.
 * Messages name files and chunk numbers, never a byte of a key or of the weights.
 */
import {ExitCode, NleError, type NleErrorOptions, defineErrors} from '../../errors.js'

const {IO, CONFIG, VERIFY, USAGE, NETWORK} = ExitCode

export const SEAL_ERRORS = defineErrors({
  SEAL_SOURCE_INVALID: {exit: IO, summary: '`nle model seal`: the model folder has no valid nle-model.json, or a file it lists is missing or changed.', hint: 'Save the model with `nle model save` (or `nle model synth`), then seal it'},
  SEAL_OUTPUT_EXISTS: {exit: IO, summary: '`nle model seal`: the output folder already holds files.', hint: 'Pass --force to replace it, or choose another model.sealedPath / --out'},
  SEAL_WRITE_FAILED: {exit: IO, summary: '`nle model seal` could not write the sealed files.', hint: 'Check free space and permissions of the output folder'},
  SEAL_NO_KEY: {exit: CONFIG, summary: 'No KMS key to seal under: kms.modelKeyId and kms.keyId are unset.', hint: 'Set kms.keyId (and kms.region) in nle.yaml, or pass --key-id'},
  SEAL_KEY_GENERATE_FAILED: {exit: NETWORK, summary: 'KMS GenerateDataKey failed, so no data key was made; nothing was written.', hint: 'Check the key, the region and your credentials (`nle doctor --for policy`); details carry the AWS error name'},
  SEAL_MANIFEST_INVALID: {exit: CONFIG, summary: 'The sealed manifest (nle-sealed.json) is missing, not JSON of this format, or inconsistent with the model manifest it carries.', hint: 'Seal the model again with `nle model seal` and rebuild'},
  SEAL_MODEL_MISMATCH: {exit: VERIFY, summary: 'The sealed manifest names another model than the one pinned (its model manifest digest differs).', hint: 'The sealed files are of another model: seal the pinned model (`nle model seal`) and rebuild, or fix model.digest'},
  SEAL_KEY_REFUSED: {exit: VERIFY, summary: 'KMS refused to release the model\'s data key to this enclave (key policy, encryption context or the wrapped key).', hint: 'The key policy must admit these PCRs for the host role (`nle policy check`, `nle policy apply`); a key sealed for another model does not open'},
  SEAL_KEY_UNAVAILABLE: {exit: NETWORK, summary: 'KMS could not be reached from the enclave to unwrap the model\'s data key.', hint: 'Check the parent\'s KMS vsock-proxy and credentials endpoint (or, in dev, the local KMS endpoint)'},
  SEAL_WEIGHTS_UNAVAILABLE: {exit: IO, summary: 'The parent\'s weights server could not be reached, or did not serve a sealed file.', hint: 'Check that the weights server runs (`nle status`) and serves the folder `nle model seal` wrote'},
  SEAL_CHUNK_TAMPERED: {exit: VERIFY, summary: 'A sealed chunk does not authenticate: its bytes were changed (or are of no chunk of this model).', hint: 'The sealed files on the host were altered: seal the model again, or restore the files'},
  SEAL_CHUNK_REORDERED: {exit: VERIFY, summary: 'A sealed chunk arrived at another position of its file (chunks reordered or dropped).', hint: 'The sealed files on the host were altered: restore them or seal the model again'},
  SEAL_CHUNK_SWAPPED: {exit: VERIFY, summary: 'A sealed chunk of one file arrived in another file\'s place (files swapped).', hint: 'The sealed files on the host were altered: restore them or seal the model again'},
  SEAL_TRUNCATED: {exit: VERIFY, summary: 'A sealed file ended before its last chunk (truncated), or had bytes past it.', hint: 'The sealed files on the host are incomplete: copy them again, or seal the model again'},
  SEAL_FILE_DIGEST_MISMATCH: {exit: VERIFY, summary: 'A model file opened from its chunks does not match its sha256 in the model manifest.', hint: 'The model was changed after `nle model save`: save and seal it again'},
  SEAL_LIMIT: {exit: USAGE, summary: 'The weights server refused a request over its limits (unknown file, method, too many at once).', hint: 'Only the enclave should talk to the weights server; it asks for the files of nle-sealed.json one at a time'},
})

export type SealErrorCode = keyof typeof SEAL_ERRORS

export function sealError(code: SealErrorCode, message: string, options: NleErrorOptions = {}): NleError<SealErrorCode> {
  return new NleError(code, message, options)
}
