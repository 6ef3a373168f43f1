#!/usr/bin/env bash
# Check the Debian packages `ops/just package` built (`ops/just package-check`;
# needs root, as CI runs):
#
#   1. dpkg-deb --info and --contents of each, printed, and every path each
#      must ship is there (binaries, units, /etc/default files as conffiles,
#      man pages, completions);
#   2. both install with dpkg -i into a fresh Debian root (a copy of the
#      cached debootstrap --variant=minbase root of ops/bench/corpora.sh),
#      the dependencies the minimal root lacks (libssl3, openssl) from the
#      Debian mirror with apt-get; a pretend running systemd there records
#      every systemctl and deb-systemd-invoke call;
#   3. every binary answers --version (with the package's version and a
#      revision) and --help there, domsecure sets a secured server up; the
#      man pages and completions are where man and the shells look;
#   4. the units are enabled (multi-user.target.wants links) and nothing
#      was started; an upgrade restarts only running ones (try-restart);
#      removing stops them and masks them, purging removes the links and
#      the /etc/default files.
#
# Usage: ops/package/check.sh [SUBD.deb DOMINATOR.deb]   (default: the newest
# of this version in the target directory's debian/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
say() { printf 'package-check: %s\n' "$*" >&2; }
die() { printf 'package-check: error: %s\n' "$*" >&2; exit 1; }
failures=0
fail() { printf 'package-check: FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }

[[ $EUID -eq 0 ]] || die "installing into a Debian root needs root"

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
    die "usage: ops/package/check.sh [SUBD.deb DOMINATOR.deb]"
fi

SUBD_BINS=(subd)
DOMINATOR_BINS=(dominator domtool mdbd imagetool domsetup domsecure)

# man pages and completions of NAME, as installed.
share_paths() {
    printf '%s\n' "./usr/share/man/man1/$1.1.gz" \
        "./usr/share/bash-completion/completions/$1" \
        "./usr/share/zsh/vendor-completions/_$1" \
        "./usr/share/fish/vendor_completions.d/$1.fish"
}

# --- 1. what each package ships -------------------------------------------
check_contents() { # DEB EXPECTED-PATH...
    local deb="$1" listing path; shift
    printf '\n== %s\n' "$(basename "$deb")"
    dpkg-deb --info "$deb"
    listing="$(dpkg-deb --contents "$deb")"
    printf '%s\n' "$listing"
    for path in "$@"; do
        grep -q " $path\( -> .*\)\?\$" <<<"$listing" || fail "$(basename "$deb") lacks $path"
    done
}

subd_paths=(./usr/bin/subd ./usr/lib/systemd/system/subd.service ./etc/default/subd)
for b in "${SUBD_BINS[@]}"; do mapfile -t -O "${#subd_paths[@]}" subd_paths < <(share_paths "$b"); done
dominator_paths=(./usr/lib/systemd/system/dominator.service ./usr/lib/systemd/system/mdbd.service
    ./etc/default/dominator ./etc/default/mdbd
    ./usr/share/doc/dominator/examples/nats-server.service
    ./usr/share/man/man1/domtool-mdb.1.gz ./usr/share/man/man1/imagetool-add.1.gz)
for b in "${DOMINATOR_BINS[@]}"; do
    dominator_paths+=("./usr/bin/$b")
    mapfile -t -O "${#dominator_paths[@]}" dominator_paths < <(share_paths "$b")
done
if [[ -d ops/monitoring ]]; then
    for f in ops/monitoring/*; do
        dominator_paths+=("./usr/share/dominator/monitoring/$(basename "$f")")
    done
fi
check_contents "$SUBD_DEB" "${subd_paths[@]}"
check_contents "$DOMINATOR_DEB" "${dominator_paths[@]}"

for pair in "$SUBD_DEB:/etc/default/subd" "$DOMINATOR_DEB:/etc/default/dominator" \
        "$DOMINATOR_DEB:/etc/default/mdbd"; do
    deb="${pair%%:*}" conffile="${pair#*:}"
    dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles 2>/dev/null | grep -qx "$conffile" \
        || fail "$(basename "$deb"): $conffile is not a conffile"
done

# --- 2. install into a fresh Debian root ----------------------------------
"$ROOT/ops/bench/corpora.sh" debian-minbase
CACHE="$ROOT/.bench/package-check-apt"
WORK="$(mktemp -d "$ROOT/.bench/package-check.XXXXXX")"
CHROOT="$WORK/root"
mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

say "copying the Debian root"
cp -a --reflink=auto "$ROOT/.bench/debian-minbase" "$CHROOT"
for m in proc dev; do
    if [[ "$m" == proc ]]; then mount -t proc proc "$CHROOT/proc"; else mount --bind /dev "$CHROOT/dev"; fi
    mounted+=("$CHROOT/$m")
done
cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
# apt's lists and downloaded packages, kept between runs.
mkdir -p "$CACHE/lists" "$CACHE/archives"
cp -a "$CACHE/lists/." "$CHROOT/var/lib/apt/lists/"
cp -a "$CACHE/archives/." "$CHROOT/var/cache/apt/archives/"

# A systemd that seems to run, so the maintainer scripts do what they would
# on a real machine; systemctl and deb-systemd-invoke only record calls.
mkdir -p "$CHROOT/run/systemd/system"
for tool in systemctl deb-systemd-invoke; do
    printf '#!/bin/sh\necho "%s $*" >> /var/log/systemd-calls\n' "$tool" \
        > "$CHROOT/usr/local/sbin/$tool"
    chmod 755 "$CHROOT/usr/local/sbin/$tool"
done
: > "$CHROOT/var/log/systemd-calls"

in_root() {
    chroot "$CHROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 HOME=/root "$@"
}

# The packages' dependencies the minimal root lacks (libssl3, openssl), from
# the Debian mirror, then the packages themselves with dpkg -i.
missing=()
for dep in $(for deb in "$SUBD_DEB" "$DOMINATOR_DEB"; do dpkg-deb -f "$deb" Depends; done \
        | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | sort -u); do
    in_root dpkg-query -W -f '${Status}' "$dep" 2>/dev/null | grep -q 'ok installed' || missing+=("$dep")
done
if ((${#missing[@]})); then
    say "installing what the minimal root lacks with apt-get: ${missing[*]}"
    { in_root apt-get update -q && in_root apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; die "apt-get could not install ${missing[*]}"; }
fi
mkdir -p "$CHROOT/tmp/packages"
cp "$SUBD_DEB" "$DOMINATOR_DEB" "$CHROOT/tmp/packages/"
: > "$CHROOT/var/log/systemd-calls"
say "dpkg -i $(basename "$SUBD_DEB") $(basename "$DOMINATOR_DEB")"
in_root dpkg -i /tmp/packages/"$(basename "$SUBD_DEB")" /tmp/packages/"$(basename "$DOMINATOR_DEB")" \
    >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log" >&2; die "dpkg -i failed"; }
cp -a "$CHROOT/var/lib/apt/lists/." "$CACHE/lists/" 2>/dev/null || true
cp -a "$CHROOT/var/cache/apt/archives/." "$CACHE/archives/" 2>/dev/null || true
for package in subd dominator; do
    status="$(in_root dpkg-query -W -f '${Status} ${Version}' "$package" 2>/dev/null || true)"
    say "$package: $status"
    [[ "$status" == "install ok installed $VERSION"* ]] || fail "$package is not installed: $status"
done

# --- 3. the binaries run; man pages and completions are in place ----------
for bin in "${SUBD_BINS[@]}" "${DOMINATOR_BINS[@]}"; do
    if out="$(in_root "/usr/bin/$bin" --version 2>&1)"; then
        say "$out"
        [[ "$out" =~ ^$bin\ $VERSION\ \(rev\ [^\)]+\)$ ]] || fail "$bin --version: $out"
    else
        fail "$bin --version: $out"
    fi
    if out="$(in_root "/usr/bin/$bin" --help 2>&1)"; then
        grep -q "Usage\|usage\|$bin" <<<"$out" || fail "$bin --help says nothing useful: $out"
    else
        fail "$bin --help: $out"
    fi
    while IFS= read -r path; do
        [[ -s "$CHROOT/${path#./}" ]] || fail "/${path#./} is not installed"
    done < <(share_paths "$bin")
    zcat "$CHROOT/usr/share/man/man1/$bin.1.gz" | grep -q '^\.TH' || fail "$bin.1.gz is no man page"
done
[[ "$(in_root domsecure --help)" == *"add-host HOST"* ]] || fail "domsecure --help lists no commands"
# domsecure as installed: openssl from its dependency, domsetup beside it.
if in_root domsecure --dir /root/secure init >"$WORK/domsecure.log" 2>&1 \
        && in_root domsecure --dir /root/secure add-host web1 >>"$WORK/domsecure.log" 2>&1; then
    for file in nats.conf ca/ca.pem creds/operator.nk creds/subd-web1.nk; do
        [[ -s "$CHROOT/root/secure/$file" ]] || fail "domsecure init and add-host wrote no $file"
    done
else
    fail "domsecure init and add-host failed: $(cat "$WORK/domsecure.log")"
fi

# --- 4. enabled, not started; remove and purge ----------------------------
wants="$CHROOT/etc/systemd/system/multi-user.target.wants"
for unit in subd dominator mdbd; do
    [[ -L "$wants/$unit.service" ]] || fail "$unit.service is not enabled ($wants/$unit.service)"
done
say "systemd calls on install: $(tr '\n' ';' < "$CHROOT/var/log/systemd-calls")"
grep -q 'daemon-reload' "$CHROOT/var/log/systemd-calls" \
    || fail "the maintainer scripts did not see the pretend systemd: nothing shows they would start nothing"
if grep -Eq ' (start|restart|try-restart|reload-or-restart) ' "$CHROOT/var/log/systemd-calls"; then
    fail "installing started a unit: $(cat "$CHROOT/var/log/systemd-calls")"
fi
# An upgrade (the same packages again) restarts only what runs: try-restart.
: > "$CHROOT/var/log/systemd-calls"
in_root dpkg -i /tmp/packages/"$(basename "$SUBD_DEB")" /tmp/packages/"$(basename "$DOMINATOR_DEB")" \
    >"$WORK/upgrade.log" 2>&1 || { cat "$WORK/upgrade.log" >&2; fail "reinstalling failed"; }
calls="$(cat "$CHROOT/var/log/systemd-calls")"
say "systemd calls on upgrade: $(tr '\n' ';' <<<"$calls")"
for unit in subd dominator mdbd; do
    grep -q "^deb-systemd-invoke try-restart .*$unit.service" <<<"$calls" \
        || fail "upgrading does not try-restart $unit.service"
done
if grep -Eq ' (start|restart) ' <<<"$calls"; then fail "upgrading starts a unit: $calls"; fi
: > "$CHROOT/var/log/systemd-calls"
in_root dpkg -r subd dominator >"$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log" >&2; fail "dpkg -r failed"; }
calls="$(cat "$CHROOT/var/log/systemd-calls")"
say "systemd calls on remove: $(tr '\n' ';' <<<"$calls")"
for unit in subd dominator mdbd; do
    grep -q "^deb-systemd-invoke stop .*$unit.service" <<<"$calls" || fail "removing did not stop $unit.service"
    [[ "$(readlink "$CHROOT/etc/systemd/system/$unit.service" || true)" == /dev/null ]] \
        || fail "removing did not mask $unit.service"
done
in_root dpkg -P subd dominator >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log" >&2; fail "dpkg -P failed"; }
for unit in subd dominator mdbd; do
    [[ ! -e "$wants/$unit.service" && ! -L "$wants/$unit.service" ]] || fail "purging left $wants/$unit.service"
    [[ ! -e "$CHROOT/etc/default/$unit" ]] || fail "purging left /etc/default/$unit"
done

if ((failures)); then
    die "$failures check(s) failed"
fi
say "ok: $(basename "$SUBD_DEB") and $(basename "$DOMINATOR_DEB") install, run, and start nothing"
