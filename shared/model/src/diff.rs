//! Differences between two manifests, path by path.

use crate::manifest::{Inode, Manifest};

/// How one path differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Added(&'a str),
    Removed(&'a str),
    /// Present in both; `what` lists the differing attributes.
    Changed(&'a str, Vec<&'static str>),
}

/// Paths added, removed or changed going from `left` to `right`, in path
/// order. Hard links are compared by the inode they name.
pub fn diff<'a>(left: &'a Manifest, right: &'a Manifest) -> Vec<Change<'a>> {
    let (mut l, mut r) = (
        left.entries.iter().peekable(),
        right.entries.iter().peekable(),
    );
    let mut changes = Vec::new();
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(a), None) => {
                changes.push(Change::Removed(&a.path));
                l.next();
            }
            (None, Some(b)) => {
                changes.push(Change::Added(&b.path));
                r.next();
            }
            (Some(a), Some(b)) => match a.path.cmp(&b.path) {
                std::cmp::Ordering::Less => {
                    changes.push(Change::Removed(&a.path));
                    l.next();
                }
                std::cmp::Ordering::Greater => {
                    changes.push(Change::Added(&b.path));
                    r.next();
                }
                std::cmp::Ordering::Equal => {
                    let what = differences(left.resolve(a), right.resolve(b));
                    if !what.is_empty() {
                        changes.push(Change::Changed(&a.path, what));
                    }
                    l.next();
                    r.next();
                }
            },
        }
    }
    changes
}

/// Which attributes differ between two inodes.
pub fn differences(a: &Inode, b: &Inode) -> Vec<&'static str> {
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return vec!["type"];
    }
    let mut what = Vec::new();
    if a.mode() != b.mode() {
        what.push("mode");
    }
    if a.owner() != b.owner() {
        what.push("owner");
    }
    if a.mtime() != b.mtime() {
        what.push("mtime");
    }
    match (a, b) {
        (
            Inode::File {
                object: oa,
                size: sa,
                ..
            },
            Inode::File {
                object: ob,
                size: sb,
                ..
            },
        ) if oa != ob || sa != sb => what.push("content"),
        (Inode::Symlink { target: ta, .. }, Inode::Symlink { target: tb, .. }) if ta != tb => {
            what.push("target")
        }
        (Inode::Char { rdev: ra, .. }, Inode::Char { rdev: rb, .. })
        | (Inode::Block { rdev: ra, .. }, Inode::Block { rdev: rb, .. })
            if ra != rb =>
        {
            what.push("device")
        }
        _ => {}
    }
    what
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestBuilder;
    use crate::ObjectId;

    fn file(content: &[u8], mode: u32) -> Inode {
        Inode::File {
            mode,
            uid: 0,
            gid: 0,
            mtime: 1,
            mtime_ns: 0,
            size: content.len() as u64,
            object: ObjectId::of(content),
        }
    }

    #[test]
    fn added_removed_changed() {
        let mut a = ManifestBuilder::new();
        a.add("/same".into(), file(b"s", 0o644), None).unwrap();
        a.add("/gone".into(), file(b"g", 0o644), None).unwrap();
        a.add("/edit".into(), file(b"old", 0o644), None).unwrap();
        let mut b = ManifestBuilder::new();
        b.add("/same".into(), file(b"s", 0o644), None).unwrap();
        b.add("/new".into(), file(b"n", 0o644), None).unwrap();
        b.add("/edit".into(), file(b"new", 0o600), None).unwrap();
        let (a, b) = (a.finish().unwrap(), b.finish().unwrap());
        assert_eq!(
            diff(&a, &b),
            vec![
                Change::Changed("/edit", vec!["mode", "content"]),
                Change::Removed("/gone"),
                Change::Added("/new"),
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
