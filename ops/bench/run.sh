#!/usr/bin/env bash
# Benchmark `imagetool add` against the usual ways of hashing/storing a tree.
#
#   ops/just bench                      (or ops/bench/run.sh)
#
# For each corpus (see corpora.sh), with a warm page cache, BENCH_RUNS times:
#   sha512sum  find DIR -type f -print0 | xargs -0 -n128 -P2 sha512sum
#   ostree     ostree commit into a fresh bare-user repo (fsync off)
#   imagetool  imagetool add into a fresh nats-server (first add)
# and for synth, right after its first add into the same server:
#   re-add     imagetool add of synth-1pct (1% of files changed), with the
#              hash cache the first add filled
#   re-add (no cache)  the same with --no-hash-cache: every byte hashed again
# Medians and throughput (MB/s = 10^6 bytes of regular files per second) go
# to stdout and .bench/results.md.
#
#   scan       the agent's full scan (every file read and hashed, no hash
#              cache), uncapped; and once per corpus rate limited to
#              BENCH_SCAN_RATE bytes/s (default 100 MB/s), to check the rate
#              holds
#   converge   (synth, needs imagetool) converging a machine holding synth to
#              the synth-1pct image as the agent does (its hash cache warm:
#              scan, plan, fetch, update), against rsync -a --delete
#              --checksum; fetching all of synth from the bucket into an
#              empty object cache; and the time services are down in an
#              update changing 1,000 files
# and once, after the corpora, not per corpus:
#   pipeline   a release pipeline's imagetool commands (ops/bench/pipeline.py)
#              on BENCH_PIPELINE_CORPUS (default debian-minbase), the
#              release binaries with their default flags against a fresh
#              nats-server: adds from a running agent (against rsync -a),
#              copy, addi, addrep, tar (against GNU tar -czf), the archive
#              added back, diff, get-file-in-image, estimate-usage, and
#              find-latest-image and list among 10,000 more images
#   fleet      BENCH_FLEET_AGENTS agents (default 1,000) and the dominator in
#              one process: the time from one MDB record per machine to
#              every agent compliant; then the dominator alone with
#              BENCH_FLEET_MACHINES machines (default 100,000) in the MDB:
#              the time to publish their desired states for a fleet-wide
#              image change, and its memory
#   e2e        end to end, as a user runs it (ops/bench/e2e.py): nats-server,
#              imagetool, the dominator and each agent in processes of their
#              own with their default flags; from an MDB publish to the
#              state report saying compliant, and to the files in place, for
#              a machine on synth moved to synth-1pct, first deploys of
#              debian-minbase and synth, the synth change during a full
#              rehash, and BENCH_E2E_AGENTS agents (default 100) moved at
#              once; with rsync -a (a first copy of synth) and ostree
#              pull-local --untrusted (of a repository holding synth) as
#              comparisons, and rsync --checksum from converge
# Environment: BENCH_RUNS (default 5), BENCH_CORPORA (default
# "debian-minbase synth"), BENCH_TOOLS (default "sha512sum ostree imagetool
# scan converge fleet pipeline e2e"), BENCH_FLEET_DIR (where the fleet's machines
# live, and e2e's hundred agents' under it; default /dev/shm when it is a
# memory file system, else under .bench), BENCH_E2E_AGENTS (100),
# BENCH_E2E_TIMEOUT (seconds a case may take, 300), BENCH_E2E_CASES
# (default "b,c,a,d,e"), BENCH_E2E_VERBOSE (1: the dominator and agents
# log with -v; the logs are in .bench/tmp/e2e/runN/logs until the next
# bench).
#
# A corpus may be a symlink to one kept elsewhere (.bench/synth ->
# /data/bench/synth): the trees are read through their real paths.
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/ops/lib.sh"

RUNS="${BENCH_RUNS:-5}"
read -r -a CORPORA <<<"${BENCH_CORPORA:-debian-minbase synth}"
read -r -a TOOLS <<<"${BENCH_TOOLS:-sha512sum ostree imagetool scan converge fleet pipeline e2e}"
SCAN_RATE="${BENCH_SCAN_RATE:-100000000}"
FLEET_AGENTS="${BENCH_FLEET_AGENTS:-1000}"
FLEET_MACHINES="${BENCH_FLEET_MACHINES:-100000}"
E2E_AGENTS="${BENCH_E2E_AGENTS:-100}"
E2E_TIMEOUT="${BENCH_E2E_TIMEOUT:-300}"
E2E_CASES="${BENCH_E2E_CASES:-b,c,a,d,e}"
PIPELINE_CORPUS="${BENCH_PIPELINE_CORPUS:-debian-minbase}"
BENCH="$ROOT/.bench"
# The fleet's trees and state directories: a memory file system when there
# is one, so a thousand agents' flushed writes do not all queue on one disk
# (see ops/bench/harness/src/bin/fleet-bench.rs).
if [[ -z "${BENCH_FLEET_DIR:-}" && -d /dev/shm && -w /dev/shm &&
      "$(stat -f -c %T /dev/shm 2>/dev/null)" == tmpfs ]]; then
    FLEET_DIR=/dev/shm/dom-bench-fleet
else
    FLEET_DIR="${BENCH_FLEET_DIR:-$BENCH/tmp}"
fi
TMP="$BENCH/tmp"
TRASH="$BENCH/trash"
RESULTS="$BENCH/results.md"
DATA="$TMP/results.tsv"
IMAGETOOL="$ROOT/target/release/imagetool"
SCAN_BENCH="$ROOT/target/release/scan-bench"
CONVERGE_BENCH="$ROOT/target/release/converge-bench"
WINDOW_BENCH="$ROOT/target/release/window-bench"
FLEET_BENCH="$ROOT/target/release/fleet-bench"
DOMINATOR_BENCH="$ROOT/target/release/dominator-bench"
E2E_PID=""

say() { printf 'bench: %s\n' "$*" >&2; }
want() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

# discard DIR: moves a tree out of the way, to be removed when the bench
# ends. Removing tens of thousands of files between measurements would slow
# the next ones on a file system that avoids reusing recently freed inodes
# (ext4 without a journal scans past every inode freed in the last minutes
# for each file it creates): a measurement would pay for the last one's
# clean-up.
discard() {
    [[ -e "$1" ]] || return 0
    mkdir -p "$TRASH"
    mv "$1" "$(mktemp -d "$TRASH/XXXXXX")/"
}

cleanup() {
    # The end-to-end driver stops its dominator and agents itself.
    if [[ -n "$E2E_PID" ]]; then
        kill -TERM "$E2E_PID" 2>/dev/null || true
        wait "$E2E_PID" 2>/dev/null || true
    fi
    nats_stop
    rm -rf "$TMP/ostree-repo" "$TMP/nats" "$TRASH"
    [[ "$FLEET_DIR" != /dev/shm/dom-bench-fleet ]] || rm -rf "$FLEET_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- prerequisites ----------------------------------------------------------
ensure_tools
if want ostree; then command -v ostree >/dev/null || apt_install ostree; fi
if want imagetool; then
    say "building imagetool (release)"
    if ! (cd "$ROOT" && cargo build --release --quiet -p imagetool); then
        die "imagetool failed to build; fix the build or run with BENCH_TOOLS=\"sha512sum ostree\""
    fi
    [[ -x "$IMAGETOOL" ]] || die "$IMAGETOOL was not produced by the build"
fi
if want converge || want e2e || want pipeline; then
    command -v rsync >/dev/null || apt_install rsync
fi
if want pipeline; then
    say "building imagetool and subd (release)"
    (cd "$ROOT" && cargo build --release --quiet -p imagetool -p subd) ||
        die "imagetool or subd failed to build"
fi
if want e2e; then
    command -v ostree >/dev/null || apt_install ostree
    say "building imagetool, dominator and subd (release)"
    (cd "$ROOT" && cargo build --release --quiet -p imagetool -p dominator -p subd) ||
        die "imagetool, dominator or subd failed to build"
fi
if want scan || want converge; then
    say "building the benchmark drivers (release)"
    (cd "$ROOT" && cargo build --release --quiet -p dom-bench \
        --bin scan-bench --bin converge-bench --bin window-bench) ||
        die "the benchmark drivers failed to build"
fi
if want fleet; then
    say "building the fleet benchmark drivers (release)"
    (cd "$ROOT" && cargo build --release --quiet -p dom-bench \
        --bin fleet-bench --bin dominator-bench --bin standby-bench &&
        cargo build --release --quiet -p domsetup -p dominator) ||
        die "the fleet benchmark drivers failed to build"
fi
"$ROOT/ops/bench/corpora.sh" "${CORPORA[@]}"
if want e2e; then "$ROOT/ops/bench/corpora.sh" debian-minbase synth; fi
if want pipeline; then "$ROOT/ops/bench/corpora.sh" "$PIPELINE_CORPUS"; fi

# corpus NAME: the corpus's directory, by its real path (it may be a
# symlink, which find and cp -a would not follow).
corpus() { (cd "$BENCH/$1" && pwd -P); }

rm -rf "$TMP" "$TRASH"
mkdir -p "$TMP"
: >"$DATA"

# timed CMD...: run CMD; put its wall-clock seconds in $ELAPSED, the CPU
# seconds (user + system) of CMD and its children in $CPU, and the CPU seconds
# the whole machine was busy meanwhile in $BUSY (so that load from anything
# else running can be told apart). Dirty pages from the previous measurement
# are flushed first so that their write-back is not charged to this one.
timed() {
    local rc=0 user sys busy0 TIMEFORMAT='%3R %3U %3S'
    sync
    busy0=$(machine_busy)
    { time "$@" 2>&3 3>&-; } 3>&2 2>"$TMP/time.out" || rc=$?
    BUSY=$(awk -v a="$busy0" -v b="$(machine_busy)" 'BEGIN { printf "%.2f", b - a }')
    read -r ELAPSED user sys <"$TMP/time.out"
    CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    return "$rc"
}

# CPU seconds all CPUs have spent busy since boot.
machine_busy() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / {
        printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# CPU seconds used so far by the nats-server we started.
server_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$NATS_PID/stat"
}

# record CORPUS KIND RUN VALUE [EXTRA [CPU [BUSY]]]
record() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" "${6:-}" "${7:-}" >>"$DATA"
}

hash_tree() {
    find "$1" -type f -print0 | xargs -0 -n128 -P2 sha512sum >/dev/null
}

warm() {
    find "$1" -type f -print0 | xargs -0 -n256 -P2 cat >/dev/null
}

ostree_commit() {
    local dir="$1" repo="$TMP/ostree-repo"
    discard "$repo"
    ostree --repo="$repo" init --mode=bare-user
    timed ostree commit --repo="$repo" --branch=bench --fsync=false --tree=dir="$dir" \
        >/dev/null
    OSTREE_BYTES=$(du -sb "$repo" | cut -f1)
    discard "$repo"
}

# imagetool_add PORT NAME DIR [FLAGS...]: timed add; sets ELAPSED, SUMMARY,
# CPU (client + server) and SERVER_CPU.
imagetool_add() {
    local out="$TMP/imagetool.out" before
    before=$(server_cpu)
    if ! timed "$IMAGETOOL" --server "nats://127.0.0.1:$1" add "$2" "$3" "" "" "${@:4}" \
            >"$out" 2>"$TMP/imagetool.err"; then
        cat "$out" "$TMP/imagetool.err" >&2
        die "imagetool add $2 failed"
    fi
    SERVER_CPU=$(awk -v a="$before" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')
    CPU=$(awk -v c="$CPU" -v s="$SERVER_CPU" 'BEGIN { printf "%.2f", c + s }')
    SUMMARY=$(grep -m1 '^added ' "$out" || tail -n1 "$out")
    say "  $SUMMARY"
}

# key VALUE LINE: the value of key=VALUE in LINE.
key() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# converge_runs RUN: with the server of the synth runs holding synth and
# synth-1pct, converge a copy of synth to synth-1pct as the agent does, the
# same with rsync, fetch all of synth, and time a 1,000-file update.
converge_runs() {
    local run="$1" machine="$TMP/machine" out
    discard "$machine"
    cp -a "$(corpus synth)" "$machine"
    # The agent trusts its hash cache only for changes older than two
    # seconds; a machine's tree has long settled.
    sleep 2.5
    out=$("$CONVERGE_BENCH" --server "nats://127.0.0.1:$NATS_PORT" bench.synth-1pct "$machine") ||
        die "converge-bench failed"
    record synth converge "$run" "$(key seconds "$out")" "$out"
    say "synth run $run: agent converge $(key seconds "$out")s ($out)"
    discard "$machine"
    rsync_checksum_run "$run"
    mkdir -p "$machine"
    out=$("$CONVERGE_BENCH" --server "nats://127.0.0.1:$NATS_PORT" --fetch-all bench.synth "$machine") ||
        die "converge-bench --fetch-all failed"
    record synth fetch "$run" "$(key seconds "$out")" "$(key bytes "$out")"
    say "synth run $run: fetch all $(key seconds "$out")s ($out)"
    discard "$machine"
    out=$("$WINDOW_BENCH" --files 1000 --dir "$TMP") || die "window-bench failed"
    record synth window "$run" "$(key window "$out")" "$(key transition "$out")"
    say "synth run $run: 1,000-file update: $out"
}

# rsync_checksum_run RUN: a fresh copy of synth brought to synth-1pct by
# rsync comparing every byte of both trees: what converging a machine takes
# without an agent.
rsync_checksum_run() {
    local machine="$TMP/machine"
    discard "$machine"
    cp -a "$(corpus synth)" "$machine"
    sync
    timed rsync -a --delete --checksum "$(corpus synth-1pct)/" "$machine/"
    record synth rsync "$1" "$ELAPSED" "" "$CPU" "$BUSY"
    say "synth run $1: rsync --checksum ${ELAPSED}s"
    discard "$machine"
}

start_fresh_nats() {
    local port http
    port=$(free_port)
    http=$(free_port)
    while [[ "$http" == "$port" ]]; do http=$(free_port); done
    nats_start "$TMP/nats" "$port" "$http"
    NATS_PORT=$port
}

for corpus in "${CORPORA[@]}"; do
    dir="$(corpus "$corpus")"
    files=$(find "$dir" -type f | wc -l)
    bytes=$(find "$dir" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')
    record "$corpus" corpus 0 "$files" "$bytes"
    say "$corpus: $files files, $bytes bytes; warming the page cache"
    warm "$dir"
    [[ "$corpus" != synth ]] || warm "$(corpus synth-1pct)"

    for ((run = 1; run <= RUNS; run++)); do
        if want sha512sum; then
            timed hash_tree "$dir"
            record "$corpus" sha512sum "$run" "$ELAPSED" "" "$CPU" "$BUSY"
            say "$corpus run $run: sha512sum ${ELAPSED}s"
        fi
        if want ostree; then
            ostree_commit "$dir"
            record "$corpus" ostree "$run" "$ELAPSED" "$OSTREE_BYTES" "$CPU" "$BUSY"
            say "$corpus run $run: ostree commit ${ELAPSED}s"
        fi
        if want scan; then
            timed "$SCAN_BENCH" "$dir" >"$TMP/scan.out"
            record "$corpus" scan "$run" "$ELAPSED" "" "$CPU" "$BUSY"
            say "$corpus run $run: agent scan ${ELAPSED}s"
            if ((run == 1)); then
                "$SCAN_BENCH" --rate "$SCAN_RATE" "$dir" >"$TMP/scan.out"
                achieved=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' "$TMP/scan.out")
                record "$corpus" scanrate "$run" "$achieved" "$SCAN_RATE"
                say "$corpus: rate-limited scan at $SCAN_RATE B/s achieved $achieved B/s"
            fi
        fi
        if want imagetool; then
            start_fresh_nats
            # The first add starts with an empty hash cache.
            rm -f "$TMP/hash-cache"
            imagetool_add "$NATS_PORT" "bench.$corpus" "$dir" --hash-cache "$TMP/hash-cache"
            record "$corpus" imagetool "$run" "$ELAPSED" "$SUMMARY" "$CPU" "$BUSY"
            record "$corpus" servercpu-imagetool "$run" "$SERVER_CPU"
            say "$corpus run $run: imagetool add ${ELAPSED}s"
            if [[ "$corpus" == synth ]]; then
                imagetool_add "$NATS_PORT" "bench.synth-1pct" "$(corpus synth-1pct)" \
                    --hash-cache "$TMP/hash-cache"
                record "$corpus" readd "$run" "$ELAPSED" "$SUMMARY" "$CPU" "$BUSY"
                record "$corpus" servercpu-readd "$run" "$SERVER_CPU"
                say "$corpus run $run: imagetool re-add (synth-1pct) ${ELAPSED}s"
                imagetool_add "$NATS_PORT" "bench.synth-1pct.nocache" "$(corpus synth-1pct)" \
                    --no-hash-cache
                record "$corpus" readdcold "$run" "$ELAPSED" "$SUMMARY" "$CPU" "$BUSY"
                record "$corpus" servercpu-readdcold "$run" "$SERVER_CPU"
                say "$corpus run $run: imagetool re-add without hash cache ${ELAPSED}s"
                if want converge; then
                    converge_runs "$run"
                fi
            fi
            nats_stop
            record "$corpus" natsstore "$run" "$(du -sb "$TMP/nats/jetstream" | cut -f1)" ""
            rm -rf "$TMP/nats"
        fi
    done
done

# --- fleet ------------------------------------------------------------------
# fleet_run KIND DRIVER ARGS...: one timed run of a fleet driver against
# fresh servers: one nats-server, or for a KIND ending in -cluster three
# routed as a cluster with every stream on three replicas (as `domsetup
# streams --replicas 3` lays them out). Records its key=value line (with
# the driver's and the servers' CPU seconds). A driver that gives up still
# prints its line (complete=false), which is recorded as it is.
fleet_run() {
    local kind="$1" out before rc=0 servers
    if [[ "$kind" == *-cluster ]]; then
        nats_cluster_start "$TMP/cluster"
        servers="$NATS_URLS"
        for _ in $(seq 60); do
            "$ROOT/target/release/domsetup" streams --server "$servers" --replicas 3 \
                >/dev/null 2>&1 && break
            sleep 1
        done
    else
        start_fresh_nats
        NATS_PIDS=("$NATS_PID")
        servers="nats://127.0.0.1:$NATS_PORT"
    fi
    before=$(servers_cpu)
    timed "${@:2}" --server "$servers" >"$TMP/$kind.out" 2>"$TMP/$kind.err" || rc=$?
    SERVER_CPU=$(awk -v a="$before" -v b="$(servers_cpu)" 'BEGIN { printf "%.2f", b - a }')
    if [[ "$kind" == *-cluster ]]; then
        nats_cluster_stop
        rm -rf "$TMP/cluster"
    else
        nats_stop
        rm -rf "$TMP/nats"
    fi
    out=$(grep -m1 '^seconds=' "$TMP/$kind.out" || true)
    if [[ -z "$out" ]]; then
        tail -n 20 "$TMP/$kind.err" >&2
        die "$(basename "$2") failed (exit status $rc)"
    fi
    CPU=$(awk -v c="$CPU" -v s="$SERVER_CPU" 'BEGIN { printf "%.2f", c + s }')
    record fleet "$kind" 1 "$(key seconds "$out")" "$out" "$CPU" "$BUSY"
    record fleet "servercpu-$kind" 1 "$SERVER_CPU"
    FLEET_OUT="$out"
}

# CPU seconds the servers in NATS_PIDS have used since they started.
servers_cpu() {
    local total=0 pid
    for pid in "${NATS_PIDS[@]}"; do
        total=$(awk -v t="$total" -v hz="$(getconf CLK_TCK)" \
            '{ printf "%.2f", t + ($14 + $15) / hz }' "/proc/$pid/stat")
    done
    echo "$total"
}

if want fleet; then
    say "fleet: $FLEET_AGENTS agents and the dominator in one process"
    fleet_run agents "$FLEET_BENCH" --agents "$FLEET_AGENTS" --dir "$FLEET_DIR"
    say "fleet: $FLEET_AGENTS agents compliant in $(key seconds "$FLEET_OUT")s ($FLEET_OUT)"
    say "fleet: the same on a three-server cluster, streams on three replicas"
    fleet_run agents-cluster "$FLEET_BENCH" --agents "$FLEET_AGENTS" --dir "$FLEET_DIR"
    say "fleet: on the cluster, compliant in $(key seconds "$FLEET_OUT")s ($FLEET_OUT)"
    say "fleet: the dominator with $FLEET_MACHINES machines"
    fleet_run dominator "$DOMINATOR_BENCH" --machines "$FLEET_MACHINES"
    say "fleet: $FLEET_MACHINES desired states in $(key seconds "$FLEET_OUT")s ($FLEET_OUT)"
    say "fleet: a standby dominator taking over from one killed"
    fleet_run standby "$ROOT/target/release/standby-bench" --bin "$ROOT/target/release"
    say "fleet: the standby acted $(key seconds "$FLEET_OUT")s after the kill, $(key stopped_seconds "$FLEET_OUT")s after SIGTERM ($FLEET_OUT)"
fi

# record_cases DRIVER RUN FILE: records each `case=X seconds=S ...` line a
# driver printed to FILE, as it is.
record_cases() {
    local line case
    while read -r line; do
        case=$(key case "$line")
        [[ -n "$case" ]] || continue
        record "$1" "$case" "$2" "$(key seconds "$line")" "$line"
        say "$1 run $2: $line"
    done <"$3"
}

# --- release pipeline ---------------------------------------------------------
# pipeline_run RUN: ops/bench/pipeline.py against a fresh nats-server; each
# of its lines (case=X seconds=S ...) is recorded as it is.
pipeline_run() {
    local run="$1"
    start_fresh_nats
    "$ROOT/.tools/bin/python" -B "$ROOT/ops/bench/pipeline.py" \
        --server "nats://127.0.0.1:$NATS_PORT" --bin "$ROOT/target/release" --bench "$BENCH" \
        --work "$TMP/pipeline/run$run" --corpus "$PIPELINE_CORPUS" \
        >"$TMP/pipeline.out" 2>"$TMP/pipeline.err" ||
        { tail -n 20 "$TMP/pipeline.err" >&2; die "ops/bench/pipeline.py failed"; }
    nats_stop
    rm -rf "$TMP/nats"
    discard "$TMP/pipeline/run$run"
    record_cases pipeline "$run" "$TMP/pipeline.out"
}

if want pipeline; then
    for ((run = 1; run <= RUNS; run++)); do
        say "pipeline run $run: imagetool's release commands on $PIPELINE_CORPUS"
        pipeline_run "$run"
    done
fi

# --- end to end ---------------------------------------------------------------
# e2e_run RUN: the end-to-end driver against a fresh nats-server; each of
# its lines (case=X seconds=S ...) is recorded as it is. The driver is
# waited for in the background, so that an interrupted bench stops it (and
# it everything it started).
e2e_run() {
    local run="$1" verbose=()
    [[ "${BENCH_E2E_VERBOSE:-0}" == 0 ]] || verbose=(--verbose)
    start_fresh_nats
    "$ROOT/.tools/bin/python" -B "$ROOT/ops/bench/e2e.py" \
        --server "nats://127.0.0.1:$NATS_PORT" --bin "$ROOT/target/release" --bench "$BENCH" \
        --work "$TMP/e2e/run$run" --fleet-dir "$FLEET_DIR/e2e-fleet" --trash "$TRASH" \
        --cases "$E2E_CASES" --agents "$E2E_AGENTS" --timeout "$E2E_TIMEOUT" "${verbose[@]}" \
        >"$TMP/e2e.out" 2> >(tee "$TMP/e2e.err" >&2) &
    E2E_PID=$!
    wait "$E2E_PID" || { tail -n 20 "$TMP/e2e.err" >&2; die "ops/bench/e2e.py failed"; }
    E2E_PID=""
    nats_stop
    rm -rf "$TMP/nats"
    record_cases e2e "$run" "$TMP/e2e.out"
}

# e2e_comparisons RUN: deploying synth without an agent: a first rsync -a
# into an empty directory, and ostree pull-local --untrusted (every object
# copied and verified again) from a repository holding synth into a fresh
# one, with ostree's defaults; rsync --checksum to synth-1pct as well,
# unless converge measured it.
e2e_comparisons() {
    local run="$1" synth src="$TMP/ostree-src" dst="$TMP/ostree-pull" copy="$TMP/rsync-copy"
    synth="$(corpus synth)"
    discard "$copy"
    mkdir -p "$copy"
    timed rsync -a "$synth/" "$copy/"
    record synth rsynccopy "$run" "$ELAPSED" "" "$CPU" "$BUSY"
    say "synth run $run: rsync -a into an empty directory ${ELAPSED}s"
    discard "$copy"
    discard "$src"
    discard "$dst"
    ostree --repo="$src" init --mode=bare-user
    ostree commit --repo="$src" --branch=bench --fsync=false --tree=dir="$synth" >/dev/null
    ostree --repo="$dst" init --mode=bare-user
    timed ostree --repo="$dst" pull-local --untrusted "$src" bench
    record synth ostreepull "$run" "$ELAPSED" "" "$CPU" "$BUSY"
    say "synth run $run: ostree pull-local --untrusted ${ELAPSED}s"
    discard "$src"
    discard "$dst"
    if ! { want imagetool && want converge; }; then rsync_checksum_run "$run"; fi
}

if want e2e; then
    for ((run = 1; run <= RUNS; run++)); do
        say "e2e run $run: the real binaries, each in a process of its own"
        e2e_run "$run"
        e2e_comparisons "$run"
    done
fi

# --- report -----------------------------------------------------------------
disk_src=$(findmnt -no SOURCE -T "$BENCH" 2>/dev/null || echo "?")
disk_fs=$(findmnt -no FSTYPE -T "$BENCH" 2>/dev/null || echo "?")
disk_dev=$(basename "$(readlink -f "$disk_src")")
disk_rot=$(cat "/sys/class/block/$disk_dev/queue/rotational" 2>/dev/null || echo "?")
case "$disk_rot" in 0) disk_kind="kernel reports non-rotational" ;; 1) disk_kind="kernel reports rotational" ;; *) disk_kind="type unknown" ;; esac
export M_CPU="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)"
[[ -n "$M_CPU" ]] || M_CPU="$(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -n1)"
export M_CORES="$(nproc)"
export M_MEM="$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
export M_KERNEL="$(uname -sr)"
export M_DISK="$disk_src ($disk_fs, $(df -h --output=size "$BENCH" | tail -n1 | tr -d ' '), $disk_kind)"
export M_NATS="$("$ROOT/.tools/bin/nats-server" --version 2>&1 | head -n1 | sed 's/^nats-server: //')"
export M_OSTREE="$(command -v ostree >/dev/null && ostree --version | sed -n "s/^ *Version: *'\(.*\)'/\1/p")"
export M_COREUTILS="$(sha512sum --version | head -n1)"
export M_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
export M_RUSTC="$(rustc --version 2>/dev/null || true)"
export M_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
export RUNS M_PIPELINE_CORPUS="$PIPELINE_CORPUS"

python3 "$ROOT/ops/bench/report.py" "$DATA" | tee "$RESULTS"
say "results written to .bench/results.md"
