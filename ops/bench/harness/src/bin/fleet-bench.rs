//! `fleet-bench --server URL [--agents N]`: a whole fleet in one process.
//!
//! Adds a small image (the user guide's `ops/examples/path` tree, sparse,
//! with its triggers), starts the dominator and N agents (`host-0000`, …),
//! each keeping a small tree of its own under a temporary directory and
//! running `true` as its service command. Once every agent has reported
//! its first scan, one MDB record per machine requires the image, and the
//! time is taken until every agent reports itself compliant with it. The
//! reports are followed on `dom.state.>`.
//!
//! The dominator may update every machine at once (`--max-concurrent`
//! defaults to the number of agents), so the rollout cap does not pace
//! the measurement.
//!
//! Prints one line of `key=value` pairs: `seconds` from the first MDB
//! publish to the last machine compliant, percentiles of the machines'
//! times, and the process's peak memory (`VmHWM`), threads and open files.
//!
//! Many agents in one process need more of some resources than one agent
//! does; each is set here, not in the agent:
//!
//! - scans: an agent scans its tree again a pause after each scan, and
//!   each scan starts its own worker threads (four per core by default).
//!   A thousand agents scanning every second with eight threads each keep
//!   both cores busy while idle, and the rollout then starves (object
//!   reads time out). Small trees need one thread, and the pause here is
//!   ten seconds (`--scan-interval`, `--scan-threads`); a desired state or
//!   an update starts a scan at once whatever the pause;
//! - tokio's blocking pool: an agent's fetch holds a blocking thread while
//!   it waits for the objects it writes on other blocking threads, so a
//!   pool smaller than the number of agents fetching at once stalls every
//!   fetch for good; the pool here is sized from the number of agents
//!   (`--max-blocking-threads`);
//! - open files: one NATS connection per agent, so the soft limit is
//!   raised to the hard one;
//! - the disk: every agent keeps its state with flushed writes (the
//!   desired state, the record of what it applied, each object fetched).
//!   A real fleet spreads those over a thousand disks; here they all land
//!   on one, and on a shared virtual disk the time then follows the
//!   disk's load more than the agents' work. `ops/bench/run.sh` puts the
//!   trees on a memory file system (`/dev/shm`) when it has one, and
//!   `machines_fs` in the output says which file system they were on.
//!
//! Before the MDB changes, the agents are watched at rest for `--idle`
//! (3 s): `idle_cpu` is the CPU they use then, in cores.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use dom_bus::{Bus, ConnectArgs, FleetKind, FleetUpdate};
use dom_model::policy::is_compliant_with;
use dom_model::{ImageName, MdbRecord, StateReport};
use dominator::{Dominator, Settings};
use futures::StreamExt;
use subd::services::ServiceCommand;
use subd::Agent;
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: String,
    /// Agents to run.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// The image's source tree (default: ops/examples/path without its
    /// /etc/hostname and /etc/fstab, which stay each machine's own).
    #[arg(long)]
    source: Option<PathBuf>,
    /// The image's filter file; "" makes a sparse image.
    #[arg(long, default_value = "")]
    filter: String,
    /// The image's triggers file (default: ops/examples/triggers).
    #[arg(long)]
    triggers: Option<String>,
    /// Pause between an agent's scans.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    scan_interval: Duration,
    /// Worker threads of each scan.
    #[arg(long, default_value_t = 1)]
    scan_threads: usize,
    /// Most machines the dominator lets update at once (default: all).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// The dominator's canary (its default: 1); `0` moves every machine
    /// at once, as before rollouts had waves.
    #[arg(long, default_value = "1", value_parser = |s: &str| s.parse::<dom_model::policy::Canary>())]
    canary: dom_model::policy::Canary,
    /// tokio's blocking-thread limit (default: twice the agents, plus 64).
    #[arg(long)]
    max_blocking_threads: Option<usize>,
    /// tokio's worker threads (default: one per core).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// How long to watch the agents at rest, before the MDB changes, to
    /// measure what they cost idle.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Where the machines' trees go (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Give up after this long without every machine compliant.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn main() -> Result<()> {
    let args = Args::parse();
    dominator::init_logging(0);
    raise_open_files_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime
        .enable_all()
        .max_blocking_threads(args.max_blocking_threads.unwrap_or(args.agents * 2 + 64));
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n);
    }
    let runtime = runtime.build()?;
    runtime.block_on(run(args))
}

/// Raises the soft limit on open files to the hard limit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The kind of file system `path` is on: `tmpfs`, `ext4`, … or its
/// magic number.
fn file_system(path: &Path) -> String {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs writes into the zeroed struct given; the path is a
    // NUL-terminated string that outlives the call.
    let kind = unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        if libc::statfs(c_path.as_ptr(), &mut stat) != 0 {
            return "unknown".into();
        }
        stat.f_type as u64
    };
    match kind {
        0x0102_1994 => "tmpfs".into(),
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("{other:#x}"),
    }
}

/// Peaks of the process's threads and open files, sampled in the
/// background.
#[derive(Default)]
struct Peaks {
    threads: AtomicU64,
    files: AtomicU64,
}

impl Peaks {
    fn sample(&self) {
        let threads = common::status_number(None, "Threads").unwrap_or(0);
        self.threads.fetch_max(threads, Ordering::Relaxed);
        self.files
            .fetch_max(common::open_files() as u64, Ordering::Relaxed);
    }
}

async fn run(args: Args) -> Result<()> {
    let connect = ConnectArgs {
        server: args.server.clone(),
        ..ConnectArgs::default()
    };
    let bus = Bus::connect(&connect, "fleet-bench").await?;
    bus.ensure_streams().await?;
    common::require_empty_mdb(&bus).await?;

    let tmp = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            tempfile::tempdir_in(dir)?
        }
        None => tempfile::tempdir()?,
    };
    let source = match &args.source {
        Some(source) => source.clone(),
        None => {
            let source = tmp.path().join("source");
            copy_tree(&examples().join("path"), &source)?;
            for own in ["etc/hostname", "etc/fstab"] {
                let _ = std::fs::remove_file(source.join(own));
            }
            source
        }
    };
    let triggers = args
        .triggers
        .clone()
        .unwrap_or_else(|| examples().join("triggers").display().to_string());
    let image_name = format!("fleet-bench.{}", common::stamp());
    let image = common::add_image(&bus, &image_name, &source, &args.filter, &triggers).await?;
    let image_name = ImageName::parse(&image_name)?;

    let peaks = Arc::new(Peaks::default());
    let sampler = {
        let peaks = peaks.clone();
        tokio::spawn(async move {
            loop {
                peaks.sample();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let max_concurrent = args.max_concurrent.unwrap_or(args.agents);
    let settings = Settings {
        max_concurrent,
        rollout: dom_model::policy::RolloutPolicy {
            canary: args.canary,
            ..Default::default()
        },
        ..Settings::default()
    };
    let dominator = Dominator::start(bus.clone(), settings, None).await?;
    let mut reports = follow_reports(&bus).await?;

    let width = (args.agents.saturating_sub(1)).to_string().len().max(4);
    let hosts: Vec<String> = (0..args.agents)
        .map(|i| format!("host-{i:0width$}"))
        .collect();
    let service_command = ServiceCommand::parse("true")?;
    let started = Instant::now();
    let mut agents = Vec::with_capacity(hosts.len());
    for host in &hosts {
        let root = tmp.path().join("machines").join(host);
        common::write(&root, "etc/hostname", format!("{host}\n").as_bytes())?;
        common::write(&root, "etc/fstab", format!("# {host}'s disks\n").as_bytes())?;
        common::write(&root, "srv/data/README", b"this machine's own data\n")?;
        let mut config = subd::Config::new(host.clone(), root).uncapped();
        config.connect = connect.clone();
        config.service_command = service_command.clone();
        config.reboot_command = None;
        config.scan_interval = args.scan_interval;
        config.scan_threads = args.scan_threads;
        agents.push(Agent::start(config).with_context(|| format!("starting agent {host}"))?);
    }
    let start_s = started.elapsed().as_secs_f64();

    // Every agent has scanned its tree and said so.
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut scanned = HashSet::new();
    while scanned.len() < hosts.len() {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "only {} of {} agents reported a scan in {:?}",
                    scanned.len(),
                    hosts.len(),
                    args.timeout
                )
            })?
            .context("the state feed ended")?;
        if report.scan.inodes.is_some() {
            scanned.insert(report.host);
        }
    }
    let ready_s = started.elapsed().as_secs_f64();
    peaks.sample();
    let rss_ready = common::memory(None, "VmRSS").unwrap_or(0);
    let threads_ready = common::status_number(None, "Threads").unwrap_or(0);
    let idle_cpu = {
        let before = common::cpu_seconds(std::process::id()).unwrap_or(0.0);
        tokio::time::sleep(args.idle).await;
        let after = common::cpu_seconds(std::process::id()).unwrap_or(0.0);
        (after - before) / args.idle.as_secs_f64().max(0.001)
    };
    let cpu_before = common::cpu_seconds(std::process::id()).unwrap_or(0.0);
    let busy_before = common::machine_busy();

    // One MDB record per machine, then every machine compliant.
    let t0 = Instant::now();
    let records: Vec<(String, bytes::Bytes)> = hosts
        .iter()
        .map(|host| {
            let record = MdbRecord::new(host).requiring(image_name.clone());
            (host.clone(), record.encode().into())
        })
        .collect();
    let publishing = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let published = common::publish_all(records, |(host, payload)| {
                let bus = bus.clone();
                async move { bus.publish_mdb(&host, payload).await }
            })
            .await;
            published.map(|()| t0.elapsed())
        })
    };
    let deadline = tokio::time::Instant::now() + args.timeout;
    let mut done: HashMap<String, Duration> = HashMap::new();
    let complete = loop {
        if done.len() == hosts.len() {
            break true;
        }
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(report)) => {
                if is_compliant_with(Some(&report), &image_name) {
                    done.entry(report.host).or_insert_with(|| t0.elapsed());
                }
            }
            Ok(None) => bail!("the state feed ended"),
            Err(_) => break false,
        }
    };
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds(std::process::id()).unwrap_or(0.0) - cpu_before;
    let machine_cpu = common::machine_busy() - busy_before;
    let mdb_publish = publishing.await??.as_secs_f64();
    peaks.sample();
    sampler.abort();

    let mut times: Vec<f64> = done.values().map(Duration::as_secs_f64).collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if times.is_empty() {
            return 0.0;
        }
        times[((times.len() - 1) as f64 * q).round() as usize]
    };
    println!(
        "seconds={seconds:.3} agents={} compliant={} complete={complete} mdb_publish={mdb_publish:.3} \
         first={:.3} p50={:.3} p90={:.3} p99={:.3} cpu={cpu:.2} machine_cpu={machine_cpu:.2} idle_cpu={idle_cpu:.3} start={start_s:.3} ready={ready_s:.3} \
         rss_peak={} rss_ready={rss_ready} threads_peak={} threads_ready={threads_ready} \
         files_peak={} scan_threads={} scan_interval_ms={} max_concurrent={max_concurrent} canary={} \
         image={} image_files={} image_inodes={} sparse={} machines_fs={}",
        hosts.len(),
        done.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(0.99),
        common::memory(None, "VmHWM").unwrap_or(0),
        peaks.threads.load(Ordering::Relaxed),
        peaks.files.load(Ordering::Relaxed),
        args.scan_threads,
        args.scan_interval.as_millis(),
        args.canary,
        image.name,
        image.files,
        image.inodes,
        image.sparse,
        file_system(tmp.path()),
    );

    if !complete {
        // Agents stuck in an update may never stop: leave without them.
        eprintln!(
            "fleet-bench: {} of {} machines compliant after {:?}",
            done.len(),
            hosts.len(),
            args.timeout
        );
        std::process::exit(1);
    }
    let stopping = futures::future::join_all(agents.into_iter().map(Agent::stop));
    if tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .is_err()
    {
        eprintln!("fleet-bench: the agents did not stop within a minute");
        std::process::exit(1);
    }
    drop(dominator);
    Ok(())
}

/// Every state report published from now on (and the last one of each
/// host before), decoded.
async fn follow_reports(bus: &Bus) -> Result<mpsc::UnboundedReceiver<StateReport>> {
    let feed = bus.follow_fleet(&[FleetKind::State]).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut feed = std::pin::pin!(feed);
        while let Some(update) = feed.next().await {
            let Ok(FleetUpdate::Message(message)) = update else {
                continue;
            };
            if let Ok(report) = StateReport::decode(&message.payload) {
                if tx.send(report).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
