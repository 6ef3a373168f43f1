//! The systemd units of ops/systemd/: `systemd-analyze verify` finds
//! nothing to say about any of them, with the binaries they name in place,
//! and the sandboxed services stay sandboxed (`systemd-analyze security`
//! rates them 2.5 or better). A unit with a typo fails the same check, so
//! a clean result means something.
//!
//! The units are checked in a root of their own (`--root`), laid out as a
//! machine with the packages installed: the workspace's binaries (hard
//! links, or copies) at /usr/bin/NAME, the environment files at
//! /etc/default/NAME, the units in /etc/systemd/system, and this
//! machine's own systemd units (the targets they order against) in
//! /usr/lib/systemd/system. Without systemd-analyze (not a systemd
//! machine; `ops/install-tools.sh` installs it as root) the tests say they
//! were skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dom_tests::{nats_server_binary, repo_root, workspace_binary};

/// The units, and the binaries of this workspace each one runs.
const UNITS: [(&str, &str); 4] = [
    ("subd.service", "subd"),
    ("dominator.service", "dominator"),
    ("mdbd.service", "mdbd"),
    ("nats-server.service", "nats-server"),
];

/// The units run as a user of their own, whose exposure must stay low.
const SANDBOXED: [&str; 3] = ["dominator.service", "mdbd.service", "nats-server.service"];

/// Exposure `systemd-analyze security` may rate them at most, in tenths.
const MOST_EXPOSURE: &str = "25";

fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|dir| dir.join("systemd-analyze"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        dom_tests::skip_without(
            "no systemd-analyze (apt-get install systemd, or ops/install-tools.sh as root)",
        );
    }
    found
}

/// A machine's root with the units of ops/systemd/ installed.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        // Next to the built binaries, so that they can be hard links.
        let near = workspace_binary("subd");
        let dir = tempfile::tempdir_in(near.parent().unwrap()).unwrap();
        let root = Self { dir };
        let bin = root.path().join("usr/bin");
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
        for (_, binary) in UNITS {
            let built = match binary {
                "nats-server" => nats_server_binary(),
                name => workspace_binary(name),
            };
            place(&fs::canonicalize(&built).unwrap(), &bin.join(binary));
        }
        // The subd unit's start condition and the server's reload.
        for tool in ["sh", "kill"] {
            let host = fs::canonicalize(format!("/bin/{tool}")).unwrap();
            place(&host, &bin.join(tool));
        }
        let systemd = root.path().join("usr/lib/systemd/system");
        fs::create_dir_all(&systemd).unwrap();
        for entry in fs::read_dir("/usr/lib/systemd/system").unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                fs::copy(entry.path(), systemd.join(entry.file_name())).unwrap();
            }
        }
        let ops = repo_root().join("ops/systemd");
        let defaults = root.path().join("etc/default");
        fs::create_dir_all(&defaults).unwrap();
        for entry in fs::read_dir(ops.join("default")).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), defaults.join(entry.file_name())).unwrap();
        }
        fs::create_dir_all(root.units()).unwrap();
        for (unit, _) in UNITS {
            root.install(unit, &fs::read_to_string(ops.join(unit)).unwrap());
        }
        root
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn units(&self) -> PathBuf {
        self.path().join("etc/systemd/system")
    }

    fn install(&self, unit: &str, text: &str) {
        fs::write(self.units().join(unit), text).unwrap();
    }

    /// What `systemd-analyze verify` says of `unit`: nothing when it is
    /// clean. Its exit status is 0 for most mistakes (a bad value or an
    /// unknown key is "ignored"), so its words are the verdict.
    fn verify(&self, analyze: &Path, unit: &str) -> String {
        let output = Command::new(analyze)
            .arg("verify")
            .arg(format!("--root={}", self.path().display()))
            // The manual pages come with the packages, not the checkout.
            .arg("--man=no")
            .arg(unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            said
        } else {
            format!("{}: {said}", output.status)
        }
    }
}

/// Puts `from` at `to`: a hard link when both are on one file system.
fn place(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap();
    }
}

#[test]
fn every_unit_verifies_clean() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let root = Root::new();
    for (unit, _) in UNITS {
        assert_eq!(
            root.verify(&analyze, unit),
            "",
            "systemd-analyze verify {unit}"
        );
    }
}

#[test]
fn a_unit_with_a_mistake_does_not() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let root = Root::new();
    let good = fs::read_to_string(repo_root().join("ops/systemd/dominator.service")).unwrap();
    for (wrong, right) in [
        ("Restrt=on-failure", "Restart=on-failure"),
        ("Restart=on-failur\n", "Restart=on-failure\n"),
        (
            "ExecStart=/usr/bin/dominatr ",
            "ExecStart=/usr/bin/dominator ",
        ),
    ] {
        assert!(good.contains(right), "{right}");
        root.install("dominator.service", &good.replacen(right, wrong, 1));
        let said = root.verify(&analyze, "dominator.service");
        assert_ne!(said, "", "{wrong:?} went unnoticed");
    }
}

#[test]
fn the_sandboxed_services_stay_sandboxed() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let root = Root::new();
    for unit in SANDBOXED {
        let output = Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.path().display()))
            .arg(format!("--threshold={MOST_EXPOSURE}"))
            .arg(unit)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout);
        let rating = said
            .lines()
            .find(|line| line.contains("Overall exposure level"))
            .unwrap_or_default();
        assert!(
            output.status.success(),
            "{unit}: exposure above 2.5: {rating}\n{said}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
