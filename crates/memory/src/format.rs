//! The stored form of a [`Memory`]: the training tokens and the mix's
//! weights.
//!
//! ```text
//! [8 bytes]  magic "CLLM-MEM"
//! [4 bytes]  format version, little-endian u32 (this program: 1)
//! [4 bytes]  header length H, little-endian u32
//! [H bytes]  JSON header: { "vocab_size": V, "token_count": N,
//!            "token_bytes": 2 or 4, "buckets": B,
//!            "weights": [[w_t, w_n, w_c], ...B of them],
//!            "fit": { positions, bits_transformer, ... } or null }
//! [N × token_bytes]  the token ids, little-endian (2 bytes each when the
//!            vocabulary has at most 65,536 tokens)
//! [32 bytes] SHA-256 of every byte before it
//! ```
//!
//! The suffix array is not stored but rebuilt on load: it would take 4
//! bytes per token (twice the tokens themselves for a vocabulary of up to
//! 65,536), while SA-IS rebuilds it in linear time, which loading a
//! checkpoint to evaluate or generate can afford.

use super::Memory;
use super::error::MemoryError;
use super::mixer::{FitStats, Mixer, NUM_BUCKETS};
use super::suffix::SuffixIndex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"CLLM-MEM";
pub const VERSION: u32 = 1;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: usize = 1_000_000;
/// Largest header accepted.
const MAX_HEADER: usize = 1 << 20;
const DIGEST_BYTES: usize = 32;
const PREAMBLE: usize = 16;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    vocab_size: usize,
    token_count: u64,
    token_bytes: u8,
    buckets: usize,
    weights: Vec<[f32; 3]>,
    fit: Option<FitStats>,
}

/// What the header of a stored memory says, read without checking the
/// checksum or rebuilding the index (for the checkpoint's metadata).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySummary {
    pub vocab_size: usize,
    pub token_count: u64,
}

/// Reads the header of a stored memory (magic, version, JSON header).
pub fn peek(bytes: &[u8]) -> Result<MemorySummary, MemoryError> {
    let header = read_header(bytes)?.0;
    Ok(MemorySummary {
        vocab_size: header.vocab_size,
        token_count: header.token_count,
    })
}

/// The preamble's checks and the JSON header, with the header's length.
fn read_header(bytes: &[u8]) -> Result<(Header, usize), MemoryError> {
    if bytes.len() < PREAMBLE + DIGEST_BYTES {
        return Err(MemoryError::Truncated(bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err(MemoryError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(MemoryError::Version {
            found: version,
            supported: VERSION,
        });
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    if header_len > MAX_HEADER || header_len > bytes.len() - PREAMBLE - DIGEST_BYTES {
        return Err(MemoryError::Header(format!(
            "a header of {header_len} bytes does not fit"
        )));
    }
    let header: Header = serde_json::from_slice(&bytes[PREAMBLE..PREAMBLE + header_len])
        .map_err(|e| MemoryError::Header(e.to_string()))?;
    Ok((header, header_len))
}

/// Bytes per stored token for a vocabulary.
fn token_bytes(vocab_size: usize) -> u8 {
    if vocab_size <= 1 << 16 { 2 } else { 4 }
}

impl Memory {
    /// The stored form (see the module's documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let width = token_bytes(self.vocab_size);
        let header = Header {
            vocab_size: self.vocab_size,
            token_count: self.tokens().len() as u64,
            token_bytes: width,
            buckets: NUM_BUCKETS,
            weights: self.mixer.weights().to_vec(),
            fit: self.fit,
        };
        let json = serde_json::to_vec(&header).expect("the header serialises");
        let mut out =
            Vec::with_capacity(PREAMBLE + json.len() + self.tokens().len() * width as usize + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        for &t in self.tokens() {
            if width == 2 {
                out.extend_from_slice(&(t as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Reads the stored form back, checking everything; rebuilds the
    /// suffix array.
    pub fn from_bytes(bytes: &[u8]) -> Result<Memory, MemoryError> {
        // The checksum first: nothing damaged is parsed.
        if bytes.len() < PREAMBLE + DIGEST_BYTES {
            return Err(MemoryError::Truncated(bytes.len()));
        }
        if &bytes[..8] != MAGIC {
            return Err(MemoryError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(MemoryError::Version {
                found: version,
                supported: VERSION,
            });
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST_BYTES);
        if Sha256::digest(body).as_slice() != digest {
            return Err(MemoryError::Checksum);
        }
        let (header, header_len) = read_header(bytes)?;
        let bad = |what: String| Err(MemoryError::Header(what));
        if header.vocab_size == 0 || header.vocab_size > MAX_VOCAB {
            return bad(format!(
                "vocabulary size {} is not between 1 and {MAX_VOCAB}",
                header.vocab_size
            ));
        }
        if header.token_bytes != token_bytes(header.vocab_size) {
            return bad(format!(
                "{} bytes per token for a vocabulary of {}",
                header.token_bytes, header.vocab_size
            ));
        }
        if header.buckets != NUM_BUCKETS {
            return bad(format!(
                "{} weight buckets, this program has {NUM_BUCKETS}",
                header.buckets
            ));
        }
        let data = &body[PREAMBLE + header_len..];
        let width = header.token_bytes as usize;
        if header.token_count >= u32::MAX as u64 - 1
            || data.len() as u64 != header.token_count * width as u64
        {
            return bad(format!(
                "{} tokens of {width} bytes, but {} bytes follow the header",
                header.token_count,
                data.len()
            ));
        }
        let tokens: Vec<u32> = if width == 2 {
            data.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
                .collect()
        } else {
            data.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= header.vocab_size) {
            return bad(format!(
                "token {t} is outside the vocabulary of {}",
                header.vocab_size
            ));
        }
        let Some(mixer) = Mixer::from_weights(header.weights) else {
            return bad(
                "the mix's weights are not each at least the floor and summing to 1".into(),
            );
        };
        let index = SuffixIndex::build(tokens, header.vocab_size);
        Ok(Memory::with_mixer(
            index,
            header.vocab_size,
            mixer,
            header.fit,
        ))
    }
}
