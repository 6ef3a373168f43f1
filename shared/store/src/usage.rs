//! What the store holds and for whom: each live image's share, and the
//! objects no live image needs.
//!
//! An image is live unless it was deleted or has expired. An object is
//! referenced when a live image's manifest is that object, or names it
//! as a file's content. Reading a live image's manifest must succeed:
//! guessing instead would count the objects it needs as unreferenced.

use std::collections::{HashMap, HashSet};

use dom_bus::Bus;
use dom_model::{ImageMessage, ImageName, ObjectId};
use futures::{StreamExt, TryStreamExt};

use crate::{ContentStore, NatsStore, ObjectMeta, StoreError};

/// How many objects' metadata is asked for at once.
const SIZE_CONCURRENCY: usize = 32;

/// One live image's share of the store.
#[derive(Debug)]
pub struct ImageUsage {
    pub name: ImageName,
    /// Regular files, and their bytes, as the record counts them.
    pub files: u64,
    pub bytes: u64,
    /// Distinct objects it needs (its manifest included), and their bytes.
    pub objects: u64,
    pub object_bytes: u64,
    /// Bytes of the objects no other live image needs: what deleting this
    /// image alone would let a collection free.
    pub own_bytes: u64,
}

/// The whole store.
#[derive(Debug)]
pub struct Usage {
    /// Every live image, by name.
    pub images: Vec<ImageUsage>,
    /// Objects stored, and their content's bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Objects no live image needs, with their metadata (size, when
    /// stored, where), by id.
    pub unreferenced: Vec<(ObjectId, ObjectMeta)>,
    /// What the bucket's stream takes on the server.
    pub stream_bytes: u64,
}

impl Usage {
    /// Reads every live image's manifest and the bucket's list of objects.
    pub async fn measure(bus: &Bus) -> Result<Self, StoreError> {
        bus.ensure_image_streams().await?;
        let store = NatsStore::open(bus).await?;
        let stored = store.ids().await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        // Each referenced object's size and how many live images need it.
        let mut needed: HashMap<ObjectId, (u64, u32)> = HashMap::new();
        let mut per_image = Vec::new();
        for image in bus.images().await? {
            let ImageMessage::Record(record) = image.message else {
                continue;
            };
            if record.is_expired(now) {
                continue;
            }
            let manifest =
                store
                    .manifest(record.manifest)
                    .await
                    .map_err(|error| StoreError::OfImage {
                        image: record.name.clone(),
                        error: Box::new(error),
                    })?;
            let mut objects = manifest.manifest.objects();
            objects.push((record.manifest, manifest.encoded.len() as u64));
            for (id, size) in &objects {
                needed.entry(*id).or_insert((*size, 0)).1 += 1;
            }
            per_image.push((record, objects));
        }
        let images = per_image
            .into_iter()
            .map(|(record, objects)| ImageUsage {
                name: record.name,
                files: record.files,
                bytes: record.bytes,
                objects: objects.len() as u64,
                object_bytes: objects.iter().map(|(_, size)| size).sum(),
                own_bytes: objects
                    .iter()
                    .filter(|(id, _)| needed[id].1 == 1)
                    .map(|(_, size)| size)
                    .sum(),
            })
            .collect();
        let unreferenced = unreferenced_sizes(&store, &stored, &needed).await?;
        let referenced_bytes: u64 = needed
            .iter()
            .filter(|(id, _)| stored.contains(id))
            .map(|(_, (size, _))| size)
            .sum();
        Ok(Self {
            images,
            objects: stored.len() as u64,
            bytes: referenced_bytes
                + unreferenced
                    .iter()
                    .map(|(_, meta)| meta.size as u64)
                    .sum::<u64>(),
            unreferenced,
            stream_bytes: store.stream_bytes().await?,
        })
    }

    pub fn unreferenced_bytes(&self) -> u64 {
        self.unreferenced
            .iter()
            .map(|(_, meta)| meta.size as u64)
            .sum()
    }
}

/// The stored objects no live image needs, with their metadata. One
/// removed meanwhile is left out.
async fn unreferenced_sizes(
    store: &NatsStore,
    stored: &HashSet<ObjectId>,
    needed: &HashMap<ObjectId, (u64, u32)>,
) -> Result<Vec<(ObjectId, ObjectMeta)>, StoreError> {
    let missing: Vec<ObjectId> = stored
        .iter()
        .filter(|id| !needed.contains_key(id))
        .copied()
        .collect();
    let found: Vec<Option<(ObjectId, ObjectMeta)>> = futures::stream::iter(missing)
        .map(|id| {
            let store = store.clone();
            async move {
                match store.object_info(id).await {
                    Ok(meta) => Ok(Some((id, meta))),
                    Err(StoreError::Missing(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(SIZE_CONCURRENCY)
        .try_collect()
        .await?;
    let mut out: Vec<(ObjectId, ObjectMeta)> = found.into_iter().flatten().collect();
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}
