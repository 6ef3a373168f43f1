//! Applying a plan to the machine (DESIGN §5 step 5), in the original's
//! order: stop the services the old image's triggers name for the changed
//! paths; clear paths of the wrong type, make directories, rename objects
//! into place, make symlinks, devices and hard links, delete, fix
//! metadata; start (or reload) the services the new image's triggers name;
//! reboot if one of them asks to.
//!
//! Two rules hold throughout:
//!
//! - **Never follow a symlink while writing.** Every parent directory is
//!   opened one component at a time with `O_NOFOLLOW` ([`tree`]), and every
//!   change is an `*at()` call that does not follow a final symlink.
//! - **Never leave a partly written file at a final path.** New inodes are
//!   made complete (content flushed, mode, owner and mtime set) under
//!   temporary names in the object cache before any service stops
//!   ([`stage`]), and appear at their paths by rename.
//!
//! So the time between the first stop and the last start is spent on
//! renames, unlinks and metadata calls only. Once the services are back,
//! the directories the update changed are flushed (on a journalling file
//! system that commits every change it made); the rest of the machine's
//! unwritten data is left to the kernel. A failure on one path is recorded
//! (the first one is reported, with a count of the rest) and the work goes
//! on where it safely can; the next scan finds what is still wrong.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dom_model::report::UpdateResult;
use dom_model::{ObjectId, Plan, Triggers};
use dom_scan::cache::Identity;

use crate::objects::ObjectCache;
use crate::services::{RebootCommand, ServiceAction, ServiceCommand};

mod stage;
pub(crate) mod sys;
mod tree;
mod triggers;

pub use triggers::{ServicePlan, AGENT_SERVICE};

use stage::Staging;
use tree::{Removed, Tree};

/// What an update works with.
pub struct UpdateContext<'a> {
    /// The machine's root (`/` in production).
    pub root: PathBuf,
    /// Holds every object the plan installs; on the same file system as
    /// `root`, so installing is a rename.
    pub objects: &'a ObjectCache,
    /// The triggers of the image the machine carried; `None` on the first
    /// update after install, when the new triggers decide what to stop.
    pub old_triggers: Option<&'a Triggers>,
    pub new_triggers: &'a Triggers,
    pub services: &'a ServiceCommand,
    /// `None` disables reboots: a trigger asking for one is reported.
    pub reboot: Option<&'a RebootCommand>,
}

/// What an update did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Every path was made right (trigger failures aside).
    pub ok: bool,
    /// The first failure, with a count of any others.
    pub error: Option<String>,
    /// Paths created, replaced, deleted or given new metadata.
    pub changed: u64,
    /// One line per failed service or reboot command, e.g.
    /// `sshd start: exit status 1`.
    pub trigger_failures: Vec<String>,
    /// Services stopped, started and reloaded, in order.
    pub stopped: Vec<String>,
    pub started: Vec<String>,
    pub reloaded: Vec<String>,
    /// From the first service command's start to the last one's end
    /// (normally the first stop and the last start): how long the machine
    /// was in transition. `None` when no service command ran.
    pub transition: Option<Duration>,
    /// Time spent changing the tree, between the stops and the starts.
    pub window: Duration,
    /// The whole update, staging and flushing included.
    pub duration: Duration,
    /// The reboot command ran successfully.
    pub rebooted: bool,
    /// The agent's own service's triggers fired: it should report, then
    /// restart itself (it is never stopped by the service command).
    pub restart_agent: bool,
    /// Every file installed, as it was right after its rename, with the
    /// object it holds: for the hash cache, so that no scan reads them.
    pub installed: Vec<(Identity, ObjectId)>,
    /// Files whose content the update left alone but whose inode it
    /// changed (mode, owner, mtime, a new hard link), before and after.
    pub touched: Vec<(Identity, Identity)>,
}

impl UpdateOutcome {
    fn refused(error: String, started: Instant) -> Self {
        Self {
            error: Some(error),
            duration: started.elapsed(),
            ..Self::default()
        }
    }

    /// The outcome as reported on the bus, for `image`, started at
    /// `started` (RFC 3339). Fetch counts are the caller's to fill in.
    pub fn to_result(&self, image: &str, started: &str) -> UpdateResult {
        UpdateResult {
            from: None,
            image: image.to_string(),
            started: started.to_string(),
            duration_ms: self.duration.as_millis() as u64,
            ok: self.ok,
            error: self.error.clone(),
            trigger_failures: self.trigger_failures.clone(),
            transition_ms: self.transition.map(|t| t.as_millis() as u64),
            changed: self.changed,
            fetched_objects: 0,
            fetched_bytes: 0,
        }
    }
}

/// Failures on individual paths: the first is kept, the rest counted.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    first: Option<String>,
    count: u64,
}

impl Errors {
    pub(crate) fn record(&mut self, op: &str, path: &str, error: impl Display) {
        self.count += 1;
        if self.first.is_none() {
            tracing::warn!(path, "{op}: {error}");
            self.first = Some(format!("{op} {path}: {error}"));
        } else {
            tracing::debug!(path, "{op}: {error}");
        }
    }

    fn message(&self) -> Option<String> {
        let first = self.first.as_ref()?;
        Some(match self.count {
            0 | 1 => first.clone(),
            2 => format!("{first} (and 1 more error)"),
            n => format!("{first} (and {} more errors)", n - 1),
        })
    }
}

/// Applies `plan` to the tree at `ctx.root`. Blocking; run it on a thread
/// of its own (`spawn_blocking`).
///
/// Nothing is changed, and no service touched, when the root cannot be
/// opened or an object the plan installs is missing from the cache.
pub fn apply(plan: &Plan, ctx: &UpdateContext<'_>) -> UpdateOutcome {
    let started = Instant::now();
    let mut tree = match Tree::open(&ctx.root) {
        Ok(tree) => tree,
        Err(e) => {
            let error = format!("cannot open the root {}: {e}", ctx.root.display());
            return UpdateOutcome::refused(error, started);
        }
    };
    if let Some(error) = stage::missing_object(plan, ctx.objects) {
        return UpdateOutcome::refused(error, started);
    }
    let services = ServicePlan::new(&plan.changed, ctx.old_triggers, ctx.new_triggers);
    let mut out = UpdateOutcome {
        restart_agent: services.restart_agent,
        ..UpdateOutcome::default()
    };
    let mut errors = Errors::default();
    let mut staging = Staging::prepare(plan, ctx.objects, &mut errors);
    let staged = started.elapsed();

    let mut commands = Commands::default();
    for service in &services.stop {
        match commands.run(ctx.services, service, ServiceAction::Stop) {
            Ok(()) => out.stopped.push(service.clone()),
            Err(e) => out.trigger_failures.push(e),
        }
    }

    let window = Instant::now();
    out.changed = change_tree(
        plan,
        &mut tree,
        &mut staging,
        ctx.objects,
        &mut errors,
        &mut out,
    );
    out.window = window.elapsed();
    drop(staging);

    for (service, action) in &services.start {
        match commands.run(ctx.services, service, *action) {
            Ok(()) if *action == ServiceAction::Reload => out.reloaded.push(service.clone()),
            Ok(()) => out.started.push(service.clone()),
            Err(e) => out.trigger_failures.push(e),
        }
    }
    out.transition = commands.span();

    let flushing = Instant::now();
    if let Err(e) = tree.sync() {
        errors.record("flush", &ctx.root.display().to_string(), e);
    }
    tracing::debug!(?staged, window = ?out.window, flushed = ?flushing.elapsed(), "tree changed");
    if services.reboot {
        match ctx.reboot {
            Some(reboot) => match reboot.run() {
                Ok(()) => out.rebooted = true,
                Err(e) => out.trigger_failures.push(format!("reboot: {e}")),
            },
            None => out
                .trigger_failures
                .push("reboot: asked for, but reboots are disabled".into()),
        }
    }
    out.error = errors.message();
    out.ok = out.error.is_none();
    out.duration = started.elapsed();
    out
}

/// Service commands run, and when.
#[derive(Default)]
struct Commands {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Commands {
    /// Runs one service command; `Err` is the line for `trigger_failures`.
    fn run(
        &mut self,
        command: &ServiceCommand,
        service: &str,
        action: ServiceAction,
    ) -> Result<(), String> {
        self.first.get_or_insert_with(Instant::now);
        let result = command.run(service, action);
        self.last = Some(Instant::now());
        match result {
            Ok(()) => {
                tracing::info!(service, %action, "service command ran");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(service, %action, error = %e, "service command failed");
                Err(format!("{service} {action}: {e}"))
            }
        }
    }

    fn span(&self) -> Option<Duration> {
        Some(self.last?.saturating_duration_since(self.first?))
    }
}

/// The tree changes, in order. Returns how many paths changed; what the
/// hash cache should learn goes into `out`.
fn change_tree(
    plan: &Plan,
    tree: &mut Tree,
    staging: &mut Staging<'_>,
    cache: &ObjectCache,
    errors: &mut Errors,
    out: &mut UpdateOutcome,
) -> u64 {
    let mut changed = 0u64;
    let mut count = |result: Option<std::io::Result<()>>, op: &str, path: &str| match result {
        Some(Ok(())) => {
            changed += 1;
            true
        }
        Some(Err(e)) => {
            errors.record(op, path, e);
            false
        }
        None => false,
    };
    for p in &plan.clear {
        match tree.remove(p) {
            Ok(Removed::Gone | Removed::Absent) => {}
            Ok(Removed::Kept) => _ = count(Some(Err(not_empty())), "clear", p),
            Err(e) => _ = count(Some(Err(e)), "clear", p),
        }
    }
    for d in &plan.mkdirs {
        count(Some(tree.mkdir(d)), "make directory", &d.path);
    }
    for (i, install) in plan.installs.iter().enumerate() {
        if count(staging.install(i, tree), "install", &install.path) {
            out.installed.extend(installed(tree, install));
        }
    }
    for (i, s) in plan.symlinks.iter().enumerate() {
        count(staging.symlink(i, tree), "symlink", &s.path);
    }
    for (i, d) in plan.devices.iter().enumerate() {
        count(staging.device(i, tree), "make device", &d.path);
    }
    for l in &plan.links {
        let linked = tree.link(cache, l, &mut out.touched);
        count(Some(linked), "hard link", &l.path);
    }
    for p in &plan.deletes {
        match tree.remove(p) {
            Ok(Removed::Gone) => _ = count(Some(Ok(())), "delete", p),
            Ok(Removed::Absent) => {}
            Ok(Removed::Kept) => tracing::debug!(path = %p, "directory not empty: kept"),
            Err(e) => _ = count(Some(Err(e)), "delete", p),
        }
    }
    for m in &plan.metadata {
        let set = tree.set_metadata(m, &mut out.touched);
        count(Some(set), "set metadata of", &m.path);
    }
    changed
}

/// The identity of the file `install` just put in place, with its object:
/// `None` unless it is the file the install made (a regular file of its
/// size and mtime).
fn installed(tree: &mut Tree, install: &dom_model::plan::Install) -> Option<(Identity, ObjectId)> {
    let st = tree.stat(&install.path)?;
    let made = sys::is_file(&st)
        && st.st_size as u64 == install.size
        && (st.st_mtime, st.st_mtime_nsec) == (install.mtime, i64::from(install.mtime_ns));
    made.then(|| (sys::identity(&st), install.object))
}

fn not_empty() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::DirectoryNotEmpty,
        "directory holds paths the scan did not see",
    )
}
