//! `converge-bench --server URL IMAGE ROOT`: converges the machine tree at
//! ROOT to image IMAGE as the agent does, and times each step.
//!
//! The agent has been running: its hash cache knows the tree, so the scan
//! before planning reads no unchanged file. The steps timed are that scan,
//! planning, fetching the missing objects (copied from the machine where it
//! already holds them, else from the bucket) and the update itself, whose
//! tree-changing part (`window`) is the time services would be down.
//!
//! `--fetch-all` instead fetches every object of the image into an empty
//! object cache, to measure fetch throughput from the bucket.
//!
//! Both fetch as the agent does, through its `Converger`: its batch of
//! objects flushed together, on the blocking thread it drives the fetch
//! from.
//!
//! Prints one line of `key=value` pairs (seconds, bytes, counts).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dom_bus::{Bus, ConnectArgs};
use dom_model::plan::{plan, Desired};
use dom_model::{ImageName, Manifest, Triggers};
use dom_scan::{scan_tree, Counters, HashCache, ScanOptions};
use dom_store::{ContentStore, NatsStore};
use subd::converge::Converger;
use subd::objects::ObjectCache;
use subd::services::ServiceCommand;
use subd::update::{apply, UpdateContext};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    server: String,
    image: String,
    root: PathBuf,
    /// Fetch every object of the image into an empty cache instead.
    #[arg(long)]
    fetch_all: bool,
}

fn scan(root: &std::path::Path, cache: &Arc<HashCache>) -> Result<(Manifest, u64)> {
    let options = ScanOptions {
        cache: Some(cache.clone()),
        one_file_system: true,
        protected: vec!["/.subd".into()],
        ..Default::default()
    };
    let counters = Counters::default();
    let scan = scan_tree(root, &options, &counters)?;
    let hashed = counters
        .hashed_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok((scan.manifest, hashed))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let connect = ConnectArgs {
        server: args.server.clone(),
        ..Default::default()
    };
    let bus = Bus::connect(&connect, "converge-bench").await?;
    let store = NatsStore::open(&bus).await?;
    let name = ImageName::parse(&args.image)?;
    let record = bus.image_record(&name).await?;
    let image = Manifest::decode(&store.get(record.manifest).await?)?;
    let objects = ObjectCache::open(args.root.join(".subd/objects"))?;

    let services = ServiceCommand::parse("true")?;
    let converger = Converger::new(args.root.clone(), objects.clone(), services.clone(), None);

    if args.fetch_all {
        let wanted = image.objects();
        let started = Instant::now();
        let stats = converger
            .fetch_objects(
                wanted,
                Default::default(),
                Some(dom_store::Store::Nats(store)),
                None,
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "seconds={seconds:.3} objects={} bytes={} rate={:.0}",
            stats.objects,
            stats.bytes,
            stats.bytes as f64 / seconds
        );
        return Ok(());
    }

    // The running agent's knowledge of its tree.
    let cache = Arc::new(HashCache::new());
    let root = args.root.clone();
    let warm = cache.clone();
    tokio::task::spawn_blocking(move || scan(&root, &warm)).await??;

    let filter = record
        .filter
        .as_ref()
        .map(|lines| dom_model::Filter::parse(&lines.join("\n")))
        .transpose()?;
    let triggers = Triggers::parse(&serde_json::to_string(&record.triggers)?)?;
    let protected = vec!["/.subd".to_string()];
    let started = Instant::now();
    let root = args.root.clone();
    let warm = cache.clone();
    let (machine, hashed) = tokio::task::spawn_blocking(move || scan(&root, &warm)).await??;
    let scanned = started.elapsed();
    let desired = match &filter {
        Some(filter) => Desired::normal(&image, filter),
        None => Desired::sparse(&image),
    }
    .protecting(&protected);
    let the_plan = plan(&machine, &desired);
    let planned = started.elapsed();
    let the_plan = Arc::new(the_plan);
    let fetched = converger
        .fetch(the_plan.clone(), Some(dom_store::Store::Nats(store)), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let fetch_done = started.elapsed();
    let outcome = tokio::task::block_in_place(|| {
        apply(
            &the_plan,
            &UpdateContext {
                root: args.root.clone(),
                objects: &objects,
                old_triggers: Some(&triggers),
                new_triggers: &triggers,
                services: &services,
                reboot: None,
            },
        )
    });
    let total = started.elapsed();
    if !outcome.ok {
        bail!("update failed: {}", outcome.error.unwrap_or_default());
    }
    let (after, _) = scan(&args.root, &Arc::new(HashCache::new())).context("rescanning")?;
    let left = plan(&after, &desired);
    if !left.is_empty() {
        bail!("not converged: {}", left.summary());
    }
    println!(
        "seconds={:.3} scan={:.3} plan={:.3} fetch={:.3} update={:.3} window={:.4} \
         changed={} hashed={hashed} fetched_objects={} fetched_bytes={} reused={}",
        total.as_secs_f64(),
        scanned.as_secs_f64(),
        (planned - scanned).as_secs_f64(),
        (fetch_done - planned).as_secs_f64(),
        (total - fetch_done).as_secs_f64(),
        outcome.window.as_secs_f64(),
        outcome.changed,
        fetched.objects,
        fetched.bytes,
        fetched.reused,
    );
    Ok(())
}
