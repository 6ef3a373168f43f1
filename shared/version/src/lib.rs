//! The version every binary of the project prints with `--version`: the
//! workspace's version and the source revision, e.g. `0.1.0 (rev 90b2af1)`.
//!
//! The revision is `DOM_REVISION` at build time when set (a build from a
//! tarball, or a package build that marks a changed tree), else the git
//! commit being built, else `unknown` (see build.rs).

/// The source revision the binaries were built from.
pub const REVISION: &str = env!("DOM_REVISION");

/// What `--version` prints after the binary's name.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("DOM_REVISION"),
    ")"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_crate_version_and_the_revision() {
        assert!(!REVISION.is_empty());
        assert_eq!(
            VERSION,
            format!("{} (rev {REVISION})", env!("CARGO_PKG_VERSION"))
        );
    }
}
