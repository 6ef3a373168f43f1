//! Subjects, stream names and the bucket name, all derived from the prefix.
//!
//! Hostnames and image names may contain dots: everything after the fixed
//! tokens is the name (`dom.mdb.web1.example.com` is host
//! `web1.example.com`).

use thiserror::Error;

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "dom";

#[derive(Debug, Error)]
#[error("subject prefix {0:?} must be one token of letters, digits, '-' or '_'")]
pub struct BadPrefix(pub String);

/// Names on the bus for one fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
        }
    }
}

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(BadPrefix(prefix.into()));
        }
        Ok(Self {
            prefix: prefix.into(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `dom.image.<name>`
    pub fn image(&self, name: &str) -> String {
        format!("{}.image.{name}", self.prefix)
    }

    /// `dom.image.>`
    pub fn images(&self) -> String {
        format!("{}.image.>", self.prefix)
    }

    /// The image name in an image subject.
    pub fn image_name<'a>(&self, subject: &'a str) -> Option<&'a str> {
        self.tail(subject, "image")
    }

    /// `dom.mdb.<host>`
    pub fn mdb(&self, host: &str) -> String {
        format!("{}.mdb.{host}", self.prefix)
    }

    /// `dom.desired.<host>`
    pub fn desired(&self, host: &str) -> String {
        format!("{}.desired.{host}", self.prefix)
    }

    /// `dom.state.<host>`
    pub fn state(&self, host: &str) -> String {
        format!("{}.state.{host}", self.prefix)
    }

    /// `dom.event.<host>.<kind>`
    pub fn event(&self, host: &str, kind: &str) -> String {
        format!("{}.event.{host}.{kind}", self.prefix)
    }

    /// `dom.event.<host>.>`: the events of `host`, and of any host whose
    /// name is `host` followed by more labels (`web1` also catches
    /// `web1.example.com`), so readers check each event's `host`.
    pub fn host_events(&self, host: &str) -> String {
        format!("{}.event.{host}.>", self.prefix)
    }

    /// `dom.capture.<host>`: asking `host`'s agent for its tree and file
    /// contents, request and reply; no stream captures it.
    pub fn capture(&self, host: &str) -> String {
        format!("{}.capture.{host}", self.prefix)
    }

    /// `dom.ctl.<control>`
    pub fn ctl(&self, control: &str) -> String {
        format!("{}.ctl.{control}", self.prefix)
    }

    fn tail<'a>(&self, subject: &'a str, kind: &str) -> Option<&'a str> {
        subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?
            .strip_prefix(kind)?
            .strip_prefix('.')
            .filter(|s| !s.is_empty())
    }

    fn stream(&self, what: &str) -> String {
        let upper: String = self
            .prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{upper}_{what}")
    }

    /// `DOM_IMAGES`
    pub fn images_stream(&self) -> String {
        self.stream("IMAGES")
    }
    /// `DOM_MDB`
    pub fn mdb_stream(&self) -> String {
        self.stream("MDB")
    }
    /// `DOM_DESIRED`
    pub fn desired_stream(&self) -> String {
        self.stream("DESIRED")
    }
    /// `DOM_STATE`
    pub fn state_stream(&self) -> String {
        self.stream("STATE")
    }
    /// `DOM_EVENTS`
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }
    /// `DOM_CTL`
    pub fn ctl_stream(&self) -> String {
        self.stream("CTL")
    }

    /// `DOM_LEASE`
    pub fn lease_stream(&self) -> String {
        self.stream("LEASE")
    }

    /// `dom.lease.<name>`: who holds the lease `name` (`dominator`).
    pub fn lease(&self, name: &str) -> String {
        format!("{}.lease.{name}", self.prefix)
    }

    /// `dom-objects`
    pub fn object_bucket(&self) -> String {
        format!("{}-objects", self.prefix)
    }

    /// The stream behind the object bucket (the NATS object-store layout).
    pub fn object_stream(&self) -> String {
        format!("OBJ_{}", self.object_bucket())
    }

    /// The subjects of the bucket's per-object metadata: `$O.<bucket>.M.`
    /// followed by the base64url-encoded object name.
    pub fn object_meta_prefix(&self) -> String {
        format!("$O.{}.M.", self.object_bucket())
    }

    /// The subjects of the bucket's object chunks: `$O.<bucket>.C.` followed
    /// by the id of one stored version of an object.
    pub fn object_chunk_prefix(&self) -> String {
        format!("$O.{}.C.", self.object_bucket())
    }

    /// Every subject of the fleet: `dom.>`.
    pub fn all_subjects(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The wildcard subject of a stream's kind (`dom.mdb.>`).
    pub fn all(&self, kind: &str) -> String {
        format!("{}.{kind}.>", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() {
        let s = Subjects::default();
        assert_eq!(s.image("sparse.0"), "dom.image.sparse.0");
        assert_eq!(s.image_name("dom.image.sparse.0"), Some("sparse.0"));
        assert_eq!(s.image_name("dom.image."), None);
        assert_eq!(s.image_name("dom.mdb.x"), None);
        assert_eq!(s.mdb("web1.example.com"), "dom.mdb.web1.example.com");
        assert_eq!(s.event("web1", "update"), "dom.event.web1.update");
        assert_eq!(
            s.host_events("web1.example.com"),
            "dom.event.web1.example.com.>"
        );
        assert_eq!(
            s.capture("web1.example.com"),
            "dom.capture.web1.example.com"
        );
        assert_eq!(s.images_stream(), "DOM_IMAGES");
        assert_eq!(s.object_bucket(), "dom-objects");
    }

    #[test]
    fn other_prefix() {
        let s = Subjects::new("fleet-b").unwrap();
        assert_eq!(s.images_stream(), "FLEET_B_IMAGES");
        assert_eq!(s.object_bucket(), "fleet-b-objects");
        assert!(Subjects::new("a.b").is_err());
        assert!(Subjects::new("").is_err());
        assert!(Subjects::new("a*").is_err());
    }
}
