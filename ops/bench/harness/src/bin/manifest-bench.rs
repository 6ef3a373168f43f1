//! `manifest-bench FILE [--runs N]`: decodes (and validates) the encoded
//! manifest in FILE N times, as an agent does when a desired state names
//! a new image, and prints `decode=…` (median seconds), `entries=…` and
//! the encoded and decoded sizes.

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
    println!(
        "decode={:.3} entries={entries} encoded_bytes={}",
        times[times.len() / 2],
        encoded.len()
    );
    Ok(())
}
