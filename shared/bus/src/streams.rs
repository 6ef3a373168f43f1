//! Stream and bucket setup. Every tool calls [`Bus::ensure_streams`] before
//! use; it creates what is missing and updates what differs, so running it
//! any number of times, from any tool, is safe.

use std::time::Duration;

use async_nats::jetstream::object_store;
use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};

use crate::connect::{Bus, BusError};

/// How long audit events are kept.
pub const EVENTS_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// How many bytes of audit events are kept.
pub const EVENTS_MAX_BYTES: i64 = 1 << 30;

impl Bus {
    /// Creates or updates every stream of the event contract and the object
    /// bucket.
    pub async fn ensure_streams(&self) -> Result<(), BusError> {
        let s = &self.subjects;
        let per_subject = |name: String, kind: &str, keep: i64| Config {
            name,
            subjects: vec![s.all(kind)],
            max_messages_per_subject: keep,
            storage: StorageType::File,
            allow_direct: true,
            discard: DiscardPolicy::Old,
            ..Default::default()
        };
        let configs = [
            per_subject(s.images_stream(), "image", -1),
            per_subject(s.mdb_stream(), "mdb", 16),
            per_subject(s.desired_stream(), "desired", 1),
            per_subject(s.state_stream(), "state", 1),
            per_subject(s.ctl_stream(), "ctl", 16),
            Config {
                max_age: EVENTS_MAX_AGE,
                max_bytes: EVENTS_MAX_BYTES,
                ..per_subject(s.events_stream(), "event", -1)
            },
        ];
        for config in configs {
            let name = config.name.clone();
            self.js
                .create_or_update_stream(config)
                .await
                .map_err(|e| self.js_error(format!("setting up stream {name}: {e}")))?;
        }
        self.object_bucket().await?;
        Ok(())
    }

    /// The object bucket, created when missing.
    pub async fn object_bucket(&self) -> Result<object_store::ObjectStore, BusError> {
        let bucket = self.subjects.object_bucket();
        if let Ok(store) = self.js.get_object_store(&bucket).await {
            return Ok(store);
        }
        self.js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                description: Some("file contents, named by SHA-512".into()),
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| self.js_error(format!("setting up object bucket {bucket}: {e}")))
    }
}
