//! The content store: objects named by the SHA-512 of their content.
//!
//! [`ContentStore`] is what tools need from a store; [`NatsStore`] keeps
//! objects in the fleet's JetStream object bucket (`dom-objects`), one
//! object per distinct content, named by its lowercase hex id. Reads are
//! verified: an object whose content does not match its name is refused.

use std::collections::HashSet;
use std::future::{Future, IntoFuture};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use bytes::Bytes;
use dom_bus::{Bus, BusError};
use dom_model::manifest::{Manifest, ManifestError, MAX_DECODED_LEN};
use dom_model::ObjectId;
use futures::StreamExt;
use thiserror::Error;

mod any;
pub mod blob;
mod bulk;
pub mod gate;
mod named;
mod unverified;
pub mod usage;

pub use any::Store;
pub use async_nats::jetstream::object_store::ObjectInfo as ObjectMeta;
pub use blob::BlobStore;
pub use unverified::{Unverified, Verified};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("object {0} is not in the store")]
    Missing(ObjectId),
    #[error("object {id} is corrupt: its content hashes to {actual}")]
    Corrupt { id: ObjectId, actual: ObjectId },
    #[error("object {id} holds {actual} bytes where {expected} were expected")]
    WrongSize {
        id: ObjectId,
        expected: u64,
        actual: u64,
    },
    #[error("object {id} holds {actual} bytes, more than the {limit} allowed")]
    TooLarge {
        id: ObjectId,
        limit: u64,
        actual: u64,
    },
    /// The object was read, but is not a usable manifest.
    #[error("object {id}: {error}")]
    NotManifest {
        id: ObjectId,
        #[source]
        error: ManifestError,
    },
    #[error("object store: {0}")]
    Backend(String),
    /// The other side holds the gate between adds and collections.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Image(#[from] dom_bus::ImageError),
    /// What went wrong reading an image's manifest.
    #[error("image {image}: manifest: {error}")]
    OfImage {
        image: dom_model::ImageName,
        error: Box<StoreError>,
    },
}

/// Chunk size for stored objects, unless the server's `max_payload` is
/// smaller: large chunks cost the server least per byte stored.
pub const CHUNK_SIZE: usize = 1 << 20;

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
    /// Reads object `id`, which a manifest says is `size` bytes long: an
    /// object of another size is refused, by a store that knows sizes
    /// before it reads the content, and at the latest once it is read.
    fn get_sized(
        &self,
        id: ObjectId,
        size: u64,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send {
        async move {
            let content = self.get(id).await?;
            match Size::Exactly(size).refuses(id, content.len() as u64) {
                Some(refused) => Err(refused),
                None => Ok(content),
            }
        }
    }
    /// As [`ContentStore::get_sized`], leaving the check of the content
    /// against `id` to the caller, who may do it where it suits
    /// ([`Unverified::verify`]). A store that checks every read anyway
    /// need not override this.
    fn get_unverified(
        &self,
        id: ObjectId,
        size: u64,
    ) -> impl Future<Output = Result<Unverified, StoreError>> + Send {
        async move {
            let content = self.get_sized(id, size).await?;
            Ok(Unverified::new(id, vec![content]))
        }
    }
    /// Reads, in whatever way costs the store least, those of `wanted`
    /// (ids and the sizes the caller's manifest gives) it can read
    /// together, yielding each as it arrives; the caller checks each
    /// against its id, and reads what was not yielded one by one. A store
    /// with no cheaper way than reading objects one by one yields nothing.
    fn get_bulk(
        &self,
        wanted: Vec<(ObjectId, u64)>,
    ) -> impl futures::Stream<Item = Unverified> + Send + '_ {
        drop(wanted);
        futures::stream::empty()
    }
    /// Reads object `id` if it holds at most `limit` bytes.
    fn get_at_most(
        &self,
        id: ObjectId,
        limit: u64,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send {
        async move {
            let content = self.get(id).await?;
            match Size::AtMost(limit).refuses(id, content.len() as u64) {
                Some(refused) => Err(refused),
                None => Ok(content),
            }
        }
    }
    /// Reads manifest `id` and decodes it, refusing an object larger than
    /// any manifest may be before decoding it. A manifest is untrusted
    /// input: [`StoreError::NotManifest`] says why this one is unusable.
    fn manifest(
        &self,
        id: ObjectId,
    ) -> impl Future<Output = Result<StoredManifest, StoreError>> + Send {
        async move {
            let encoded = self.get_at_most(id, MAX_DECODED_LEN).await?;
            let manifest = Manifest::decode(&encoded)
                .map_err(|error| StoreError::NotManifest { id, error })?;
            Ok(StoredManifest { manifest, encoded })
        }
    }
}

/// A manifest read from the store: decoded and validated, with the bytes
/// it was decoded from (an agent keeps those as they are).
#[derive(Debug)]
pub struct StoredManifest {
    pub manifest: Manifest,
    pub encoded: Bytes,
}

/// What a read expects of an object's size.
#[derive(Clone, Copy)]
enum Size {
    Any,
    Exactly(u64),
    AtMost(u64),
}

impl Size {
    /// Why an object of `actual` bytes is refused, if it is.
    fn refuses(self, id: ObjectId, actual: u64) -> Option<StoreError> {
        match self {
            Size::Exactly(expected) if actual != expected => Some(StoreError::WrongSize {
                id,
                expected,
                actual,
            }),
            Size::AtMost(limit) if actual > limit => {
                Some(StoreError::TooLarge { id, limit, actual })
            }
            _ => None,
        }
    }
}

/// Objects in the fleet's JetStream object bucket.
#[derive(Clone)]
pub struct NatsStore {
    bucket_name: String,
    js: async_nats::jetstream::Context,
    bus: Bus,
    stream: String,
    meta_prefix: String,
    chunk_prefix: String,
    chunk_size: usize,
    /// Which way round reads go (see `named.rs`).
    lookup: std::sync::Arc<named::Lookup>,
}

impl NatsStore {
    /// Opens (creating when missing) the fleet's object bucket.
    pub async fn open(bus: &Bus) -> Result<Self, StoreError> {
        let max_payload = bus.client.server_info().max_payload;
        bus.object_bucket().await?;
        Ok(Self {
            bucket_name: bus.subjects.object_bucket(),
            js: bus.objects_js.clone(),
            bus: bus.clone(),
            stream: bus.subjects.object_stream(),
            meta_prefix: bus.subjects.object_meta_prefix(),
            chunk_prefix: bus.subjects.object_chunk_prefix(),
            // Room for the protocol's headers on top of the payload.
            chunk_size: CHUNK_SIZE.min(max_payload.saturating_sub(4096)).max(4096),
            lookup: Default::default(),
        })
    }
}

impl ContentStore for NatsStore {
    async fn ids(&self) -> Result<HashSet<ObjectId>, StoreError> {
        // One paged stream-info request lists every object's metadata
        // subject, which carries its name; far cheaper than replaying the
        // metadata messages themselves. Objects are never deleted by the
        // tools, so a metadata subject means the object is stored.
        let mut ids = HashSet::new();
        for subject in self.subjects_under(&self.meta_prefix).await? {
            let Some(encoded) = subject.strip_prefix(self.meta_prefix.as_str()) else {
                continue;
            };
            let Ok(name) = URL_SAFE.decode(encoded) else {
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
        // A credential that may not write objects is told so at once
        // rather than after every chunk's acknowledgement times out.
        let bucket = format!("$O.{}.", self.bucket_name);
        self.bus
            .guarded(
                |denied| denied.starts_with(&bucket),
                self.put_unguarded(id, content),
            )
            .await?
    }

    async fn get(&self, id: ObjectId) -> Result<Bytes, StoreError> {
        self.read(id, Size::Any).await
    }

    async fn get_sized(&self, id: ObjectId, size: u64) -> Result<Bytes, StoreError> {
        self.read(id, Size::Exactly(size)).await
    }

    async fn get_unverified(&self, id: ObjectId, size: u64) -> Result<Unverified, StoreError> {
        self.read_unverified(id, Size::Exactly(size)).await
    }

    async fn get_at_most(&self, id: ObjectId, limit: u64) -> Result<Bytes, StoreError> {
        self.read(id, Size::AtMost(limit)).await
    }

    fn get_bulk(
        &self,
        wanted: Vec<(ObjectId, u64)>,
    ) -> impl futures::Stream<Item = Unverified> + Send + '_ {
        self.bulk(wanted)
    }
}

impl NatsStore {
    async fn put_unguarded(&self, id: ObjectId, content: Bytes) -> Result<(), StoreError> {
        // The standard object-store layout (chunks, then the metadata
        // message rolling up its subject), written without waiting for
        // each chunk's acknowledgement: all of them are in flight at once
        // and awaited together. Callers upload only objects the bucket
        // lacks, so there is no old version to look up or purge.
        let failed =
            |e: &dyn std::fmt::Display| StoreError::Backend(format!("storing object {id}: {e}"));
        let single = !content.is_empty() && content.len() <= self.chunk_size;
        let mut acks = Vec::with_capacity(content.len() / self.chunk_size + 2);
        let mut chunks = 0;
        let nuid = if single {
            // Under its own id, so that readers who know the id can skip
            // the metadata (named.rs), and only if nothing is there yet:
            // what is there is the same object, stored by an upload cut
            // short or by another one at the same time, and is kept, so
            // that the subject never holds two copies for a reader of all
            // its messages to put together.
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
            let subject = named::chunk_subject(&self.chunk_prefix, &id);
            let ack = self
                .js
                .publish_with_headers(subject, headers, content.clone())
                .await
                .map_err(|e| failed(&e))?;
            acks.push(ack);
            chunks = 1;
            id.to_hex()
        } else {
            // Under a fresh NUID, as any object-store client does: each
            // upload of a large object has its chunks to itself.
            let nuid = nuid::next().to_string();
            let chunk_subject = format!("{}{nuid}", self.chunk_prefix);
            for start in (0..content.len()).step_by(self.chunk_size) {
                let end = (start + self.chunk_size).min(content.len());
                let ack = self
                    .js
                    .publish(chunk_subject.clone(), content.slice(start..end))
                    .await
                    .map_err(|e| failed(&e))?;
                acks.push(ack);
                chunks += 1;
            }
            nuid
        };
        let digest = openssl::sha::sha256(&content);
        let info = ObjectInfo {
            name: id.to_hex(),
            description: None,
            metadata: Default::default(),
            headers: None,
            options: Some(ObjectOptions {
                link: None,
                max_chunk_size: Some(self.chunk_size),
            }),
            bucket: self.bucket_name.clone(),
            nuid,
            size: content.len(),
            chunks,
            modified: Some(time::OffsetDateTime::now_utc()),
            digest: Some(format!("SHA-256={}", URL_SAFE.encode(digest))),
            deleted: false,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_ROLLUP, "sub");
        let meta = serde_json::to_vec(&info).map_err(|e| failed(&e))?;
        let subject = format!("{}{}", self.meta_prefix, URL_SAFE.encode(id.to_hex()));
        acks.push(
            self.js
                .publish_with_headers(subject, headers, meta.into())
                .await
                .map_err(|e| failed(&e))?,
        );
        let acks = acks.into_iter().map(std::future::IntoFuture::into_future);
        for ack in futures::future::join_all(acks).await {
            match ack {
                // The single chunk is there already (see above).
                Err(e) if single && e.kind() == PublishErrorKind::WrongLastSequence => {}
                other => drop(other.map_err(|e| failed(&e))?),
            }
        }
        Ok(())
    }
}

/// How many objects [`NatsStore::get_many`] reads at once.
pub const READ_CONCURRENCY: usize = 64;

impl NatsStore {
    /// Reads many objects, verified, yielding each as it arrives (in any
    /// order). Reads are pipelined: many objects are in flight at once, and
    /// none costs a consumer.
    pub fn get_many<I>(
        &self,
        ids: I,
    ) -> impl futures::Stream<Item = Result<(ObjectId, Bytes), StoreError>> + '_
    where
        I: IntoIterator<Item = ObjectId>,
        I::IntoIter: 'static,
    {
        futures::stream::iter(ids)
            .map(move |id| async move { self.read(id, Size::Any).await.map(|bytes| (id, bytes)) })
            .buffer_unordered(READ_CONCURRENCY)
    }

    /// Reads one object and verifies it.
    async fn read(&self, id: ObjectId, expected: Size) -> Result<Bytes, StoreError> {
        let content = self.read_unverified(id, expected).await?;
        Ok(content.verify()?.into_bytes())
    }

    /// Reads one object with direct gets, which need no consumer: of a
    /// known size of one chunk, that chunk under the object's own id if it
    /// is there and holds that many bytes (see `named.rs`), else the
    /// metadata message, then each chunk by subject. An object whose metadata gives a size other
    /// than `expected` allows is refused before any of its content is
    /// read, and no more than its metadata says is read. The chunks are
    /// kept as they arrived, never copied into one buffer.
    ///
    /// A read the cluster could not answer for a moment (a timeout, no
    /// responders, while the server that took the request is lost or a
    /// leader is elected) is tried again for a while: a machine mid-fetch
    /// rides out the loss of a server instead of failing its update.
    async fn read_unverified(
        &self,
        id: ObjectId,
        expected: Size,
    ) -> Result<Unverified, StoreError> {
        dom_bus::elections::through_elections(
            "reading an object",
            || self.read_unverified_once(id, expected),
            |read| matches!(read, Err(StoreError::Backend(e)) if dom_bus::elections::transient_error(e)),
        )
        .await
    }

    /// Object `id`'s metadata: its size, chunks and where they are.
    async fn info(
        &self,
        stream: &async_nats::jetstream::stream::Stream<()>,
        id: ObjectId,
    ) -> Result<ObjectInfo, StoreError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let failed =
            |e: &dyn std::fmt::Display| StoreError::Backend(format!("reading object {id}: {e}"));
        let subject = format!("{}{}", self.meta_prefix, URL_SAFE.encode(id.to_hex()));
        let meta = match stream.direct_get_last_for_subject(subject).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                return Err(StoreError::Missing(id))
            }
            Err(e) => return Err(failed(&e)),
        };
        let info: ObjectInfo = serde_json::from_slice(&meta.payload)
            .map_err(|e| failed(&format!("bad metadata: {e}")))?;
        if info.deleted {
            return Err(StoreError::Missing(id));
        }
        Ok(info)
    }

    /// Object `id`'s metadata, read without its content.
    pub async fn object_info(&self, id: ObjectId) -> Result<ObjectInfo, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| StoreError::Backend(format!("reading object {id}: {e}")))?;
        self.info(&stream, id).await
    }

    /// Whether this connection may delete objects: a purge of a subject
    /// that holds nothing, refused like a real one to all but the
    /// operator.
    pub async fn may_delete(&self) -> Result<(), StoreError> {
        self.delete_subjects(
            "probing deletes",
            [format!("{}{}", self.meta_prefix, URL_SAFE.encode(".probe"))],
        )
        .await
    }

    async fn delete_subjects(
        &self,
        what: &str,
        subjects: impl IntoIterator<Item = String>,
    ) -> Result<(), StoreError> {
        let failed = |e: &dyn std::fmt::Display| StoreError::Backend(format!("{what}: {e}"));
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| failed(&e))?;
        for subject in subjects {
            self.bus
                .guarded(
                    |denied| denied.contains("STREAM.PURGE"),
                    stream.purge().filter(subject).into_future(),
                )
                .await?
                .map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    /// Removes the object `info` describes: its metadata first, so that
    /// from then on it is missing to every reader and listing (and an add
    /// uploads it again), then its content. Only the operator may purge the
    /// bucket's stream. Call it only from behind the gate ([`gate`]).
    pub async fn delete(&self, info: &ObjectInfo) -> Result<(), StoreError> {
        let meta = format!("{}{}", self.meta_prefix, URL_SAFE.encode(&info.name));
        let chunks = format!("{}{}", self.chunk_prefix, info.nuid);
        self.delete_subjects(&format!("deleting object {}", info.name), [meta, chunks])
            .await
    }

    /// Chunk subjects named by an object that has no metadata, with their
    /// bytes: content a collection cut short left behind, since it
    /// removes an object's metadata first. Only objects stored in one
    /// chunk under their own id (every object up to the chunk size) are
    /// found so; a larger one's chunks, under a NUID, stay. `ids` is what
    /// [`ContentStore::ids`] listed. Call it, and purge what it finds,
    /// only from behind the gate ([`gate`]): an add stores an object's
    /// chunks before its metadata.
    pub async fn orphaned_chunks(
        &self,
        ids: &HashSet<ObjectId>,
    ) -> Result<Vec<(ObjectId, u64)>, StoreError> {
        let backend =
            |e: &dyn std::fmt::Display| StoreError::Backend(format!("listing chunks: {e}"));
        let mut named = Vec::new();
        for subject in self.subjects_under(&self.chunk_prefix).await? {
            if let Some(id) = named::named_by(&self.chunk_prefix, &subject) {
                if !ids.contains(&id) {
                    named.push(id);
                }
            }
        }
        // Each one's size, from its message; one gone meanwhile is left out.
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| backend(&e))?;
        let mut out = Vec::with_capacity(named.len());
        for id in named {
            let subject = named::chunk_subject(&self.chunk_prefix, &id);
            match stream.direct_get_last_for_subject(&subject).await {
                Ok(message) => out.push((id, message.payload.len() as u64)),
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(backend(&e)),
            }
        }
        Ok(out)
    }

    /// Every subject of the bucket's stream under `prefix` that holds a
    /// message: one paged stream-info request.
    async fn subjects_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let backend = |e: &dyn std::fmt::Display| StoreError::Backend(e.to_string());
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| backend(&e))?;
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| backend(&e))?;
        let mut out = Vec::new();
        while let Some(entry) = subjects.next().await {
            let (subject, _count) = entry.map_err(|e| backend(&e))?;
            out.push(subject);
        }
        Ok(out)
    }

    /// Purges object `id`'s own chunk subject (see
    /// [`NatsStore::orphaned_chunks`]).
    pub async fn purge_chunk(&self, id: ObjectId) -> Result<(), StoreError> {
        self.delete_subjects(
            &format!("deleting the chunk of object {id}"),
            [named::chunk_subject(&self.chunk_prefix, &id)],
        )
        .await
    }

    /// What the bucket's stream takes on the server, in bytes: content,
    /// metadata and the server's own overhead per message.
    pub async fn stream_bytes(&self) -> Result<u64, StoreError> {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| StoreError::Backend(format!("stream {}: {e}", self.stream)))?;
        let info = stream
            .info()
            .await
            .map_err(|e| StoreError::Backend(format!("stream {}: {e}", self.stream)))?;
        Ok(info.state.bytes)
    }

    async fn read_unverified_once(
        &self,
        id: ObjectId,
        expected: Size,
    ) -> Result<Unverified, StoreError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        let failed =
            |e: &dyn std::fmt::Display| StoreError::Backend(format!("reading object {id}: {e}"));
        let stream = self
            .js
            .get_stream_no_info(&self.stream)
            .await
            .map_err(|e| failed(&e))?;
        if let Size::Exactly(size) = expected {
            // Its content is known: nothing to read.
            if size == 0 {
                return Ok(Unverified::new(id, Vec::new()));
            }
            if size <= self.chunk_size as u64 && self.lookup.chunks_first() {
                let found = self.read_named(&stream, id, size).await?;
                self.lookup.found(found.is_some());
                if let Some((_, chunk)) = found {
                    return Ok(Unverified::new(id, vec![chunk]));
                }
            }
        }
        let info = self.info(&stream, id).await?;
        if info.size as u64 > dom_model::manifest::MAX_FILE_SIZE
            || info.chunks > info.size / 1024 + 1
        {
            return Err(failed(&format!(
                "bad metadata: {} bytes in {} chunks",
                info.size, info.chunks
            )));
        }
        if let Some(refused) = expected.refuses(id, info.size as u64) {
            return Err(refused);
        }
        let chunk_subject = format!("{}{}", self.chunk_prefix, info.nuid);
        let mut parts = Vec::with_capacity(info.chunks);
        match info.chunks {
            0 => {}
            // Most objects: the chunk subject's last (only) message, which
            // the server finds by subject without scanning the stream.
            1 => match stream.direct_get_last_for_subject(chunk_subject).await {
                Ok(chunk) => parts.push(chunk.payload),
                // A chunk gone missing: the object is damaged, not absent.
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(failed(&e)),
            },
            // A large object: its chunks in pages of batched direct gets,
            // never more than the metadata said, whatever they hold.
            chunks => {
                let mut pages =
                    std::pin::pin!(self.bus.read_stream(&self.stream, &chunk_subject, 1));
                let mut read = 0;
                while let Some(chunk) = pages.next().await {
                    let chunk = chunk.map_err(|e| failed(&e))?;
                    read += chunk.payload.len();
                    parts.push(chunk.payload);
                    if parts.len() == chunks || read > info.size {
                        break;
                    }
                }
            }
        }
        Ok(Unverified::new(id, parts))
    }
}
