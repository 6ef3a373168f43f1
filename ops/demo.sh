#!/usr/bin/env bash
# Walk through the Dominator user-guide examples with imagetool against a
# private, throw-away NATS JetStream server (127.0.0.1:${DEMO_PORT:-4322},
# data in var/demo, wiped at every start so image names are fresh).
#
#   ops/just demo
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/ops/lib.sh"

PORT="${DEMO_PORT:-4322}"
HTTP_PORT="${DEMO_HTTP_PORT:-8322}"
STATE="$ROOT/var/demo"

if [[ -t 1 ]]; then bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'; else bold=; dim=; off=; fi

# Print a command the way a user would type it, then run it.
show_cmd() {
    local out="\$" a
    for a in "$@"; do
        if [[ -z "$a" ]]; then
            out+=' ""'
        elif [[ "$a" =~ ^[A-Za-z0-9_./=:@%+,-]+$ ]]; then
            out+=" $a"
        else
            out+=" $(printf '%q' "$a")"
        fi
    done
    printf '\n%s%s%s\n' "$bold" "$out" "$off"
}
run() { show_cmd "$@"; "$@"; }
# A step that is expected to fail: show the error, then carry on.
run_expect_fail() {
    show_cmd "$@"
    if "$@"; then
        die "expected this command to fail, but it succeeded"
    fi
    printf '%s(failed as expected: image names are never reused)%s\n' "$dim" "$off"
}
note() { printf '\n%s# %s%s\n' "$dim" "$*" "$off"; }

ensure_tools
echo "building imagetool (release)..."
cargo build --release --quiet -p imagetool --manifest-path "$ROOT/Cargo.toml" \
    || die "imagetool failed to build"
[[ -x "$ROOT/target/release/imagetool" ]] || die "target/release/imagetool not found after build"
export PATH="$ROOT/target/release:$PATH"

if port_in_use "$PORT"; then
    die "127.0.0.1:$PORT is already in use; set DEMO_PORT (and DEMO_HTTP_PORT) to free ports"
fi
trap nats_stop EXIT
trap 'exit 130' INT TERM
nats_start "$STATE" "$PORT" "$HTTP_PORT"
echo "nats-server running on 127.0.0.1:$PORT (data: var/demo, log: var/demo/nats.log)"

cd "$ROOT/ops/examples"
it=(imagetool -imageServerHostname=127.0.0.1 -imageServerPortNum="$PORT")

note "A sparse image: no filter, no triggers. Only its files are ever pushed."
run "${it[@]}" add sparse.0 path "" ""
run "${it[@]}" list
run "${it[@]}" show sparse.0

note "Image names are never reused, so adding sparse.0 again is refused."
run_expect_fail "${it[@]}" add sparse.0 path "" triggers.sshd

note "Same tree with a trigger: a change under /etc/ssh restarts sshd."
run "${it[@]}" add sparse.1 path "" triggers.sshd

note "A normal image: the machine becomes exactly this tree, except filtered paths."
run "${it[@]}" add image.0 path filter triggers
run "${it[@]}" list
run "${it[@]}" show image.0
run "${it[@]}" show-filter image.0
run "${it[@]}" show-triggers image.0
run "${it[@]}" diff sparse.0 image.0

printf '\n%sdemo finished%s\n' "$bold" "$off"
