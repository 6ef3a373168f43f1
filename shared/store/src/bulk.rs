//! Reading many objects in the order the stream holds them.
//!
//! nats-server answers a direct get from the file block that holds the
//! message, and loads that block (8 MiB) whole into memory to do so. An
//! agent deploying a whole image asks for tens of thousands of objects,
//! and asked one by one in the order of their ids they lie all over the
//! stream: every block is loaded again and again throughout the fetch.
//! For synth (31,381 objects, 833 MiB) the server spent 5.0 CPU seconds
//! and grew to 1.4 GB resident, most of it clearing fresh memory; reading
//! the same objects in stream order cost it 2.3 s and 330 MB, and a first
//! deploy of synth took 6.2–6.5 s instead of 8.0–8.2 s (docs/BENCHMARKS.md).
//!
//! Neither the image nor the bucket records where in the stream an object
//! lies, but a read of an object's own chunk subject (`named.rs`) returns
//! the message's sequence. So [`NatsStore::bulk`] first reads a sample of
//! the wanted objects one by one, spread over them, and learns from their
//! sequences which stretches of the stream hold most of the rest: objects
//! an upload stored together lie together. It reads those stretches whole
//! with batched direct gets, several parts at once, and keeps the chunks
//! named by a wanted object that hold exactly the bytes expected. A
//! stretch is read only when the wanted objects are likely to be at least
//! a quarter of its messages (at most half can be: each object is a chunk
//! and a metadata message), so a machine that needs a few objects, or
//! objects scattered among many others, reads them one by one as before.
//!
//! Objects of several chunks, whose chunks are named by NUIDs, are read
//! one by one meanwhile, up to [`LARGE_MAX_BYTES`] each. What the
//! stretches do not yield (objects stored elsewhere, objects stored before
//! the named layout, larger objects) the caller reads one by one, within
//! its own memory budget.
//!
//! What a bulk read holds before the caller takes it is bounded: a page
//! (at most 8 MiB) for each of [`PARTS_AT_ONCE`] parts, and objects of
//! several chunks of at most [`LARGE_MAX_BYTES`] together. Everything yielded is only content claiming to be an object:
//! the caller checks it against its id as every read is checked.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use dom_model::ObjectId;
use futures::{Stream, StreamExt};

use crate::named::named_by;
use crate::{NatsStore, Unverified};

/// Fewer wanted objects than this are read one by one.
const MIN_OBJECTS: usize = 1024;
/// Objects read one by one to learn where the others lie.
const SAMPLES: usize = 128;
/// Samples found under their own subjects, below which nothing is read in
/// bulk (the objects were stored before the named layout, or elsewhere).
const MIN_FOUND: usize = SAMPLES / 2;
/// Samples a stretch must hold to be read whole.
const MIN_SAMPLES_IN_STRETCH: usize = 4;
/// A stretch is read whole when the wanted objects are likely to be at
/// least this share of its messages.
const MIN_DENSITY: f64 = 0.25;
/// Messages each part of a stretch holds at most; parts are read at once.
const PART_MESSAGES: u64 = 2048;
/// Messages a part holds at least, unless its stretch is smaller.
const MIN_PART_MESSAGES: u64 = 512;
/// Parts read at once: a stretch is cut into at least this many. They are
/// started in stream order, so the server has only the blocks of a short
/// run of the stream loaded at a time.
const PARTS_AT_ONCE: usize = 8;
/// Objects of several chunks read at once, beside the parts.
const LARGE_AT_ONCE: usize = 8;
/// Bytes of such objects held at once; larger objects are left to the
/// caller, who reads them within its own memory budget.
const LARGE_MAX_BYTES: u64 = 64 << 20;

impl NatsStore {
    /// Reads as many of `wanted` (ids and sizes) as the stream holds close
    /// together, yielding each as it arrives, unverified; the caller reads
    /// the rest one by one.
    pub(crate) fn bulk(
        &self,
        wanted: Vec<(ObjectId, u64)>,
    ) -> impl Stream<Item = Unverified> + Send + '_ {
        futures::stream::once(self.sample(wanted)).flat_map(move |sample| {
            let rest = Arc::new(Mutex::new(sample.rest));
            let parts = sample
                .stretches
                .into_iter()
                .flat_map(parts)
                .collect::<Vec<_>>();
            let scans = futures::stream::iter(parts)
                .map(move |part| Box::pin(self.scan(part, rest.clone())))
                .flatten_unordered(PARTS_AT_ONCE);
            // Objects of several chunks lie apart from the rest: read one
            // by one meanwhile. One that fails is left to the caller,
            // who reads it again and reports what went wrong.
            let room = Arc::new(tokio::sync::Semaphore::new(
                (LARGE_MAX_BYTES >> 10) as usize,
            ));
            let large = futures::stream::iter(sample.large)
                .map(move |(id, size)| {
                    let room = room.clone();
                    async move {
                        let kib = size.div_ceil(1024) as u32;
                        let _held = room.acquire_many_owned(kib).await;
                        self.read_unverified(id, crate::Size::Exactly(size)).await
                    }
                })
                .buffer_unordered(LARGE_AT_ONCE)
                .filter_map(|read| std::future::ready(read.ok()));
            futures::stream::iter(sample.read).chain(futures::stream::select(scans, large))
        })
    }

    /// Reads a sample of the wanted objects and learns from it where the
    /// others lie.
    async fn sample(&self, wanted: Vec<(ObjectId, u64)>) -> Sample {
        let chunk_size = self.chunk_size as u64;
        let (single, large): (Vec<_>, Vec<_>) = wanted
            .into_iter()
            .filter(|(_, size)| (1..=LARGE_MAX_BYTES).contains(size))
            .partition(|(_, size)| *size <= chunk_size);
        if single.len() < MIN_OBJECTS || !self.lookup.chunks_first() {
            return Sample::default();
        }
        let Ok(stream) = self.js.get_stream_no_info(&self.stream).await else {
            return Sample::default();
        };
        // Spread evenly over all of them, whatever their order: in id
        // order (ids are digests) a fair sample of where the objects lie,
        // in the order they were stored one that reaches both ends.
        let picks = (0..SAMPLES).map(|i| single[i * single.len() / SAMPLES]);
        let stream = &stream;
        let reads: Vec<_> = futures::stream::iter(picks)
            .map(|(id, size)| async move { (id, self.read_named(stream, id, size).await) })
            .buffer_unordered(SAMPLES)
            .collect()
            .await;
        let mut sampled = Vec::new();
        let mut sequences = Vec::new();
        for (id, read) in reads {
            let found = matches!(read, Ok(Some(_)));
            self.lookup.found(found);
            if let Ok(Some((sequence, chunk))) = read {
                sampled.push(Unverified::new(id, vec![chunk]));
                sequences.push(sequence);
            }
        }
        let mut rest: HashMap<_, _> = single.into_iter().collect();
        for content in &sampled {
            rest.remove(&content.id());
        }
        let stretches = stretches(sequences, rest.len() + sampled.len());
        tracing::debug!(
            objects = rest.len() + sampled.len(),
            sampled = sampled.len(),
            stretches = ?stretches,
            "reading objects in stream order"
        );
        Sample {
            read: sampled,
            stretches,
            rest,
            large,
        }
    }

    /// The wanted objects stored in `part` of the stream, each taken out
    /// of `rest` as it is found. A read that fails ends the part: what it
    /// did not yield is read one by one.
    fn scan(
        &self,
        part: RangeInclusive<u64>,
        rest: Arc<Mutex<HashMap<ObjectId, u64>>>,
    ) -> impl Stream<Item = Unverified> + Send + 'static {
        let prefix = self.chunk_prefix.clone();
        self.bus
            .read_stream_range(&self.stream, &format!("{prefix}>"), part)
            .take_while(|read| {
                if let Err(e) = read {
                    tracing::debug!(error = %e, "reading objects in stream order");
                }
                std::future::ready(read.is_ok())
            })
            .filter_map(move |read| {
                let found = read.ok().and_then(|message| {
                    let id = named_by(&prefix, &message.subject)?;
                    let mut rest = rest.lock().expect("never poisoned");
                    match rest.get(&id) {
                        Some(&size) if size == message.payload.len() as u64 => {
                            rest.remove(&id);
                            Some(Unverified::new(id, vec![message.payload]))
                        }
                        _ => None,
                    }
                });
                std::future::ready(found)
            })
    }
}

/// What a sample of the wanted objects found.
#[derive(Default)]
struct Sample {
    /// The objects it read.
    read: Vec<Unverified>,
    /// The stretches of the stream worth reading whole.
    stretches: Vec<RangeInclusive<u64>>,
    /// The wanted objects of one chunk not read yet, with their sizes.
    rest: HashMap<ObjectId, u64>,
    /// The wanted objects of several chunks, up to [`LARGE_MAX_BYTES`].
    large: Vec<(ObjectId, u64)>,
}

/// The stretches of the stream worth reading whole, from the `sequences`
/// at which a sample of `objects` wanted objects were found.
///
/// Were the objects stored one after another, each a chunk and a metadata
/// message, a sample would be found every `2 * objects / samples`
/// messages. Samples much further apart than that lie in different
/// stretches; a stretch reaches twice that far beyond its outer samples,
/// where more of its objects are likely to be.
fn stretches(mut sequences: Vec<u64>, objects: usize) -> Vec<RangeInclusive<u64>> {
    if sequences.len() < MIN_FOUND {
        return Vec::new();
    }
    sequences.sort_unstable();
    let samples = sequences.len() as u64;
    let gap = (2 * objects as u64 / samples).max(1);
    let mut clusters: Vec<Vec<u64>> = Vec::new();
    for sequence in sequences {
        match clusters.last_mut() {
            Some(cluster) if sequence - cluster.last().unwrap() <= 16 * gap => {
                cluster.push(sequence)
            }
            _ => clusters.push(vec![sequence]),
        }
    }
    clusters
        .into_iter()
        .filter(|cluster| cluster.len() >= MIN_SAMPLES_IN_STRETCH)
        .filter_map(|cluster| {
            let first = cluster[0].saturating_sub(2 * gap).max(1);
            let last = cluster[cluster.len() - 1].saturating_add(2 * gap);
            let messages = (last - first + 1) as f64;
            let likely = objects as f64 * cluster.len() as f64 / samples as f64;
            (likely >= MIN_DENSITY * messages).then_some(first..=last)
        })
        .collect()
}

/// `stretch` cut into parts of at most [`PART_MESSAGES`], and into at
/// least [`PARTS_AT_ONCE`] of at least [`MIN_PART_MESSAGES`] where it is
/// long enough, so that a short stretch too is read several parts at once.
fn parts(stretch: RangeInclusive<u64>) -> impl Iterator<Item = RangeInclusive<u64>> {
    let (first, last) = (*stretch.start(), *stretch.end());
    let messages = last - first + 1;
    let size = messages
        .div_ceil(PARTS_AT_ONCE as u64)
        .clamp(MIN_PART_MESSAGES, PART_MESSAGES);
    (first..=last)
        .step_by(size as usize)
        .map(move |start| start..=last.min(start + size - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_stored_together_make_one_stretch() {
        // 10,000 objects stored from sequence 1,001 on, a chunk and its
        // metadata each: the chunks at odd offsets.
        let sequences: Vec<u64> = (0..128).map(|i| 1001 + 2 * (i * 78)).collect();
        let found = stretches(sequences, 10_000);
        assert_eq!(found.len(), 1);
        let stretch = &found[0];
        assert!(*stretch.start() <= 1001 && *stretch.end() >= 1001 + 2 * 127 * 78);
        // Not much more than the objects' own messages.
        assert!(stretch.end() - stretch.start() < 22_000, "{stretch:?}");
        assert!(*stretch.start() <= 1001 - 156);
    }

    #[test]
    fn objects_in_two_places_make_two_stretches() {
        // Half the objects stored long ago, half just now, with a million
        // messages of other images between.
        let old = (0..64).map(|i| 100 + 2 * i * 78);
        let new = (0..64).map(|i| 2_000_000 + 2 * i * 78);
        let found = stretches(old.chain(new).collect(), 10_000);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].end() < &1_000_000 && found[1].start() > &1_000_000);
    }

    #[test]
    fn objects_scattered_among_others_are_read_one_by_one() {
        // 2,000 objects spread over a million messages.
        let sequences: Vec<u64> = (0..128).map(|i| 1 + i * 7_800).collect();
        assert!(stretches(sequences, 2_000).is_empty());
        // Too few samples found to say.
        assert!(stretches((0..10).collect(), 2_000).is_empty());
    }

    #[test]
    fn a_few_stray_samples_are_left_out() {
        let together = (0..125).map(|i| 10_000 + 2 * i * 78);
        let strays = [500_000, 900_000, 1_300_000];
        let found = stretches(together.chain(strays).collect(), 10_000);
        assert_eq!(found.len(), 1);
        assert!(found[0].end() < &500_000);
    }

    #[test]
    fn parts_cover_a_stretch_exactly() {
        let all: Vec<_> = parts(5..=40_000).collect();
        assert_eq!(all.first().unwrap().start(), &5);
        assert_eq!(all.last().unwrap().end(), &40_000);
        for pair in all.windows(2) {
            assert_eq!(pair[0].end() + 1, *pair[1].start());
        }
        assert!(all.iter().all(|p| p.end() - p.start() < PART_MESSAGES));
        assert_eq!(parts(7..=7).collect::<Vec<_>>(), vec![7..=7]);
        // A short stretch is still read in several parts, none tiny.
        assert_eq!(parts(1..=10_000).count(), PARTS_AT_ONCE);
        assert_eq!(parts(1..=1000).count(), 2);
        assert_eq!(parts(1..=1_000_000).count(), 489);
    }
}
