#!/usr/bin/env bash
# Run the packages' units under a real, booted systemd (`ops/just
# boot-check`; needs root): a Debian root with systemd, the two packages and
# nats-server is booted in a container (systemd-nspawn -b), and there
#
#   1. nats-server (the example unit), dominator and mdbd run, hardened as
#      their units say (seccomp filter, MemoryDenyWriteExecute=,
#      PrivateUsers=, DynamicUser=), and none of them restarts;
#   2. LoadCredential= of a name with no file in /etc/credstore/ is
#      skipped, and one with a file is handed to the service;
#   3. subd with /etc/default/subd as installed (no server) does not run:
#      its failed ExecCondition= leaves it inactive, not failed, and
#      Restart=always does not restart it;
#   4. configured (--root a directory), subd converges the directory to an
#      image added with imagetool, assigned through mdbd's mdb.json;
#   5. `systemctl stop` of each ends with exit status 0 (Result=success).
#
# The units checked are this tree's ops/systemd/ ones, over those the
# packages installed, so a change to a unit is checked before it is
# packaged. When the host cannot boot a container (no systemd-nspawn, no
# cgroups it can use, not root in a namespace that may mount), it says
# "skipped: WHY" and exits 0; with DOM_REQUIRE_TOOLS=1 that is a failure.
#
# Usage: ops/package/boot-check.sh [SUBD.deb DOMINATOR.deb]   (default: the
# newest of this version in the target directory's debian/). KEEP=1 leaves
# the container running and its root in place, for a look around.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source "$ROOT/ops/lib.sh"
say() { printf 'boot-check: %s\n' "$*" >&2; }
die() { printf 'boot-check: error: %s\n' "$*" >&2; exit 1; }
skip() {
    if [[ "${DOM_REQUIRE_TOOLS:-}" == 1 ]]; then die "cannot boot a container: $*"; fi
    printf 'boot-check: skipped: %s\n' "$*" >&2
    exit 0
}
failures=0
fail() { printf 'boot-check: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }
ok() { printf 'boot-check: ok: %s\n' "$*" >&2; }
started=$SECONDS

[[ $EUID -eq 0 ]] || skip "booting a container needs root"

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
if (($# == 2)); then
    SUBD_DEB="$(realpath "$1")" DOMINATOR_DEB="$(realpath "$2")"
elif (($# == 0)); then
    TARGET="$(cargo metadata --format-version 1 --no-deps --locked \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    newest() { ls -t "$TARGET/debian/$1_${VERSION}"*.deb 2>/dev/null | head -n1; }
    SUBD_DEB="$(newest subd)" DOMINATOR_DEB="$(newest dominator)"
    [[ -n "$SUBD_DEB" && -n "$DOMINATOR_DEB" ]] \
        || die "no subd and dominator packages of $VERSION in $TARGET/debian: run ops/just package"
else
    die "usage: ops/package/boot-check.sh [SUBD.deb DOMINATOR.deb]"
fi

# --- the host: can it boot a container? -------------------------------------
if ! command -v systemd-nspawn >/dev/null; then
    command -v apt-get >/dev/null || skip "no systemd-nspawn, and no apt-get to install it"
    (apt_install systemd-container) >/dev/null 2>&1 || skip "no systemd-nspawn (apt-get install systemd-container failed)"
fi
command -v debootstrap >/dev/null || (apt_install debootstrap) >/dev/null 2>&1 \
    || skip "no debootstrap to make the container's root"
[[ -d /sys/fs/cgroup ]] && grep -q cgroup /proc/mounts || skip "no cgroup file system mounted"
ensure_tools
NATS_BIN="$(readlink -f "$ROOT/.tools/bin/nats-server")"
[[ -x "$NATS_BIN" ]] || die "no nats-server in .tools/bin (ops/install-tools.sh)"

# --- the root: Debian minbase with systemd, cached ---------------------------
BENCH="$ROOT/.bench"
BASE="$BENCH/boot-root"
suite="$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-bookworm}")"
mirror="http://deb.debian.org/debian"
include=systemd,systemd-sysv,dbus,libssl3,openssl,procps
recipe="debootstrap --variant=minbase --include=$include $suite $mirror"
if ! [[ -d "$BASE" && "$(cat "$BASE.complete" 2>/dev/null)" == "$recipe" ]]; then
    say "building the container's root ($recipe)"
    rm -rf "$BASE" "$BASE.tmp" "$BASE.complete"
    mkdir -p "$BENCH"
    if ! debootstrap --variant=minbase --include="$include" "$suite" "$BASE.tmp" "$mirror" \
            >"$BENCH/boot-root.log" 2>&1; then
        tail -n 20 "$BENCH/boot-root.log" >&2
        die "debootstrap failed (log: .bench/boot-root.log)"
    fi
    find "$BASE.tmp/var/cache/apt/archives" -name '*.deb' -delete 2>/dev/null || true
    mv "$BASE.tmp" "$BASE"
    printf '%s\n' "$recipe" >"$BASE.complete"
fi

WORK="$(mktemp -d "$BENCH/boot-check.XXXXXX")"
CHROOT="$WORK/root"
MACHINE="boot-check-$$"
nspawn_pid=
cleanup() {
    if [[ "${KEEP:-}" == 1 && -n "$nspawn_pid" ]]; then
        say "KEEP=1: container $MACHINE (nspawn pid $nspawn_pid) left running in $CHROOT;"
        say "  in it: nsenter -t $(leader) -a; stop: kill $nspawn_pid, then rm -rf $WORK"
        return
    fi
    if [[ -n "$nspawn_pid" ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # systemd-nspawn halts the container cleanly on SIGTERM.
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say "copying the root, installing $(basename "$SUBD_DEB") $(basename "$DOMINATOR_DEB")"
cp -a --reflink=auto "$BASE" "$CHROOT"
echo "$MACHINE" >"$CHROOT/etc/hostname"
install -m 755 "$NATS_BIN" "$CHROOT/usr/bin/nats-server"
mkdir -p "$CHROOT/tmp/packages"
cp "$SUBD_DEB" "$DOMINATOR_DEB" "$CHROOT/tmp/packages/"
# No systemd runs in the chroot: the maintainer scripts enable the units
# and start nothing.
chroot "$CHROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    dpkg -i /tmp/packages/"$(basename "$SUBD_DEB")" /tmp/packages/"$(basename "$DOMINATOR_DEB")" \
    >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; die "dpkg -i failed"; }
# This tree's units over the packaged ones; the example nats-server unit
# installed and enabled as its comment says.
for unit in subd dominator mdbd; do
    cp "ops/systemd/$unit.service" "$CHROOT/usr/lib/systemd/system/$unit.service"
done
cp ops/systemd/nats-server.service "$CHROOT/etc/systemd/system/nats-server.service"
ln -sf /etc/systemd/system/nats-server.service \
    "$CHROOT/etc/systemd/system/multi-user.target.wants/nats-server.service"
# mdbd's file: this machine on image base.0. A credential for the
# dominator (its content is never used: no flag points at it) and none
# for the others.
mkdir -p "$CHROOT/var/lib/mdbd" "$CHROOT/etc/credstore" "$CHROOT/srv/machine" "$CHROOT/srv/image/etc"
printf '[{"Hostname":"%s","RequiredImage":"base.0"}]\n' "$MACHINE" >"$CHROOT/var/lib/mdbd/mdb.json"
chmod 644 "$CHROOT/var/lib/mdbd/mdb.json"
install -m 600 /dev/null "$CHROOT/etc/credstore/nats-ca.crt"
echo "not a certificate" >"$CHROOT/etc/credstore/nats-ca.crt"
chmod 700 "$CHROOT/etc/credstore"
# The image: a small tree.
echo "kept by subd" >"$CHROOT/srv/image/etc/motd"
echo "#!/bin/sh" >"$CHROOT/srv/image/hello" && chmod 755 "$CHROOT/srv/image/hello"
ln -s etc/motd "$CHROOT/srv/image/motd-link"

# --- boot ------------------------------------------------------------------
# --register=no --keep-unit: no systemd-machined, no bus on the host.
say "booting $MACHINE (systemd-nspawn -b)"
systemd-nspawn -D "$CHROOT" -b -M "$MACHINE" --register=no --keep-unit \
    </dev/null >"$WORK/console.log" 2>&1 &
nspawn_pid=$!
leader() { ps -o pid= --ppid "$nspawn_pid" 2>/dev/null | head -n1 | tr -d ' '; }
in_c() { nsenter -t "$(leader)" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
booted=
for _ in $(seq 1 300); do
    kill -0 "$nspawn_pid" 2>/dev/null || break
    if [[ -n "$(leader)" ]]; then
        state="$(in_c systemctl is-system-running 2>/dev/null || true)"
        case "$state" in running | degraded) booted=1; break ;; esac
    fi
    sleep 0.2
done
if [[ -z "$booted" ]]; then
    tail -n 30 "$WORK/console.log" >&2
    kill -0 "$nspawn_pid" 2>/dev/null || skip "the container did not boot (console above)"
    skip "the container's systemd did not come up in 60 s (console above)"
fi
say "booted in $((SECONDS - started)) s so far: $state"
[[ "$state" == running ]] || in_c systemctl --failed --no-pager >&2 || true

prop() { in_c systemctl show -P "$2" "$1"; }
# wait_active UNIT: active within 15 s, and still so, with no restart, 3 s on.
wait_active() {
    local i
    for i in $(seq 1 75); do [[ "$(prop "$1" ActiveState)" == active ]] && break; sleep 0.2; done
    sleep 3
    if [[ "$(prop "$1" ActiveState)" == active && "$(prop "$1" NRestarts)" == 0 ]]; then
        local pid status
        pid="$(prop "$1" MainPID)"
        status="$(in_c cat "/proc/$pid/status")"
        ok "$1 runs under its unit (pid $pid, uid $(awk '/^Uid:/ {print $2}' <<<"$status"),"\
" seccomp $(awk '/^Seccomp:/ {print $2}' <<<"$status"), no_new_privs $(awk '/^NoNewPrivs:/ {print $2}' <<<"$status"))"
    else
        fail "$1 is $(prop "$1" ActiveState) after $(prop "$1" NRestarts) restarts"
        in_c journalctl -u "$1" --no-pager -n 20 >&2 || true
        return 1
    fi
}

# --- 1, 2: the hardened services -----------------------------------------------
for unit in nats-server dominator mdbd; do
    wait_active "$unit" || continue
    # Hardened for real: a user of its own, the system call filter in
    # force (Seccomp: 2), no privileges to gain.
    status="$(in_c cat "/proc/$(prop "$unit" MainPID)/status")"
    grep -qP '^Uid:\t[1-9]' <<<"$status" && grep -qP '^Seccomp:\t2' <<<"$status" \
        && grep -qP '^NoNewPrivs:\t1' <<<"$status" \
        || fail "$unit runs without its sandbox: $(grep -E '^(Uid|Seccomp|NoNewPrivs):' <<<"$status" | tr '\n\t' '  ')"
done
if [[ "$(prop dominator ActiveState)" == active ]]; then
    pid="$(prop dominator MainPID)"
    creds="$(in_c nsenter -t "$pid" -m ls /run/credentials/dominator.service 2>&1 || true)"
    if [[ "$creds" == nats-ca.crt ]]; then
        ok "LoadCredential=: the one credential with a file is handed over, the four without are skipped"
    else
        fail "dominator's credentials directory holds '$creds', not just nats-ca.crt"
    fi
fi
if in_c journalctl --no-pager -b | grep -E 'seccomp|SECCOMP|audit.*syscall=' >&2; then
    fail "system calls were refused (above)"
fi
# nats-server lists the machine's addresses (for the URLs it advertises to
# clients and the cluster) over netlink; refused, it logs this error.
if in_c journalctl -u nats-server --no-pager -b | grep -F "can not be resolved properly" >&2; then
    fail "nats-server could not list this machine's addresses (above)"
fi

# --- 3: subd unconfigured ------------------------------------------------------
sleep 6 # past RestartSec=5s
if [[ "$(prop subd ActiveState)/$(prop subd Result)/$(prop subd NRestarts)" == inactive/exec-condition/0 ]] \
        && in_c journalctl -u subd --no-pager -b | grep -q "subd: not configured"; then
    ok "subd unconfigured: inactive, not failed, not restarted, the journal says why"
else
    fail "subd unconfigured: $(prop subd ActiveState) $(prop subd Result) after $(prop subd NRestarts) restarts"
    in_c journalctl -u subd --no-pager -b -n 20 >&2 || true
fi
if in_c systemctl start subd && [[ "$(prop subd ActiveState)" == inactive ]]; then
    ok "systemctl start subd, unconfigured: exit 0, still inactive"
else
    fail "systemctl start subd, unconfigured: $(prop subd ActiveState)"
fi

# --- 4: subd converges a directory ---------------------------------------------
server=nats://127.0.0.1:4222
in_c domsetup streams --server "$server" >"$WORK/streams.log" 2>&1 \
    || { cat "$WORK/streams.log" >&2; fail "domsetup streams"; }
in_c imagetool --server "$server" add base.0 /srv/image "" "" >"$WORK/add.log" 2>&1 \
    || { cat "$WORK/add.log" >&2; fail "imagetool add base.0"; }
in_c sed -i "s|^SUBD_OPTS=.*|SUBD_OPTS=--server $server --root /srv/machine|" /etc/default/subd
in_c systemctl restart subd
wait_active subd || true
if in_c domtool --server "$server" wait "$MACHINE" --image base.0 --timeout 60s >"$WORK/wait.log" 2>&1 \
        && cmp -s "$CHROOT/srv/image/etc/motd" "$CHROOT/srv/machine/etc/motd" \
        && [[ -x "$CHROOT/srv/machine/hello" && "$(readlink "$CHROOT/srv/machine/motd-link")" == etc/motd ]]; then
    ok "subd converged /srv/machine to base.0 (mdbd's file, the dominator, NATS, all under systemd)"
else
    cat "$WORK/wait.log" >&2
    fail "subd did not converge /srv/machine to base.0"
    in_c journalctl -u subd -u dominator -u mdbd --no-pager -b -n 30 >&2 || true
fi

# --- 5: clean stops ----------------------------------------------------------
for unit in subd mdbd dominator nats-server; do
    t0=$SECONDS
    in_c systemctl stop "$unit" || fail "systemctl stop $unit"
    result="$(prop "$unit" Result) status=$(prop "$unit" ExecMainStatus) code=$(prop "$unit" ExecMainCode)"
    # ExecMainCode 1: exited (CLD_EXITED), not killed by a signal.
    if [[ "$result" == "success status=0 code=1" ]] \
            && in_c journalctl -u "$unit" --no-pager -b | grep -q "Deactivated successfully"; then
        ok "systemctl stop $unit: exit 0, deactivated successfully, in $((SECONDS - t0)) s"
    else
        fail "systemctl stop $unit: $result"
        in_c journalctl -u "$unit" --no-pager -b -n 10 >&2 || true
    fi
done

say "took $((SECONDS - started)) s"
((failures == 0)) || die "$failures check(s) failed"
say "all checks passed"
