# Shared helpers for the ops scripts. Source it; do not run it.
#   ROOT            repository root
#   nats_start DIR PORT HTTP_PORT   start a private JetStream server storing
#                   under DIR (wiped first); sets NATS_PID; waits until ready
#   nats_stop       stop the server started by nats_start (if any)
#   nats_cluster_start DIR   start a three-server JetStream cluster on free
#                   ports storing under DIR (wiped first); sets NATS_PIDS
#                   and NATS_URLS (comma-separated); waits until each is ready
#   nats_cluster_stop   stop it
#   free_port       print a free TCP port on 127.0.0.1
#   port_in_use P   true if something listens on 127.0.0.1:P
#   as_root CMD...  run CMD as root (directly, or through sudo)
#   apt_install PKG...  install the Debian packages that are missing

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
NATS_PID=""

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root for: $*"
    fi
}

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "please install: ${missing[*]}"
    printf 'installing %s\n' "${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
        as_root apt-get update -q >/dev/null
        as_root apt-get install -y -q "${missing[@]}" >/dev/null
    fi
}

ensure_tools() {
    "$ROOT/ops/install-tools.sh"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_in_use() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

# wait_http URL TIMEOUT_SECONDS: poll until URL answers 200.
wait_http() {
    python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

nats_start() {
    local dir="$1" port="$2" http="$3"
    rm -rf "$dir"
    mkdir -p "$dir/jetstream"
    cat > "$dir/nats.conf" <<CONF
listen: 127.0.0.1:$port
http: 127.0.0.1:$http
max_payload: 8MB
jetstream {
    store_dir: "$dir/jetstream"
    max_memory_store: 256MB
}
CONF
    "$ROOT/.tools/bin/nats-server" -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    NATS_PID=$!
    if ! wait_http "http://127.0.0.1:$http/healthz?js-enabled-only=true" 30; then
        tail -n 20 "$dir/nats.log" >&2 || true
        nats_stop
        die "nats-server on 127.0.0.1:$port did not become ready (log: $dir/nats.log)"
    fi
}

nats_cluster_start() {
    local dir="$1" i port http routes="" members=()
    rm -rf "$dir"
    NATS_PIDS=() NATS_URLS=""
    local -a cluster_ports
    for i in 1 2 3; do cluster_ports+=("$(free_port)"); done
    for i in 0 1 2; do routes+="${routes:+,}nats-route://127.0.0.1:${cluster_ports[$i]}"; done
    for i in 1 2 3; do
        port=$(free_port) http=$(free_port)
        mkdir -p "$dir/n$i/jetstream"
        cat > "$dir/n$i/nats.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$port
http: 127.0.0.1:$http
max_payload: 8MB
jetstream {
    store_dir: "$dir/n$i/jetstream"
    max_memory_store: 256MB
}
cluster {
    name: bench
    listen: 127.0.0.1:${cluster_ports[$((i - 1))]}
    routes: [$routes]
}
CONF
        "$ROOT/.tools/bin/nats-server" -c "$dir/n$i/nats.conf" >"$dir/n$i/nats.log" 2>&1 &
        NATS_PIDS+=("$!")
        members+=("$http")
        NATS_URLS+="${NATS_URLS:+,}nats://127.0.0.1:$port"
    done
    for http in "${members[@]}"; do
        if ! wait_http "http://127.0.0.1:$http/healthz" 30; then
            nats_cluster_stop
            die "a cluster member did not become ready (logs: $dir/n*/nats.log)"
        fi
    done
}

nats_cluster_stop() {
    local pid
    for pid in "${NATS_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${NATS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    NATS_PIDS=()
}

nats_stop() {
    if [[ -n "$NATS_PID" ]]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        NATS_PID=""
    fi
}
