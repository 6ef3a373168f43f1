#!/usr/bin/env bash
# A three-server NATS cluster on this host, for trying a fleet that
# survives the loss of a server (`ops/just cluster`, from the repository
# root). Starts n1, n2 and n3 (ops/cluster/n*.conf: clients on 4222-4224,
# routes on 6222-6224, monitoring on 8222-8224, stores under var/cluster),
# lays every stream and the object bucket out on three replicas with
# `domsetup streams --replicas 3`, prints the server list for --server and
# DOM_SERVER, and runs until Ctrl-C, which stops all three. Stop one with
# `kill -9 $(cat var/cluster/n1.pid)` and start it again with
# `ops/cluster/run.sh start n1`. See docs/SCALING.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$ROOT"
NATS="$ROOT/.tools/bin/nats-server"
SERVERS="nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224"
mkdir -p var/cluster

start() {
    local n="$1"
    "$NATS" -c "ops/cluster/$n.conf" >>"var/cluster/$n.log" 2>&1 &
    echo $! >"var/cluster/$n.pid"
    printf 'started %s (pid %s, log var/cluster/%s.log)\n' "$n" "$!" "$n"
}

if [[ "${1:-}" == start ]]; then
    start "${2:?which member: n1, n2 or n3}"
    exit 0
fi

ensure_tools
for port in 4222 4223 4224; do
    ! port_in_use "$port" || die "port $port is in use: is a server (ops/just nats) running?"
done
cargo build --release --quiet --bin domsetup
stop_all() {
    for n in n1 n2 n3; do
        [[ -f "var/cluster/$n.pid" ]] && kill "$(cat "var/cluster/$n.pid")" 2>/dev/null || true
        rm -f "var/cluster/$n.pid"
    done
}
trap stop_all EXIT
trap 'exit 130' INT TERM
for n in n1 n2 n3; do start "$n"; done

# The cluster elects its JetStream leader a moment after the servers
# start; until then domsetup's requests find no one to answer.
for _ in $(seq 60); do
    if target/release/domsetup streams --server "$SERVERS" --replicas 3 2>/dev/null; then
        printf '\nthe cluster is up; point every tool at it with\n  export DOM_SERVER=%s\n' "$SERVERS"
        printf 'Ctrl-C stops all three servers.\n'
        wait
        exit 0
    fi
    sleep 1
done
die "the cluster did not elect a JetStream leader within a minute (logs: var/cluster/*.log)"
