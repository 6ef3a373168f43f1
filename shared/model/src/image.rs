//! Image names, image records and deletion tombstones.
//!
//! An image record is what `dom.image.<name>` carries: everything a machine
//! needs to converge to the image except the file contents, which are
//! objects. A deleted image leaves a tombstone so its name is never reused.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::object::ObjectId;
use crate::triggers::Trigger;

/// Schema version of image records and tombstones.
pub const IMAGE_RECORD_VERSION: u32 = 1;
/// Schema version of an image record that carries a health check. Older
/// readers would put the image on machines without running its check.
pub const IMAGE_RECORD_HEALTH_VERSION: u32 = 2;
/// Longest image name accepted.
pub const MAX_NAME_LEN: usize = 200;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("image name is empty")]
    Empty,
    #[error("image name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("image name {0:?} has a character other than letters, digits and . _ - + = @ : / ~")]
    BadChar(String),
    #[error("image name {0:?} has an empty, '.' or '..' part")]
    BadSegment(String),
}

/// A valid image name: POSIX-like path segments (`sparse.0`,
/// `web/prod/2026-11-26`), leading `/` dropped, limited to characters a
/// NATS subject token allows, with no empty dot-separated token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageName(String);

impl ImageName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let trimmed = name.trim_start_matches('/');
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong(
                trimmed.chars().take(40).collect::<String>() + "…",
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+=@:/~".contains(c);
        if !trimmed.chars().all(allowed) {
            return Err(NameError::BadChar(trimmed.into()));
        }
        let bad_segment = trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
            || trimmed.split('.').any(|t| t.is_empty());
        if bad_segment {
            return Err(NameError::BadSegment(trimmed.into()));
        }
        Ok(Self(trimmed.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ImageName> for String {
    fn from(n: ImageName) -> String {
        n.0
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The record of an image, published once on `dom.image.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub v: u32,
    pub name: ImageName,
    /// Object id of the encoded manifest.
    pub manifest: ObjectId,
    /// A sparse image only adds and updates; it never deletes.
    pub sparse: bool,
    /// Filter lines of a normal image; absent for a sparse image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Vec<String>>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Regular files (distinct inodes) in the image.
    pub files: u64,
    /// Total size of those files.
    pub bytes: u64,
    /// All entries: directories, files, links, devices.
    pub inodes: u64,
    /// When it was made, RFC 3339.
    pub created: String,
    /// Who made it (`user@host`).
    pub creator: String,
    /// When it expires, RFC 3339; absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Unix seconds of `expires`, so readers need no date parser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<i64>,
    /// Where the image's objects live when not in the fleet's NATS object
    /// bucket: the `--objects` location it was added with
    /// (`s3://BUCKET/PREFIX`, `file:///DIR`). Older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<String>,
    /// A check the agent runs after updating to this image
    /// (`imagetool add --health-command`). A record with one is schema
    /// version [`IMAGE_RECORD_HEALTH_VERSION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// A health check carried with an image: a shell command that exits 0
/// when the machine works, tried again until `timeout_s` is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub command: String,
    /// How long the agent keeps trying; absent: the agent's
    /// `--health-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// Longest health command accepted.
pub const MAX_HEALTH_COMMAND_LEN: usize = 4096;
/// Longest health-check time accepted, in seconds.
pub const MAX_HEALTH_TIMEOUT_S: u64 = 3600;

impl HealthCheck {
    pub fn validate(&self) -> Result<(), String> {
        if self.command.trim().is_empty() {
            return Err("the health check's command is empty".into());
        }
        if self.command.len() > MAX_HEALTH_COMMAND_LEN || self.command.contains('\0') {
            return Err(format!(
                "the health check's command is longer than {MAX_HEALTH_COMMAND_LEN} bytes or holds a NUL"
            ));
        }
        match self.timeout_s {
            Some(0) => Err("the health check's timeout_s is 0".into()),
            Some(t) if t > MAX_HEALTH_TIMEOUT_S => Err(format!(
                "the health check's timeout_s {t} is over {MAX_HEALTH_TIMEOUT_S}"
            )),
            _ => Ok(()),
        }
    }
}

impl ImageRecord {
    /// This record with `other`'s expiry.
    pub fn with_expiry_of(&self, other: &ImageRecord) -> ImageRecord {
        ImageRecord {
            expires: other.expires.clone(),
            expires_unix: other.expires_unix,
            ..self.clone()
        }
    }

    /// Whether the image has expired at `now` (Unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_unix.is_some_and(|t| t <= now)
    }
}

/// What a deleted image leaves on its subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub v: u32,
    pub name: ImageName,
    pub deleted: bool,
    pub deleted_at: String,
    pub by: String,
}

/// A message on an image subject.
// Records are the common case and are read one at a time; boxing them
// would cost every reader an allocation to save tombstones some bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageMessage {
    Record(ImageRecord),
    Deleted(Tombstone),
}

#[derive(Debug, Error)]
#[error("malformed image message: {0}")]
pub struct ImageMessageError(String);

impl ImageMessage {
    pub fn decode(payload: &[u8]) -> Result<Self, ImageMessageError> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            deleted: bool,
        }
        let err = |e: serde_json::Error| ImageMessageError(e.to_string());
        let probe: Probe = serde_json::from_slice(payload).map_err(err)?;
        if probe.deleted {
            Ok(Self::Deleted(serde_json::from_slice(payload).map_err(err)?))
        } else {
            let record: ImageRecord = serde_json::from_slice(payload).map_err(err)?;
            if record.v > IMAGE_RECORD_HEALTH_VERSION {
                return Err(ImageMessageError(format!(
                    "image record schema version {}; this reader understands up to {IMAGE_RECORD_HEALTH_VERSION}",
                    record.v
                )));
            }
            if let Some(check) = &record.health_check {
                check.validate().map_err(ImageMessageError)?;
            }
            Ok(Self::Record(record))
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Record(r) => serde_json::to_vec(r),
            Self::Deleted(t) => serde_json::to_vec(t),
        }
        .expect("image messages serialise")
    }

    pub fn name(&self) -> &ImageName {
        match self {
            Self::Record(r) => &r.name,
            Self::Deleted(t) => &t.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "sparse.0",
            "image.0",
            "web/prod/2026-11-26",
            "/lead",
            "a_b-c+d=e@f:g~h",
        ] {
            assert!(ImageName::parse(good).is_ok(), "{good}");
        }
        assert_eq!(ImageName::parse("/lead").unwrap().as_str(), "lead");
        for bad in [
            "", "/", "a b", "a*", "a>", "a..b", "a.", ".a", "a//b", "a/../b", "a/./b", "é",
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad}");
        }
        assert!(ImageName::parse(&"a".repeat(201)).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let record = ImageRecord {
            v: IMAGE_RECORD_VERSION,
            name: ImageName::parse("sparse.0").unwrap(),
            manifest: ObjectId::of(b"m"),
            sparse: true,
            filter: None,
            triggers: vec![],
            files: 1,
            bytes: 2,
            inodes: 3,
            created: "2026-11-26T00:00:00Z".into(),
            creator: "root@h".into(),
            expires: None,
            expires_unix: Some(10),
            objects: None,
            health_check: None,
        };
        assert!(record.is_expired(10));
        assert!(!record.is_expired(9));
        let msg = ImageMessage::Record(record);
        assert_eq!(ImageMessage::decode(&msg.encode()).unwrap(), msg);
        let tomb = ImageMessage::Deleted(Tombstone {
            v: 1,
            name: ImageName::parse("x").unwrap(),
            deleted: true,
            deleted_at: "t".into(),
            by: "me".into(),
        });
        assert_eq!(ImageMessage::decode(&tomb.encode()).unwrap(), tomb);
        assert!(ImageMessage::decode(b"{}").is_err());
        assert!(ImageMessage::decode(br#"{"name":"bad name","deleted":true}"#).is_err());
    }
}
