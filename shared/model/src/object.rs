//! Object ids: the lowercase hex SHA-512 of a file's content.
//!
//! Objects are stored once, named by their id, so identical files in any
//! number of images share one object.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Length of a SHA-512 digest in bytes.
pub const DIGEST_LEN: usize = 64;

/// The SHA-512 of an object's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; DIGEST_LEN]);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not an object id (128 lowercase hex digits)")]
pub struct BadObjectId(pub String);

impl ObjectId {
    /// The id of `content`.
    pub fn of(content: &[u8]) -> Self {
        Self(openssl::sha::sha512(content))
    }

    pub fn from_digest(digest: [u8; DIGEST_LEN]) -> Self {
        Self(digest)
    }

    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// The id as 128 lowercase hex digits, the object's name in the store.
    pub fn to_hex(&self) -> String {
        self.hex_str(&mut [0; DIGEST_LEN * 2]).to_owned()
    }

    /// The id in hex, written into `buf` (no allocation: manifests hold
    /// one id per file).
    fn hex_str<'a>(&self, buf: &'a mut [u8; DIGEST_LEN * 2]) -> &'a str {
        hex::encode_to_slice(self.0, buf).expect("buffer fits a digest");
        std::str::from_utf8(buf).expect("hex digits are ASCII")
    }
}

/// Incremental SHA-512, for content that arrives in pieces.
///
/// libcrypto's SHA-512 picks the widest vector code the CPU has (AVX2 on
/// current x86-64): about 1.4x the speed ring, sha2 and aws-lc-rs measured
/// on the same machine (docs/BENCHMARKS.md), and hashing is most of a scan.
pub struct Hasher(openssl::sha::Sha512);

impl Hasher {
    pub fn new() -> Self {
        Self(openssl::sha::Sha512::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> ObjectId {
        ObjectId(self.0.finish())
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// The value of each lowercase hex digit; 0xff for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

impl FromStr for ObjectId {
    type Err = BadObjectId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadObjectId(s.chars().take(140).collect());
        if s.len() != DIGEST_LEN * 2 {
            return Err(bad());
        }
        // A manifest holds one id per file: this runs tens of thousands
        // of times per image, so a table rather than `hex`'s checks.
        let mut bytes = [0u8; DIGEST_LEN];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
            if (hi | lo) & 0xf0 != 0 {
                return Err(bad());
            }
            *byte = hi << 4 | lo;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex_str(&mut [0; DIGEST_LEN * 2]))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", &self.to_hex()[..16])
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex_str(&mut [0; DIGEST_LEN * 2]))
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        // sha512("abc") from FIPS 180-2.
        let id = ObjectId::of(b"abc");
        assert!(id.to_hex().starts_with("ddaf35a193617aba"));
        assert_eq!(id.to_hex().parse::<ObjectId>().unwrap(), id);
    }

    #[test]
    fn incremental_matches_one_shot() {
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), ObjectId::of(b"abc"));
    }

    #[test]
    fn rejects_bad_ids() {
        assert!("abc".parse::<ObjectId>().is_err());
        assert!("A".repeat(128).parse::<ObjectId>().is_err());
        assert!("g".repeat(128).parse::<ObjectId>().is_err());
        assert!("a".repeat(128).parse::<ObjectId>().is_ok());
    }
}
