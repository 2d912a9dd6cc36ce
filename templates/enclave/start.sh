#!/bin/sh
# Enclave entry point: the inference server on a Unix socket, bridged to vsock by socat.
set -eu
mkdir -p "$(dirname "$NLE_SOCKET")"
socat "VSOCK-LISTEN:${NLE_VSOCK_PORT},fork,reuseaddr" "UNIX-CONNECT:${NLE_SOCKET}" &
exec node /app/nle/runtime/enclave-server/index.js --config /app/nle.runtime.json --socket "$NLE_SOCKET"
