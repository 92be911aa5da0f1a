//! Writing a checkpoint atomically.
//!
//! The bytes go to `<name>.tmp` in the target's own folder (a rename is only
//! atomic within one file system), are flushed and fsynced, and the temporary
//! file is then renamed over the target and the folder fsynced. A crash or a
//! kill at any moment leaves the old complete file or the new complete file
//! under the real name; a failure (full disk, read-only folder) removes the
//! temporary file and leaves the previous checkpoint untouched.

use super::format::{self, OptimizerMeta, keys};
use super::{CheckpointError, CheckpointRef, TrainerRecords};
use cllm_core::ParamLayout;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Floats converted to bytes per write: big enough to stream at disk speed,
/// small enough that saving never copies the parameter buffer.
const CHUNK_FLOATS: usize = 16 * 1024;

/// Writes `ckpt` to `path` atomically (creating missing parent folders) and
/// returns the file size in bytes. The buffers are borrowed, not copied.
pub fn save<T: TrainerRecords>(
    path: &Path,
    ckpt: &CheckpointRef<'_, T>,
) -> Result<u64, CheckpointError> {
    let (header, checksum_at) = header_for(path, ckpt)?;
    let mut runs: Vec<&[f32]> = vec![ckpt.params];
    if let Some(opt) = &ckpt.optimizer {
        runs.push(opt.m);
        runs.push(opt.v);
    }

    let file_name = path
        .file_name()
        .ok_or_else(|| CheckpointError::bad_input(path, "the path names no file"))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&folder)
        .map_err(|e| CheckpointError::io(&folder, "create the checkpoint folder", e))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = folder.join(tmp_name);

    let written = match write_synced(&tmp, &header, checksum_at, &runs, ckpt.memory) {
        Ok(n) => n,
        Err(e) => {
            // Best effort: the error being reported matters more.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(CheckpointError::io(
            path,
            "replace the checkpoint with the new file",
            e,
        ));
    }
    // Makes the rename itself durable.
    File::open(&folder)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| CheckpointError::io(&folder, "sync the checkpoint folder", e))?;
    Ok(written)
}

/// Checks the borrowed buffers fit the config and builds the header.
fn header_for<T: TrainerRecords>(
    path: &Path,
    ckpt: &CheckpointRef<'_, T>,
) -> Result<(Vec<u8>, usize), CheckpointError> {
    ckpt.model
        .validate()
        .map_err(|e| CheckpointError::bad_input(path, e.to_string()))?;
    let layout = ParamLayout::new(ckpt.model);
    if ckpt.params.len() != layout.total {
        return Err(CheckpointError::bad_input(
            path,
            format!(
                "{} parameters given, the model config needs {}",
                ckpt.params.len(),
                layout.total
            ),
        ));
    }
    if let Some(opt) = &ckpt.optimizer
        && (opt.m.len() != layout.total || opt.v.len() != layout.total)
    {
        return Err(CheckpointError::bad_input(
            path,
            format!(
                "AdamW moments have {} and {} values, the model has {} parameters",
                opt.m.len(),
                opt.v.len(),
                layout.total
            ),
        ));
    }

    let json = |what: &str, r: serde_json::Result<String>| {
        r.map_err(|e| CheckpointError::bad_input(path, format!("cannot encode {what}: {e}")))
    };
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut meta: BTreeMap<&str, String> = BTreeMap::new();
    meta.insert(keys::FORMAT, format::FORMAT_NAME.to_string());
    meta.insert(keys::VERSION, format::FORMAT_VERSION.to_string());
    meta.insert(
        keys::MODEL,
        json("the model config", serde_json::to_string(ckpt.model))?,
    );
    meta.insert(
        keys::TRAIN,
        json(
            "the training config",
            serde_json::to_string(ckpt.train_config),
        )?,
    );
    meta.insert(
        keys::STATE,
        json("the training state", serde_json::to_string(ckpt.state))?,
    );
    if let Some(opt) = &ckpt.optimizer {
        let scalars = OptimizerMeta {
            config: opt.config.clone(),
            step: opt.step,
        };
        meta.insert(
            keys::OPTIMIZER,
            json("the optimizer state", serde_json::to_string(&scalars))?,
        );
    }
    meta.insert(keys::TOKENIZER, ckpt.tokenizer_json.to_string());
    meta.insert(keys::CREATED, created.to_string());
    meta.insert(keys::PROGRAM, env!("CARGO_PKG_VERSION").to_string());

    let mut slots = format::tensor_plan(&layout, ckpt.optimizer.is_some());
    if let Some(bytes) = ckpt.memory {
        let summary = cllm_memory::format::peek(bytes).map_err(|e| {
            CheckpointError::bad_input(path, format!("the memory cannot be stored: {e}"))
        })?;
        if summary.vocab_size != ckpt.model.vocab_size {
            return Err(CheckpointError::bad_input(
                path,
                format!(
                    "the memory's vocabulary has {} tokens, the model's {}",
                    summary.vocab_size, ckpt.model.vocab_size
                ),
            ));
        }
        let memory = format::MemoryMeta {
            bytes: bytes.len() as u64,
            tokens: summary.token_count,
            vocab_size: summary.vocab_size,
        };
        meta.insert(
            keys::MEMORY,
            json("the memory's description", serde_json::to_string(&memory))?,
        );
        let floats = format::data_bytes(layout.total, ckpt.optimizer.is_some())
            .ok_or_else(|| CheckpointError::bad_input(path, "the data size overflows"))?;
        slots.push(format::memory_slot(floats, memory.bytes));
    }
    format::build_header(&meta, &slots).map_err(|e| CheckpointError::bad_input(path, e.to_string()))
}

/// Writes the whole file to `tmp`, fills in the checksum, and fsyncs.
/// Returns the bytes written.
fn write_synced(
    tmp: &Path,
    header: &[u8],
    checksum_at: usize,
    runs: &[&[f32]],
    memory: Option<&[u8]>,
) -> Result<u64, CheckpointError> {
    let io = |action: &'static str| move |e| CheckpointError::io(tmp, action, e);
    let file = File::create(tmp).map_err(io("create a temporary file in the checkpoint folder"))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut put = |out: &mut BufWriter<File>, bytes: &[u8]| -> std::io::Result<()> {
        hasher.update(bytes);
        out.write_all(bytes)
    };
    let write_err = io("write the temporary file");
    put(&mut out, &(header.len() as u64).to_le_bytes()).map_err(write_err)?;
    put(&mut out, header).map_err(io("write the temporary file"))?;
    let mut bytes = Vec::with_capacity(CHUNK_FLOATS * 4);
    let mut total = format::LEN_BYTES + header.len() as u64;
    for run in runs {
        for chunk in run.chunks(CHUNK_FLOATS) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            put(&mut out, &bytes).map_err(io("write the temporary file"))?;
            total += bytes.len() as u64;
        }
    }
    if let Some(memory) = memory {
        put(&mut out, memory).map_err(io("write the temporary file"))?;
        total += memory.len() as u64;
    }
    let digest = format::to_hex(&hasher.finalize());
    let mut file = out
        .into_inner()
        .map_err(|e| CheckpointError::io(tmp, "write the temporary file", e.into_error()))?;
    file.seek(SeekFrom::Start(format::LEN_BYTES + checksum_at as u64))
        .and_then(|_| file.write_all(digest.as_bytes()))
        .map_err(io("write the checksum"))?;
    file.sync_all()
        .map_err(io("sync the temporary file to disk"))?;
    Ok(total)
}
