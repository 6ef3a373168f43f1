//! `imagetool find-latest-image PREFIX`: the newest live image whose name
//! starts with PREFIX, optionally carrying given tags or built from a
//! given commit, for release pipelines that deploy "the latest of
//! web/prod/".
//!
//! As the original's, PREFIX is a plain string prefix. Newest is by
//! creation time; images made in the same second are told apart by name,
//! the greater winning (`web.10` after `web.9` only if named to sort so).
//! There is no index: the last record of every image is read from the
//! image stream, which is fast enough for tens of thousands of images
//! (docs/BENCHMARKS.md).

use anyhow::{bail, Result};
use dom_bus::Bus;
use dom_model::{ImageMessage, ImageRecord};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What the image looked for must be.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    pub prefix: String,
    /// Tags it must carry, all of them.
    pub tags: Vec<(String, String)>,
    pub build_commit_id: Option<String>,
    /// Skip images that have an expiry at all, not only expired ones.
    pub ignore_expiring: bool,
}

impl Wanted {
    /// Checks the arguments before anything is sent.
    pub fn parse(
        prefix: &str,
        tags: &[String],
        build_commit_id: Option<&str>,
        ignore_expiring: bool,
    ) -> Result<Self> {
        Ok(Self {
            prefix: prefix.trim_start_matches('/').to_string(),
            tags: crate::metadata::parse_tags(tags)?,
            build_commit_id: build_commit_id.map(str::to_string),
            ignore_expiring,
        })
    }

    /// Whether `record` is one of the images wanted at `now`.
    pub fn matches(&self, record: &ImageRecord, now: i64) -> bool {
        record.name.as_str().starts_with(&self.prefix)
            && !record.is_expired(now)
            && !(self.ignore_expiring && record.expires_unix.is_some())
            && self
                .build_commit_id
                .as_ref()
                .is_none_or(|id| record.metadata.build_commit_id.as_ref() == Some(id))
            && record.metadata.matches_tags(&self.tags)
    }

    /// The newest of `records` wanted at `now`.
    pub fn latest<'a>(
        &self,
        records: impl IntoIterator<Item = &'a ImageRecord>,
        now: i64,
    ) -> Option<&'a ImageRecord> {
        records
            .into_iter()
            .filter(|r| self.matches(r, now))
            .max_by_key(|r| (created(r), r.name.as_str()))
    }
}

/// When `record` was made, as Unix seconds; a time that does not parse
/// sorts first.
fn created(record: &ImageRecord) -> i128 {
    OffsetDateTime::parse(&record.created, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .unwrap_or(i128::MIN)
}

/// The name of the newest image wanted, or an error saying none is.
pub async fn find_latest_image(bus: &Bus, wanted: &Wanted) -> Result<String> {
    bus.ensure_image_streams().await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let images = bus.images().await?;
    let records = images.iter().filter_map(|stored| match &stored.message {
        ImageMessage::Record(record) => Some(record),
        ImageMessage::Deleted(_) => None,
    });
    match wanted.latest(records, now) {
        Some(record) => Ok(record.name.to_string()),
        None => bail!("no live image {}", describe(wanted)),
    }
}

/// `named web/prod/… with tag k=v, built from commit c`, for the error.
fn describe(wanted: &Wanted) -> String {
    let mut out = format!("named {}…", wanted.prefix);
    if !wanted.tags.is_empty() {
        let tags: Vec<String> = wanted
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out += &format!(" with tags {}", tags.join(" "));
    }
    if let Some(id) = &wanted.build_commit_id {
        out += &format!(", built from commit {id}");
    }
    if wanted.ignore_expiring {
        out += ", never expiring";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dom_model::{ImageName, ObjectId};

    fn record(name: &str, created: &str) -> ImageRecord {
        ImageRecord {
            v: 1,
            name: ImageName::parse(name).unwrap(),
            manifest: ObjectId::of(b"m"),
            sparse: true,
            filter: None,
            triggers: vec![],
            files: 0,
            bytes: 0,
            inodes: 0,
            created: created.into(),
            creator: "me@h".into(),
            expires: None,
            expires_unix: None,
            objects: None,
            health_check: None,
            metadata: Default::default(),
        }
    }

    fn latest<'a>(wanted: &Wanted, records: &'a [ImageRecord]) -> Option<&'a str> {
        wanted.latest(records, 1_000).map(|r| r.name.as_str())
    }

    #[test]
    fn newest_by_time_then_name_under_a_plain_prefix() {
        let records = [
            record("web/prod/1", "2026-12-01T00:00:00Z"),
            record("web/prod/2", "2026-12-02T00:00:00Z"),
            record("web/prod/3", "2026-12-02T00:00:00Z"),
            // Later, but in another zone: earlier in fact.
            record("web/prod/4", "2026-12-02T01:00:00+02:00"),
            record("web/production/9", "2026-12-09T00:00:00Z"),
        ];
        let wanted = |prefix: &str| Wanted {
            prefix: prefix.into(),
            ..Wanted::default()
        };
        assert_eq!(latest(&wanted("web/prod/"), &records), Some("web/prod/3"));
        assert_eq!(
            latest(&wanted("web/prod"), &records),
            Some("web/production/9")
        );
        assert_eq!(latest(&wanted("db/"), &records), None);
    }

    #[test]
    fn tags_commit_and_expiry_narrow_it() {
        let mut tagged = record("web.1", "2026-12-01T00:00:00Z");
        tagged.metadata.tags.insert("stage".into(), "prod".into());
        tagged.metadata.build_commit_id = Some("abc".into());
        let mut expiring = record("web.2", "2026-12-02T00:00:00Z");
        expiring.expires_unix = Some(2_000);
        let mut expired = record("web.3", "2026-12-03T00:00:00Z");
        expired.expires_unix = Some(1_000);
        let records = [tagged, expiring, expired];
        let mut wanted = Wanted {
            prefix: "web".into(),
            ..Wanted::default()
        };
        assert_eq!(latest(&wanted, &records), Some("web.2"));
        wanted.ignore_expiring = true;
        assert_eq!(latest(&wanted, &records), Some("web.1"));
        wanted.ignore_expiring = false;
        wanted.tags = vec![("stage".into(), "prod".into())];
        assert_eq!(latest(&wanted, &records), Some("web.1"));
        wanted.build_commit_id = Some("abd".into());
        assert_eq!(latest(&wanted, &records), None);
    }
}
