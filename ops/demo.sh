#!/usr/bin/env bash
# The whole story in one terminal, on a private, throw-away fleet: a NATS
# server (127.0.0.1:${DEMO_PORT:-4322}), the dominator and two agents
# keeping the directories var/demo/web1 and var/demo/web2 as if they were
# machines. It adds the user-guide images, moves the machines from image to
# image through the MDB and shows each of them converging, the sshd
# trigger, drift being corrected and a machine catching up after being
# offline; then it says how to try it by hand. Everything it starts is
# stopped when it ends; var/demo (logs, machine trees) is kept until the
# next run.
#
#   ops/just demo
#   DEMO_PORT, DEMO_HTTP_PORT  NATS client and monitoring ports (4322, 8322)
#   DEMO_TIMEOUT               seconds a step may take (60)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/ops/lib.sh"
source "$ROOT/ops/demo-lib.sh"

PORT="${DEMO_PORT:-4322}"
HTTP_PORT="${DEMO_HTTP_PORT:-8322}"
HOSTS=(web1 web2)

# Shows a shell command line (with redirections) and runs it.
run_sh() { show_line "$1"; eval "$1"; }

# The demo's lines in services.log, from line $1 on.
show_services_since() {
    show_cmd tail -n "+$(($1 + 1))" "$DEMO/services.log"
    since_line "$DEMO/services.log" "$1"
}
services_lines() { wc -l <"$DEMO/services.log"; }

require_all() {
    local host
    for host in "${HOSTS[@]}"; do run domtool mdb set "$host" --required "$1"; done
}

start_agent() {
    local http="127.0.0.1:$(free_port)"
    start_bg "$1" subd --hostname "$1" --root "$DEMO/$1" \
        --service-command "$DEMO/bin/service $1" --reboot-command "" \
        --scan-speed-percent 100 --scan-interval 250ms --http "$http" -v
    echo "  $1's status page: http://$http/ (metrics: /metrics)"
}

build() {
    echo "building imagetool, subd, dominator and domtool (release)..."
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" \
        -p imagetool -p subd -p dominator -p domtool \
        || die "the build failed"
    export PATH="$ROOT/target/release:$PATH"
}

# The user guide's tree, twice: as it is, and with a changed sshd.conf.
# Each machine keeps its own /etc/hostname and /etc/fstab, so the
# example's copies are left out of the images.
prepare_trees() {
    local images="$DEMO/images"
    mkdir -p "$images"
    cp -a "$ROOT/ops/examples/path" "$images/path"
    rm "$images/path/etc/hostname" "$images/path/etc/fstab"
    cp -a "$images/path" "$images/path.1"
    printf 'MaxAuthTries 3\n' >>"$images/path.1/etc/ssh/sshd.conf"
}

start_fleet() {
    chapter "A private fleet"
    nats_start "$ROOT/$DEMO/nats" "$PORT" "$HTTP_PORT"
    echo "nats-server is running on 127.0.0.1:$PORT (data and log: $DEMO/nats)"
    note "Every tool reads the server from DOM_SERVER (or --server)."
    run export DOM_SERVER="nats://127.0.0.1:$PORT"

    note "The controller: MDB records and images in, each machine's desired state out."
    STATUS_ADDR="127.0.0.1:$(free_port)"
    start_bg dominator dominator --http "$STATUS_ADDR" -v
    wait_http "http://$STATUS_ADDR/healthz" "$DEMO_TIMEOUT" \
        || fail "the dominator did not become ready" "$DEMO/dominator.log"

    note "Everything that happens on the bus, one line each; the demo shows the machines' events from it."
    start_bg watch domtool watch
    local start=$SECONDS
    until grep -q '^watching' "$DEMO/watch.log" 2>/dev/null; do
        ((SECONDS - start < DEMO_TIMEOUT)) || fail "domtool watch did not start" "$DEMO/watch.log"
        sleep 0.1
    done

    note "Two machines, each a directory with a few files of its own."
    local host
    for host in "${HOSTS[@]}"; do seed_machine "$host"; done
    run find "$DEMO/web1" -type f
    note "An agent for each. The service command records what triggers do in $DEMO/services.log; the scan runs flat out every 250 ms (by default: 2% of the disk's bandwidth, every second)."
    for host in "${HOSTS[@]}"; do start_agent "$host"; done
}

add_images() {
    chapter "The user guide's images"
    prepare_trees
    note "The images are made from a copy of ops/examples/path without its /etc/hostname and /etc/fstab: those belong to each machine."
    note "A sparse image: its files are pushed, nothing else on the machine is touched."
    run imagetool add sparse.0 "$DEMO/images/path" "" ""
    note "sparse.1 adds the sshd trigger, as in the user guide, and a changed /etc/ssh/sshd.conf to fire it."
    run imagetool add sparse.1 "$DEMO/images/path.1" "" ops/examples/triggers.sshd
    note "A normal image: the machine becomes exactly this tree, except the paths the filter leaves out."
    run imagetool add image.0 "$DEMO/images/path" ops/examples/filter ops/examples/triggers
    run imagetool list
    run imagetool diff sparse.0 sparse.1
}

first_image() {
    chapter "Both machines on sparse.0"
    note "The MDB says which image each machine carries: domtool publishes a record on dom.mdb.HOST, the dominator publishes the machine's desired state, and its agent converges."
    require_all sparse.0
    wait_compliant sparse.0 "${HOSTS[@]}"
    run domtool status
    note "The image's files arrived; web1's own files are untouched."
    run ls "$DEMO/web1/etc" "$DEMO/web1/etc/ssh"
    run cat "$DEMO/web1/etc/hostname"
}

sshd_trigger() {
    chapter "A trigger: sshd around a change under /etc/ssh"
    local seen; seen=$(services_lines)
    require_all sparse.1
    wait_compliant sparse.1 "${HOSTS[@]}"
    run grep MaxAuthTries "$DEMO/web1/etc/ssh/sshd.conf"
    note "sparse.0 had no triggers, so nothing was stopped; sparse.1's trigger started sshd after the change."
    show_services_since "$seen"
}

normal_image() {
    chapter "A normal image with a filter"
    run imagetool show-filter image.0
    local seen; seen=$(services_lines)
    require_all image.0
    wait_compliant image.0 "${HOSTS[@]}"
    note "/etc/extra.conf is in no image, so it is gone; /etc/hostname, /etc/fstab and /var/log are filtered, so they stayed."
    run ls "$DEMO/web1/etc" "$DEMO/web1/var/log"
    run cat "$DEMO/web1/etc/hostname" "$DEMO/web1/etc/fstab"
    note "sparse.1's trigger stopped sshd before sshd.conf changed back; image.0's started it again."
    show_services_since "$seen"
}

web1_restored() {
    cmp -s "$DEMO/web1/etc/ssh/sshd.conf" "$DEMO/images/path/etc/ssh/sshd.conf" \
        && [[ -x "$DEMO/web1/usr/local/bin/hello" ]]
}

drift() {
    chapter "Drift is corrected"
    note "Someone changes web1 by hand: a managed file edited, another removed."
    local seen; seen=$(services_lines)
    run_sh "echo 'PermitRootLogin yes' >> $DEMO/web1/etc/ssh/sshd.conf"
    run_sh "rm $DEMO/web1/usr/local/bin/hello"
    note "The next scan finds the difference, reports it as drift and puts the image back."
    wait_files "web1 is back on image.0" web1 web1_restored
    run grep PermitRootLogin "$DEMO/web1/etc/ssh/sshd.conf"
    run ls -l "$DEMO/web1/usr/local/bin"
    show_services_since "$seen"
}

offline() {
    chapter "A machine catches up after being offline"
    show_line "kill ${PIDS[web2]}    # web2's agent"
    stop_bg web2
    note "While web2 is down its MDB record changes. An MDB change is just a message on dom.mdb.web2: any NATS client can publish it, here Python's nats-py (nats pub would do the same)."
    run .tools/venv/bin/python "$DEMO/bin/nats-pub.py" dom.mdb.web2 '{"RequiredImage":"sparse.1"}'
    wait_desired sparse.1 web2
    note "The dominator has told web2; web2 has not heard it yet and still carries image.0."
    run domtool status
    local seen; seen=$(services_lines)
    note "web2 comes back, reads its last desired state and goes straight to it."
    start_agent web2
    wait_compliant sparse.1 web2
    run grep MaxAuthTries "$DEMO/web2/etc/ssh/sshd.conf"
    show_services_since "$seen"
}

by_hand() {
    chapter "Done"
    run domtool status
    cat <<EOF

The demo's processes stop as it exits; its logs and machine trees stay
in $DEMO. To try it by hand, from the repository root, with
target/release on your PATH (export PATH="\$PWD/target/release:\$PATH"):

  ops/just nats                      # terminal 1: NATS on 127.0.0.1:4222, data in var/nats
  dominator --http 127.0.0.1:6970    # terminal 2: curl 127.0.0.1:6970/status
  mkdir -p /tmp/m1/etc && echo m1 > /tmp/m1/etc/hostname
  subd --hostname m1 --root /tmp/m1 --service-command echo --reboot-command "" -v
                                     # terminal 3: a machine kept in /tmp/m1,
                                     # its status page on 127.0.0.1:6969
  imagetool add mine.0 ops/examples/path ops/examples/filter ops/examples/triggers
  domtool mdb set m1 --required mine.0
  domtool status                     # or follow it all: domtool watch
  echo changed >> /tmp/m1/etc/motd   # drift: watch subd put it back

Image names are never reused: add mine.1, mine.2, ... for new trees.
docs/OPERATIONS.md and docs/SUBD.md explain every command and flag.
EOF
}

main() {
    ensure_tools
    build
    local p
    for p in "$PORT" "$HTTP_PORT"; do
        if port_in_use "$p"; then
            die "127.0.0.1:$p is already in use; set DEMO_PORT and DEMO_HTTP_PORT to free ports"
        fi
    done
    cd "$ROOT"
    rm -rf "$DEMO"
    mkdir -p "$DEMO"
    write_service_script
    write_publisher
    trap demo_cleanup EXIT
    trap 'exit 130' INT TERM

    start_fleet
    add_images
    first_image
    sshd_trigger
    normal_image
    drift
    offline
    by_hand
}

main "$@"
