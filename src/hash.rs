//! The content address of a blob: a SHA-256 digest, written as 64 lowercase hex characters.

use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// A blob's SHA-256 digest. A job's key is the hash of its payload.
///
/// ```
/// let key = batchdb::Hash::of(b"sleep 5; date");
/// assert_eq!(key.to_string(), "ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0");
/// assert_eq!(key.to_string().parse::<batchdb::Hash>().unwrap(), key);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash([u8; 32]);

impl Hash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Hash> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::corrupt(format!("stored hash has {} bytes, not 32", bytes.len())))?;
        Ok(Hash(arr))
    }

    pub(crate) fn from_digest(d: Sha256) -> Hash {
        Hash(d.finalize().into())
    }

    /// The first 8 hex characters and an ellipsis, for messages.
    pub fn short(&self) -> String {
        format!("{}…", &hex::encode(&self.0[..4]))
    }
}

impl FromStr for Hash {
    type Err = Error;
    /// Parses 64 hex characters (either case). Anything else is [`Error::Invalid`].
    fn from_str(s: &str) -> Result<Hash> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            let shown: String = s.chars().take(70).collect();
            return Err(Error::invalid(format!("malformed hash {shown:?}: expected 64 hex characters")));
        }
        Ok(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}
