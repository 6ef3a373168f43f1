//! `scan-bench ROOT [--rate BYTES_PER_SECOND] [--threads N]`: one full scan
//! of ROOT as the agent does it (every file read and hashed, no hash
//! cache, one file system), optionally rate limited. Prints
//! `seconds=… files=… bytes=… rate=…` (rate in bytes per second).
//!
//! `--rescans N` then scans N times more with the hash cache the first
//! scan filled, as the agent's quick scan does on a machine it keeps (it
//! reads no file contents), and adds `rescan=…`, the median seconds.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use dom_scan::{scan_tree, Counters, HashCache, RateLimit, ScanOptions};

#[derive(Parser)]
struct Args {
    root: PathBuf,
    /// Limit reading to this many bytes per second.
    #[arg(long)]
    rate: Option<u64>,
    /// Worker threads (0: the scanner's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Scans with the hash cache to time after the first.
    #[arg(long, default_value_t = 0)]
    rescans: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cache = Arc::new(HashCache::new());
    let options = ScanOptions {
        cache: (args.rescans > 0).then(|| cache.clone()),
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
    let cpu_before = cpu_seconds();
    let mut rescans: Vec<f64> = (0..args.rescans)
        .map(|_| {
            let started = Instant::now();
            let again = scan_tree(&args.root, &options, &Counters::default())?;
            anyhow::ensure!(
                again.manifest == scan.manifest,
                "the tree changed while scanned"
            );
            Ok(started.elapsed().as_secs_f64())
        })
        .collect::<anyhow::Result<_>>()?;
    let cpu = (cpu_seconds() - cpu_before) / args.rescans.max(1) as f64;
    rescans.sort_by(f64::total_cmp);
    let rescan = rescans
        .get(rescans.len() / 2)
        .map(|s| format!(" rescan={s:.3} rescan_cpu={cpu:.3}"))
        .unwrap_or_default();
    println!(
        "seconds={seconds:.3} files={} bytes={bytes} rate={:.0} inodes={}{rescan}",
        counters.files.load(Ordering::Relaxed),
        bytes as f64 / seconds,
        scan.manifest.entries.len()
    );
    Ok(())
}

/// CPU seconds (user and system) this process has used.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
