//! Image names, image records and deletion tombstones.
//!
//! An image record is what `dom.image.<name>` carries: everything a machine
//! needs to converge to the image except the file contents, which are
//! objects. A deleted image leaves a tombstone so its name is never reused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::object::ObjectId;
use crate::triggers::Trigger;

/// Schema version of image records and tombstones.
pub const IMAGE_RECORD_VERSION: u32 = 1;
/// Schema version of an image record that carries a health check. Older
/// readers would put the image on machines without running its check.
pub const IMAGE_RECORD_HEALTH_VERSION: u32 = 2;
/// Schema version of an image record that carries build metadata or tags
/// ([`Metadata`]). Readers that know only earlier versions must not guess
/// at them; a record without metadata keeps its earlier version.
pub const IMAGE_RECORD_METADATA_VERSION: u32 = 3;
/// The newest schema version this reader understands.
pub const IMAGE_RECORD_NEWEST_VERSION: u32 = IMAGE_RECORD_METADATA_VERSION;
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
    /// Where the image comes from and what it is for: build commit, git
    /// URL, release notes and build log, and tags. Flattened, so that its
    /// fields sit beside the others on the wire.
    #[serde(flatten)]
    pub metadata: Metadata,
}

/// An image's build metadata and tags (`imagetool add -tag K=V
/// -buildCommitId ... -buildGitUrl ... -releaseNotes FILE -buildLog FILE`,
/// and `imagetool tag NAME K=V` later). Nothing here changes what a
/// machine gets; it is for release pipelines to find and explain images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Tags, `KEY=VALUE`; keys are unique.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The commit the image was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_commit_id: Option<String>,
    /// The repository the image was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_git_url: Option<String>,
    /// The release notes, an object in the image's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<ObjectId>,
    /// The build's log, an object in the image's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_log: Option<ObjectId>,
}

/// Longest tag key accepted.
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Longest tag value, build commit id or git URL accepted.
pub const MAX_TAG_VALUE_LEN: usize = 1024;
/// Most tags an image may carry.
pub const MAX_TAGS: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TagError {
    #[error("tag {0:?} is not KEY=VALUE")]
    NoEquals(String),
    #[error("tag {0:?} has an empty key")]
    EmptyKey(String),
    #[error("tag key {0:?} has a character other than letters, digits and . _ - / :")]
    BadKey(String),
    #[error("tag key {0:?} is longer than {MAX_TAG_KEY_LEN} characters")]
    KeyTooLong(String),
    #[error("tag {0:?}: the value is longer than {MAX_TAG_VALUE_LEN} bytes or holds a control character")]
    BadValue(String),
}

/// Parses `KEY=VALUE`. A key is letters, digits and `. _ - / :`; a value
/// is any text without control characters (it may be empty, and may hold
/// `=`).
pub fn parse_tag(text: &str) -> Result<(String, String), TagError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(TagError::NoEquals(text.into()));
    };
    if key.is_empty() {
        return Err(TagError::EmptyKey(text.into()));
    }
    if key.len() > MAX_TAG_KEY_LEN {
        return Err(TagError::KeyTooLong(key.chars().take(40).collect()));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    {
        return Err(TagError::BadKey(key.into()));
    }
    if !text_ok(value) {
        return Err(TagError::BadValue(text.chars().take(60).collect()));
    }
    Ok((key.into(), value.into()))
}

/// Short text without control characters.
fn text_ok(value: &str) -> bool {
    value.len() <= MAX_TAG_VALUE_LEN && !value.chars().any(char::is_control)
}

impl Metadata {
    pub fn is_empty(&self) -> bool {
        self == &Metadata::default()
    }

    /// Checks what anyone able to publish a record could have put there.
    pub fn validate(&self) -> Result<(), String> {
        if self.tags.len() > MAX_TAGS {
            return Err(format!("{} tags; at most {MAX_TAGS}", self.tags.len()));
        }
        for (key, value) in &self.tags {
            parse_tag(&format!("{key}={value}")).map_err(|e| e.to_string())?;
        }
        for (what, text) in [
            ("build_commit_id", &self.build_commit_id),
            ("build_git_url", &self.build_git_url),
        ] {
            if let Some(text) = text {
                if !text_ok(text) {
                    return Err(format!(
                        "{what} is longer than {MAX_TAG_VALUE_LEN} bytes or holds a control character"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether every `(key, value)` wanted is one of the tags.
    pub fn matches_tags(&self, wanted: &[(String, String)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.tags.get(k).is_some_and(|have| have == v))
    }
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

    /// This record with what may change of an image after it was
    /// published taken from `other`: its expiry, its metadata (tags,
    /// build details) and the schema version those need. Manifest,
    /// filter, triggers and the rest never change: a later record equal
    /// to `self.with_changeable_of(later)` is the same image.
    pub fn with_changeable_of(&self, other: &ImageRecord) -> ImageRecord {
        ImageRecord {
            v: other.v,
            metadata: other.metadata.clone(),
            ..self.with_expiry_of(other)
        }
    }

    /// The schema version this record needs: the oldest whose readers
    /// understand everything it carries.
    pub fn schema_version(&self) -> u32 {
        if !self.metadata.is_empty() {
            IMAGE_RECORD_METADATA_VERSION
        } else if self.health_check.is_some() {
            IMAGE_RECORD_HEALTH_VERSION
        } else {
            IMAGE_RECORD_VERSION
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
// Nearly every message is a record; boxing it would cost every reader an
// allocation to save the few tombstones some bytes.
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
            if record.v > IMAGE_RECORD_NEWEST_VERSION {
                return Err(ImageMessageError(format!(
                    "image record schema version {}; this reader understands up to {IMAGE_RECORD_NEWEST_VERSION}",
                    record.v
                )));
            }
            if let Some(check) = &record.health_check {
                check.validate().map_err(ImageMessageError)?;
            }
            record.metadata.validate().map_err(ImageMessageError)?;
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
            metadata: Metadata::default(),
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
        assert!(ImageMessage::decode(br#"{"v":4,"name":"x","manifest":"00","sparse":true,"files":0,"bytes":0,"inodes":0,"created":"t","creator":"c"}"#).is_err());
        assert!(ImageMessage::decode(b"{}").is_err());
        assert!(ImageMessage::decode(br#"{"name":"bad name","deleted":true}"#).is_err());
    }

    /// A record as the first release wrote it: no health check, no
    /// metadata, no store location.
    const V1_RECORD: &str = r#"{"v":1,"name":"sparse.0","manifest":"ab","sparse":true,"triggers":[],"files":1,"bytes":2,"inodes":3,"created":"2026-11-26T00:00:00Z","creator":"root@h"}"#;

    fn v1_record() -> ImageRecord {
        let hex = ObjectId::of(b"m").to_hex();
        match ImageMessage::decode(V1_RECORD.replace("\"ab\"", &format!("{hex:?}")).as_bytes())
            .unwrap()
        {
            ImageMessage::Record(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_old_record_reads_with_no_metadata() {
        let record = v1_record();
        assert!(record.metadata.is_empty());
        assert_eq!(record.schema_version(), IMAGE_RECORD_VERSION);
        // Written again, it stays what it was.
        let text = String::from_utf8(ImageMessage::Record(record).encode()).unwrap();
        assert!(!text.contains("tags") && !text.contains("build_"), "{text}");
    }

    #[test]
    fn metadata_bumps_the_version_and_round_trips() {
        let mut record = v1_record();
        record
            .metadata
            .tags
            .insert("stream".into(), "web/prod".into());
        record.metadata.build_commit_id = Some("0123abc".into());
        record.metadata.release_notes = Some(ObjectId::of(b"notes"));
        record.v = record.schema_version();
        assert_eq!(record.v, IMAGE_RECORD_METADATA_VERSION);
        let message = ImageMessage::Record(record.clone());
        let encoded = message.encode();
        assert_eq!(ImageMessage::decode(&encoded).unwrap(), message);
        let text = String::from_utf8(encoded.clone()).unwrap();
        assert!(text.contains(r#""tags":{"stream":"web/prod"}"#), "{text}");
        // A reader that knows only the first schema's fields reads it.
        #[derive(Deserialize)]
        struct FirstSchema {
            name: ImageName,
            manifest: ObjectId,
            sparse: bool,
            #[serde(default)]
            triggers: Vec<Trigger>,
        }
        let old: FirstSchema = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(old.name, record.name);
        assert_eq!(old.manifest, record.manifest);
        assert!(old.sparse && old.triggers.is_empty());
    }

    #[test]
    fn a_record_with_bad_tags_is_malformed() {
        let mut record = v1_record();
        record.metadata.tags.insert("bad key".into(), "x".into());
        record.v = record.schema_version();
        let err = ImageMessage::decode(&ImageMessage::Record(record).encode()).unwrap_err();
        assert!(err.to_string().contains("bad key"), "{err}");
    }

    #[test]
    fn tags() {
        assert_eq!(
            parse_tag("stream=web/prod").unwrap(),
            ("stream".into(), "web/prod".into())
        );
        assert_eq!(parse_tag("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_tag("empty=").unwrap(), ("empty".into(), "".into()));
        assert_eq!(
            parse_tag("novalue"),
            Err(TagError::NoEquals("novalue".into()))
        );
        assert_eq!(parse_tag("=v"), Err(TagError::EmptyKey("=v".into())));
        assert!(matches!(parse_tag("a b=c"), Err(TagError::BadKey(_))));
        assert!(matches!(parse_tag("k=a\nb"), Err(TagError::BadValue(_))));
        assert!(matches!(
            parse_tag(&format!("{}=v", "k".repeat(129))),
            Err(TagError::KeyTooLong(_))
        ));
        let mut metadata = Metadata::default();
        metadata.tags.insert("a".into(), "1".into());
        metadata.tags.insert("b".into(), "2".into());
        assert!(metadata.matches_tags(&[("a".into(), "1".into())]));
        assert!(metadata.matches_tags(&[]));
        assert!(!metadata.matches_tags(&[("a".into(), "2".into())]));
        assert!(!metadata.matches_tags(&[("c".into(), "".into())]));
    }
}
