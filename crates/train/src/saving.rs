//! Writing a run's checkpoints: the saver that remembers the last good one,
//! and the final model's copy to the output path that never loses the file
//! it replaces.

use super::TrainConfig;
use super::error::TrainError;
use super::events::{Event, SaveReason};
use super::optimizer::AdamW;
use crate::checkpoint::{self, CheckpointRef, OptimizerRef, TrainingState};
use cllm_core::Gpt;
use cllm_memory::Memory;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The checkpoint of the run's folder that the final model is copied from.
pub const RUN_FINAL_NAME: &str = "final.cllm";

/// Before the final model replaces `output` (called before this run's own
/// final checkpoint is written): the file there is left to be replaced when
/// it belongs to this same run (which is continuing) or when its run's
/// folder holds the same file (same checksum); otherwise (a file from before
/// run folders, from elsewhere, or damaged) it is renamed beside itself
/// rather than lost. Returns the new name when it was kept.
pub fn keep_previous_output(
    output: &Path,
    checkpoint_dir: &Path,
    this_run: &str,
) -> Result<Option<PathBuf>, TrainError> {
    if std::fs::symlink_metadata(output).is_err() {
        return Ok(None);
    }
    if let Ok(info) = checkpoint::verify(output) {
        let run = &info.train_config.outputs.run_name;
        if !run.is_empty() {
            if run == this_run {
                return Ok(None);
            }
            let copy = checkpoint_dir.join(run).join(RUN_FINAL_NAME);
            let same =
                checkpoint::verify(&copy).is_ok_and(|c| c.checksum_sha256 == info.checksum_sha256);
            if same {
                return Ok(None);
            }
        }
    }
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut kept = output.with_file_name(format!("{stem}.before-{this_run}.cllm"));
    let mut n = 2;
    while kept.exists() {
        kept = output.with_file_name(format!("{stem}.before-{this_run}-{n}.cllm"));
        n += 1;
    }
    if let Err(source) = std::fs::rename(output, &kept) {
        return Err(TrainError::KeepPrevious {
            output: output.to_path_buf(),
            kept,
            source,
        });
    }
    Ok(Some(kept))
}

/// Copies `from` to `to` through a synced temporary file and a rename, so
/// `to` is never half-written.
pub fn copy_atomically(from: &Path, to: &Path) -> Result<(), TrainError> {
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io("create", dir, e))?;
    }
    let tmp = to.with_extension("cllm.tmp");
    let result = (|| {
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, to)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::CopyFinal {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            source,
        }
    })
}

/// Writes checkpoints and remembers the last good one.
pub struct Saver {
    pub config: TrainConfig,
    pub tokenizer_json: String,
    /// When the run began (saved states add the time spent so far).
    pub started: Instant,
    pub last_saved: Option<PathBuf>,
}

impl Saver {
    #[allow(clippy::too_many_arguments)]
    pub fn save(
        &mut self,
        path: &Path,
        reason: SaveReason,
        model: &Gpt,
        opt: &AdamW,
        state: &TrainingState,
        memory: Option<&Memory>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        let mut state = state.clone();
        // The run's repository memory, with the mix as last fitted.
        let memory = memory.map(Memory::to_bytes);
        state.elapsed_secs += self.started.elapsed().as_secs_f64();
        let ck = CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: Some(OptimizerRef::from(opt)),
            tokenizer_json: &self.tokenizer_json,
            train_config: &self.config,
            state: &state,
            memory: memory.as_deref(),
        };
        match checkpoint::save(path, &ck) {
            Ok(_) => {
                self.last_saved = Some(path.to_path_buf());
                emit(Event::Checkpoint {
                    path: path.to_path_buf(),
                    reason,
                });
                Ok(())
            }
            // A failed periodic or best save must not end hours of training:
            // warn and go on; the previous file is intact.
            Err(e) if reason != SaveReason::Final => {
                emit(Event::Warning(format!("checkpoint not written: {e}")));
                Ok(())
            }
            Err(e) => Err(TrainError::FinalNotWritten(e)),
        }
    }
}
