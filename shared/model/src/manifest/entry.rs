//! Reading a manifest entry from JSON in one pass.
//!
//! An [`Entry`] is written as one flat object, its inode's fields beside
//! the path and tagged by `"t"`. serde's derived reader for that shape
//! (a flattened, internally tagged enum) buffers every entry in a generic
//! form first and then reads it a second time, which took a fifth of
//! decoding a 41,800-entry manifest; this reader takes each field as it
//! comes. It accepts what the derived one did: fields in any order,
//! unknown ones ignored, `mtime_ns` optional.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::{Entry, Inode};
use crate::object::ObjectId;

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    Path,
    T,
    Mode,
    Uid,
    Gid,
    Mtime,
    MtimeNs,
    Size,
    Object,
    Target,
    Rdev,
    #[serde(other)]
    Other,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Dir,
    File,
    Symlink,
    Link,
    Char,
    Block,
    Fifo,
}

#[derive(Default)]
struct Fields {
    path: Option<String>,
    kind: Option<Kind>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<i64>,
    mtime_ns: Option<u32>,
    size: Option<u64>,
    object: Option<ObjectId>,
    target: Option<String>,
    rdev: Option<u64>,
}

/// Stores a field's value, refusing a second one.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

fn need<T, E: de::Error>(value: Option<T>, name: &'static str) -> Result<T, E> {
    value.ok_or_else(|| de::Error::missing_field(name))
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a manifest entry")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Path => once(&mut map, &mut f.path, "path")?,
                Key::T => once(&mut map, &mut f.kind, "t")?,
                Key::Mode => once(&mut map, &mut f.mode, "mode")?,
                Key::Uid => once(&mut map, &mut f.uid, "uid")?,
                Key::Gid => once(&mut map, &mut f.gid, "gid")?,
                Key::Mtime => once(&mut map, &mut f.mtime, "mtime")?,
                Key::MtimeNs => once(&mut map, &mut f.mtime_ns, "mtime_ns")?,
                Key::Size => once(&mut map, &mut f.size, "size")?,
                Key::Object => once(&mut map, &mut f.object, "object")?,
                Key::Target => once(&mut map, &mut f.target, "target")?,
                Key::Rdev => once(&mut map, &mut f.rdev, "rdev")?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let path = need(f.path, "path")?;
        let mode = || need(f.mode, "mode");
        let uid = || need(f.uid, "uid");
        let gid = || need(f.gid, "gid");
        let mtime = || need(f.mtime, "mtime");
        let mtime_ns = f.mtime_ns.unwrap_or(0);
        let inode = match need(f.kind, "t")? {
            Kind::Dir => Inode::Dir {
                mode: mode()?,
                uid: uid()?,
                gid: gid()?,
            },
            Kind::File => Inode::File {
                mode: mode()?,
                uid: uid()?,
                gid: gid()?,
                mtime: mtime()?,
                mtime_ns,
                size: need(f.size, "size")?,
                object: need(f.object, "object")?,
            },
            Kind::Symlink => Inode::Symlink {
                uid: uid()?,
                gid: gid()?,
                target: need(f.target, "target")?,
            },
            Kind::Link => Inode::Link {
                target: need(f.target, "target")?,
            },
            Kind::Char => Inode::Char {
                mode: mode()?,
                uid: uid()?,
                gid: gid()?,
                mtime: mtime()?,
                mtime_ns,
                rdev: need(f.rdev, "rdev")?,
            },
            Kind::Block => Inode::Block {
                mode: mode()?,
                uid: uid()?,
                gid: gid()?,
                mtime: mtime()?,
                mtime_ns,
                rdev: need(f.rdev, "rdev")?,
            },
            Kind::Fifo => Inode::Fifo {
                mode: mode()?,
                uid: uid()?,
                gid: gid()?,
                mtime: mtime()?,
                mtime_ns,
            },
        };
        Ok(Entry { path, inode })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde's derived reader made of the same text.
    #[derive(Deserialize, PartialEq, Debug)]
    struct Derived {
        path: String,
        #[serde(flatten)]
        inode: Inode,
    }

    fn both(json: &str) -> (Result<Entry, String>, Result<Derived, String>) {
        (
            serde_json::from_str::<Entry>(json).map_err(|e| e.to_string()),
            serde_json::from_str::<Derived>(json).map_err(|e| e.to_string()),
        )
    }

    #[test]
    fn every_kind_reads_as_the_derived_reader_reads_it() {
        let id = ObjectId::of(b"x");
        for json in [
            r#"{"path":"/","t":"dir","mode":493,"uid":0,"gid":0}"#.to_string(),
            format!(
                r#"{{"path":"/f","t":"file","mode":420,"uid":1,"gid":2,"mtime":5,"mtime_ns":7,"size":1,"object":"{id}"}}"#
            ),
            format!(
                r#"{{"object":"{id}","size":1,"mtime":5,"gid":2,"uid":1,"mode":420,"t":"file","path":"/f","extra":[1,{{"a":2}}]}}"#
            ),
            r#"{"path":"/l","t":"symlink","uid":0,"gid":0,"target":"f"}"#.to_string(),
            r#"{"path":"/h","t":"link","target":"/f"}"#.to_string(),
            r#"{"path":"/c","t":"char","mode":438,"uid":0,"gid":0,"mtime":1,"rdev":259}"#
                .to_string(),
            r#"{"path":"/b","t":"block","mode":432,"uid":0,"gid":6,"mtime":1,"mtime_ns":3,"rdev":2049}"#
                .to_string(),
            r#"{"path":"/p","t":"fifo","mode":420,"uid":0,"gid":0,"mtime":1}"#.to_string(),
        ] {
            let (ours, derived) = both(&json);
            let (ours, derived) = (ours.unwrap(), derived.unwrap());
            assert_eq!((&ours.path, &ours.inode), (&derived.path, &derived.inode), "{json}");
        }
    }

    #[test]
    fn what_the_derived_reader_refuses_is_refused() {
        for json in [
            r#"{"path":"/","t":"dir","mode":493,"uid":0}"#,
            r#"{"path":"/","t":"tree","mode":493,"uid":0,"gid":0}"#,
            r#"{"t":"dir","mode":493,"uid":0,"gid":0}"#,
            r#"{"path":"/","mode":493,"uid":0,"gid":0}"#,
            r#"{"path":"/f","t":"file","mode":420,"uid":1,"gid":2,"mtime":5,"size":1,"object":"zz"}"#,
            r#"{"path":"/","t":"dir","mode":-1,"uid":0,"gid":0}"#,
            r#"["/","dir"]"#,
        ] {
            let (ours, derived) = both(json);
            assert!(ours.is_err(), "{json}: {ours:?}");
            assert!(derived.is_err(), "{json}: {derived:?}");
        }
    }

    #[test]
    fn a_repeated_field_is_refused() {
        let json = r#"{"path":"/","path":"/x","t":"dir","mode":493,"uid":0,"gid":0}"#;
        assert!(serde_json::from_str::<Entry>(json).is_err());
    }
}
