//! Turns a person's files into chunks of text that know where they came from.
//!
//! The stages are discovery ([`discover`]), format detection ([`kind`]),
//! per-format extraction ([`extract`]) and token-sized chunking ([`chunk`]).
//! Nothing here loads a model or opens a database, so this crate builds and
//! tests in seconds and the binary can decide, per file, whether the heavy
//! stages are needed at all.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod chunk;
pub mod discover;
pub mod extract;
pub mod kind;

pub use chunk::{Chunk, Chunker};
pub use discover::{Candidate, PathKey, WalkEvent, WalkOptions};
pub use extract::{Document, ExtractError, Mail, Section};
pub use kind::Kind;

/// Content hash of a file's bytes (BLAKE3, hex): cheap enough to compute on
/// every changed file and strong enough to tell a touched file from an edited one.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// [`content_hash`] of everything `reader` yields, read a block at a time,
/// and how many bytes that was.
pub fn content_hash_reader(mut reader: impl std::io::Read) -> std::io::Result<(String, u64)> {
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut reader, &mut hasher)?;
    Ok((hasher.finalize().to_hex().to_string(), n))
}
