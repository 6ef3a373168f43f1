#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each and prints a summary.
#
#   fuzz/run.sh SECONDS [TARGET...]     every target when none is named
#
# Each target starts from its checked-in seeds (fuzz/seeds/TARGET) and keeps
# what it learns in fuzz/corpus/TARGET (not checked in), so later runs pick
# up where earlier ones stopped. A crash leaves its input in
# fuzz/artifacts/TARGET/ and makes the run fail once every target has run;
# docs/FUZZING.md says how to turn it into a regression test.
#
# FUZZ_SANITIZER=address builds with AddressSanitizer (slower, catches huge
# allocations and leaks); the default, none, needs nothing beyond the
# stable toolchain.
set -euo pipefail

FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ")"
seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
sanitizer="${FUZZ_SANITIZER:-none}"

"$ROOT/ops/install-tools.sh" --fuzz
export PATH="$ROOT/.tools/bin:$PATH"
if [[ "$sanitizer" != none ]]; then
    # The sanitizer flags are unstable rustc options; the stable compiler
    # ships the runtimes and accepts the flags when told to.
    export RUSTC_BOOTSTRAP=1
fi
cd "$FUZZ"

started=$SECONDS
if (($#)); then
    targets=("$@")
    for target in "${targets[@]}"; do
        cargo fuzz build --sanitizer "$sanitizer" --debug-assertions "$target"
    done
else
    mapfile -t targets < <(cargo fuzz list)
    cargo fuzz build --sanitizer "$sanitizer" --debug-assertions
fi
echo "fuzz: built in $((SECONDS - started)) s; ${seconds} s per target" >&2

summary=()
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
    if [[ -f "dicts/$target.dict" ]]; then
        args+=(-dict="dicts/$target.dict")
    fi
    log="$(mktemp)"
    echo "fuzz: $target" >&2
    if cargo fuzz run --sanitizer "$sanitizer" --debug-assertions "$target" \
        "corpus/$target" "seeds/$target" -- "${args[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$target")
        tail -n 40 "$log" >&2
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    summary+=("$(printf '%-14s %-6s %12s runs %9s/s' "$target" "$status" "${runs:-?}" "${rate:-?}")")
    rm -f "$log"
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz: crashes in ${failed[*]}; inputs are in fuzz/artifacts/; see docs/FUZZING.md" >&2
    exit 1
fi
