//! What keeps a run from being read back or reported. Each message names
//! the file or folder. A damaged line inside a log is not an error: it is
//! skipped and counted ([`crate::RunData::damaged_lines`]).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error(
        "{}: no such file: not a run folder (training writes runs/<name>/metrics.jsonl)",
        path.display()
    )]
    NoLog { path: PathBuf },
    #[error("{}: cannot read the run's log: {source}", path.display())]
    ReadLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the log has no steps yet: nothing to report", dir.display())]
    NoSteps { dir: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    CreateFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the bundled font did not load")]
    Font,
    #[error("{}: plot: {message}", path.display())]
    Plot { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    WriteReport {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The checkpoint (or the memory it carries) did not load; the message
    /// names the file.
    #[error("{message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{}: its tokenizer: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    #[error("the run's validation split: {message}")]
    ValidationSplit { message: String },
    #[error("finding function openings: {message}")]
    Openings { message: String },
    #[error("the completions: {message}")]
    Completions { message: String },
}
