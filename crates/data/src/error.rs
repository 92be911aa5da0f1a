//! Why data could not be scanned, read, tokenized or batched. Each message
//! names the file or the setting at fault and, where there is one, what to
//! do about it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused (missing file, no permission, full
    /// disk, ...).
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A file meant as text holds NUL bytes or mostly invalid UTF-8.
    #[error(
        "{}: binary file (NUL bytes or invalid UTF-8): give a text file, or leave this one out",
        path.display()
    )]
    Binary { path: PathBuf },
    /// A root given to the scan does not exist or cannot be looked at.
    #[error("{}: cannot scan: {source} (check the folder or file name)", path.display())]
    Scan {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An `--exclude` pattern is not a glob.
    #[error("--exclude {pattern:?}: not a glob pattern: {problem}")]
    Exclude { pattern: String, problem: String },
    /// A file read as a token file (`cllm tokenize`'s `tokens.bin`) is not
    /// one, or is damaged; the problem says what to do.
    #[error("{}: {problem}", path.display())]
    TokenFile { path: PathBuf, problem: String },
    /// The BPE vocabulary size asked for is out of range.
    #[error(
        "vocabulary size {size} is too small: a byte-level BPE needs at least {min} (256 bytes, <|endoftext|> and a few merges)"
    )]
    VocabTooSmall { size: usize, min: usize },
    #[error("vocabulary size {size} is too large: at most {max}")]
    VocabTooLarge { size: usize, max: usize },
    /// The tokenizers library failed while training the BPE.
    #[error("BPE training failed {stage}: {reason}")]
    BpeTraining { stage: &'static str, reason: String },
    /// Training the BPE was cancelled.
    #[error("BPE training cancelled")]
    Cancelled,
    /// A `tokenizer.json` that cannot be used: not JSON of a tokenizer, or
    /// not a byte-level BPE.
    #[error("{problem} (use the tokenizer.json cllm saved with the model or data)")]
    Tokenizer { problem: String },
    /// Batching: the sequence length is 0.
    #[error("sequence length must be at least 1")]
    ZeroSequenceLength,
    /// Batching: fewer tokens than one window holds.
    #[error(
        "too little data: {tokens} tokens, but a sequence length of {seq_len} needs at least {} (add files or shorten the sequence length)",
        seq_len + 1
    )]
    TooLittleData { tokens: usize, seq_len: usize },
    /// Batching: more windows than the order can index.
    #[error("too many windows ({windows}) for one dataset: use a longer sequence length")]
    TooManyWindows { windows: usize },
}

impl DataError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }

    pub(crate) fn token_file(path: &Path, problem: impl Into<String>) -> Self {
        DataError::TokenFile {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    pub(crate) fn tokenizer(problem: impl Into<String>) -> Self {
        DataError::Tokenizer {
            problem: problem.into(),
        }
    }
}

/// For callers whose own errors are still messages: `?` keeps the text.
impl From<DataError> for String {
    fn from(e: DataError) -> String {
        e.to_string()
    }
}
