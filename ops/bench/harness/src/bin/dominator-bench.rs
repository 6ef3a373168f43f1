//! `dominator-bench --server URL [--machines N]`: the dominator alone with
//! a large fleet.
//!
//! Adds two small sparse images, A and B (the user guide's tree with its
//! triggers, differing in one file), and publishes, for N machines
//! (`host-000000`, …), an MDB record requiring A and a made-up state
//! report saying the machine is compliant with A, as its agent would.
//! Then it starts the dominator, which replays the streams and publishes
//! a desired state for A to every machine, and waits until it has done so
//! and gone idle (`startup`). Finally it changes the image fleet-wide,
//! one MDB record per machine requiring B, and takes the time until the
//! dominator has published all N desired states for B, counted by the
//! desired-state stream's last sequence.
//!
//! The dominator runs the library in a child process (this program with
//! `--run-dominator`), so its memory is its own: `VmHWM` and `VmRSS` of
//! the child, with the peak counted afresh before the change. It may
//! update every machine at once (`--max-concurrent` defaults to N); the
//! images are sparse, so the safety check has nothing to wait for and
//! every desired state for B allows the update.
//!
//! Prints one line of `key=value` pairs: `seconds` from the first MDB
//! publish of the change to the last desired state for B stored, the time
//! the MDB publishes themselves took, memory in bytes and CPU seconds.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use dom_bus::{Bus, ConnectArgs, FleetKind};
use dom_model::report::{ScanStats, UpdateResult};
use dom_model::{DesiredState, ImageName, ImageRecord, MdbRecord, StateReport};
use dominator::{Dominator, Settings};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: String,
    /// Machines in the MDB.
    #[arg(long, default_value_t = 100_000)]
    machines: usize,
    /// Most machines the dominator lets update at once (default: all).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// The dominator's debounce: how long after a change it decides
    /// (default: the dominator's own).
    #[arg(long, value_parser = humantime::parse_duration)]
    debounce: Option<Duration>,
    /// Give up on a phase after this long.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Run the dominator until standard input closes (the child).
    #[arg(long, hide = true)]
    run_dominator: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    dominator::init_logging(0);
    let runtime = tokio::runtime::Runtime::new()?;
    if args.run_dominator {
        return runtime.block_on(serve(args));
    }
    runtime.block_on(run(args))
}

fn connect_args(args: &Args) -> ConnectArgs {
    ConnectArgs {
        server: args.server.clone(),
        ..ConnectArgs::default()
    }
}

/// The child: the dominator, until the parent closes standard input.
async fn serve(args: Args) -> Result<()> {
    let bus = Bus::connect(&connect_args(&args), "dominator").await?;
    let defaults = Settings::default();
    let settings = Settings {
        max_concurrent: args.max_concurrent.unwrap_or(args.machines),
        debounce: args.debounce.unwrap_or(defaults.debounce),
        // The reports here are made up and never become healthy on B, so
        // rollout waves would hold all but the canary: this measures the
        // decisions and publishes for every machine, as `--canary 0` does.
        rollout: dom_model::policy::RolloutPolicy {
            canary: dom_model::policy::Canary::Machines(0),
            ..defaults.rollout
        },
        ..defaults
    };
    let mut dominator = Dominator::start(bus, settings, None).await?;
    let parent_gone = tokio::task::spawn_blocking(|| {
        let mut stdin = std::io::stdin().lock();
        let mut line = String::new();
        while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    });
    tokio::select! {
        result = dominator.wait() => result,
        _ = parent_gone => Ok(()),
    }
}

/// The child process, killed when dropped.
struct DominatorProcess(Child);

impl DominatorProcess {
    fn start(args: &Args, max_concurrent: usize) -> Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .args(["--server", &args.server, "--run-dominator"])
            .args(["--machines", &args.machines.to_string()])
            .args(["--max-concurrent", &max_concurrent.to_string()])
            .args(
                args.debounce
                    .map(|d| format!("--debounce={}ms", d.as_millis())),
            )
            .stdin(Stdio::piped())
            .spawn()
            .context("starting the dominator process")?;
        Ok(Self(child))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn cpu(&self) -> f64 {
        common::cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    fn memory(&self, field: &str) -> u64 {
        common::memory(Some(self.pid()), field).unwrap_or(0)
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.0.try_wait()? {
            bail!("the dominator process ended: {status}");
        }
        Ok(())
    }

    /// Waits until the process has used (almost) no CPU for half a
    /// second: the dominator has finished its rounds.
    async fn settle(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut quiet = 0;
        let mut last = self.cpu();
        while quiet < 2 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.check_running()?;
            let now = self.cpu();
            quiet = if now - last < 0.03 { quiet + 1 } else { 0 };
            last = now;
            if Instant::now() > deadline {
                bail!("the dominator did not go idle in {timeout:?}");
            }
        }
        Ok(())
    }
}

impl Drop for DominatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(args: Args) -> Result<()> {
    let bus = Bus::connect(&connect_args(&args), "dominator-bench").await?;
    bus.ensure_streams().await?;
    common::require_empty_mdb(&bus).await?;
    let machines = args.machines;
    let max_concurrent = args.max_concurrent.unwrap_or(machines);

    let tmp = tempfile::tempdir()?;
    let stamp = common::stamp();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let triggers = examples.join("triggers").display().to_string();
    let mut images = Vec::new();
    for label in ["a", "b"] {
        let source = tmp.path().join(label);
        common::write(&source, "etc/motd", format!("image {label}\n").as_bytes())?;
        common::write(&source, "etc/ssh/sshd.conf", b"Port 22\n")?;
        common::write(&source, "usr/local/bin/hello", b"#!/bin/sh\necho hello\n")?;
        let name = format!("dominator-bench.{stamp}.{label}");
        images.push(common::add_image(&bus, &name, &source, "", &triggers).await?);
    }
    let (a, b) = (&images[0], &images[1]);

    // The fleet as agents on image A would leave it.
    let width = (machines.saturating_sub(1)).to_string().len().max(6);
    let hosts: Vec<String> = (0..machines).map(|i| format!("host-{i:0width$}")).collect();
    let setup = Instant::now();
    let reports: Vec<StateReport> = hosts.iter().map(|host| compliant(host, a)).collect();
    common::publish_all(reports, |report| {
        let bus = bus.clone();
        async move { bus.publish_state(&report).await }
    })
    .await?;
    publish_mdb(&bus, &hosts, &a.name).await?;
    let setup_s = setup.elapsed().as_secs_f64();

    // The dominator starts, replays and tells every machine to carry A.
    let desired_stream = bus.subjects.desired_stream();
    let before = common::last_sequence(&bus, &desired_stream).await?;
    let started = Instant::now();
    let mut dominator = DominatorProcess::start(&args, max_concurrent)?;
    wait_for_sequence(
        &bus,
        &desired_stream,
        before + machines as u64,
        &mut dominator,
        args.timeout,
    )
    .await
    .context("waiting for the desired states for A")?;
    let startup_s = started.elapsed().as_secs_f64();
    dominator.settle(args.timeout).await?;
    let startup_cpu = dominator.cpu();
    let rss_startup_peak = dominator.memory("VmHWM");
    let rss_idle = dominator.memory("VmRSS");
    let peak_reset = common::reset_peak(dominator.pid()).is_ok();
    let sequence = common::last_sequence(&bus, &desired_stream).await?;

    // The change: every machine to B.
    let cpu_before = dominator.cpu();
    let t0 = Instant::now();
    let publishing = {
        let (bus, hosts, image) = (bus.clone(), hosts.clone(), b.name.clone());
        tokio::spawn(async move {
            publish_mdb(&bus, &hosts, &image).await?;
            Ok::<_, anyhow::Error>(t0.elapsed())
        })
    };
    wait_for_sequence(
        &bus,
        &desired_stream,
        sequence + machines as u64,
        &mut dominator,
        args.timeout,
    )
    .await
    .context("waiting for the desired states for B")?;
    let seconds = t0.elapsed().as_secs_f64();
    let mdb_publish = publishing.await??.as_secs_f64();
    let cpu = dominator.cpu() - cpu_before;
    dominator.settle(args.timeout).await?;
    let rss_change_peak = dominator.memory("VmHWM");
    let rss_after = dominator.memory("VmRSS");
    drop(dominator);

    let verified = verify(&bus, &b.name).await?;
    println!(
        "seconds={seconds:.3} machines={machines} mdb_publish={mdb_publish:.3} \
         after_mdb={:.3} cpu={cpu:.2} rss_peak={} rss_change_peak={rss_change_peak} \
         rss_startup_peak={rss_startup_peak} rss_idle={rss_idle} rss_after={rss_after} \
         peak_reset={peak_reset} startup={startup_s:.3} startup_cpu={startup_cpu:.2} \
         setup={setup_s:.3} verified={verified} max_concurrent={max_concurrent} \
         debounce_ms={} memory_of=dominator-process",
        seconds - mdb_publish,
        rss_startup_peak.max(rss_change_peak),
        args.debounce
            .unwrap_or(Settings::default().debounce)
            .as_millis(),
    );
    if verified != machines {
        bail!("{verified} of {machines} machines have a desired state for B that allows updating");
    }
    Ok(())
}

/// Publishes an MDB record requiring `image` for every host.
async fn publish_mdb(bus: &Bus, hosts: &[String], image: &ImageName) -> Result<()> {
    let records: Vec<(String, bytes::Bytes)> = hosts
        .iter()
        .map(|host| {
            let record = MdbRecord::new(host).requiring(image.clone());
            (host.clone(), record.encode().into())
        })
        .collect();
    common::publish_all(records, |(host, payload)| {
        let bus = bus.clone();
        async move { bus.publish_mdb(&host, payload).await }
    })
    .await
}

/// The report of an agent that applied `image` and matches it.
fn compliant(host: &str, image: &ImageRecord) -> StateReport {
    let mut report = StateReport::new(host);
    report.generation = 2;
    report.scan = ScanStats {
        started: Some("2026-11-26T09:00:00Z".into()),
        duration_ms: 3,
        files: image.files + 2,
        bytes: image.bytes + 200,
        full_scans: 1,
        inodes: Some(image.inodes + 4),
    };
    report.image = Some(image.name.to_string());
    report.desired_image = Some(image.name.to_string());
    report.compliant = true;
    report.would_delete = Some(0);
    report.last_update = Some(UpdateResult {
        image: image.name.to_string(),
        started: "2026-11-26T08:59:58Z".into(),
        duration_ms: 40,
        ok: true,
        changed: image.inodes,
        fetched_objects: image.files,
        fetched_bytes: image.bytes,
        ..UpdateResult::default()
    });
    report.free_bytes = Some(20 << 30);
    report.agent_version = env!("CARGO_PKG_VERSION").into();
    report.uptime_s = 3600;
    report
}

/// Waits until stream `name` reaches sequence `target`.
async fn wait_for_sequence(
    bus: &Bus,
    name: &str,
    target: u64,
    dominator: &mut DominatorProcess,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = common::last_sequence(bus, name).await?;
        if last >= target {
            return Ok(());
        }
        dominator.check_running()?;
        if Instant::now() > deadline {
            bail!("stream {name} at sequence {last} of {target} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Machines whose last desired state is for `image` and allows updating.
async fn verify(bus: &Bus, image: &ImageName) -> Result<usize> {
    let stored = bus.last_per_subject(FleetKind::Desired).await?;
    Ok(stored
        .iter()
        .filter_map(|message| DesiredState::decode(&message.payload).ok())
        .filter(|state| state.image == *image && state.updates_allowed)
        .count())
}
