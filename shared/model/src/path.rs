//! Image paths: absolute, `/`-separated and normalised (`/etc/ssh/sshd.conf`).
//!
//! Every path that enters the system (from a directory walk, a tar entry, a
//! decoded manifest) goes through [`normalise`] or [`from_relative`], so a
//! path that could escape the image root never reaches code that writes.

use thiserror::Error;

/// Why a path was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path {0:?} is not absolute")]
    NotAbsolute(String),
    #[error("path {0:?} contains '..'")]
    DotDot(String),
    #[error("path {0:?} contains an empty or '.' segment")]
    EmptySegment(String),
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path {0:?} is absolute where a relative one is expected")]
    Absolute(String),
    #[error("path is longer than {max} bytes", max = MAX_PATH_LEN)]
    TooLong,
}

/// Longest path accepted, as Linux's `PATH_MAX`.
pub const MAX_PATH_LEN: usize = 4096;

/// Checks that `path` is an absolute, normalised image path and returns it.
/// The root itself is `/`.
pub fn normalise(path: &str) -> Result<&str, PathError> {
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if path.contains('\0') {
        return Err(PathError::Nul(path.into()));
    }
    if path == "/" {
        return Ok(path);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute(path.into()));
    };
    for segment in rest.split('/') {
        match segment {
            ".." => return Err(PathError::DotDot(path.into())),
            "" | "." => return Err(PathError::EmptySegment(path.into())),
            _ => {}
        }
    }
    Ok(path)
}

/// Turns a path relative to the image root, as found in a tar archive
/// (`etc/passwd`, `./etc/`, `.`), into an absolute image path. A leading
/// `./` and a trailing `/` are accepted; absolute paths and `..` are not.
pub fn from_relative(relative: &str) -> Result<String, PathError> {
    if relative.starts_with('/') {
        return Err(PathError::Absolute(relative.into()));
    }
    let mut trimmed = relative;
    while let Some(rest) = trimmed.strip_prefix("./") {
        trimmed = rest;
    }
    let trimmed = trimmed.trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok("/".into());
    }
    let absolute = format!("/{trimmed}");
    normalise(&absolute)?;
    Ok(absolute)
}

/// Joins a directory path and a single name.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent directory of an image path (`/` for top-level entries and the
/// root itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Whether a symlink at `link_path` pointing at `target` stays inside the
/// image root. Absolute targets always do (they are resolved against the
/// machine's root); relative targets must not climb above it.
pub fn symlink_stays_inside(link_path: &str, target: &str) -> bool {
    if target.is_empty() || target.contains('\0') {
        return false;
    }
    if target.starts_with('/') {
        return true;
    }
    let mut depth = parent(link_path)
        .split('/')
        .filter(|s| !s.is_empty())
        .count();
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            _ => depth += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_accepts_clean_paths() {
        assert_eq!(normalise("/"), Ok("/"));
        assert_eq!(normalise("/etc/ssh/sshd.conf"), Ok("/etc/ssh/sshd.conf"));
        assert_eq!(normalise("/a..b/.hidden"), Ok("/a..b/.hidden"));
    }

    #[test]
    fn normalise_rejects_escapes_and_junk() {
        assert!(matches!(normalise("etc"), Err(PathError::NotAbsolute(_))));
        assert!(matches!(normalise("/etc/../x"), Err(PathError::DotDot(_))));
        assert!(matches!(normalise("/.."), Err(PathError::DotDot(_))));
        assert!(matches!(
            normalise("/etc//x"),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(
            normalise("/etc/"),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(
            normalise("/./etc"),
            Err(PathError::EmptySegment(_))
        ));
        assert!(matches!(normalise("/e\0"), Err(PathError::Nul(_))));
        assert_eq!(normalise(&"/a".repeat(3000)), Err(PathError::TooLong));
    }

    #[test]
    fn from_relative_handles_tar_spellings() {
        assert_eq!(from_relative("./").unwrap(), "/");
        assert_eq!(from_relative(".").unwrap(), "/");
        assert_eq!(from_relative("./etc/").unwrap(), "/etc");
        assert_eq!(from_relative("etc/passwd").unwrap(), "/etc/passwd");
        assert!(matches!(from_relative("/etc"), Err(PathError::Absolute(_))));
        assert!(matches!(from_relative("../etc"), Err(PathError::DotDot(_))));
        assert!(matches!(
            from_relative("a/../../b"),
            Err(PathError::DotDot(_))
        ));
    }

    #[test]
    fn parent_and_join() {
        assert_eq!(parent("/etc/ssh"), "/etc");
        assert_eq!(parent("/etc"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(join("/", "etc"), "/etc");
        assert_eq!(join("/etc", "ssh"), "/etc/ssh");
    }

    #[test]
    fn symlink_escape_detection() {
        assert!(symlink_stays_inside("/lib", "usr/lib"));
        assert!(symlink_stays_inside("/etc/alt/x", "/usr/bin/x"));
        assert!(symlink_stays_inside("/a/b/c", "../../d"));
        assert!(!symlink_stays_inside("/a/b/c", "../../../d"));
        assert!(!symlink_stays_inside("/x", "../etc/passwd"));
        assert!(!symlink_stays_inside("/x", ""));
    }
}
