//! The content store: objects named by the SHA-512 of their content.
//!
//! [`ContentStore`] is what tools need from a store; [`NatsStore`] keeps
//! objects in the fleet's JetStream object bucket (`dom-objects`), one
//! object per distinct content, named by its lowercase hex id. Reads are
//! verified: an object whose content does not match its name is refused.

use std::collections::HashSet;
use std::future::Future;

use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use bytes::Bytes;
use dom_bus::{Bus, BusError};
use dom_model::ObjectId;
use futures::StreamExt;
use thiserror::Error;
use tokio::io::AsyncReadExt;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("object {0} is not in the store")]
    Missing(ObjectId),
    #[error("object {id} is corrupt: its content hashes to {actual}")]
    Corrupt { id: ObjectId, actual: ObjectId },
    #[error("object store: {0}")]
    Backend(String),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Chunk size for stored objects: large enough that a big object costs few
/// acknowledged round trips, well under the server's default 1 MiB
/// `max_payload`.
pub const CHUNK_SIZE: usize = 512 * 1024;

/// What the tools need from a content store.
pub trait ContentStore: Send + Sync {
    /// Every object id held. Used to upload only what is missing.
    fn ids(&self) -> impl Future<Output = Result<HashSet<ObjectId>, StoreError>> + Send;
    /// Stores `content` as object `id`; the caller has hashed it.
    fn put(
        &self,
        id: ObjectId,
        content: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Reads object `id`, verifying its content against the id.
    fn get(&self, id: ObjectId) -> impl Future<Output = Result<Bytes, StoreError>> + Send;
}

/// Objects in the fleet's JetStream object bucket.
#[derive(Clone)]
pub struct NatsStore {
    bucket: ObjectStore,
    js: async_nats::jetstream::Context,
    stream: String,
    meta_prefix: String,
}

impl NatsStore {
    /// Opens (creating when missing) the fleet's object bucket.
    pub async fn open(bus: &Bus) -> Result<Self, StoreError> {
        Ok(Self {
            bucket: bus.object_bucket().await?,
            js: bus.js.clone(),
            stream: bus.subjects.object_stream(),
            meta_prefix: bus.subjects.object_meta_prefix(),
        })
    }
}

impl ContentStore for NatsStore {
    async fn ids(&self) -> Result<HashSet<ObjectId>, StoreError> {
        // One paged stream-info request lists every object's metadata
        // subject, which carries its name; far cheaper than replaying the
        // metadata messages themselves. Objects are never deleted by the
        // tools, so a metadata subject means the object is stored.
        use base64::Engine;
        let backend = |e: &dyn std::fmt::Display| StoreError::Backend(e.to_string());
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| backend(&e))?;
        let mut subjects = stream
            .info_with_subjects(format!("{}>", self.meta_prefix))
            .await
            .map_err(|e| backend(&e))?;
        let mut ids = HashSet::new();
        while let Some(entry) = subjects.next().await {
            let (subject, _count) = entry.map_err(|e| backend(&e))?;
            let Some(encoded) = subject.strip_prefix(self.meta_prefix.as_str()) else {
                continue;
            };
            let Ok(name) = base64::engine::general_purpose::URL_SAFE.decode(encoded) else {
                continue;
            };
            // Objects not named by an id (put there by hand) are ignored.
            if let Some(id) = std::str::from_utf8(&name).ok().and_then(|n| n.parse().ok()) {
                ids.insert(id);
            }
        }
        Ok(ids)
    }

    async fn put(&self, id: ObjectId, content: Bytes) -> Result<(), StoreError> {
        let meta = ObjectMetadata {
            name: id.to_hex(),
            chunk_size: Some(CHUNK_SIZE),
            ..Default::default()
        };
        let mut reader = &content[..];
        self.bucket
            .put(meta, &mut reader)
            .await
            .map_err(|e| StoreError::Backend(format!("storing object {id}: {e}")))?;
        Ok(())
    }

    async fn get(&self, id: ObjectId) -> Result<Bytes, StoreError> {
        let mut object = match self.bucket.get(id.to_hex()).await {
            Ok(object) => object,
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
                return Err(StoreError::Missing(id))
            }
            Err(e) => return Err(StoreError::Backend(format!("reading object {id}: {e}"))),
        };
        let mut content = Vec::with_capacity(object.info().size);
        object
            .read_to_end(&mut content)
            .await
            .map_err(|e| StoreError::Backend(format!("reading object {id}: {e}")))?;
        let actual = ObjectId::of(&content);
        if actual != id {
            return Err(StoreError::Corrupt { id, actual });
        }
        Ok(content.into())
    }
}
