//! Machines for the update and fetch tests: a temporary root with the
//! agent's object cache in `/.subd/objects`, images scanned from source
//! directories, and a service command that records its calls.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dom_model::plan::{plan, Desired};
use dom_model::{Filter, Inode, Manifest, Plan, Triggers};
use dom_scan::{scan_tree, Counters, ScanOptions};
use subd::objects::ObjectCache;
use subd::services::{RebootCommand, ServiceCommand};
use subd::update::{apply, UpdateContext, UpdateOutcome};

/// The agent's own state, never part of an image.
pub const STATE: &str = "/.subd";

/// A machine root with its object cache.
pub struct Machine {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub cache: ObjectCache,
}

impl Machine {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let cache = ObjectCache::open(root.join(".subd/objects")).unwrap();
        Self { dir, root, cache }
    }

    /// `p` (an image path) on this machine.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Somewhere outside the root, in the same temporary directory.
    pub fn outside(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The machine's tree as the agent scans it.
    pub fn scan(&self) -> Manifest {
        scan(&self.root, &[STATE])
    }

    /// The plan from this machine to `image`.
    pub fn plan(&self, image: &Manifest, filter: Option<&Filter>) -> Plan {
        let machine = self.scan();
        let protected = [STATE.to_string()];
        let desired = match filter {
            Some(f) => Desired::normal(image, f),
            None => Desired::sparse(image),
        };
        plan(&machine, &desired.protecting(&protected))
    }

    /// Puts every object `plan` installs into the cache, read from the
    /// image's source tree `src`.
    pub fn fill_cache(&self, plan: &Plan, src: &Path) {
        for install in &plan.installs {
            let content = fs::read(src.join(install.path.trim_start_matches('/'))).unwrap();
            self.cache.insert_bytes(&install.object, &content).unwrap();
        }
    }

    /// Applies `plan` with no triggers and the given service command.
    pub fn apply(&self, plan: &Plan) -> UpdateOutcome {
        let none = Triggers::empty();
        let services = ServiceCommand::parse("false").unwrap();
        self.apply_with(plan, None, &none, &services, None)
    }

    pub fn apply_with(
        &self,
        plan: &Plan,
        old: Option<&Triggers>,
        new: &Triggers,
        services: &ServiceCommand,
        reboot: Option<&RebootCommand>,
    ) -> UpdateOutcome {
        let ctx = UpdateContext {
            root: self.root.clone(),
            objects: &self.cache,
            old_triggers: old,
            new_triggers: new,
            services,
            reboot,
        };
        apply(plan, &ctx)
    }

    /// Plans, fills the cache from `src`, applies, and checks the machine
    /// now matches `image`.
    pub fn converge(&self, image: &Manifest, src: &Path, filter: Option<&Filter>) -> UpdateOutcome {
        let plan = self.plan(image, filter);
        self.fill_cache(&plan, src);
        let out = self.apply(&plan);
        assert!(out.ok, "{:?}", out.error);
        let after = self.plan(image, filter);
        assert!(after.is_empty(), "still to do: {after:#?}");
        out
    }
}

/// Scans `root` into a manifest, leaving out `protected` paths.
pub fn scan(root: &Path, protected: &[&str]) -> Manifest {
    let options = ScanOptions {
        protected: protected.iter().map(|p| p.to_string()).collect(),
        ..ScanOptions::default()
    };
    scan_tree(root, &options, &Counters::default())
        .unwrap()
        .manifest
}

/// A source tree to build an image from.
pub struct Source {
    pub dir: tempfile::TempDir,
}

impl Source {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, p: &str, content: &str) -> &Self {
        write(self.root(), p, content);
        self
    }

    pub fn image(&self) -> Manifest {
        scan(self.root(), &[])
    }
}

/// Writes `content` to image path `p` under `root`, making parents.
pub fn write(root: &Path, p: &str, content: &str) {
    let path = root.join(p.trim_start_matches('/'));
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

pub fn read(root: &Path, p: &str) -> String {
    fs::read_to_string(root.join(p.trim_start_matches('/'))).unwrap()
}

/// Sets the mode of image path `p` under `root` (`/` is `root` itself).
pub fn chmod(root: &Path, p: &str, mode: u32) {
    let path = match p {
        "/" => root.to_path_buf(),
        p => root.join(p.trim_start_matches('/')),
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets the mtime of image path `p` under `root` (seconds, nanoseconds).
pub fn set_mtime(root: &Path, p: &str, secs: i64, nanos: u32) {
    let file = fs::File::options()
        .write(true)
        .open(root.join(p.trim_start_matches('/')))
        .or_else(|_| fs::File::open(root.join(p.trim_start_matches('/'))))
        .unwrap();
    let time = std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos);
    file.set_modified(time).unwrap();
}

/// The inode at `p` in a manifest.
pub fn inode<'a>(m: &'a Manifest, p: &str) -> &'a Inode {
    &m.get(p)
        .unwrap_or_else(|| panic!("{p} not in manifest"))
        .inode
}

/// A service (or reboot) command that appends its arguments, one call a
/// line, to a log file.
pub struct Recorder {
    /// Holds the script and the log; removed with the recorder.
    _dir: tempfile::TempDir,
    pub script: PathBuf,
    pub log: PathBuf,
}

impl Recorder {
    /// `extra` is shell code run after recording (e.g. `exit 1` for some
    /// calls).
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("recorder.sh");
        let log = dir.path().join("calls");
        fs::write(
            &script,
            format!("#!/bin/sh\necho \"$*\" >> '{}'\n{extra}\n", log.display()),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            _dir: dir,
            script,
            log,
        }
    }

    pub fn service_command(&self) -> ServiceCommand {
        ServiceCommand::parse(&format!("'{}'", self.script.display())).unwrap()
    }

    pub fn reboot_command(&self) -> RebootCommand {
        RebootCommand::parse(&format!("'{}' reboot", self.script.display())).unwrap()
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        dom_tests::fixtures::recorded_calls(&self.log)
    }
}
