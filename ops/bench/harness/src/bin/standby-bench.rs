//! `standby-bench --server URL --bin DIR [--runs N]`: how soon a standby
//! dominator takes over from an active one that dies, or that is stopped.
//!
//! Each run starts two dominators, the real binary from `--bin` with its
//! default flags but for `--id` and `--http off`: `a`, and once `a` holds
//! the lease, `b`. Then `a` is killed (SIGKILL) and an MDB record for a
//! new machine is published as soon as it is gone; the time runs from the
//! kill until the desired state for that machine, published by `b`, is
//! stored. That is what an operator sees: a change made as the active
//! dominator dies is acted on after this long. Both are stopped before
//! the next run. Then the same again with `a` stopped by SIGTERM, as
//! `systemctl stop` and `restart` stop it.
//!
//! Prints one line of `key=value` pairs: `seconds`, the median of the
//! killed runs, and `runs`, each run's seconds; `stopped_seconds` and
//! `stopped_runs` the same for SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use dom_bus::{Bus, ConnectArgs};
use dom_model::MdbRecord;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: String,
    /// Where the `dominator` binary is.
    #[arg(long)]
    bin: PathBuf,
    /// Takeovers to time.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Gives up waiting for a dominator after this long.
const PATIENCE: Duration = Duration::from_secs(60);

fn start(bin: &Path, server: &str, id: &str) -> Result<Child> {
    Command::new(bin.join("dominator"))
        .args(["--server", server, "--id", id, "--http", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.join("dominator").display()))
}

async fn wait_holder(bus: &Bus, id: &str) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let holder = bus.lease_holder(dominator::herd::LEASE).await;
        if holder.is_some_and(|h| h.holder == id) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("dominator {id} did not take the lease within {PATIENCE:?}")
}

/// How the active dominator goes.
#[derive(Clone, Copy)]
enum End {
    Killed,
    Stopped,
}

/// One takeover: seconds from killing or stopping the active dominator
/// until the standby's desired state for a machine added once it is gone
/// is stored.
async fn takeover(bus: &Bus, args: &Args, image: &str, run: usize, end: End) -> Result<f64> {
    let mut active = start(&args.bin, &args.server, "a")?;
    wait_holder(bus, "a").await?;
    let mut standby = start(&args.bin, &args.server, "b")?;
    // Let the standby catch up with the streams first. The runs end the
    // active one at points spread over a second, as renewals (every
    // second) and a standby's tries (every half second) repeat: from
    // fixed sleeps alone every run would fall at the same point of both.
    let spread = Duration::from_millis((run * 1000 / args.runs.max(1)) as u64);
    tokio::time::sleep(Duration::from_secs(2) + spread).await;
    let how = match end {
        End::Killed => "killed",
        End::Stopped => "stopped",
    };
    let host = format!("standby-{}-{how}-{run}", common::stamp());
    let record = MdbRecord::new(&host).requiring(dom_model::ImageName::parse(image)?);
    let killed = Instant::now();
    match end {
        End::Killed => active.kill()?,
        End::Stopped => {
            let status = Command::new("kill")
                .args(["-TERM", &active.id().to_string()])
                .status()?;
            if !status.success() {
                bail!("kill -TERM {} failed: {status}", active.id());
            }
        }
    }
    active.wait()?;
    bus.publish_mdb(&host, record.encode().into()).await?;
    let deadline = killed + PATIENCE;
    let seconds = loop {
        let desired = bus.desired(&host).await?;
        let by_standby = desired.and_then(|d| d.state.ok()).and_then(|s| s.publisher);
        if by_standby.as_deref() == Some("b") {
            break killed.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            bail!("the standby published nothing for {host} within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    standby.kill()?;
    standby.wait()?;
    Ok(seconds)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let connect = ConnectArgs {
            server: args.server.clone(),
            ..ConnectArgs::default()
        };
        let bus = Bus::connect(&connect, "standby-bench").await?;
        bus.ensure_streams().await?;
        let tmp = tempfile::tempdir()?;
        common::write(tmp.path(), "etc/motd", b"standby\n")?;
        let image = format!("standby-bench.{}", common::stamp());
        common::add_image(&bus, &image, tmp.path(), "", "").await?;
        let mut line = Vec::new();
        for (end, prefix) in [(End::Killed, ""), (End::Stopped, "stopped_")] {
            let mut runs = Vec::new();
            for run in 0..args.runs {
                runs.push(takeover(&bus, &args, &image, run, end).await?);
            }
            let mut sorted = runs.clone();
            sorted.sort_by(f64::total_cmp);
            let cells: Vec<String> = runs.iter().map(|s| format!("{s:.3}")).collect();
            line.push(format!("{prefix}seconds={:.3}", sorted[sorted.len() / 2]));
            line.push(format!("{prefix}runs={}", cells.join(",")));
        }
        println!(
            "{} lease_ttl={}",
            line.join(" "),
            dom_bus::lease::LEASE_TTL.as_secs_f64()
        );
        Ok(())
    })
}
