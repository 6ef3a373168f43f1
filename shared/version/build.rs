//! Finds the source revision for `--version`: `DOM_REVISION` when set (a
//! package built from a tarball names its revision so), else the commit of
//! the git checkout being built, else `unknown`.
//!
//! Cargo runs this again only when `DOM_REVISION` changes or the checkout
//! moves to another commit (HEAD or the branch it names), not on every
//! build: what a working tree holds beyond its commit is not recorded.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DOM_REVISION");
    let revision = match std::env::var("DOM_REVISION") {
        Ok(revision) if !revision.trim().is_empty() => revision.trim().to_string(),
        _ => {
            let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
            watch_head(&dir);
            git(&dir, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=DOM_REVISION={revision}");
}

/// Asks cargo to run this again when HEAD moves: HEAD itself (a checkout
/// of another branch or commit) and the ref it names (a new commit), loose
/// or packed. Outside a checkout there is nothing to watch.
fn watch_head(dir: &Path) {
    let Some(head) = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", "HEAD"],
    ) else {
        return;
    };
    println!("cargo:rerun-if-changed={head}");
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        for path in [branch.as_str(), "packed-refs"] {
            if let Some(file) = git(
                dir,
                &["rev-parse", "--path-format=absolute", "--git-path", path],
            ) {
                // A file that does not exist would make cargo run this
                // on every build.
                if Path::new(&file).exists() {
                    println!("cargo:rerun-if-changed={file}");
                }
            }
        }
    }
}

/// The trimmed output of `git ARGS` in `dir`, or `None` when git is
/// missing, fails, or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_string())
}
