# Helpers for ops/demo.sh: printing commands, the background processes of
# the demo fleet, the demo machines, and waiting for the fleet with a
# deadline. Source it after ops/lib.sh; do not run it.
#
#   DEMO            the demo's directory, relative to ROOT (wiped at start)
#   DEMO_TIMEOUT    seconds a step may take before the demo fails (60)
#   STATUS_ADDR     host:port of the dominator's status page

DEMO=var/demo
DEMO_TIMEOUT="${DEMO_TIMEOUT:-60}"
STATUS_ADDR=""

if [[ -t 1 ]]; then
    bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'
else
    bold=; dim=; off=
fi

# ---------------------------------------------------------------- printing

# The command line "$@" as a user would type it.
fmt_cmd() {
    local out="" a
    for a in "$@"; do
        if [[ -z "$a" ]]; then
            out+=' ""'
        elif [[ "$a" =~ ^[A-Za-z0-9_./=:@%+,-]+$ ]]; then
            out+=" $a"
        elif [[ "$a" != *"'"* ]]; then
            out+=" '$a'"
        else
            out+=" $(printf '%q' "$a")"
        fi
    done
    printf '%s' "${out# }"
}

show_cmd() { show_line "$(fmt_cmd "$@")"; }
show_line() { printf '\n%s$ %s%s\n' "$bold" "$1" "$off"; }
run() { show_cmd "$@"; "$@"; }
# A comment for the reader, wrapped to fit a terminal.
note() {
    printf '\n%s' "$dim"
    fold -s -w 76 <<<"$*" | sed -e 's/ *$//' -e 's/^/# /'
    printf '%s' "$off"
}
chapter() { printf '\n\n%s== %s ==%s\n' "$bold" "$*" "$off"; }

# ------------------------------------------------------------ the processes

# name -> pid of every background process the demo started.
declare -A PIDS=()

# start_bg NAME CMD...: show CMD as a background job logging to
# $DEMO/NAME.log, and start it. Logs are plain text (NO_COLOR).
start_bg() {
    local name="$1"; shift
    show_line "$(fmt_cmd "$@") >> $DEMO/$name.log 2>&1 &"
    NO_COLOR=1 "$@" >>"$DEMO/$name.log" 2>&1 &
    PIDS[$name]=$!
}

# stop_bg NAME: SIGTERM the process started as NAME and wait for it.
stop_bg() {
    local pid="${PIDS[$1]:-}"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$1]"
}

# Stops everything the demo started, agents first, NATS last.
demo_cleanup() {
    local name
    for name in "${!PIDS[@]}"; do
        [[ "$name" == dominator || "$name" == watch ]] || stop_bg "$name"
    done
    stop_bg dominator
    stop_bg watch
    nats_stop
}

# fail MESSAGE LOG...: say what did not happen, show the end of each log
# that may tell why, and exit non-zero (the EXIT trap cleans up).
fail() {
    local message="$1" log; shift
    printf '\nerror: %s\n' "$message" >&2
    for log in "$@"; do
        [[ -f "$log" ]] || continue
        printf '\n--- last lines of %s ---\n' "$log" >&2
        tail -n 25 "$log" >&2
    done
    printf '\nThe logs are in %s.\n' "$DEMO" >&2
    exit 1
}

# ------------------------------------------------------------ the machines

# seed_machine HOST: a small machine tree under $DEMO/HOST with the files a
# real machine has of its own (its host name, its disks, its logs) and a
# file that no image has.
seed_machine() {
    local host="$1" root="$DEMO/$1"
    mkdir -p "$root/etc" "$root/var/log"
    printf '%s\n' "$host" >"$root/etc/hostname"
    printf 'LABEL=%s-root  /  ext4  errors=remount-ro  0  1\n' "$host" >"$root/etc/fstab"
    printf '# written by hand on %s; no image has it\n' "$host" >"$root/etc/extra.conf"
    printf 'Nov 26 09:00:00 %s kernel: booted\n' "$host" >"$root/var/log/syslog"
}

# write_service_script: $DEMO/bin/service stands in for service(8). Each agent
# runs it as `service HOST NAME stop|start|reload`; it records the call in
# $DEMO/services.log, so the triggers can be seen.
write_service_script() {
    mkdir -p "$DEMO/bin"
    cat >"$DEMO/bin/service" <<SH
#!/bin/sh
# service HOST NAME ACTION: record what would be done to the service.
host="\$1"; shift
echo "\$(date +%H:%M:%S) \$host: \$*" >> "$ROOT/$DEMO/services.log"
SH
    chmod +x "$DEMO/bin/service"
    : >"$DEMO/services.log"
}

# write_publisher: $DEMO/bin/nats-pub.py publishes one message as
# `nats pub SUBJECT PAYLOAD` does, with nats-py, and waits until JetStream
# has stored it.
write_publisher() {
    mkdir -p "$DEMO/bin"
    cat >"$DEMO/bin/nats-pub.py" <<'PY'
"""nats-pub.py SUBJECT PAYLOAD: publish one message to JetStream ($DOM_SERVER)."""
import asyncio
import os
import sys

import nats


async def main(subject: str, payload: str) -> None:
    servers = os.environ.get("DOM_SERVER", "nats://127.0.0.1:4222").split(",")
    nc = await nats.connect(servers=servers, connect_timeout=3, allow_reconnect=False)
    try:
        ack = await nc.jetstream().publish(subject, payload.encode(), timeout=5)
        print(f"stored in stream {ack.stream} as message {ack.seq}")
    finally:
        await nc.close()


asyncio.run(main(sys.argv[1], sys.argv[2]))
PY
}

# -------------------------------------------------------------- waiting

# fleet_py MODE ARGS...: the demo's view of the fleet, from the
# dominator's /status page and the `domtool watch` log ($DEMO/watch.log).
# Events not shown yet (counted in $DEMO/.events-shown) are printed as
# they arrive.
#   events HOST...                 print the new events of HOST...
#   image IMAGE HOST...            wait until each HOST is compliant with IMAGE
#   desired IMAGE HOST             wait until the dominator told HOST to carry IMAGE
fleet_py() {
    python3 - "$STATUS_ADDR" "$DEMO_TIMEOUT" "$DEMO/watch.log" "$DEMO/.events-shown" "$@" <<'PY'
import json
import re
import sys
import time
import urllib.request

http, timeout, log, shown_file, mode, *args = sys.argv[1:]
deadline = time.monotonic() + float(timeout)
start = time.monotonic()
EVENT = re.compile(r"^\S+ event (\S+) (\S+?)(?: \[[^\]]*\])?: (.*)$")


def read_shown():
    try:
        with open(shown_file) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def print_events(hosts):
    """Prints the events of `hosts` logged since the last call."""
    shown = read_shown()
    try:
        with open(log, errors="replace") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return
    complete = lines[:-1]  # the last one may be half written
    for line in complete[shown:]:
        m = EVENT.match(line)
        if m and m.group(1) in hosts:
            print(f"  {m.group(1)} {m.group(2)}: {m.group(3)}", flush=True)
    with open(shown_file, "w") as f:
        f.write(str(len(complete)))


def machines():
    try:
        with urllib.request.urlopen(f"http://{http}/status", timeout=2) as r:
            status = json.load(r)
    except Exception:
        return {}
    decision = status.get("decision") or {}
    return {m["host"]: m for m in decision.get("machines", [])}


def describe(m):
    if m is None:
        return "not in the dominator's view yet"
    text = f"requires {m.get('required')}, carries {m.get('current') or 'nothing'}"
    text += ", compliant" if m.get("compliant") else ", not compliant"
    if m.get("error"):
        text += f", error: {m['error']}"
    if m.get("held"):
        text += f", held: {m['held']}"
    return text


if mode == "events":
    print_events(args)
    sys.exit(0)

image, hosts = args[0], args[1:]
done = {}
while True:
    print_events(hosts)
    view = machines()
    for host in hosts:
        m = view.get(host)
        if host in done or m is None:
            continue
        if mode == "image":
            ready = m.get("required") == image and m.get("current") == image and m.get("compliant")
        else:
            desired = m.get("desired") or {}
            ready = desired.get("image") == image and not m.get("publish")
        if ready:
            done[host] = time.monotonic() - start
            if mode == "image":
                print(f"  {host} is compliant with {image} ({done[host]:.1f} s)", flush=True)
    if len(done) == len(hosts):
        time.sleep(0.3)  # events published with the last report
        print_events(hosts)
        sys.exit(0)
    if time.monotonic() > deadline:
        for host in hosts:
            if host not in done:
                print(f"  {host} at the deadline: {describe(view.get(host))}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.1)
PY
}

# wait_compliant IMAGE HOST...: wait until every HOST carries IMAGE with
# no deviation, showing their events; fail with their logs if not in time.
wait_compliant() {
    local image="$1" host logs=(); shift
    printf '%swaiting for %s to carry %s...%s\n' "$dim" "$*" "$image" "$off"
    for host in "$@"; do logs+=("$DEMO/$host.log"); done
    fleet_py image "$image" "$@" \
        || fail "$* did not become compliant with $image within ${DEMO_TIMEOUT} s" \
            "${logs[@]}" "$DEMO/dominator.log"
}

# wait_desired IMAGE HOST: wait until the dominator published HOST's
# desired state for IMAGE.
wait_desired() {
    fleet_py desired "$1" "$2" \
        || fail "the dominator did not publish $2's desired state for $1 within ${DEMO_TIMEOUT} s" \
            "$DEMO/dominator.log"
}

# wait_files DESCRIPTION HOST TEST...: wait until the shell test TEST...
# holds, showing HOST's events; fail with HOST's log if not in time.
wait_files() {
    local what="$1" host="$2" start=$EPOCHREALTIME; shift 2
    until "$@"; do
        fleet_py events "$host"
        if (($(elapsed_ms "$start") >= DEMO_TIMEOUT * 1000)); then
            fail "$what did not happen within ${DEMO_TIMEOUT} s" "$DEMO/$host.log"
        fi
        sleep 0.1
    done
    local took; took=$(elapsed_ms "$start")
    sleep 0.3
    fleet_py events "$host"
    printf '  %s (%d.%d s)\n' "$what" $((took / 1000)) $((took % 1000 / 100))
}

# elapsed_ms START: milliseconds since START, an $EPOCHREALTIME.
elapsed_ms() {
    local now=$EPOCHREALTIME
    echo $(( (${now/[.,]/} - ${1/[.,]/}) / 1000 ))
}

# since_line FILE N: the lines of FILE after the first N.
since_line() { tail -n +"$(($2 + 1))" "$1"; }
