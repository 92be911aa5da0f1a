//! Reading a checkpoint: every check before anything is trusted.
//!
//! Order (each step only relies on the ones before it):
//! 1. a regular, non-empty file at least as long as the length field;
//! 2. the header length: within the file and under [`MAX_HEADER_BYTES`];
//! 3. the header: UTF-8 JSON with a `__metadata__` map;
//! 4. format name, then version (a refusal names the version found);
//! 5. the model config (`validate()` refuses absurd sizes);
//! 6. the tensor table: count, names, dtype, shapes and offsets exactly as
//!    the config's layout puts them (and the optional memory after them),
//!    and the data size against the file size;
//! 7. the remaining metadata (configs, state, tokenizer);
//! 8. the SHA-256 over the whole file.
//!
//! Only after step 6 is anything sized from the file allocated, and then only
//! what the file really holds. [`load`] returns nothing unless all passed.

use super::format::{
    self, LEN_BYTES, MAX_HEADER_BYTES, MemoryMeta, OptimizerMeta, TensorEntry, keys,
};
use super::special_tokens::SpecialTokens;
use super::{Checkpoint, CheckpointError, CheckpointInfo, OptimizerState, TrainerRecords};
use cllm_core::{ModelConfig, ParamLayout};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

/// Bytes hashed per read while streaming the data section.
const READ_CHUNK: usize = 1 << 20;

/// Checks a checkpoint completely (including the checksum) without keeping
/// its tensors, and describes it.
pub fn verify<T: TrainerRecords>(path: &Path) -> Result<CheckpointInfo<T>, CheckpointError> {
    let (mut file, len) = open(path)?;
    let (header, mut hasher) = read_header::<T>(path, &mut file, len)?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut left = header.data_bytes;
    while left > 0 {
        let n = left.min(READ_CHUNK as u64) as usize;
        file.read_exact(&mut buf[..n])
            .map_err(|e| CheckpointError::io(path, "read", e))?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    finish_checksum(path, &header, hasher)?;
    Ok(header.info(path, len))
}

/// Reads a checkpoint after all the checks of [`verify`]; nothing is
/// returned unless every one of them passed.
pub fn load<T: TrainerRecords>(path: &Path) -> Result<Checkpoint<T>, CheckpointError> {
    let (mut file, len) = open(path)?;
    load_from(path, &mut file, len)
}

/// [`verify`] over bytes already in memory; `path` only names them in errors.
pub fn verify_bytes<T: TrainerRecords>(
    path: &Path,
    bytes: &[u8],
) -> Result<CheckpointInfo<T>, CheckpointError> {
    let len = bytes.len() as u64;
    check_len(path, len)?;
    let mut cursor = Cursor::new(bytes);
    let (header, mut hasher) = read_header::<T>(path, &mut cursor, len)?;
    hasher.update(&bytes[(len - header.data_bytes) as usize..]);
    finish_checksum(path, &header, hasher)?;
    Ok(header.info(path, len))
}

/// [`load`] over bytes already in memory; `path` only names them in errors.
pub fn load_bytes<T: TrainerRecords>(
    path: &Path,
    bytes: &[u8],
) -> Result<Checkpoint<T>, CheckpointError> {
    let len = bytes.len() as u64;
    check_len(path, len)?;
    load_from(path, &mut Cursor::new(bytes), len)
}

fn load_from<T: TrainerRecords>(
    path: &Path,
    src: &mut impl Read,
    len: u64,
) -> Result<Checkpoint<T>, CheckpointError> {
    let (header, mut hasher) = read_header::<T>(path, src, len)?;
    let total = header.num_params;
    // Sized by the validated config, which step 6 matched to the file size.
    let mut read_run = |hasher: &mut Sha256| -> Result<Vec<f32>, CheckpointError> {
        let mut values = Vec::with_capacity(total);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut left = total * 4;
        while left > 0 {
            let n = left.min(READ_CHUNK);
            src.read_exact(&mut buf[..n])
                .map_err(|e| CheckpointError::io(path, "read", e))?;
            hasher.update(&buf[..n]);
            values.extend(
                buf[..n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            left -= n;
        }
        Ok(values)
    };
    let params = read_run(&mut hasher)?;
    let moments = match &header.optimizer {
        Some(_) => Some((read_run(&mut hasher)?, read_run(&mut hasher)?)),
        None => None,
    };
    let memory = match &header.memory {
        Some(meta) => {
            // Sized by the metadata, which step 6 matched to the file size.
            let mut bytes = vec![0u8; meta.bytes as usize];
            src.read_exact(&mut bytes)
                .map_err(|e| CheckpointError::io(path, "read", e))?;
            hasher.update(&bytes);
            Some(bytes)
        }
        None => None,
    };
    finish_checksum(path, &header, hasher)?;
    let optimizer = header
        .optimizer
        .zip(moments)
        .map(|(meta, (m, v))| OptimizerState {
            config: meta.config,
            step: meta.step,
            m,
            v,
        });
    Ok(Checkpoint {
        model: header.model,
        params,
        optimizer,
        tokenizer_json: header.tokenizer_json,
        train_config: header.train_config,
        state: header.state,
        created_unix: header.created_unix,
        program_version: header.program_version,
        memory,
    })
}

/// Everything the header says, checked against itself and the file size.
struct Header<T: TrainerRecords> {
    model: ModelConfig,
    num_params: usize,
    optimizer: Option<OptimizerMeta<T::Optimizer>>,
    train_config: T::Config,
    state: T::State,
    tokenizer_json: String,
    created_unix: u64,
    program_version: String,
    version: u32,
    stored_checksum: String,
    data_bytes: u64,
    memory: Option<MemoryMeta>,
}

impl<T: TrainerRecords> Header<T> {
    fn info(self, path: &Path, len: u64) -> CheckpointInfo<T> {
        CheckpointInfo {
            path: path.to_path_buf(),
            file_bytes: len,
            format_version: self.version,
            num_params: self.num_params,
            has_optimizer: self.optimizer.is_some(),
            optimizer_config: self.optimizer.as_ref().map(|o| o.config.clone()),
            optimizer_step: self.optimizer.as_ref().map(|o| o.step),
            model: self.model,
            train_config: self.train_config,
            state: self.state,
            tokenizer_bytes: self.tokenizer_json.len(),
            fim_tokens: SpecialTokens::of(&self.tokenizer_json)
                .ok()
                .and_then(|s| s.fim),
            created_unix: self.created_unix,
            program_version: self.program_version,
            checksum_sha256: self.stored_checksum,
            memory: self.memory,
        }
    }
}

/// Opens `path` and checks step 1.
fn open(path: &Path) -> Result<(File, u64), CheckpointError> {
    let file = File::open(path).map_err(|e| CheckpointError::io(path, "open", e))?;
    let meta = file
        .metadata()
        .map_err(|e| CheckpointError::io(path, "read the size of", e))?;
    if meta.is_dir() {
        return Err(CheckpointError::invalid(
            path,
            "it is a directory, not a checkpoint file",
        ));
    }
    if !meta.is_file() {
        return Err(CheckpointError::invalid(path, "it is not a regular file"));
    }
    check_len(path, meta.len())?;
    Ok((file, meta.len()))
}

fn check_len(path: &Path, len: u64) -> Result<(), CheckpointError> {
    if len == 0 {
        return Err(CheckpointError::invalid(path, "the file is empty"));
    }
    if len < LEN_BYTES {
        return Err(CheckpointError::invalid(
            path,
            format!("the file is only {len} bytes, too short to hold a header length"),
        ));
    }
    Ok(())
}

/// Steps 2 to 7. Returns the checked header and a hasher that has consumed
/// the length field and the header (checksum digits zeroed); the source is
/// left at the start of the data section.
fn read_header<T: TrainerRecords>(
    path: &Path,
    src: &mut impl Read,
    len: u64,
) -> Result<(Header<T>, Sha256), CheckpointError> {
    let bad = |reason: String| CheckpointError::invalid(path, reason);

    // 2. The header length.
    let mut len_field = [0u8; LEN_BYTES as usize];
    src.read_exact(&mut len_field)
        .map_err(|e| CheckpointError::io(path, "read", e))?;
    let header_len = u64::from_le_bytes(len_field);
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "the header claims {header_len} bytes, more than the {MAX_HEADER_BYTES} byte limit"
        )));
    }
    if header_len > len - LEN_BYTES {
        return Err(bad(format!(
            "the header claims {header_len} bytes but only {} follow the length field (truncated?)",
            len - LEN_BYTES
        )));
    }

    // 3. The header JSON (bounded by both checks above).
    let mut header = vec![0u8; header_len as usize];
    src.read_exact(&mut header)
        .map_err(|e| CheckpointError::io(path, "read", e))?;
    let root: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the header is not valid JSON: {e}")))?;
    let mut root = root;
    let meta: BTreeMap<String, String> = match root.remove("__metadata__") {
        Some(v) => serde_json::from_value(v).map_err(|e| {
            bad(format!(
                "the header's __metadata__ is not a map of strings: {e}"
            ))
        })?,
        None => {
            return Err(bad(
                "the header has no __metadata__ (a safetensors file not written by cllm?)".into(),
            ));
        }
    };
    let get = |key: &str| {
        meta.get(key)
            .ok_or_else(|| bad(format!("the metadata has no '{key}'")))
    };

    // 4. Format name, then version.
    let format_name = get(keys::FORMAT)?;
    if format_name != format::FORMAT_NAME {
        return Err(bad(format!(
            "its format is '{format_name}', expected '{}'",
            format::FORMAT_NAME
        )));
    }
    let version_text = get(keys::VERSION)?;
    let version = match version_text.parse::<u32>() {
        Ok(v) if v == format::FORMAT_VERSION => v,
        _ => {
            return Err(CheckpointError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version_text.clone(),
                supported: format::FORMAT_VERSION,
            });
        }
    };

    // 5. The model config.
    let model: ModelConfig = serde_json::from_str(get(keys::MODEL)?)
        .map_err(|e| bad(format!("the model config cannot be read: {e}")))?;
    model.validate().map_err(|e| bad(e.to_string()))?;

    // 6. The tensor table against the layout, and the data size.
    let optimizer: Option<OptimizerMeta<T::Optimizer>> = match meta.get(keys::OPTIMIZER) {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| bad(format!("the optimizer state cannot be read: {e}")))?,
        ),
        None => None,
    };
    let with_opt = optimizer.is_some();
    let memory: Option<MemoryMeta> = match meta.get(keys::MEMORY) {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| bad(format!("the memory's description cannot be read: {e}")))?,
        ),
        None => None,
    };
    let expected_count = format::tensor_count(&model, with_opt)
        .and_then(|n| n.checked_add(u64::from(memory.is_some())))
        .ok_or_else(|| bad("the model config's tensor count overflows".into()))?;
    if root.len() as u64 != expected_count {
        return Err(bad(format!(
            "it holds {} tensors, the model config ({} layers{}) needs {expected_count}",
            root.len(),
            model.n_layer,
            match (with_opt, memory.is_some()) {
                (false, false) => "",
                (true, false) => ", with AdamW moments",
                (false, true) => ", with a memory",
                (true, true) => ", with AdamW moments and a memory",
            }
        )));
    }
    let num_params = model.num_params();
    let float_bytes = format::data_bytes(num_params, with_opt)
        .ok_or_else(|| bad("the data size overflows".into()))?;
    let data_bytes = float_bytes
        .checked_add(memory.as_ref().map_or(0, |m| m.bytes))
        .ok_or_else(|| bad("the data size overflows".into()))?;
    let actual_data = len - LEN_BYTES - header_len;
    if actual_data != data_bytes {
        return Err(bad(format!(
            "its tensor data is {actual_data} bytes, the model config needs {data_bytes} (truncated or padded file?)"
        )));
    }
    // The count matched, so this layout is no bigger than the header.
    let layout = ParamLayout::new(&model);
    let mut plan = format::tensor_plan(&layout, with_opt);
    if let Some(m) = &memory {
        plan.push(format::memory_slot(float_bytes, m.bytes));
    }
    for slot in plan {
        let entry = root
            .remove(&slot.name)
            .ok_or_else(|| bad(format!("tensor '{}' is missing", slot.name)))?;
        let entry: TensorEntry = serde_json::from_value(entry)
            .map_err(|e| bad(format!("tensor '{}' has a bad entry: {e}", slot.name)))?;
        if entry.dtype != slot.dtype {
            return Err(bad(format!(
                "tensor '{}' has dtype {}, expected {}",
                slot.name, entry.dtype, slot.dtype
            )));
        }
        let shape_ok = entry.shape.len() == slot.shape.len()
            && entry
                .shape
                .iter()
                .zip(&slot.shape)
                .all(|(&a, &b)| a == b as u64);
        if !shape_ok {
            return Err(bad(format!(
                "tensor '{}' has shape {:?}, the model config needs {:?}",
                slot.name, entry.shape, slot.shape
            )));
        }
        if entry.data_offsets != [slot.begin, slot.end] {
            return Err(bad(format!(
                "tensor '{}' lies at bytes {:?} of the data, expected [{}, {}]",
                slot.name, entry.data_offsets, slot.begin, slot.end
            )));
        }
    }

    // 7. The rest of the metadata.
    let train_config: T::Config = serde_json::from_str(get(keys::TRAIN)?)
        .map_err(|e| bad(format!("the training config cannot be read: {e}")))?;
    let state: T::State = serde_json::from_str(get(keys::STATE)?)
        .map_err(|e| bad(format!("the training state cannot be read: {e}")))?;
    let tokenizer_json = get(keys::TOKENIZER)?.clone();
    let created_unix = get(keys::CREATED)?
        .parse::<u64>()
        .map_err(|_| bad("its creation time is not a number".into()))?;
    let program_version = get(keys::PROGRAM)?.clone();
    let stored_checksum = get(keys::CHECKSUM)?.clone();
    if !format::is_checksum_hex(&stored_checksum) {
        return Err(bad("its checksum is not 64 hex digits".into()));
    }

    // Start the checksum: the digits themselves count as zeros.
    let at =
        format::find_checksum_value(&header, &stored_checksum).map_err(|e| bad(e.to_string()))?;
    header[at..at + format::CHECKSUM_HEX_LEN].fill(b'0');
    let mut hasher = Sha256::new();
    hasher.update(len_field);
    hasher.update(&header);

    Ok((
        Header {
            model,
            num_params,
            optimizer,
            train_config,
            state,
            tokenizer_json,
            created_unix,
            program_version,
            version,
            stored_checksum,
            data_bytes,
            memory,
        },
        hasher,
    ))
}

/// Step 8.
fn finish_checksum<T: TrainerRecords>(
    path: &Path,
    header: &Header<T>,
    hasher: Sha256,
) -> Result<(), CheckpointError> {
    let computed = format::to_hex(&hasher.finalize());
    if computed != header.stored_checksum {
        return Err(CheckpointError::ChecksumMismatch {
            path: path.to_path_buf(),
            stored: header.stored_checksum.clone(),
            computed,
        });
    }
    Ok(())
}
