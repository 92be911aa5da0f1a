//! The on-disk layout of a `.cllm` file: a safetensors file.
//!
//! ```text
//! [8 bytes]  header length N, little-endian u64
//! [N bytes]  JSON header, padded with spaces to a multiple of 8:
//!            "__metadata__": { format, format_version, checksum_sha256,
//!                              model_config, train_config, training_state,
//!                              optimizer (absent when weights only),
//!                              tokenizer_json, created_unix, program_version }
//!            "<gpt-2 name>":          { "dtype": "F32", "shape": [...], "data_offsets": [b, e] }
//!            "optimizer.m.<name>" and "optimizer.v.<name>" likewise
//!            "memory": { "dtype": "U8", "shape": [bytes], ... } (optional)
//! [data]     f32 little-endian: all weights in ParamLayout order, then all
//!            first moments, then all second moments (each one contiguous run),
//!            then the memory's bytes when there is one
//! ```
//!
//! The memory (see [`cllm_memory::format`]) is optional: a file without it
//! has no `memory` tensor and no `memory` metadata key and reads exactly as
//! before it existed. Its metadata value says its size, token count and
//! vocabulary, so `cllm inspect` describes it without rebuilding the index.
//!
//! The checksum is SHA-256 over the whole file as written, with the 64 hex
//! digits of the checksum itself replaced by `0`s. It therefore covers every
//! byte: the length, every metadata string, the tensor table, the padding
//! and the data.

use cllm_core::{ModelConfig, ParamLayout};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of the `format` metadata key.
pub const FORMAT_NAME: &str = "cllm-checkpoint";
/// The version this program writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the header length field.
pub const LEN_BYTES: u64 = 8;
/// Largest header accepted (the safetensors crate's own limit), so a damaged
/// length can never make us allocate more than this.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Prefixes of the AdamW moment tensors.
pub const M_PREFIX: &str = "optimizer.m.";
pub const V_PREFIX: &str = "optimizer.v.";
/// Length of a hex SHA-256.
pub const CHECKSUM_HEX_LEN: usize = 64;

/// Keys of the header's `__metadata__` map (every value is a string).
pub mod keys {
    pub const FORMAT: &str = "format";
    pub const VERSION: &str = "format_version";
    pub const CHECKSUM: &str = "checksum_sha256";
    pub const MODEL: &str = "model_config";
    pub const TRAIN: &str = "train_config";
    pub const STATE: &str = "training_state";
    pub const OPTIMIZER: &str = "optimizer";
    pub const TOKENIZER: &str = "tokenizer_json";
    pub const CREATED: &str = "created_unix";
    pub const PROGRAM: &str = "program_version";
    pub const MEMORY: &str = "memory";
}

/// Name of the optional memory tensor (U8).
pub const MEMORY_TENSOR: &str = "memory";

/// The `memory` metadata value: what the memory tensor holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMeta {
    /// Bytes of the stored memory.
    pub bytes: u64,
    /// Training tokens it indexes.
    pub tokens: u64,
    pub vocab_size: usize,
}

/// The `optimizer` metadata value: AdamW's scalars (its moments are tensors).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerMeta<O> {
    pub config: O,
    pub step: u64,
}

/// Where one tensor lives in the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSlot {
    pub name: String,
    /// `F32` for the weights and moments, `U8` for the memory.
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    /// Byte offsets relative to the start of the data section.
    pub begin: u64,
    pub end: u64,
}

/// One entry of the tensor table as read from a file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data_offsets: [u64; 2],
}

/// How many tensors a file for `cfg` holds, computed without building the
/// layout, so an absurd layer count read from a file is refused before
/// anything is allocated for it.
pub fn tensor_count(cfg: &ModelConfig, with_optimizer: bool) -> Option<u64> {
    // wte, wpe, ln_f (2) and 12 tensors per layer.
    let weights = (cfg.n_layer as u64).checked_mul(12)?.checked_add(4)?;
    weights.checked_mul(if with_optimizer { 3 } else { 1 })
}

/// Bytes of the data section for `num_params` parameters.
pub fn data_bytes(num_params: usize, with_optimizer: bool) -> Option<u64> {
    let copies = if with_optimizer { 3u64 } else { 1 };
    (num_params as u64).checked_mul(4)?.checked_mul(copies)
}

/// Every tensor of the file in data order: weights, then first moments,
/// then second moments, each run in [`ParamLayout`] order.
pub fn tensor_plan(layout: &ParamLayout, with_optimizer: bool) -> Vec<TensorSlot> {
    let runs: &[&str] = if with_optimizer {
        &["", M_PREFIX, V_PREFIX]
    } else {
        &[""]
    };
    let mut slots = Vec::with_capacity(layout.specs.len() * runs.len());
    for (run, prefix) in runs.iter().enumerate() {
        let base = (run * layout.total) as u64 * 4;
        for spec in &layout.specs {
            slots.push(TensorSlot {
                name: format!("{prefix}{}", spec.name),
                dtype: "F32",
                shape: spec.shape.clone(),
                begin: base + spec.offset as u64 * 4,
                end: base + (spec.offset + spec.len()) as u64 * 4,
            });
        }
    }
    slots
}

/// The memory tensor's slot: `bytes` bytes after the `floats_bytes` of the
/// weights and moments.
pub fn memory_slot(floats_bytes: u64, bytes: u64) -> TensorSlot {
    TensorSlot {
        name: MEMORY_TENSOR.to_string(),
        dtype: "U8",
        shape: vec![bytes as usize],
        begin: floats_bytes,
        end: floats_bytes + bytes,
    }
}

/// Why a header could not be built, or its checksum value not found; the
/// reader and the writer add the file's name.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("cannot encode the metadata: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(
        "the header would be {bytes} bytes, over the {MAX_HEADER_BYTES} byte limit (is the tokenizer that large?)"
    )]
    TooLarge { bytes: usize },
    #[error("the checksum value is not where the header says")]
    ChecksumMissing,
    #[error("the checksum value appears twice in the header")]
    ChecksumTwice,
}

/// The header bytes (padded to a multiple of 8) with the checksum value set
/// to zeros, and the byte position of that value inside the header.
pub fn build_header(
    metadata: &BTreeMap<&str, String>,
    slots: &[TensorSlot],
) -> Result<(Vec<u8>, usize), HeaderError> {
    let mut meta = metadata.clone();
    meta.insert(keys::CHECKSUM, zero_checksum());
    let mut root = serde_json::Map::new();
    root.insert("__metadata__".into(), serde_json::to_value(&meta)?);
    for slot in slots {
        root.insert(
            slot.name.clone(),
            serde_json::json!({
                "dtype": slot.dtype,
                "shape": slot.shape,
                "data_offsets": [slot.begin, slot.end],
            }),
        );
    }
    let mut bytes = serde_json::to_vec(&root)?;
    // Safetensors readers expect the data to start 8-byte aligned.
    while bytes.len() % 8 != 0 {
        bytes.push(b' ');
    }
    if bytes.len() as u64 > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLarge { bytes: bytes.len() });
    }
    let at = find_checksum_value(&bytes, &zero_checksum())?;
    Ok((bytes, at))
}

/// The placeholder the checksum is computed with.
pub fn zero_checksum() -> String {
    "0".repeat(CHECKSUM_HEX_LEN)
}

/// Position of the checksum's hex digits in the header: the one JSON string
/// token equal to `hex`. Inside any JSON string value a quote is escaped, so
/// `"<hex>"` can only match a whole string token; it must occur once.
pub fn find_checksum_value(header: &[u8], hex: &str) -> Result<usize, HeaderError> {
    let mut needle = Vec::with_capacity(hex.len() + 2);
    needle.push(b'"');
    needle.extend_from_slice(hex.as_bytes());
    needle.push(b'"');
    let mut found = header
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(i, _)| i + 1);
    match (found.next(), found.next()) {
        (Some(at), None) => Ok(at),
        (None, _) => Err(HeaderError::ChecksumMissing),
        (Some(_), Some(_)) => Err(HeaderError::ChecksumTwice),
    }
}

/// Lower-case hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 64-digit lower-case hex string, as the writer produces.
pub fn is_checksum_hex(s: &str) -> bool {
    s.len() == CHECKSUM_HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
