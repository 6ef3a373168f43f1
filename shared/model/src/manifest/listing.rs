//! A manifest listed for people, one line an entry, as `ls -l` would:
//! type and mode, owner, size (or device numbers), mtime, SHA-512, path,
//! and a link's target. `imagetool show` prints these lines and the
//! dominator's image page shows them, so the two always agree.

use super::{Entry, Inode, Manifest};
use crate::text::rfc3339;

/// The listing of every entry of `manifest`, in its order.
pub fn lines(manifest: &Manifest) -> impl Iterator<Item = String> + '_ {
    manifest.entries.iter().map(|entry| line(manifest, entry))
}

/// One entry's line: `-rw-r--r-- 0:0 6 2023-11-14T22:13:20Z SHA512 /etc/motd`.
/// A hard link shows its target's metadata and ` => TARGET`, a symlink
/// ` -> TARGET`; what has no size, mtime or content shows `0` or `-`.
pub fn line(manifest: &Manifest, entry: &Entry) -> String {
    let inode = manifest.resolve(entry);
    let mode = inode
        .mode()
        .map_or_else(|| "rwxrwxrwx".to_string(), mode_string);
    let (uid, gid) = inode.owner().unwrap_or((0, 0));
    let size = match inode {
        Inode::File { size, .. } => size.to_string(),
        Inode::Char { rdev, .. } | Inode::Block { rdev, .. } => {
            format!("{},{}", libc::major(*rdev), libc::minor(*rdev))
        }
        _ => "0".to_string(),
    };
    let mtime = inode
        .mtime()
        .and_then(|(s, _)| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| "-".to_string(), rfc3339);
    let hash = match inode {
        Inode::File { object, .. } => object.to_hex(),
        _ => "-".to_string(),
    };
    let tail = match &entry.inode {
        Inode::Symlink { target, .. } => format!(" -> {target}"),
        Inode::Link { target } => format!(" => {target}"),
        _ => String::new(),
    };
    format!(
        "{}{mode} {uid}:{gid} {size} {mtime} {hash} {}{tail}",
        inode.type_char(),
        entry.path
    )
}

/// `rwxr-xr-x`, with setuid/setgid/sticky as `ls` shows them.
pub fn mode_string(mode: u32) -> String {
    let mut s: Vec<char> = "rwxrwxrwx"
        .chars()
        .enumerate()
        .map(|(i, c)| if mode & (0o400 >> i) != 0 { c } else { '-' })
        .collect();
    for (bit, pos, set, unset) in [
        (0o4000, 2, 's', 'S'),
        (0o2000, 5, 's', 'S'),
        (0o1000, 8, 't', 'T'),
    ] {
        if mode & bit != 0 {
            s[pos] = if s[pos] == 'x' { set } else { unset };
        }
    }
    s.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestBuilder;
    use crate::object::ObjectId;

    #[test]
    fn modes_read_as_ls_shows_them() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
        assert_eq!(mode_string(0o2644), "rw-r-Sr--");
    }

    #[test]
    fn every_kind_of_entry_has_its_line() {
        let object = ObjectId::of(b"hello\n");
        let file = Inode::File {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            size: 6,
            object,
        };
        let mut b = ManifestBuilder::new();
        b.add("/etc/motd".into(), file.clone(), Some(1)).unwrap();
        b.add("/etc/motd.old".into(), file, Some(1)).unwrap();
        let null = Inode::Char {
            mode: 0o666,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            rdev: libc::makedev(1, 3),
        };
        b.add("/dev/null".into(), null, None).unwrap();
        let link = Inode::Symlink {
            uid: 0,
            gid: 0,
            target: "motd".into(),
        };
        b.add("/etc/issue".into(), link, None).unwrap();
        let m = b.finish().unwrap();
        let lines: Vec<String> = lines(&m).collect();
        let hex = object.to_hex();
        assert_eq!(
            lines,
            [
                "drwxr-xr-x 0:0 0 - - /".to_string(),
                "drwxr-xr-x 0:0 0 - - /dev".to_string(),
                "crw-rw-rw- 0:0 1,3 2023-11-14T22:13:20Z - /dev/null".to_string(),
                "drwxr-xr-x 0:0 0 - - /etc".to_string(),
                "lrwxrwxrwx 0:0 0 - - /etc/issue -> motd".to_string(),
                format!("-rw-r--r-- 0:0 6 2023-11-14T22:13:20Z {hex} /etc/motd"),
                format!("-rw-r--r-- 0:0 6 2023-11-14T22:13:20Z {hex} /etc/motd.old => /etc/motd"),
            ]
        );
    }
}
