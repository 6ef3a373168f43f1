#!/usr/bin/env bash
# Build the Debian packages (`ops/just package`):
#
#   subd_VERSION_ARCH.deb       the agent, for every machine
#   dominator_VERSION_ARCH.deb  dominator, mdbd, domtool, imagetool, domsetup,
#                               domsecure, for the fleet's servers and operators
#
# What each holds is in the crates' [package.metadata.deb] (services/subd and
# services/dominator); this builds the release binaries once, stages what
# cargo-deb takes from target/assets/ (man pages and completions from
# the clap definitions, domsecure with its version, ops/monitoring when it
# exists), then runs cargo-deb without building. The packages go to
# TARGET/debian/ (TARGET: cargo's target directory); the paths are printed,
# one a line, last.
#
# DEB_DBGSYM=1 adds subd-dbgsym and dominator-dbgsym (the debug information).
# The version is the workspace's; the revision in every `--version` is
# DOM_REVISION when set (a build from a tarball), else this checkout's commit,
# "-dirty" when the tree differs from it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
say() { printf 'package: %s\n' "$*" >&2; }
die() { printf 'package: error: %s\n' "$*" >&2; exit 1; }

"$ROOT/ops/install-tools.sh" --deb
CARGO_DEB="$ROOT/.tools/bin/cargo-deb"

if [[ -z "${DOM_REVISION:-}" ]] && git rev-parse --git-dir >/dev/null 2>&1; then
    DOM_REVISION="$(git rev-parse --short HEAD)"
    git diff --quiet HEAD -- 2>/dev/null || DOM_REVISION+="-dirty"
fi
export DOM_REVISION="${DOM_REVISION:-unknown}"

TARGET="$(cargo metadata --format-version 1 --no-deps --locked \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

say "building the release binaries (revision $DOM_REVISION)"
cargo build --release --locked --bins \
    -p subd -p dominator -p domtool -p mdbd -p imagetool -p domsetup -p dom-assets

# Not under TARGET/release: cargo-deb takes what is there for built binaries
# (and would strip it); the crates' Cargo.toml name this directory.
ASSETS="$ROOT/target/assets"
rm -rf "$ASSETS"
mkdir -p "$ASSETS"
"$TARGET/release/dom-assets" "$ASSETS/subd" subd >&2
"$TARGET/release/dom-assets" "$ASSETS/dominator" \
    dominator domtool mdbd imagetool domsetup domsecure >&2

# domsecure answers --version with what the package build writes in.
version="$("$TARGET/release/subd" --version)"
version="${version#subd }"
grep -qx 'DOMSECURE_VERSION=""' ops/secure/domsecure \
    || die "ops/secure/domsecure has no DOMSECURE_VERSION=\"\" line to fill in"
sed "s|^DOMSECURE_VERSION=\"\"\$|DOMSECURE_VERSION=\"$version\"|" ops/secure/domsecure \
    > "$ASSETS/domsecure"
chmod 755 "$ASSETS/domsecure"

# The Prometheus rules and Grafana dashboard, when this tree has them.
if [[ -d ops/monitoring ]]; then
    mkdir -p "$ASSETS/dominator/dominator/monitoring"
    cp -r ops/monitoring/. "$ASSETS/dominator/dominator/monitoring/"
else
    say "no ops/monitoring: the dominator package ships no monitoring files"
fi

# The binaries are stripped: a tenth of the size (panics still name their
# file and line). DEB_DBGSYM=1 keeps their debug information in
# PACKAGE-dbgsym .ddeb packages beside them instead (a few minutes more).
strip=(--strip)
if [[ "${DEB_DBGSYM:-0}" != 0 ]]; then strip=(--dbgsym --compress-debug-symbols); fi
debs=()
for package in subd dominator; do
    say "packaging $package"
    # --quiet: cargo-deb warns that the staged assets are not under
    # target/release, which is the point.
    while IFS= read -r deb; do debs+=("$deb"); done < <(
        "$CARGO_DEB" --no-build --locked --quiet "${strip[@]}" -p "$package" \
            --output "$TARGET/debian/")
done

for deb in "${debs[@]}"; do
    say "built $deb ($(du -h "$deb" | cut -f1))"
done
printf '%s\n' "${debs[@]}"
