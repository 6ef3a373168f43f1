//! The MDB record: which image each machine should carry.
//!
//! The machine database says, per host, the required image, an optional
//! planned image to pre-fetch, whether updates are disabled and free-form
//! tags. It is the original Dominator's JSON record, so existing tooling
//! and files keep working:
//!
//! ```json
//! {"Hostname": "web1.example.com", "RequiredImage": "web/prod/2026-11-26",
//!  "PlannedImage": "web/prod/2026-11-27", "DisableUpdates": false,
//!  "Tags": {"DisableSafetyCheck": "true"}}
//! ```
//!
//! On the bus a record travels on `dom.mdb.<host>` ([`MdbRecord::decode`]):
//! `Hostname` may be left out because the subject names the host, and an
//! empty payload removes the machine. The `mdb.json` file the original's
//! `mdbd` writes is a JSON array of records, each with its `Hostname`
//! ([`parse_mdb_file`]); [`diff_mdb`] turns two readings of such a file into
//! the messages to publish.
//!
//! As in the original (Go's `encoding/json`), field names match without
//! regard to case and fields this reader does not use (`IpAddress`,
//! `Location`, `OwnerGroups`, ...) are ignored.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use thiserror::Error;

use crate::desired::is_valid_host;
use crate::image::{ImageName, NameError};

#[cfg(test)]
mod tests;

/// The tag that turns the safety shutoff off for a machine.
pub const DISABLE_SAFETY_CHECK_TAG: &str = "DisableSafetyCheck";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MdbError {
    #[error("invalid host {0:?} in the MDB: use letters, digits, '-', '_' and single dots")]
    Host(String),
    #[error("MDB record for {host} is not valid JSON: {reason}")]
    Json { host: String, reason: String },
    #[error("MDB record for {host}: {reason}")]
    Field { host: String, reason: String },
    #[error("MDB record published for {subject} names another host, {record}; publish it on that host's subject or drop Hostname")]
    HostMismatch { subject: String, record: String },
    #[error("MDB record for {host}: {field}: {source}")]
    Image {
        host: String,
        field: &'static str,
        source: NameError,
    },
    #[error("mdb file is not valid: {0}")]
    File(String),
    #[error("mdb file, machine {number}: {reason}")]
    Machine { number: usize, reason: String },
    #[error("mdb file names {0} more than once")]
    Duplicate(String),
}

/// One machine's entry in the MDB.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MdbRecord {
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// The image the machine must carry; `None`: the machine is known but
    /// has no image yet, so nothing is done to it.
    #[serde(rename = "RequiredImage", skip_serializing_if = "Option::is_none")]
    pub required_image: Option<ImageName>,
    /// The image it will carry next, handed out for pre-fetching.
    #[serde(rename = "PlannedImage", skip_serializing_if = "Option::is_none")]
    pub planned_image: Option<ImageName>,
    /// Leave the machine as it is: no updates, not even drift fixes.
    #[serde(rename = "DisableUpdates", skip_serializing_if = "is_false")]
    pub disable_updates: bool,
    #[serde(rename = "Tags", skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl MdbRecord {
    /// A record for `host` with no image.
    pub fn new(host: &str) -> Self {
        Self {
            hostname: host.to_string(),
            ..Self::default()
        }
    }

    /// The same record requiring `image`.
    pub fn requiring(mut self, image: ImageName) -> Self {
        self.required_image = Some(image);
        self
    }

    /// Decodes the payload of `dom.mdb.<subject_host>`. An empty (or blank)
    /// payload removes the machine: `Ok(None)`.
    pub fn decode(subject_host: &str, payload: &[u8]) -> Result<Option<Self>, MdbError> {
        if !is_valid_host(subject_host) {
            return Err(MdbError::Host(subject_host.to_string()));
        }
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value: Value = serde_json::from_slice(payload).map_err(|e| MdbError::Json {
            host: subject_host.to_string(),
            reason: e.to_string(),
        })?;
        let record = from_value(&value, Some(subject_host))?;
        Ok(Some(record))
    }

    /// The record as the bus carries it, `Hostname` first and fields that
    /// are empty or false left out.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("MDB records serialise")
    }

    /// Whether the `DisableSafetyCheck` tag turns the safety shutoff off.
    /// As in the original, the tag's presence is enough; only an explicit
    /// `false`, `no`, `off` or `0` keeps the check on.
    pub fn safety_check_disabled(&self) -> bool {
        self.tags.get(DISABLE_SAFETY_CHECK_TAG).is_some_and(|v| {
            !["false", "no", "off", "0"]
                .iter()
                .any(|f| v.trim().eq_ignore_ascii_case(f))
        })
    }
}

/// Parses a Dominator `mdb.json` file: a JSON array of records, each with
/// its `Hostname` (an object `{"Machines": [...]}` is accepted too). A
/// blank file is an error, not an empty fleet, so a file read while it is
/// being rewritten never removes every machine.
pub fn parse_mdb_file(bytes: &[u8]) -> Result<Vec<MdbRecord>, MdbError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(MdbError::File(
            "it is empty; write [] for a fleet with no machines".into(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| MdbError::File(e.to_string()))?;
    let machines = match &value {
        Value::Array(machines) => machines,
        Value::Object(object) => match field(object, "Machines") {
            Ok(Some(Value::Array(machines))) => machines,
            _ => return Err(MdbError::File(NOT_A_LIST.into())),
        },
        _ => return Err(MdbError::File(NOT_A_LIST.into())),
    };
    let mut seen = BTreeSet::new();
    let mut records = Vec::with_capacity(machines.len());
    for (i, machine) in machines.iter().enumerate() {
        let record = from_value(machine, None).map_err(|e| MdbError::Machine {
            number: i + 1,
            reason: e.to_string(),
        })?;
        if !seen.insert(record.hostname.clone()) {
            return Err(MdbError::Duplicate(record.hostname));
        }
        records.push(record);
    }
    Ok(records)
}

const NOT_A_LIST: &str = "expected a JSON array of machines";

/// A change to publish on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MdbChange {
    /// A machine added or changed: publish its record.
    Set(MdbRecord),
    /// A machine gone: publish an empty payload for it.
    Remove(String),
}

impl MdbChange {
    pub fn host(&self) -> &str {
        match self {
            Self::Set(record) => &record.hostname,
            Self::Remove(host) => host,
        }
    }
}

/// What changed between two readings of the MDB, in host order: a
/// [`MdbChange::Set`] for every machine added or changed, a
/// [`MdbChange::Remove`] for every machine gone. Unchanged machines are
/// left out, so republishing a file that did not change sends nothing.
pub fn diff_mdb(old: &[MdbRecord], new: &[MdbRecord]) -> Vec<MdbChange> {
    let old: BTreeMap<&str, &MdbRecord> = old.iter().map(|r| (r.hostname.as_str(), r)).collect();
    let new: BTreeMap<&str, &MdbRecord> = new.iter().map(|r| (r.hostname.as_str(), r)).collect();
    let hosts: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    hosts
        .into_iter()
        .filter_map(|host| match (old.get(host), new.get(host)) {
            (_, Some(record)) if old.get(host) != Some(record) => {
                Some(MdbChange::Set((*record).clone()))
            }
            (Some(_), None) => Some(MdbChange::Remove(host.to_string())),
            _ => None,
        })
        .collect()
}

/// Builds a record from one JSON value. With a `subject_host`, `Hostname`
/// may be absent but must match when present; without one it is required.
fn from_value(value: &Value, subject_host: Option<&str>) -> Result<MdbRecord, MdbError> {
    let label = subject_host.unwrap_or("a machine").to_string();
    let bad = |reason: String| MdbError::Field {
        host: label.clone(),
        reason,
    };
    let Value::Object(object) = value else {
        return Err(bad(format!("expected a JSON object, not {}", kind(value))));
    };
    let hostname = string(object, "Hostname").map_err(&bad)?;
    let host = match (hostname, subject_host) {
        (Some(record), Some(subject)) if !record.is_empty() && record != subject => {
            return Err(MdbError::HostMismatch {
                subject: subject.to_string(),
                record,
            })
        }
        (_, Some(subject)) => subject.to_string(),
        (Some(record), None) if record.is_empty() => return Err(bad("Hostname is empty".into())),
        (Some(record), None) => record,
        (None, None) => return Err(bad("Hostname is missing".into())),
    };
    if !is_valid_host(&host) {
        return Err(MdbError::Host(host));
    }
    let bad = |reason: String| MdbError::Field {
        host: host.clone(),
        reason,
    };
    let image = |name: &'static str| -> Result<Option<ImageName>, MdbError> {
        match string(object, name).map_err(&bad)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => ImageName::parse(&s)
                .map(Some)
                .map_err(|source| MdbError::Image {
                    host: host.clone(),
                    field: name,
                    source,
                }),
        }
    };
    let required_image = image("RequiredImage")?;
    let planned_image = image("PlannedImage")?;
    let disable_updates = match field(object, "DisableUpdates").map_err(&bad)? {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(bad(format!(
                "DisableUpdates must be true or false, not {}",
                kind(other)
            )))
        }
    };
    let tags = match field(object, "Tags").map_err(&bad)? {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(tags)) => tags
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(format!(
                    "tag {k:?} must be a string, not {}",
                    kind(other)
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "Tags must be an object of strings, not {}",
                kind(other)
            )))
        }
    };
    Ok(MdbRecord {
        hostname: host.clone(),
        required_image,
        planned_image,
        disable_updates,
        tags,
    })
}

/// The value of field `name`, matched without regard to case; two
/// spellings of one field are an error rather than a guess.
fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Value>, String> {
    let mut found = object.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name));
    let first = found.next();
    if let Some((other, _)) = found.next() {
        let (first, _) = first.expect("a second match implies a first");
        return Err(format!("{name} is given twice, as {first:?} and {other:?}"));
    }
    Ok(first.map(|(_, v)| v))
}

/// A string field; `null` reads as absent.
fn string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match field(object, name)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{name} must be a string, not {}", kind(other))),
    }
}

/// How a JSON value reads in an error: its type and, when short, itself.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}
