//! Content read for an object and not yet checked against its id.
//!
//! A reader that writes what it reads somewhere else (the agent filling its
//! object cache) is faster hashing the content on the thread that writes
//! it than on the one that reads it from the network, and faster still
//! when a large object is never copied into one buffer. [`Unverified`]
//! lets it do so without ever holding bytes that could be taken for
//! checked ones: the only way to the content is [`Unverified::verify`].

use bytes::Bytes;
use dom_model::object::Hasher;
use dom_model::ObjectId;

use crate::StoreError;

/// Content the store read for object `id`, in the pieces it arrived in.
#[derive(Debug)]
pub struct Unverified {
    id: ObjectId,
    parts: Vec<Bytes>,
}

/// Content checked to hash to its object's id.
#[derive(Clone, Debug)]
pub struct Verified {
    parts: Vec<Bytes>,
}

impl Unverified {
    pub(crate) fn new(id: ObjectId, parts: Vec<Bytes>) -> Self {
        Self { id, parts }
    }

    /// The object this content claims to be.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// Bytes held.
    pub fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len() as u64).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hashes the content: the content if it is object `id`, else
    /// [`StoreError::Corrupt`].
    // The error names both digests, as every read's does.
    #[allow(clippy::result_large_err)]
    pub fn verify(self) -> Result<Verified, StoreError> {
        let actual = match self.parts.as_slice() {
            [] => ObjectId::of(&[]),
            [whole] => ObjectId::of(whole),
            parts => {
                let mut hasher = Hasher::new();
                for part in parts {
                    hasher.update(part);
                }
                hasher.finish()
            }
        };
        if actual != self.id {
            return Err(StoreError::Corrupt {
                id: self.id,
                actual,
            });
        }
        Ok(Verified { parts: self.parts })
    }
}

impl Verified {
    /// The content, in the pieces it arrived in.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The content in one piece (copied only when it came in several).
    pub fn into_bytes(self) -> Bytes {
        match <[Bytes; 1]>::try_from(self.parts) {
            Ok([whole]) => whole,
            Err(parts) => parts.concat().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_in_pieces_is_checked_as_a_whole() {
        let whole = b"one two three";
        let parts = vec![
            Bytes::from_static(b"one "),
            Bytes::from_static(b"two "),
            Bytes::from_static(b"three"),
        ];
        let id = ObjectId::of(whole);
        let verified = Unverified::new(id, parts.clone()).verify().unwrap();
        assert_eq!(verified.parts(), parts.as_slice());
        assert_eq!(verified.into_bytes(), Bytes::from_static(whole));

        let mut forged = parts;
        forged[1] = Bytes::from_static(b"TWO ");
        let err = Unverified::new(id, forged).verify().unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { id: i, .. } if i == id),
            "{err}"
        );
    }

    #[test]
    fn nothing_is_the_empty_object() {
        let empty = ObjectId::of(b"");
        assert!(Unverified::new(empty, vec![]).verify().is_ok());
        let other = ObjectId::of(b"x");
        assert!(Unverified::new(other, vec![]).verify().is_err());
    }
}
