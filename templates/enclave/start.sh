#!/bin/sh
# Enclave entry point: the inference server on a Unix socket, bridged to vsock by socat.
set -eu
NLE_APP="${NLE_APP:-/app}"
mkdir -p "$(dirname "$NLE_SOCKET")"
socat "VSOCK-LISTEN:${NLE_VSOCK_PORT},fork,reuseaddr" "UNIX-CONNECT:${NLE_SOCKET}" &
# KMS mode (nle.runtime.json has kms.vsock): two paths out to the parent (vsock CID 3), each a Unix
# socket here. KMS traffic (TLS to KMS, via the parent's vsock-proxy) and the host role's
# credentials (the parent proxy's credentials endpoint, via the parent's socat).
kms=$(node -e '
const k = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).kms
if (k && k.vsock) console.log([k.via, k.vsock.kmsPort, k.credentialsSocket, k.vsock.credentialsPort].join(" "))
' "$NLE_APP/nle.runtime.json")
if [ -n "$kms" ]; then
  # shellcheck disable=SC2086 # four words: the runtime config schema allows no spaces in them
  set -- $kms
  mkdir -p "$(dirname "$1")" "$(dirname "$3")"
  socat "UNIX-LISTEN:$1,fork,unlink-early" "VSOCK-CONNECT:3:$2" &
  socat "UNIX-LISTEN:$3,fork,unlink-early" "VSOCK-CONNECT:3:$4" &
fi
# A sealed model (nle.runtime.json has model.sealed.vsockPort): the parent's weights server, the
# same way. What comes through it is ciphertext the server checks chunk by chunk.
weights=$(node -e '
const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).model.sealed
if (s && s.vsockPort) console.log([s.weightsSocket, s.vsockPort].join(" "))
' "$NLE_APP/nle.runtime.json")
if [ -n "$weights" ]; then
  # shellcheck disable=SC2086 # two words, as above
  set -- $weights
  mkdir -p "$(dirname "$1")"
  socat "UNIX-LISTEN:$1,fork,unlink-early" "VSOCK-CONNECT:3:$2" &
fi
exec node "$NLE_APP/nle/runtime/enclave-server/index.js" --config "$NLE_APP/nle.runtime.json" --socket "$NLE_SOCKET"
