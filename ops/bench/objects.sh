#!/usr/bin/env bash
# Where objects live, compared: `imagetool add` of a corpus into a fresh
# store, then `imagetool get` of the image into an empty directory (every
# object fetched and checked), with the objects in the NATS bucket, in an
# S3-compatible server (moto, as in the tests) and in a local directory.
# The real release binary with its default flags, BENCH_RUNS times each
# (default 3); the median and MB/s (10^6 bytes of regular files a second)
# of each, on stdout and in .bench/objects.md.
#
#   ops/bench/objects.sh [CORPUS]      (default .bench/synth; see corpora.sh)
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CORPUS="$(cd "${1:-$ROOT/.bench/synth}" && pwd -P)"
RUNS="${BENCH_RUNS:-3}"
TMP="$ROOT/.bench/tmp/objects"
IMAGETOOL="$ROOT/target/release/imagetool"
NATS_SERVER="${NATS_SERVER:-$ROOT/.tools/bin/nats-server}"
MOTO="${MOTO_SERVER:-$ROOT/.tools/bin/moto_server}"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1

(cd "$ROOT" && cargo build -q --release -p imagetool)
[[ -x "$MOTO" ]] || "$ROOT/ops/install-tools.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
now() { date +%s.%N; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

bytes="$(find "$CORPUS" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')"
files="$(find "$CORPUS" -type f | wc -l)"

# One run: a fresh nats-server (and store), add, then get; prints "add get".
run() { # BACKEND
    local backend="$1" dir port objects=()
    dir="$(mktemp -d "$TMP/run.XXXXXX")"
    port="$(free_port)"
    "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$dir/nats" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$port"
    case "$backend" in
        s3)
            local s3port; s3port="$(free_port)"
            "$MOTO" -H 127.0.0.1 -p "$s3port" >/dev/null 2>&1 &
            pids+=($!)
            wait_port "$s3port"
            curl -sf -X PUT "http://127.0.0.1:$s3port/bench" >/dev/null
            objects=(--objects s3://bench/objects --s3-endpoint "http://127.0.0.1:$s3port") ;;
        dir) objects=(--objects "file://$dir/objects") ;;
    esac
    local t0 t1 t2
    t0="$(now)"
    "$IMAGETOOL" --server "nats://127.0.0.1:$port" "${objects[@]}" --quiet add --no-hash-cache \
        bench.0 "$CORPUS" "" "" >/dev/null
    t1="$(now)"
    "$IMAGETOOL" --server "nats://127.0.0.1:$port" "${objects[@]}" --quiet get bench.0 "$dir/out" >/dev/null
    t2="$(now)"
    cleanup; pids=()
    rm -rf "$dir"
    echo "$(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1" | bc)"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

mkdir -p "$TMP"
out="$ROOT/.bench/objects.md"
{
    echo "corpus $(basename "$CORPUS"): $files files, $bytes bytes; $RUNS runs; $(nproc) cores"
    echo
    echo "| objects in | add (median) | add MB/s | get (median) | get MB/s | add runs | get runs |"
    echo "|---|---|---|---|---|---|---|"
} | tee "$out"
for backend in nats s3 dir; do
    adds=() gets=()
    for _ in $(seq "$RUNS"); do
        read -r a g < <(run "$backend")
        adds+=("$a"); gets+=("$g")
    done
    a="$(printf '%s\n' "${adds[@]}" | median)"
    g="$(printf '%s\n' "${gets[@]}" | median)"
    printf '| %s | %.2f s | %.0f | %.2f s | %.0f | %s | %s |\n' "$backend" "$a" \
        "$(echo "$bytes / $a / 1000000" | bc -l)" "$g" "$(echo "$bytes / $g / 1000000" | bc -l)" \
        "$(printf '%.2f ' "${adds[@]}")" "$(printf '%.2f ' "${gets[@]}")" | tee -a "$out"
done
