//! What the store holds and for whom: each live image's share, and the
//! objects no live image needs.
//!
//! An image is live unless it was deleted or has expired. An object is
//! referenced when a live image's manifest is that object, or names it
//! as a file's content, or its record names it as its release notes or
//! build log. Reading a live image's manifest must succeed: guessing
//! instead would count the objects it needs as unreferenced.

use std::collections::{HashMap, HashSet};

use dom_bus::Bus;
use dom_model::{ImageMessage, ImageName, ObjectId};
use futures::{StreamExt, TryStreamExt};

use crate::{ContentStore, NatsStore, ObjectMeta, Store, StoreError};

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
    /// Objects no live image needs, by id.
    pub unreferenced: Vec<Unreferenced>,
    /// What the bucket's stream takes on the server; with objects
    /// elsewhere (`location`), what is listed there.
    pub stream_bytes: u64,
    /// Where the objects are: `None` for the NATS bucket.
    pub location: Option<String>,
    /// Every object stored, as listed.
    pub ids: HashSet<ObjectId>,
}

/// An object no live image needs.
#[derive(Clone, Debug)]
pub struct Unreferenced {
    pub id: ObjectId,
    pub size: u64,
    /// When it was stored, as the store says.
    pub stored: Option<time::OffsetDateTime>,
    /// Its metadata in the NATS bucket (where its content is), to delete it.
    pub(crate) nats: Option<ObjectMeta>,
}

impl Usage {
    /// Reads every live image's manifest and the bucket's list of objects.
    pub async fn measure(bus: &Bus) -> Result<Self, StoreError> {
        bus.ensure_image_streams().await?;
        let store = Store::open(bus).await?;
        // Listed with sizes and times where the store lists them so.
        let listed = match &store {
            Store::Blob(blob) => Some(blob.list().await?),
            Store::Nats(_) => None,
        };
        let stored: HashSet<ObjectId> = match &listed {
            Some(listed) => listed.iter().map(|l| l.id).collect(),
            None => store.ids().await?,
        };
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
            for id in [record.metadata.release_notes, record.metadata.build_log]
                .into_iter()
                .flatten()
                .filter(|id| stored.contains(id))
            {
                objects.push((id, stored_size(&store, listed.as_deref(), id).await?));
            }
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
        let (unreferenced, stream_bytes) = match (&store, listed) {
            (Store::Nats(nats), _) => (
                unreferenced_sizes(nats, &stored, &needed).await?,
                nats.stream_bytes().await?,
            ),
            (Store::Blob(_), listed) => {
                let listed = listed.unwrap_or_default();
                let bytes = listed.iter().map(|l| l.size).sum();
                let mut unreferenced: Vec<Unreferenced> = listed
                    .into_iter()
                    .filter(|l| !needed.contains_key(&l.id))
                    .map(|l| Unreferenced {
                        id: l.id,
                        size: l.size,
                        stored: Some(l.modified),
                        nats: None,
                    })
                    .collect();
                unreferenced.sort_by_key(|u| u.id);
                (unreferenced, bytes)
            }
        };
        let referenced_bytes: u64 = needed
            .iter()
            .filter(|(id, _)| stored.contains(id))
            .map(|(_, (size, _))| size)
            .sum();
        Ok(Self {
            images,
            objects: stored.len() as u64,
            bytes: referenced_bytes + unreferenced.iter().map(|u| u.size).sum::<u64>(),
            unreferenced,
            stream_bytes,
            location: store.location().map(str::to_string),
            ids: stored,
        })
    }

    pub fn unreferenced_bytes(&self) -> u64 {
        self.unreferenced.iter().map(|u| u.size).sum()
    }
}

impl Store {
    /// Removes an object no live image needed when it was measured. Call
    /// it only from behind the gate ([`crate::gate`]).
    pub async fn delete(&self, object: &Unreferenced) -> Result<(), StoreError> {
        match (self, &object.nats) {
            (Store::Nats(nats), Some(meta)) => nats.delete(meta).await,
            (Store::Blob(blob), _) => blob.delete(object.id).await,
            (Store::Nats(_), None) => Err(StoreError::Backend(format!(
                "object {} was measured in another store",
                object.id
            ))),
        }
    }
}

/// The size of a stored object named outside a manifest, whose size no
/// manifest gives: as listed, or from its metadata in the NATS bucket (0
/// if it was removed meanwhile).
async fn stored_size(
    store: &Store,
    listed: Option<&[crate::blob::Listed]>,
    id: ObjectId,
) -> Result<u64, StoreError> {
    match (store, listed) {
        (_, Some(listed)) => Ok(listed.iter().find(|l| l.id == id).map_or(0, |l| l.size)),
        (Store::Nats(nats), None) => match nats.object_info(id).await {
            Ok(meta) => Ok(meta.size as u64),
            Err(StoreError::Missing(_)) => Ok(0),
            Err(e) => Err(e),
        },
        (Store::Blob(_), None) => Ok(0),
    }
}

/// The stored objects no live image needs, with their metadata. One
/// removed meanwhile is left out.
async fn unreferenced_sizes(
    store: &NatsStore,
    stored: &HashSet<ObjectId>,
    needed: &HashMap<ObjectId, (u64, u32)>,
) -> Result<Vec<Unreferenced>, StoreError> {
    let missing: Vec<ObjectId> = stored
        .iter()
        .filter(|id| !needed.contains_key(id))
        .copied()
        .collect();
    let found: Vec<Option<Unreferenced>> = futures::stream::iter(missing)
        .map(|id| {
            let store = store.clone();
            async move {
                match store.object_info(id).await {
                    Ok(meta) => Ok(Some(Unreferenced {
                        id,
                        size: meta.size as u64,
                        stored: meta.modified,
                        nats: Some(meta),
                    })),
                    Err(StoreError::Missing(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(SIZE_CONCURRENCY)
        .try_collect()
        .await?;
    let mut out: Vec<Unreferenced> = found.into_iter().flatten().collect();
    out.sort_by_key(|u| u.id);
    Ok(out)
}
