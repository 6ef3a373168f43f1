//! The store a tool was pointed at: the fleet's NATS object bucket, or
//! `--objects URL` ([`crate::blob`]).

use std::collections::HashSet;

use bytes::Bytes;
use dom_bus::Bus;
use dom_model::ObjectId;
use futures::StreamExt;

use crate::blob::BlobStore;
use crate::{ContentStore, NatsStore, StoreError, Unverified};

/// The objects of a fleet, wherever they live.
// As large as the NATS store it holds, which is passed around the same way.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Store {
    Nats(NatsStore),
    Blob(BlobStore),
}

impl Store {
    /// The store `bus` was connected with: `--objects URL`, else the
    /// fleet's NATS object bucket (created when missing, if this
    /// credential may).
    pub async fn open(bus: &Bus) -> Result<Self, StoreError> {
        match &bus.objects {
            Some(location) => Ok(Store::Blob(BlobStore::open_in(
                location,
                bus.s3_endpoint.as_deref(),
                bus.s3_region.as_deref(),
            )?)),
            None => Ok(Store::Nats(NatsStore::open(bus).await?)),
        }
    }

    /// Where the objects are: `None` for the fleet's NATS bucket, else
    /// the `--objects` location (an image record names it).
    pub fn location(&self) -> Option<&str> {
        match self {
            Store::Nats(_) => None,
            Store::Blob(blob) => Some(blob.location()),
        }
    }
}

impl ContentStore for Store {
    async fn ids(&self) -> Result<HashSet<ObjectId>, StoreError> {
        match self {
            Store::Nats(s) => s.ids().await,
            Store::Blob(s) => s.ids().await,
        }
    }

    async fn put(&self, id: ObjectId, content: Bytes) -> Result<(), StoreError> {
        match self {
            Store::Nats(s) => s.put(id, content).await,
            Store::Blob(s) => s.put(id, content).await,
        }
    }

    async fn get(&self, id: ObjectId) -> Result<Bytes, StoreError> {
        match self {
            Store::Nats(s) => s.get(id).await,
            Store::Blob(s) => s.get(id).await,
        }
    }

    async fn get_sized(&self, id: ObjectId, size: u64) -> Result<Bytes, StoreError> {
        match self {
            Store::Nats(s) => s.get_sized(id, size).await,
            Store::Blob(s) => s.get_sized(id, size).await,
        }
    }

    async fn get_unverified(&self, id: ObjectId, size: u64) -> Result<Unverified, StoreError> {
        match self {
            Store::Nats(s) => s.get_unverified(id, size).await,
            Store::Blob(s) => s.get_unverified(id, size).await,
        }
    }

    async fn get_at_most(&self, id: ObjectId, limit: u64) -> Result<Bytes, StoreError> {
        match self {
            Store::Nats(s) => s.get_at_most(id, limit).await,
            Store::Blob(s) => s.get_at_most(id, limit).await,
        }
    }

    fn get_bulk(
        &self,
        wanted: Vec<(ObjectId, u64)>,
    ) -> impl futures::Stream<Item = Unverified> + Send + '_ {
        match self {
            Store::Nats(s) => s.get_bulk(wanted).boxed(),
            Store::Blob(s) => s.get_bulk(wanted).boxed(),
        }
    }
}
