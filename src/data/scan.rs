//! Scanning folders for training files (types fixed; walking to come).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanOptions {
    /// Folders (walked, honouring .gitignore / .ignore) or single files.
    pub roots: Vec<PathBuf>,
    /// Extensions kept, without the dot; empty: the default set.
    pub extensions: Vec<String>,
    /// Files larger than this are skipped (None: no cap).
    pub max_file_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// NUL bytes or mostly invalid UTF-8.
    Binary,
    TooLarge {
        size: u64,
        limit: u64,
    },
    Unreadable(String),
    Empty,
    /// Same content as a file already kept.
    Duplicate {
        of: PathBuf,
    },
    NotRegularFile,
    /// Disappeared between listing and reading.
    Vanished,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    Kept,
    Skipped(SkipReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFile {
    pub path: PathBuf,
    /// Path relative to the root it was found under (used in file markers).
    pub relative: PathBuf,
    pub size: u64,
    /// Human-readable kind, e.g. "C source", "Markdown", "text".
    pub kind: String,
    pub lines: usize,
    pub status: FileStatus,
}

/// Walks `opts.roots`, calling `on_file` for every file met, kept or
/// skipped, as soon as it is classified. Returns early when `cancel` is set.
pub fn scan(
    _opts: &ScanOptions,
    _cancel: &AtomicBool,
    _on_file: &mut dyn FnMut(ScannedFile),
) -> Result<(), String> {
    unimplemented!("scan")
}
