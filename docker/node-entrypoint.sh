#!/bin/sh
# The node container's entry point (docker/node.Dockerfile, docs/nodes.md).
# `d4c-node` alone: start transmission-daemon (config in /data/.transmission, RPC on
# 127.0.0.1:9091 without a password, since only this container reaches it), then sync
# every $D4C_NODE_EVERY (default 30m). `d4c-node d4c node init ...` or any other command:
# run it instead.
set -eu
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
if [ ! -f "${D4C_NODE_CONFIG}" ]; then
    echo "error: no node config at ${D4C_NODE_CONFIG} (hint: run the image once with \`d4c node init ...\`, docs/nodes.md)" >&2
    exit 1
fi
mkdir -p /data/.transmission
transmission-daemon --config-dir /data/.transmission --rpc-bind-address 127.0.0.1 --port 9091 \
    --no-auth --allowed 127.0.0.1 --peerport "${D4C_PEER_PORT:-51413}" --no-portmap \
    --logfile /data/.transmission/log
exec d4c node sync --every "${D4C_NODE_EVERY:-30m}"
