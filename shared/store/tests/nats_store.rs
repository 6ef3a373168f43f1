//! The NATS object-store backend against a real server: the standard
//! layout (readable by any NATS object-store client), pipelined reads,
//! and refusal of corrupt or missing objects.

use bytes::Bytes;
use dom_bus::Bus;
use dom_model::ObjectId;
use dom_store::{ContentStore, NatsStore, StoreError, CHUNK_SIZE};
use dom_tests::connect;
use dom_tests::NatsServer;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

/// Content of `len` bytes that differs for every `seed`.
fn content(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

#[tokio::test]
async fn objects_round_trip_and_follow_the_standard_layout() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let objects: Vec<Bytes> = vec![
        Bytes::new(),
        content(1, 10),
        content(2, CHUNK_SIZE),
        content(3, 3 * CHUNK_SIZE + 17),
        // More chunks than one batch of direct gets carries.
        content(4, 20 * CHUNK_SIZE + 5),
    ];
    for data in &objects {
        store.put(ObjectId::of(data), data.clone()).await.unwrap();
    }

    let ids: Vec<ObjectId> = objects.iter().map(|d| ObjectId::of(d)).collect();
    assert_eq!(
        store.ids().await.unwrap(),
        ids.iter().copied().collect(),
        "listing"
    );
    let mut read: Vec<(ObjectId, Bytes)> = store.get_many(ids.clone()).try_collect().await.unwrap();
    read.sort_by_key(|(id, _)| ids.iter().position(|i| i == id));
    for ((id, data), expected) in read.iter().zip(&objects) {
        assert_eq!(*id, ObjectId::of(expected));
        assert_eq!(data, expected);
    }

    // Any object-store client reads them (here async-nats' own, which also
    // checks the SHA-256 digest the standard layout carries).
    let bucket = bus.object_bucket().await.unwrap();
    for data in &objects {
        let mut object = bucket.get(ObjectId::of(data).to_hex()).await.unwrap();
        let mut back = Vec::new();
        object.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data.as_ref());
    }
}

#[tokio::test]
async fn missing_and_corrupt_objects_are_refused() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let absent = ObjectId::of(b"never stored");
    assert!(matches!(store.get(absent).await, Err(StoreError::Missing(id)) if id == absent));

    // Stored under the id of other content: what a damaged or forged
    // object looks like to a reader.
    let claimed = ObjectId::of(b"the real content");
    store
        .put(claimed, Bytes::from_static(b"something else"))
        .await
        .unwrap();
    match store.get(claimed).await {
        Err(StoreError::Corrupt { id, actual }) => {
            assert_eq!(id, claimed);
            assert_eq!(actual, ObjectId::of(b"something else"));
        }
        other => panic!("expected a corrupt object, got {other:?}"),
    }
    let results: Vec<_> = store.get_many(vec![claimed, absent]).collect().await;
    assert!(results.iter().all(|r| r.is_err()));
}

#[tokio::test]
async fn an_object_of_an_unexpected_size_is_refused_unread() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    for len in [10, 3 * CHUNK_SIZE + 17] {
        let bytes = content(7, len);
        let id = ObjectId::of(&bytes);
        store.put(id, bytes.clone()).await.unwrap();
        let len = len as u64;
        assert_eq!(store.get_sized(id, len).await.unwrap(), bytes);
        assert_eq!(store.get_at_most(id, len).await.unwrap(), bytes);
        match store.get_sized(id, 6).await {
            Err(
                e @ StoreError::WrongSize {
                    expected: 6,
                    actual,
                    ..
                },
            ) if actual == len => {
                assert!(e.to_string().contains(&id.to_hex()), "{e}")
            }
            other => panic!("{other:?}"),
        }
        match store.get_at_most(id, len - 1).await {
            Err(StoreError::TooLarge { limit, actual, .. })
                if limit == len - 1 && actual == len => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn unverified_reads_keep_the_chunks_and_are_checked_when_asked() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    for len in [0, 10, 3 * CHUNK_SIZE + 17] {
        let bytes = content(9, len);
        let id = ObjectId::of(&bytes);
        store.put(id, bytes.clone()).await.unwrap();
        let read = store.get_unverified(id, len as u64).await.unwrap();
        assert_eq!((read.id(), read.len()), (id, len as u64));
        let verified = read.verify().unwrap();
        assert_eq!(verified.parts().len(), len.div_ceil(CHUNK_SIZE));
        assert_eq!(verified.into_bytes(), bytes);
        // Another size than the image says: refused, nothing read.
        assert!(matches!(
            store.get_unverified(id, len as u64 + 1).await,
            Err(StoreError::WrongSize { .. })
        ));
    }

    // Other content under an id: read, and refused by the check.
    let claimed = ObjectId::of(b"the real content!");
    store
        .put(claimed, Bytes::from_static(b"something else!!"))
        .await
        .unwrap();
    let read = store.get_unverified(claimed, 16).await.unwrap();
    match read.verify() {
        Err(StoreError::Corrupt { id, actual }) => {
            assert_eq!(id, claimed);
            assert_eq!(actual, ObjectId::of(b"something else!!"));
        }
        other => panic!("expected a corrupt object, got {other:?}"),
    }
}

/// Publishes `content` as a chunk under object `id`'s own subject, as a
/// forger with write access (or an upload cut short) would leave it.
async fn chunk_under_id(bus: &Bus, id: ObjectId, content: Bytes) {
    let subject = format!("{}{}", bus.subjects.object_chunk_prefix(), id.to_hex());
    bus.js
        .publish(subject, content)
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn objects_another_client_stored_are_read_through_their_metadata() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let bucket = bus.object_bucket().await.unwrap();
    // More objects than it takes the store to stop looking for chunks
    // under their ids first.
    let objects: Vec<Bytes> = (0..80).map(|i| content(i, 100 + i as usize)).collect();
    for data in &objects {
        let id = ObjectId::of(data);
        bucket
            .put(id.to_hex().as_str(), &mut data.as_ref())
            .await
            .unwrap();
    }
    for data in &objects {
        let id = ObjectId::of(data);
        assert_eq!(store.get_sized(id, data.len() as u64).await.unwrap(), data);
    }
    // And one stored the store's way among them.
    let ours = content(200, 3 * CHUNK_SIZE + 1);
    store.put(ObjectId::of(&ours), ours.clone()).await.unwrap();
    let read = store.get_sized(ObjectId::of(&ours), ours.len() as u64);
    assert_eq!(read.await.unwrap(), ours);
}

#[tokio::test]
async fn chunks_under_an_object_s_id_are_taken_only_as_what_the_image_says() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let bucket = bus.object_bucket().await.unwrap();

    // Another client's object, with something else of another size under
    // its id: the metadata is followed and the real content read.
    let real = content(1, 1000);
    let id = ObjectId::of(&real);
    bucket
        .put(id.to_hex().as_str(), &mut real.as_ref())
        .await
        .unwrap();
    chunk_under_id(&bus, id, content(2, 999)).await;
    assert_eq!(store.get_sized(id, 1000).await.unwrap(), real);

    // Other content of the expected size: refused as corrupt.
    let claimed = content(3, 500);
    let forged = ObjectId::of(&claimed);
    chunk_under_id(&bus, forged, content(4, 500)).await;
    assert!(matches!(
        store.get_sized(forged, 500).await,
        Err(StoreError::Corrupt { id, .. }) if id == forged
    ));
    // Nothing of another size is taken for it, and without metadata it
    // is not in the store.
    assert!(matches!(
        store.get_sized(forged, 501).await,
        Err(StoreError::Missing(id)) if id == forged
    ));
}

#[tokio::test]
async fn an_object_is_stored_whole_however_many_uploads_there_are() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let small = content(5, 1000);
    let id = ObjectId::of(&small);
    // The chunk of an upload cut short before its metadata.
    chunk_under_id(&bus, id, small.clone()).await;
    assert!(store.ids().await.unwrap().is_empty());
    let large = content(6, 2 * CHUNK_SIZE + 3);
    let large_id = ObjectId::of(&large);
    // Then two uploads of each at once.
    let (a, b, c, d) = tokio::join!(
        store.put(id, small.clone()),
        store.put(id, small.clone()),
        store.put(large_id, large.clone()),
        store.put(large_id, large.clone()),
    );
    for put in [a, b, c, d] {
        put.unwrap();
    }

    // One message under the small object's id, whatever reads it.
    let stream = bus
        .js
        .get_stream(bus.subjects.object_stream())
        .await
        .unwrap();
    let subject = format!("{}{}", bus.subjects.object_chunk_prefix(), id.to_hex());
    let mut counts = stream.info_with_subjects(subject.as_str()).await.unwrap();
    let (_, count) = counts.next().await.unwrap().unwrap();
    assert_eq!(count, 1);
    let bucket = bus.object_bucket().await.unwrap();
    for (id, data) in [(id, &small), (large_id, &large)] {
        assert_eq!(store.get_sized(id, data.len() as u64).await.unwrap(), data);
        assert_eq!(store.get(id).await.unwrap(), data);
        let mut object = bucket.get(id.to_hex()).await.unwrap();
        let mut back = Vec::new();
        object.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, data.as_ref());
    }
}

#[tokio::test]
async fn a_manifest_is_read_decoded_and_an_object_that_is_none_is_refused() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let mut builder = dom_model::manifest::ManifestBuilder::new();
    let etc = dom_model::Inode::Dir {
        mode: 0o755,
        uid: 0,
        gid: 0,
    };
    builder.add("/etc".into(), etc, None).unwrap();
    let manifest = builder.finish().unwrap();
    let encoded = Bytes::from(manifest.encode());
    store.put(manifest.id(), encoded.clone()).await.unwrap();

    let stored = store.manifest(manifest.id()).await.unwrap();
    assert_eq!(stored.manifest, manifest);
    assert_eq!(
        stored.encoded, encoded,
        "the bytes as stored, for the agent to keep"
    );

    // An object that is not a manifest: read, then refused as unusable.
    let junk = content(7, 100);
    store.put(ObjectId::of(&junk), junk.clone()).await.unwrap();
    let refused = store.manifest(ObjectId::of(&junk)).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::NotManifest { id, .. } if *id == ObjectId::of(&junk)),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("not valid gzip"), "{refused}");

    // A missing one is an error of the store, not of the manifest.
    let missing = ObjectId::of(b"never stored");
    assert!(matches!(
        store.manifest(missing).await.unwrap_err(),
        StoreError::Missing(id) if id == missing
    ));
}

/// Stores `count` distinct small objects, `seed` making them differ from
/// other calls', at most 64 at a time; their ids and sizes in the order
/// given.
async fn store_many(store: &NatsStore, seed: u8, count: usize) -> Vec<(ObjectId, u64)> {
    let objects: Vec<Bytes> = (0..count)
        .map(|i| format!("object {seed} {i} {}", "x".repeat(i % 700)).into())
        .collect();
    let wanted = objects
        .iter()
        .map(|data| (ObjectId::of(data), data.len() as u64))
        .collect();
    futures::stream::iter(objects)
        .map(|data| store.put(ObjectId::of(&data), data))
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    wanted
}

#[tokio::test]
async fn objects_stored_together_are_read_in_stream_order() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let first = store_many(&store, 1, 3000).await;
    let between = store_many(&store, 2, 2000).await;
    let last = store_many(&store, 3, 3000).await;

    // An image of the first and the last, none of what lies between.
    let wanted: Vec<_> = first.iter().chain(&last).copied().collect();
    let read: Vec<_> = store.get_bulk(wanted.clone()).collect().await;
    let mut seen = std::collections::HashSet::new();
    for content in read {
        let id = content.id();
        assert!(seen.insert(id), "{id} read twice");
        let size = wanted
            .iter()
            .find(|(w, _)| *w == id)
            .expect("only what was asked")
            .1;
        assert_eq!(content.len(), size);
        content.verify().expect("each object as stored");
    }
    // Nearly all of it: the reader may miss a few at the edges of where
    // the objects lie, which the caller reads one by one.
    assert!(
        seen.len() >= wanted.len() * 95 / 100,
        "{} of {} read in bulk",
        seen.len(),
        wanted.len()
    );

    // Few objects: read one by one, by the caller.
    assert_eq!(store.get_bulk(first[..500].to_vec()).count().await, 0);
    // Objects spread thinly among others: the sample alone.
    let thin: Vec<_> = first
        .iter()
        .chain(&between)
        .chain(&last)
        .step_by(7)
        .copied()
        .collect();
    assert!(thin.len() >= 1024);
    assert!(store.get_bulk(thin).count().await <= 128);
    // Sizes other than what is stored: nothing taken.
    let wrong: Vec<_> = last.iter().map(|&(id, size)| (id, size + 1)).collect();
    assert_eq!(store.get_bulk(wrong).count().await, 0);
}

#[tokio::test]
async fn a_bulk_read_takes_objects_of_a_few_chunks_and_leaves_larger_ones_to_the_caller() {
    let server = NatsServer::start().unwrap();
    let bus = connect(&server).await;
    let store = NatsStore::open(&bus).await.unwrap();
    let small = store_many(&store, 4, 1500).await;
    let few_chunks = content(5, 2 * CHUNK_SIZE + 3);
    let huge = content(6, 65 * CHUNK_SIZE);
    for data in [&few_chunks, &huge] {
        store.put(ObjectId::of(data), data.clone()).await.unwrap();
    }
    let mut wanted = small.clone();
    wanted.push((ObjectId::of(&few_chunks), few_chunks.len() as u64));
    wanted.push((ObjectId::of(&huge), huge.len() as u64));

    let read: Vec<_> = store.get_bulk(wanted).collect().await;
    let ids: std::collections::HashSet<_> = read.iter().map(|c| c.id()).collect();
    // Held in memory before the caller takes it, so bounded: an object of
    // a few chunks is read, a larger one is the caller's to read within
    // its memory budget.
    assert!(ids.contains(&ObjectId::of(&few_chunks)));
    assert!(!ids.contains(&ObjectId::of(&huge)));
    assert!(
        ids.len() >= small.len() * 95 / 100,
        "{} of {} read in bulk",
        ids.len(),
        small.len() + 1
    );
}
