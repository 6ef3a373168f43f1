//! `scan-bench ROOT [--rate BYTES_PER_SECOND] [--threads N]`: one full scan
//! of ROOT as the agent does it (every file read and hashed, no hash
//! cache, one file system), optionally rate limited. Prints
//! `seconds=… files=… bytes=… rate=…` (rate in bytes per second).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use dom_scan::{scan_tree, Counters, RateLimit, ScanOptions};

#[derive(Parser)]
struct Args {
    root: PathBuf,
    /// Limit reading to this many bytes per second.
    #[arg(long)]
    rate: Option<u64>,
    /// Worker threads (0: the scanner's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = ScanOptions {
        rate: args.rate.map(|r| Arc::new(RateLimit::new(r))),
        one_file_system: true,
        threads: args.threads,
        protected: vec!["/.subd".into()],
        ..Default::default()
    };
    let counters = Counters::default();
    let started = Instant::now();
    let scan = scan_tree(&args.root, &options, &counters)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = counters.hashed_bytes.load(Ordering::Relaxed);
    println!(
        "seconds={seconds:.3} files={} bytes={bytes} rate={:.0} inodes={}",
        counters.files.load(Ordering::Relaxed),
        bytes as f64 / seconds,
        scan.manifest.entries.len()
    );
    Ok(())
}
