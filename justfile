# Task runner for the project. Use `ops/just <recipe>` (installs the pinned
# tools into .tools on first use) or plain `just <recipe>` if you have it.

set shell := ["bash", "-euo", "pipefail", "-c"]

root := justfile_directory()
tools := root / ".tools" / "bin"

# List the recipes
default:
    @"{{just_executable()}}" --justfile "{{justfile()}}" --list --unsorted

# Install the pinned developer tools into .tools (idempotent)
tools:
    @"{{root}}/ops/install-tools.sh"

# Run a development NATS server (JetStream, 127.0.0.1:4222) in the foreground
nats: tools
    mkdir -p "{{root}}/var/nats"
    cd "{{root}}" && exec "{{tools}}/nats-server" -c ops/nats-dev.conf

# Run a three-server cluster on this host (4222-4224), streams on 3 replicas
cluster: tools
    @"{{root}}/ops/cluster/run.sh"

# Run the test suite (end-to-end tests start their own nats-server)
test: tools
    #!/usr/bin/env bash
    set -euo pipefail
    cd "{{root}}"
    export NATS_SERVER="{{tools}}/nats-server"
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-tests=pass
    else
        cargo test --workspace
    fi

# Check formatting and lints (warnings are errors)
lint: tools
    cd "{{root}}" && cargo fmt --all --check
    cd "{{root}}/fuzz" && cargo fmt --check
    cd "{{root}}" && cargo clippy --workspace --all-targets -- -D warnings

# Build release binaries
build: tools
    cd "{{root}}" && cargo build --release

# Debian packages subd and dominator in target/debian (cargo-deb; README "Packages")
package: tools
    @"{{root}}/ops/package/build.sh"

# Check the packages: their contents, then install and run them in a Debian root (root)
package-check: tools
    @"{{root}}/ops/package/check.sh"

# Boot the packages in a container under systemd and run their units (root)
boot-check: tools
    @"{{root}}/ops/package/boot-check.sh"

# The whole story on a private fleet: NATS, the dominator and two agents
demo: tools
    @"{{root}}/ops/demo.sh"

# Benchmarks: imagetool, the agent, the fleet, end to end (slow; not run in CI)
bench: tools
    @"{{root}}/ops/bench/run.sh"

# Fuzz each decoder for SECONDS (default 60, or FUZZ_SECONDS); docs/FUZZING.md
fuzz seconds=env_var_or_default("FUZZ_SECONDS", "60") *targets:
    @"{{root}}/fuzz/run.sh" {{seconds}} {{targets}}

# A short run of every fuzz target, as CI does
fuzz-smoke:
    @"{{root}}/fuzz/run.sh" 10
