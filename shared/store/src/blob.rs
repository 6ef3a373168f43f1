//! Objects outside NATS, through the `object_store` crate: in an
//! S3-compatible bucket (`s3://BUCKET/PREFIX`) or a local directory
//! (`file:///DIR`). The images, MDB, desired states and events stay on
//! NATS; only the objects' content lives here, one object per key
//! `PREFIX/<first two hex digits>/<hex id>`.
//!
//! Reads are checked as on NATS: the object's size, from the headers of
//! the answer, is checked before its content is read (a wrong-size or
//! oversized object is refused unread), and the content is hashed against
//! its name.
//!
//! S3 settings come from the AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`), the endpoint and region also from `--s3-endpoint`
//! and `--s3-region`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use dom_model::ObjectId;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};

use crate::{ContentStore, Size, StoreError, Unverified};

/// Objects larger than this go up in parts (S3's multipart upload), each
/// of this size, so no single request carries a whole large file.
pub const PART_SIZE: usize = 8 << 20;

/// One object as listed: its id, size and when it was stored.
#[derive(Clone, Debug)]
pub struct Listed {
    pub id: ObjectId,
    pub size: u64,
    pub modified: time::OffsetDateTime,
}

/// Objects in an `object_store` backend.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: String,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("location", &self.location)
            .finish()
    }
}

/// Why a location cannot be used.
fn bad(location: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("objects at {location}: {why}"))
}

impl BlobStore {
    /// The store at `location`: `s3://BUCKET[/PREFIX]`, or `file:///DIR`
    /// (a directory, made when missing). `endpoint` overrides the S3
    /// endpoint of the environment (an S3-compatible server's URL).
    // The store's one error type, as every read returns.
    #[allow(clippy::result_large_err)]
    pub fn open(location: &str, endpoint: Option<&str>) -> Result<Self, StoreError> {
        Self::open_in(location, endpoint, None)
    }

    /// As [`BlobStore::open`], in S3 region `region` when given (else the
    /// AWS environment's).
    // The store's one error type, as every read returns.
    #[allow(clippy::result_large_err)]
    pub fn open_in(
        location: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
    ) -> Result<Self, StoreError> {
        let url = url::Url::parse(location).map_err(|e| {
            bad(
                location,
                format!("{e}; use s3://BUCKET/PREFIX or file:///DIR"),
            )
        })?;
        let prefix = Path::from(url.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(location, "no bucket named (s3://BUCKET/PREFIX)"))?;
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                Arc::new(builder.build().map_err(|e| bad(location, e))?)
            }
            "file" => {
                let dir = std::path::Path::new(url.path());
                std::fs::create_dir_all(dir).map_err(|e| bad(location, e))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| bad(location, e))?;
                return Ok(Self {
                    store: Arc::new(local),
                    prefix: Path::default(),
                    location: location.to_string(),
                });
            }
            other => {
                return Err(bad(
                    location,
                    format!("unknown scheme {other:?}; use s3://BUCKET/PREFIX or file:///DIR"),
                ))
            }
        };
        Ok(Self {
            store,
            prefix,
            location: location.to_string(),
        })
    }

    /// Where the objects are, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn key(&self, id: &ObjectId) -> Path {
        let hex = id.to_hex();
        self.prefix.child(&hex[..2]).child(hex)
    }

    fn failed(&self, id: &ObjectId, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::Missing(*id),
            e => StoreError::Backend(format!("object {id} at {}: {e}", self.location)),
        }
    }

    /// Every object held, with its size and when it was stored.
    pub async fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(prefix)
            .try_collect()
            .await
            .map_err(|e| bad(&self.location, e))?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                // Keys not named by an id (put there by hand) are ignored.
                let id = meta.location.filename()?.parse().ok()?;
                (meta.location == self.key(&id)).then(|| Listed {
                    id,
                    size: meta.size,
                    modified: time::OffsetDateTime::from_unix_timestamp(
                        meta.last_modified.timestamp(),
                    )
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                })
            })
            .collect())
    }

    /// Deletes object `id`; one already gone is no error.
    pub async fn delete(&self, id: ObjectId) -> Result<(), StoreError> {
        match self.store.delete(&self.key(&id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed(&id, e)),
        }
    }

    /// Reads object `id` if its size passes `size`: the size the answer's
    /// headers give is checked before its body is read, and what was read
    /// is checked again.
    async fn read(&self, id: ObjectId, size: Size) -> Result<Unverified, StoreError> {
        let answer = self
            .store
            .get(&self.key(&id))
            .await
            .map_err(|e| self.failed(&id, e))?;
        if let Some(refused) = size.refuses(id, answer.meta.size) {
            return Err(refused);
        }
        let content = answer.bytes().await.map_err(|e| self.failed(&id, e))?;
        if let Some(refused) = size.refuses(id, content.len() as u64) {
            return Err(refused);
        }
        Ok(Unverified::new(id, vec![content]))
    }

    async fn read_verified(&self, id: ObjectId, size: Size) -> Result<Bytes, StoreError> {
        Ok(self.read(id, size).await?.verify()?.into_bytes())
    }
}

impl ContentStore for BlobStore {
    async fn ids(&self) -> Result<HashSet<ObjectId>, StoreError> {
        Ok(self.list().await?.into_iter().map(|l| l.id).collect())
    }

    async fn put(&self, id: ObjectId, content: Bytes) -> Result<(), StoreError> {
        let key = self.key(&id);
        if content.len() > PART_SIZE {
            // In parts; a cut-short upload leaves no object under the key
            // (S3 and the local backend make it appear whole or not at all).
            let upload = self
                .store
                .put_multipart(&key)
                .await
                .map_err(|e| self.failed(&id, e))?;
            let mut write = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            for part in content.chunks(PART_SIZE) {
                write
                    .wait_for_capacity(4)
                    .await
                    .map_err(|e| self.failed(&id, e))?;
                write.put(content.slice_ref(part));
            }
            write.finish().await.map_err(|e| self.failed(&id, e))?;
            return Ok(());
        }
        // Only if nothing is there yet: what is there is the same object.
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from_bytes(content), create)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(self.failed(&id, e)),
        }
    }

    async fn get(&self, id: ObjectId) -> Result<Bytes, StoreError> {
        self.read_verified(id, Size::Any).await
    }

    async fn get_sized(&self, id: ObjectId, size: u64) -> Result<Bytes, StoreError> {
        self.read_verified(id, Size::Exactly(size)).await
    }

    async fn get_unverified(&self, id: ObjectId, size: u64) -> Result<Unverified, StoreError> {
        self.read(id, Size::Exactly(size)).await
    }

    async fn get_at_most(&self, id: ObjectId, limit: u64) -> Result<Bytes, StoreError> {
        self.read_verified(id, Size::AtMost(limit)).await
    }
}
