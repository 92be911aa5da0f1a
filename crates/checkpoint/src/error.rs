//! Why a checkpoint could not be written, read or exported. Every variant
//! about a file names it, so the message alone tells a user what to fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The operating system refused (missing file, full disk, read-only
    /// folder, a directory where a file should be, ...).
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// The file is not a well-formed `.cllm` checkpoint.
    #[error("{} is not a valid cllm checkpoint: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// A well-formed checkpoint of a version this program does not read.
    #[error(
        "{} is checkpoint format version {found}; this version of cllm reads version {supported} only",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    /// Every structure checks out but the bytes differ from what was written.
    #[error(
        "{} is damaged: its SHA-256 checksum does not match (stored {stored}, computed {computed})",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        stored: String,
        computed: String,
    },
    /// The caller handed `save` or an export buffers that do not fit together.
    #[error("cannot write {}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    /// The checkpoint is sound but the repository memory it carries is not.
    #[error(
        "{}: its memory: {source} (the model still works with the memory switched off)",
        path.display()
    )]
    Memory {
        path: PathBuf,
        source: cllm_memory::MemoryError,
    },
    /// The checkpoint's `tokenizer.json` cannot be exported (GGUF needs a
    /// byte-level BPE, as cllm writes).
    #[error("the checkpoint's tokenizer cannot be exported: {reason}")]
    Tokenizer { reason: String },
    /// An export element type this program does not write.
    #[error("unknown GGUF type '{0}' (supported: f32, f16)")]
    UnknownGgufType(String),
}

impl CheckpointError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        CheckpointError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn tokenizer(reason: impl Into<String>) -> Self {
        CheckpointError::Tokenizer {
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_input(path: &Path, reason: impl Into<String>) -> Self {
        CheckpointError::BadInput {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// For callers whose own errors are still messages: `?` keeps the text.
impl From<CheckpointError> for String {
    fn from(e: CheckpointError) -> String {
        e.to_string()
    }
}
