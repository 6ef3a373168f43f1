//! What the fleet benchmarks share: a process's memory and CPU time from
//! /proc, a check that the server holds no fleet yet, adding an image
//! through imagetool's library, and publishing many messages at once.

#![allow(dead_code)]

use std::future::Future;
use std::path::Path;

use anyhow::{bail, Context, Result};
use dom_bus::Bus;
use dom_model::{ImageName, ImageRecord};
use futures::StreamExt;

/// Messages published at once (each waits for its acknowledgement).
pub const IN_FLIGHT: usize = 512;

/// A `kB` field of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in bytes;
/// `None` is this process.
pub fn memory(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// A plain number field of `/proc/<pid>/status` (`Threads`).
pub fn status_number(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .parse()
            .ok()
    })
}

/// Starts counting a process's peak resident memory (`VmHWM`) afresh
/// from its current size. Fails on kernels without the feature.
pub fn reset_peak(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// User plus system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / hz.max(1) as f64)
}

/// Open file descriptors of this process.
pub fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Refuses a server that already holds MDB records: the benchmarks make
/// up their own fleet and would mix it with another.
pub async fn require_empty_mdb(bus: &Bus) -> Result<()> {
    let name = bus.subjects.mdb_stream();
    let stream = bus
        .js
        .get_stream(&name)
        .await
        .with_context(|| format!("reading stream {name}"))?;
    let held = stream.cached_info().state.messages;
    if held > 0 {
        bail!("stream {name} already holds {held} MDB messages; run against a fresh nats-server");
    }
    Ok(())
}

/// The last sequence of stream `name`.
pub async fn last_sequence(bus: &Bus, name: &str) -> Result<u64> {
    let stream = bus
        .js
        .get_stream(name)
        .await
        .with_context(|| format!("reading stream {name}"))?;
    Ok(stream.cached_info().state.last_sequence)
}

/// `imagetool add NAME SOURCE FILTER TRIGGERS` through the library, with
/// no hash cache; `filter` and `triggers` are file names or "".
pub async fn add_image(
    bus: &Bus,
    name: &str,
    source: &Path,
    filter: &str,
    triggers: &str,
) -> Result<ImageRecord> {
    let request = imagetool::add::AddRequest::parse(name, source, filter, triggers, None)?
        .with_hash_cache(None);
    imagetool::add::add(bus, request, false).await?;
    Ok(bus.image_record(&ImageName::parse(name)?).await?)
}

/// Runs `publish` for every item, [`IN_FLIGHT`] at a time; fails on the
/// first error.
pub async fn publish_all<T, F, Fut>(items: Vec<T>, publish: F) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<u64, dom_bus::BusError>>,
{
    let mut results =
        futures::stream::iter(items.into_iter().map(publish)).buffer_unordered(IN_FLIGHT);
    while let Some(result) = results.next().await {
        result?;
    }
    Ok(())
}

/// Writes `content` to `root/path`, making the directories above it.
pub fn write(root: &Path, path: &str, content: &[u8]) -> Result<()> {
    let file = root.join(path);
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&file, content).with_context(|| format!("writing {}", file.display()))
}

/// A unique suffix for image names: the Unix time in seconds.
pub fn stamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// CPU seconds the whole machine has spent busy since boot (every CPU,
/// user, nice, system, interrupts), from `/proc/stat`.
pub fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    busy as f64 / hz.max(1) as f64
}
