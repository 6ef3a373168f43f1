//! Benchmark drivers called by `ops/bench/run.sh`. Each binary measures
//! one thing and prints one line of `key=value` pairs for the script.
