//! Keeping the machine on its image, one scan at a time: each scan of the
//! current filter, started after the last update, is compared with the
//! image; a difference is reported (as drift, when the machine matched
//! before) and, when updates are allowed, fetched and applied; an update
//! that fires HighImpact triggers waits for the dominator's permission
//! first ([`crate::high_impact`]). A failed update is tried again after a
//! pause that doubles each time.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use dom_bus::stamp::{now_rfc3339, rfc3339};
use dom_model::plan::{plan, Desired, Plan};
use dom_model::report::{ScanStats, UpdateResult};
use dom_model::{path, Entry, Inode, Manifest, Triggers};

use crate::agent::{Core, Current};
use crate::persist::off_thread;
use crate::prefetch::Prefetch;
use crate::report::{self, millis};
use crate::scanner::Scanned;
use crate::update::ServicePlan;

impl Core {
    /// A quick scan finished.
    pub(crate) async fn scanned(&mut self, scanned: Scanned) {
        self.observed.scanned(
            scanned.duration,
            scanned.files,
            scanned.bytes,
            scanned.hashed_bytes,
        );
        self.report.scan = ScanStats {
            started: Some(rfc3339(scanned.started_at)),
            duration_ms: millis(scanned.duration),
            files: scanned.files,
            bytes: scanned.bytes,
            full_scans: self.full_scans,
            ..ScanStats::default()
        };
        let tree = match scanned.tree {
            Ok(tree) => tree,
            Err(e) => {
                let error = format!("cannot scan {}: {e}", self.config.root.display());
                if self.scan_error.as_ref() != Some(&error) {
                    tracing::warn!("{error}");
                    self.send_event(report::error_event(&self.config.host, None, &error));
                    self.scan_error = Some(error);
                    self.publish();
                }
                return;
            }
        };
        self.scan_error = None;
        self.measured_media().await;
        self.report.scan.inodes = Some(tree.entries.len() as u64);
        if scanned.started < self.settled || scanned.epoch != self.epoch {
            // Made before the last update, or with another filter.
            match &self.scanner {
                Some(_) if self.urgent => self.scan_urgently(),
                Some(scanner) => scanner.rescan(),
                None => {}
            }
            return;
        }
        self.urgent = false;
        if self.tree.as_deref() != Some(&tree) {
            self.generation += 1;
            tracing::debug!(generation = self.generation, "the tree changed");
            self.set_tree(tree);
        }
        if self.waiting.is_some() {
            self.load_waiting().await;
        }
        self.enforce().await;
        if self.report.compliant {
            self.prefetch().await;
        }
        self.publish();
    }

    /// Compares the last scan with the image, and updates when allowed.
    pub(crate) async fn enforce(&mut self) {
        let (Some(current), Some(tree)) = (&self.current, &self.tree) else {
            self.report.compliant = false;
            self.report.deviations = 0;
            self.report.would_delete = None;
            self.withdraw_high_impact();
            return;
        };
        let started = Instant::now();
        let plan = plan_for(&self.config.root, current, tree, &self.protected);
        tracing::debug!(elapsed = ?started.elapsed(), "planned");
        let image = current.state.image.to_string();
        let compliant = plan.is_empty();
        self.report.compliant = compliant;
        self.report.deviations = plan.deviations();
        self.report.would_delete = Some((plan.clear.len() + plan.deletes.len()) as u64);
        let was = self.compliant.replace(compliant);
        if compliant {
            self.withdraw_high_impact();
            self.take_as_applied().await;
            return;
        }
        if was != Some(false) && self.applied.image.as_deref() == Some(image.as_str()) {
            tracing::info!(
                image,
                generation = self.generation,
                "drift: {}",
                plan.summary()
            );
            self.send_event(report::drift_event(&self.config.host, &image, &plan));
        }
        if !(current.state.updates_allowed && actionable(&plan)) {
            self.withdraw_high_impact();
            return;
        }
        let due = self.retry_at.is_none_or(|at| Instant::now() >= at);
        if due && self.can_fetch(&plan) {
            self.update(plan).await;
        }
    }

    /// Whether every object `plan` needs can be had: from the store, or,
    /// while the bus is unreachable, from the cache or the machine. An
    /// update that cannot be fetched waits for the bus rather than fail.
    fn can_fetch(&self, plan: &Plan) -> bool {
        if self.store.is_some() {
            return true;
        }
        let objects = &self.converger.objects;
        let ready = plan.fetch.iter().all(|(id, _)| objects.contains(id));
        if !ready {
            tracing::debug!("waiting for NATS to fetch objects");
        }
        ready
    }

    /// Fetches what `plan` needs and applies it; when it fires HighImpact
    /// triggers without the dominator's permission, fetches and asks
    /// instead.
    async fn update(&mut self, plan: Plan) {
        let Some(current) = &self.current else {
            return;
        };
        let image = current.state.image.to_string();
        let new_triggers = current.triggers.clone();
        let fetch_rate = self.fetch_rate();
        let (started, started_at) = (Instant::now(), now_rfc3339());
        let from = self.applied.image.clone();
        let sequence = current.sequence;
        let old_triggers = self.old_triggers();
        let services = ServicePlan::new(&plan.changed, old_triggers.as_ref(), &new_triggers);
        let permitted = !services.high_impact || self.may_run_high_impact();
        let missing = crate::fetch::missing(&plan, &self.converger.objects);
        if !self.room_for(&missing).await {
            self.withdraw_high_impact();
            return;
        }
        if permitted {
            tracing::info!(
                image,
                sequence,
                generation = self.generation,
                high_impact = services.high_impact,
                "updating: {}",
                plan.summary()
            );
        }

        self.report.fetching = !missing.is_empty();
        if self.report.fetching {
            self.publish();
        }
        let plan = Arc::new(plan);
        // The full rehash steps aside for the whole update.
        self.scanner_updating(true);
        let fetched = self
            .converger
            .fetch(plan.clone(), self.store.clone(), fetch_rate)
            .await;
        self.report.fetching = false;
        let fetch_time = started.elapsed();
        let stats = match fetched {
            Ok(stats) => stats,
            Err(e) => {
                let result = UpdateResult {
                    image: image.clone(),
                    from,
                    started: started_at,
                    duration_ms: millis(started.elapsed()),
                    ok: false,
                    error: Some(format!("fetching objects: {e}")),
                    ..UpdateResult::default()
                };
                tracing::warn!(image, "update not applied: fetching objects: {e}");
                let event = report::failed_update_event(&self.config.host, &image, &result);
                self.scanner_updating(false);
                self.withdraw_high_impact();
                self.finish(result, false, event).await;
                return;
            }
        };
        if !permitted {
            // Everything is in the cache: once the grant arrives, the
            // update only renames.
            self.scanner_updating(false);
            self.ask_high_impact(&image, &services);
            return;
        }

        self.report.updating = true;
        self.publish();
        self.kept().await;
        if let Some(scanner) = &self.scanner {
            scanner.hold(true);
        }
        let outcome = self
            .converger
            .apply(plan.clone(), old_triggers, new_triggers)
            .await;
        self.settled = Instant::now();
        if let Some(scanner) = &self.scanner {
            scanner.learn(&outcome.installed, &outcome.touched);
            scanner.hold(false);
        }
        self.report.updating = false;
        if outcome.ok {
            self.confirm_update(&plan);
        } else {
            // What the failed update left is for a scan to find.
            self.scan_urgently();
        }
        self.scanner_updating(false);
        if let Some(scanner) = &self.scanner {
            scanner.save_cache_soon();
        }
        if services.high_impact {
            self.used_high_impact();
        } else {
            self.withdraw_high_impact();
        }

        let mut result = outcome.to_result(&image, &started_at);
        result.from = from;
        result.duration_ms = millis(started.elapsed());
        result.fetched_objects = stats.objects;
        result.fetched_bytes = stats.bytes;
        if outcome.ok {
            tracing::info!(
                image,
                changed = outcome.changed,
                fetch = ?fetch_time,
                apply = ?outcome.duration,
                window = ?outcome.window,
                "update applied"
            );
        } else {
            tracing::warn!(image, error = ?outcome.error, "update failed");
        }
        let event = report::update_event(&self.config.host, &image, &outcome, &result);
        self.restart = outcome.restart_agent;
        self.finish(result, outcome.ok, event).await;
        self.converger.recorded();
    }

    /// Tells the scanner an update is under way, or over.
    fn scanner_updating(&self, updating: bool) {
        if let Some(scanner) = &self.scanner {
            scanner.updating(updating);
        }
    }

    /// After an update that went well: a stat-only look at what it
    /// changed ([`crate::confirm`]) gives the tree as it is now, and with
    /// it the machine's compliance, for the report that follows at once.
    /// When the look finds anything unexpected, a scan decides instead.
    fn confirm_update(&mut self, plan: &Plan) {
        let (Some(current), Some(tree), Some(scanner)) = (&self.current, &self.tree, &self.scanner)
        else {
            return;
        };
        let started = Instant::now();
        let cache = scanner.cache();
        let after =
            crate::confirm::confirm(&self.config.root, plan, &current.manifest, &cache, tree);
        match after {
            Ok(after) => {
                tracing::debug!(elapsed = ?started.elapsed(), "update confirmed");
                // What was checked is all the plan changed; the rest
                // matched before. Tests hold the whole tree to it.
                debug_assert!(
                    plan_for(&self.config.root, current, &after, &self.protected).is_empty(),
                    "a confirmed update leaves work: {}",
                    plan_for(&self.config.root, current, &after, &self.protected)
                );
                self.set_tree(after);
                self.compliant = Some(true);
                self.report.compliant = true;
                self.report.deviations = 0;
                self.report.would_delete = Some(0);
            }
            Err(why) => {
                tracing::info!("update not confirmed ({why}); scanning");
                self.scan_urgently();
            }
        }
    }

    /// The tree already is the desired image (say, the same tree as the
    /// image applied before, with other triggers): it becomes the image the
    /// machine carries, its triggers the ones that decide the next update's
    /// stops, with no update to make.
    async fn take_as_applied(&mut self) {
        let Some(current) = &self.current else {
            return;
        };
        let image = current.state.image.to_string();
        if self.applied.image.as_deref() == Some(image.as_str())
            && self.applied.manifest == Some(current.state.manifest)
        {
            return;
        }
        tracing::info!(image, "image already in place; nothing to update");
        self.applied.image = Some(image);
        self.applied.manifest = Some(current.state.manifest);
        self.applied.triggers = current.state.triggers.clone();
        self.keep_applied("the image").await;
        self.report.image = self.applied.image.clone();
        if let Some(image) = self.applied.image.clone() {
            self.check_health(&image).await;
        }
    }

    /// Records an update's result, here and in the state directory.
    async fn finish(&mut self, result: UpdateResult, ok: bool, event: dom_model::Event) {
        if ok {
            if let Some(current) = &self.current {
                self.applied.image = Some(current.state.image.to_string());
                self.applied.manifest = Some(current.state.manifest);
                self.applied.triggers = current.state.triggers.clone();
            }
            self.retry_at = None;
            self.retry_delay = self.config.retry_min;
            // Objects fetched ahead for the planned image stay.
            let planned = self.current.as_ref().and_then(|c| c.state.planned.as_ref());
            if planned.map(|p| p.manifest) != self.prefetch.done {
                self.prefetch = Prefetch::default();
            }
        } else {
            self.retry_at = Some(Instant::now() + self.retry_delay);
            self.retry_delay = (self.retry_delay * 2).min(self.config.retry_max);
        }
        self.observed.updated(&result);
        self.applied.last_update = Some(result.clone());
        self.keep_applied("the update").await;
        self.report.last_update = Some(result);
        self.send_event(event);
        if ok {
            // The report of the update already says the check is on.
            if let Some(image) = self.applied.image.clone() {
                self.check_health(&image).await;
            }
        }
        self.publish();
        if ok {
            self.media.measure_again(&self.config.root, &self.state_dir);
            // After the report: the objects the update used are not
            // needed any more, and the report need not wait for their
            // removal.
            let (converger, keep) = (self.converger.clone(), self.prefetch.keep.clone());
            let _ = off_thread(move || {
                converger.tidy(&keep);
                Ok(())
            })
            .await;
        }
    }

    /// Records what the machine carries in the state directory, on a
    /// blocking thread (it waits for the disk); `what` names the change
    /// for the warning when it cannot.
    pub(crate) async fn keep_applied(&self, what: &str) {
        let (dir, applied) = (self.state_dir.clone(), self.applied.clone());
        if let Err(e) = off_thread(move || dir.save_applied(&applied)).await {
            tracing::warn!(error = %e, "cannot record {what} in the state directory");
        }
    }

    /// The triggers of the image the machine carries; `None` before the
    /// first update.
    fn old_triggers(&self) -> Option<Triggers> {
        self.applied.image.as_ref()?;
        match Triggers::new(self.applied.triggers.clone()) {
            Ok(triggers) => Some(triggers),
            Err(e) => {
                tracing::warn!(error = %e, "the applied image's triggers do not compile; using the new ones");
                None
            }
        }
    }
}

/// Whether `plan` has work the agent can do (not only conflicts).
fn actionable(plan: &Plan) -> bool {
    !(plan.clear.is_empty()
        && plan.mkdirs.is_empty()
        && plan.installs.is_empty()
        && plan.symlinks.is_empty()
        && plan.devices.is_empty()
        && plan.links.is_empty()
        && plan.deletes.is_empty()
        && plan.metadata.is_empty())
}

/// The plan from `tree` to `current`'s image.
///
/// The scan leaves filtered and protected paths out, so a directory that
/// holds only such paths looks empty, and one the image lacks would be
/// planned for removal. Before that is trusted, the directories to remove
/// are listed again: the unmanaged paths found in them are added to the
/// tree, which keeps them (and the directories above them) where they
/// are.
pub(crate) fn plan_for(
    root: &Path,
    current: &Current,
    tree: &Manifest,
    protected: &[String],
) -> Plan {
    let desired = match &current.filter {
        Some(filter) => Desired::normal(&current.manifest, filter),
        None => Desired::sparse(&current.manifest),
    }
    .protecting(protected);
    let first = plan(tree, &desired);
    let is_dir = |p: &String| matches!(tree.get(p).map(|e| &e.inode), Some(Inode::Dir { .. }));
    let mut hidden = Vec::new();
    for dir in first
        .deletes
        .iter()
        .chain(&first.clear)
        .filter(|p| is_dir(p))
    {
        hidden.extend(unmanaged_children(root, dir, &desired));
    }
    if hidden.is_empty() {
        return first;
    }
    let mut tree = tree.clone();
    tree.entries.extend(hidden);
    tree.entries.sort_by(|a, b| a.path.cmp(&b.path));
    tree.entries.dedup_by(|a, b| a.path == b.path);
    plan(&tree, &desired)
}

/// The filtered or protected entries directly in `dir`, as placeholders
/// with their real type, mode and owner.
fn unmanaged_children(root: &Path, dir: &str, desired: &Desired<'_>) -> Vec<Entry> {
    let disk = root.join(dir.trim_start_matches('/'));
    let Ok(entries) = fs::read_dir(&disk) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let child = path::join(dir, &name);
        if !desired.is_unmanaged(&child) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
        let inode = if meta.is_dir() {
            Inode::Dir { mode, uid, gid }
        } else {
            // Nothing is ever done to it; a fifo stands for any other type
            // without claiming content the planner could copy from.
            Inode::Fifo {
                mode,
                uid,
                gid,
                mtime: meta.mtime(),
                mtime_ns: meta.mtime_nsec() as u32,
            }
        };
        found.push(Entry { path: child, inode });
    }
    found
}
