#!/usr/bin/env bash
# Build the benchmark corpora once and cache them under <repo>/.bench:
#
#   .bench/debian-minbase   Debian root file system (debootstrap --variant=minbase),
#                           same suite and mirror as this machine's apt sources
#   .bench/synth            synthetic tree, ~40,000 files / ~1 GB (gen_synth.py)
#   .bench/synth-1pct       hard-linked copy of synth (cp -al) in which 1% of
#                           the files were replaced by changed versions
#
# A corpus is rebuilt only when its marker file (.bench/<name>.complete) is
# missing or records different parameters.  Usage:
#
#   ops/bench/corpora.sh [debian-minbase] [synth]     (default: both)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BENCH="$ROOT/.bench"
GEN="$ROOT/ops/bench/gen_synth.py"
source "$ROOT/ops/lib.sh"

say() { printf 'corpora: %s\n' "$*" >&2; }
die() { printf 'corpora: error: %s\n' "$*" >&2; exit 1; }

# marker_ok NAME RECIPE: true when .bench/NAME exists and was built with RECIPE.
marker_ok() {
    [[ -d "$BENCH/$1" && -f "$BENCH/$1.complete" ]] \
        && [[ "$(cat "$BENCH/$1.complete")" == "$2" ]]
}

# Suite and mirror from this machine's apt configuration (one-line and
# deb822 formats); falls back to the OS codename and deb.debian.org.
debian_source() {
    python3 - <<'PY'
import glob, re
codename = "bookworm"
try:
    for line in open("/etc/os-release"):
        if line.startswith("VERSION_CODENAME="):
            codename = line.split("=", 1)[1].strip().strip('"') or codename
except OSError:
    pass
mirror = None
def consider(uris, suites):
    global mirror
    if mirror is None and codename in suites:
        for u in uris:
            if "security" not in u:
                mirror = u.rstrip("/")
                return
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            consider([line[1]], [line[2]])
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        text = open(path).read()
    except OSError:
        continue
    for block in re.split(r"\n\s*\n", text):
        fields = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"])[0] != "no":
            consider(fields.get("uris", []), fields.get("suites", []))
print(codename, mirror or "http://deb.debian.org/debian")
PY
}

build_debian() {
    local suite mirror recipe dest="$BENCH/debian-minbase"
    read -r suite mirror < <(debian_source)
    recipe="debootstrap --variant=minbase $suite $mirror; /dev emptied"
    if marker_ok debian-minbase "$recipe"; then return 0; fi
    say "building debian-minbase ($suite from $mirror)"
    command -v debootstrap >/dev/null || apt_install debootstrap
    [[ $EUID -eq 0 ]] || die "debootstrap needs root; run the benchmark as root"
    rm -rf "$dest" "$dest.tmp" "$BENCH/debian-minbase.complete"
    mkdir -p "$BENCH"
    if ! debootstrap --variant=minbase "$suite" "$dest.tmp" "$mirror" \
            >"$BENCH/debootstrap.log" 2>&1; then
        tail -n 20 "$BENCH/debootstrap.log" >&2
        die "debootstrap failed (log: .bench/debootstrap.log)"
    fi
    # Device nodes are not image content (devtmpfs provides them) and ostree
    # cannot store them; leave /dev empty. Drop any cached packages.
    find "$dest.tmp/dev" -mindepth 1 -delete
    find "$dest.tmp/var/cache/apt/archives" -name '*.deb' -delete 2>/dev/null || true
    mv "$dest.tmp" "$dest"
    printf '%s\n' "$recipe" > "$BENCH/debian-minbase.complete"
}

build_synth() {
    local recipe
    recipe="$(python3 "$GEN" params)"
    if marker_ok synth "$recipe" && marker_ok synth-1pct "$recipe"; then return 0; fi
    rm -rf "$BENCH/synth" "$BENCH/synth.tmp" "$BENCH/synth-1pct" "$BENCH/synth-1pct.tmp" \
        "$BENCH/synth.complete" "$BENCH/synth-1pct.complete"
    mkdir -p "$BENCH"
    say "generating synth (~1 GB)"
    python3 "$GEN" generate "$BENCH/synth.tmp" >&2
    mv "$BENCH/synth.tmp" "$BENCH/synth"
    printf '%s\n' "$recipe" > "$BENCH/synth.complete"
    say "making synth-1pct (hard-linked copy with 1% of files replaced)"
    cp -al "$BENCH/synth" "$BENCH/synth-1pct.tmp"
    python3 "$GEN" mutate "$BENCH/synth-1pct.tmp" >&2
    mv "$BENCH/synth-1pct.tmp" "$BENCH/synth-1pct"
    printf '%s\n' "$recipe" > "$BENCH/synth-1pct.complete"
}

targets=("$@")
((${#targets[@]})) || targets=(debian-minbase synth)
for t in "${targets[@]}"; do
    case "$t" in
        debian-minbase) build_debian ;;
        synth|synth-1pct) build_synth ;;
        *) die "unknown corpus: $t" ;;
    esac
done
