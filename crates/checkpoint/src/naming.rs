//! Checkpoint file names and the retention of periodic checkpoints.
//!
//! Periodic saves are `checkpoint_epoch_N_loss_X.XXXX.cllm`; the best so far
//! is [`BEST_NAME`] beside them; the final model goes to
//! [`DEFAULT_FINAL_PATH`] unless the user names another path. Retention only
//! ever removes files whose names parse as periodic checkpoints, so the best
//! checkpoint, the final model and anything else in the folder are safe.

use super::CheckpointError;
use std::fs;
use std::path::{Path, PathBuf};

/// The best-validation-loss checkpoint, kept beside the periodic ones.
pub const BEST_NAME: &str = "checkpoint_best.cllm";
/// Where the final model goes unless the user names another path.
pub const DEFAULT_FINAL_PATH: &str = "models/trained_model_kissing_spheres.cllm";

const PERIODIC_PREFIX: &str = "checkpoint_epoch_";
const LOSS_PART: &str = "_loss_";
const EXTENSION: &str = ".cllm";

/// `checkpoint_epoch_N_loss_X.XXXX.cllm` (the loss with 4 decimals).
pub fn periodic_name(epoch: u64, loss: f32) -> String {
    format!("{PERIODIC_PREFIX}{epoch}{LOSS_PART}{loss:.4}{EXTENSION}")
}

/// [`periodic_name`] inside `dir`.
pub fn periodic_path(dir: &Path, epoch: u64, loss: f32) -> PathBuf {
    dir.join(periodic_name(epoch, loss))
}

/// [`BEST_NAME`] inside `dir`.
pub fn best_path(dir: &Path) -> PathBuf {
    dir.join(BEST_NAME)
}

/// The epoch of a periodic checkpoint's file name, or `None` for any other
/// name (including the temporary `.cllm.tmp` files of a save in progress).
pub fn is_periodic_name(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PERIODIC_PREFIX)?;
    let rest = rest.strip_suffix(EXTENSION)?;
    let (epoch, loss) = rest.split_once(LOSS_PART)?;
    if loss.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    epoch.parse().ok()
}

/// Removes all but the `keep` periodic checkpoints of highest epoch in
/// `dir` (ties broken by name) and returns the removed paths, oldest last.
/// A missing folder holds nothing to prune.
pub fn prune_periodic(dir: &Path, keep: usize) -> Result<Vec<PathBuf>, CheckpointError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CheckpointError::io(dir, "list the checkpoint folder", e)),
    };
    let mut periodic: Vec<(u64, String)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CheckpointError::io(dir, "list the checkpoint folder", e))?;
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (true, Some(epoch)) = (is_file, is_periodic_name(&name)) {
            periodic.push((epoch, name));
        }
    }
    // Newest first.
    periodic.sort_by(|a, b| b.cmp(a));
    let mut removed = Vec::new();
    for (_, name) in periodic.into_iter().skip(keep) {
        let path = dir.join(name);
        fs::remove_file(&path).map_err(|e| CheckpointError::io(&path, "remove", e))?;
        removed.push(path);
    }
    Ok(removed)
}
