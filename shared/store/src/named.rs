//! Reading an object without its metadata message.
//!
//! The standard object-store layout keeps an object's chunks under a
//! subject named by a NUID, which only the object's metadata message
//! records: every read costs two direct gets, one to learn the subject and
//! one for the content, and for a whole image the server spent about as
//! long answering the first kind as the second. Most objects are small
//! enough for one chunk (all but 30 of synth's 31,381), so
//! [`crate::NatsStore`] stores such an object's one chunk under a subject
//! named by the object's own id (`$O.<bucket>.C.<hex id>`) and records
//! that name as the metadata's `nuid`. It is still the standard layout:
//! any object-store client reads the object through its metadata as it
//! reads any other. But a reader that knows the id and how many bytes to
//! expect (an agent, from its image's manifest) can read the chunk
//! straight away. The chunk is stored only if the subject holds nothing
//! yet, so it never holds two messages, even when two uploads of the
//! object race or one was cut short after its chunk. Larger objects keep
//! a fresh NUID for each upload, as any client writes them, and are read
//! through their metadata.
//!
//! What such a read finds is only content claiming to be the object. It is
//! taken only when it holds exactly the bytes expected, and it is checked
//! against the id as every read is. Anything else (nothing under that
//! subject: an object another client put, or one stored before this
//! layout; another size) sends the read the standard way, through the
//! metadata, which refuses an object of another size before reading it.
//!
//! Objects stored the old way would cost a vain request each, so
//! [`Lookup`] learns from what the reads find which way round to go.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use bytes::Bytes;
use dom_model::ObjectId;

use crate::{NatsStore, StoreError};

/// The subject holding object `id`'s chunks, under the bucket's chunk
/// prefix.
pub(crate) fn chunk_subject(chunk_prefix: &str, id: &ObjectId) -> String {
    format!("{chunk_prefix}{}", id.to_hex())
}

/// The object a chunk subject is named by, if it is named by one (the
/// subjects of large objects' chunks are named by NUIDs).
pub(crate) fn named_by(chunk_prefix: &str, subject: &str) -> Option<ObjectId> {
    subject.strip_prefix(chunk_prefix)?.parse().ok()
}

/// Whether reads try an object's own chunk subject before its metadata.
/// It keeps a score: a read that finds the chunks raises it, one that
/// does not lowers it. Below [`Lookup::GIVE_UP`] reads go through the
/// metadata, except one in [`Lookup::PROBE_EVERY`], so that the store
/// notices when the objects asked for are stored the new way again.
#[derive(Debug, Default)]
pub(crate) struct Lookup {
    score: AtomicI32,
    reads: AtomicU64,
}

impl Lookup {
    const LIMIT: i32 = 64;
    const GIVE_UP: i32 = -32;
    const PROBE_EVERY: u64 = 16;

    /// Whether the next read goes to the object's own chunk subject first.
    pub(crate) fn chunks_first(&self) -> bool {
        self.score.load(Ordering::Relaxed) > Self::GIVE_UP
            || self
                .reads
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(Self::PROBE_EVERY)
    }

    /// Learns whether a read found the object under its own subject.
    pub(crate) fn found(&self, found: bool) {
        let step = if found { 1 } else { -1 };
        let _ = self
            .score
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |score| {
                Some((score + step).clamp(-Self::LIMIT, Self::LIMIT))
            });
    }
}

impl NatsStore {
    /// The chunk stored under object `id`'s own subject, with its stream
    /// sequence, if it holds exactly `size` bytes (more than none, at most
    /// one chunk's worth); `None` when it does not. `stream` is the object
    /// stream.
    pub(crate) async fn read_named(
        &self,
        stream: &Stream<()>,
        id: ObjectId,
        size: u64,
    ) -> Result<Option<(u64, Bytes)>, StoreError> {
        let subject = chunk_subject(&self.chunk_prefix, &id);
        // The subject's last (only) message, found by subject without
        // scanning the stream.
        match stream.direct_get_last_for_subject(subject).await {
            Ok(chunk) if chunk.payload.len() as u64 == size => {
                Ok(Some((chunk.sequence, chunk.payload)))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Backend(format!("reading object {id}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_through_the_metadata_once_the_chunks_are_seldom_found() {
        let lookup = Lookup::default();
        assert!(lookup.chunks_first());
        for _ in 0..-Lookup::GIVE_UP {
            lookup.found(false);
        }
        let tried = (0..160).filter(|_| lookup.chunks_first()).count();
        assert_eq!(tried, 160 / Lookup::PROBE_EVERY as usize);

        // Found again: back to the chunks first.
        lookup.found(true);
        assert!((0..10).all(|_| lookup.chunks_first()));
    }

    #[test]
    fn the_score_is_bounded() {
        let lookup = Lookup::default();
        for _ in 0..1000 {
            lookup.found(true);
        }
        for _ in 0..Lookup::LIMIT - Lookup::GIVE_UP {
            lookup.found(false);
        }
        // However long the chunks were found, as many misses as it takes
        // to give up from nothing, and as many as the score was above it.
        let tried = (0..32).filter(|_| lookup.chunks_first()).count();
        assert_eq!(tried, 2);
    }
}
