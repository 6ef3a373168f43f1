//! `manifest-bench FILE [--runs N]`: decodes (and validates) the encoded
//! manifest in FILE N times, as an agent does when a desired state names
//! a new image, and prints `decode=…` (median seconds), `entries=…` and
//! the encoded size; then encodes it again as `imagetool add` does,
//! `encode=…` (median seconds) and `reencoded_bytes=…`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use dom_model::Manifest;

#[derive(Parser)]
struct Args {
    file: PathBuf,
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let encoded = std::fs::read(&args.file)?;
    let mut times = Vec::new();
    let mut entries = 0;
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        let manifest = Manifest::decode(&encoded)?;
        times.push(started.elapsed().as_secs_f64());
        entries = manifest.entries.len();
    }
    times.sort_by(f64::total_cmp);
    let manifest = Manifest::decode(&encoded)?;
    let mut encode_times = Vec::new();
    let mut reencoded = 0;
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        reencoded = manifest.encode().len();
        encode_times.push(started.elapsed().as_secs_f64());
    }
    encode_times.sort_by(f64::total_cmp);
    println!(
        "decode={:.3} entries={entries} encoded_bytes={} encode={:.3} reencoded_bytes={reencoded}",
        times[times.len() / 2],
        encoded.len(),
        encode_times[encode_times.len() / 2],
    );
    Ok(())
}
