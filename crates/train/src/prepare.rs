//! Turning a training config into token datasets: gather the files (the
//! app's checked list, or a scan of the data folders), read and clean them,
//! split them into training and validation text, train (on the training
//! text only) or reuse a tokenizer, tokenize both sides, and fingerprint
//! the result.

use crate::config::{TokenizerKind, TrainConfig};
use crate::error::TrainError;
use crate::events::{Event, Phase};
use cllm_data::dataset::{Split, TokenDataset, split_texts};
use cllm_data::fingerprint::DataFingerprint;
use cllm_data::scan::{self, FileStatus, ScanOptions};
use cllm_data::tokenizer::Tokenizer;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Everything the trainer needs from the data.
pub struct Prepared {
    pub tokenizer: Tokenizer,
    pub train: TokenDataset,
    pub val: TokenDataset,
    pub files: usize,
    /// What the data was, to refuse resuming on different data.
    pub fingerprint: DataFingerprint,
}

/// Why [`prepare`] gave no data: the user's Stop, or a failure (the
/// message names the file and the problem).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("stopped before training began")]
    Stopped,
    #[error(transparent)]
    Failed(#[from] TrainError),
}

/// The files a run trains on, in a stable order.
pub fn gather_files(
    config: &TrainConfig,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Result<Vec<(PathBuf, String)>, TrainError> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    if !config.corpus.files.is_empty() {
        for path in &config.corpus.files {
            files.push((path.clone(), path.display().to_string()));
        }
    } else {
        let opts = ScanOptions {
            roots: config.corpus.data.clone(),
            extensions: config.corpus.extensions.clone(),
            max_file_bytes: None,
            exclude: Vec::new(),
        };
        let mut seen = 0usize;
        let mut on_file = |f: scan::ScannedFile| {
            seen += 1;
            if seen.is_multiple_of(64) {
                emit(Event::Phase(Phase::Scanning { files_seen: seen }));
            }
            if f.status == FileStatus::Kept {
                files.push((f.path.clone(), f.relative.display().to_string()));
            }
        };
        scan::scan(&opts, cancel, &mut on_file).map_err(TrainError::data)?;
    }
    if files.is_empty() {
        return Err(no_files(config));
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn no_files(config: &TrainConfig) -> TrainError {
    let where_ = config
        .corpus
        .data
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // Said the same way for `train` and for `eval-gen`, which reads its
    // prompts' files through the same scan.
    let extensions = scan::parse_extensions(&config.corpus.extensions);
    let kinds = if extensions.is_empty() {
        "the usual source and text types".to_string()
    } else {
        extensions
            .iter()
            .map(|e| format!(".{e}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    TrainError::NoFiles {
        places: where_,
        kinds,
    }
}

/// The `(name, cleaned text)` of every file a run trains on, in
/// [`gather_files`]' order. A scan keeps the text it has already read and
/// cleaned, so every file is read once.
fn gather_texts(
    config: &TrainConfig,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Result<Vec<(String, String)>, PrepareError> {
    if !config.corpus.files.is_empty() {
        let files = gather_files(config, cancel, emit)?;
        return read_texts_until(&files, cancel);
    }
    let opts = ScanOptions {
        roots: config.corpus.data.clone(),
        extensions: config.corpus.extensions.clone(),
        max_file_bytes: None,
        exclude: Vec::new(),
    };
    let mut found: Vec<(PathBuf, String, String)> = Vec::new();
    let mut seen = 0usize;
    scan::scan_with_text(&opts, cancel, &mut |f, text| {
        seen += 1;
        if seen.is_multiple_of(64) {
            emit(Event::Phase(Phase::Scanning { files_seen: seen }));
        }
        if let (FileStatus::Kept, Some(text)) = (&f.status, text) {
            found.push((f.path, f.relative.display().to_string(), text));
        }
    })
    .map_err(TrainError::data)?;
    // A cancelled scan ends early, and may then have found nothing.
    if cancel.load(Ordering::Relaxed) {
        return Err(PrepareError::Stopped);
    }
    if found.is_empty() {
        return Err(no_files(config).into());
    }
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    found.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    Ok(found
        .into_iter()
        .map(|(_, name, text)| (name, text))
        .collect())
}

/// Reads and cleans every file (in parallel); a file that fails to read is
/// an error naming it, since the user selected it.
pub fn read_texts(files: &[(PathBuf, String)]) -> Result<Vec<(String, String)>, TrainError> {
    files
        .par_iter()
        .map(|(path, name)| read_text(path, name))
        .collect()
}

/// [`read_texts`] that stops reading as soon as `cancel` is set.
fn read_texts_until(
    files: &[(PathBuf, String)],
    cancel: &AtomicBool,
) -> Result<Vec<(String, String)>, PrepareError> {
    files
        .par_iter()
        .map(|(path, name)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(PrepareError::Stopped);
            }
            Ok(read_text(path, name)?)
        })
        .collect()
}

/// One file's `(name, cleaned text)`.
fn read_text(path: &Path, name: &str) -> Result<(String, String), TrainError> {
    cllm_data::clean::read_clean(path)
        .map(|text| (name.to_string(), text))
        .map_err(TrainError::data)
}

/// The validation split of `config`'s data as text, exactly as
/// [`prepare`] cuts it (same files, same split), without tokenizing
/// anything: for evaluations that need the text itself (function openings
/// as prompts).
pub fn validation_texts(
    config: &TrainConfig,
    cancel: &AtomicBool,
) -> Result<Vec<(String, String)>, PrepareError> {
    let texts = gather_texts(config, cancel, &mut |_| {})?;
    let (_, val) = split_texts(
        &texts,
        Split::Fraction(config.corpus.val_fraction),
        config.seed,
    );
    Ok(val)
}

/// Prepares data for a run. With `tokenizer` given (a resumed run) it is
/// reused; otherwise one is trained on the training side of the split (or
/// the byte tokenizer taken). The split (`config.val_fraction` of the text
/// bytes, from the end: see [`split_texts`]) is made on the text before any
/// tokenizer sees it, so no validation text shapes the vocabulary.
///
/// `cancel` is checked between phases and inside scanning, reading, BPE
/// training and encoding; once it is set the result is
/// [`PrepareError::Stopped`], whatever phase was running.
pub fn prepare(
    config: &TrainConfig,
    tokenizer: Option<Tokenizer>,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Result<Prepared, PrepareError> {
    let stopped = || cancel.load(Ordering::Relaxed);
    emit(Event::Phase(Phase::Scanning { files_seen: 0 }));
    let texts = gather_texts(config, cancel, emit);
    if stopped() {
        return Err(PrepareError::Stopped);
    }
    let texts = texts?;
    let (train_texts, val_texts) = split_texts(
        &texts,
        Split::Fraction(config.corpus.val_fraction),
        config.seed,
    );
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => match config.corpus.tokenizer {
            TokenizerKind::Bytes => Tokenizer::bytes(),
            TokenizerKind::Bpe => {
                let refs: Vec<&str> = train_texts.iter().map(|(_, t)| t.as_str()).collect();
                let mut progress = |done: usize, total: usize| {
                    emit(Event::Phase(Phase::Tokenizing { done, total }));
                };
                let trained =
                    Tokenizer::train_bpe(&refs, config.corpus.vocab_size, &mut progress, cancel);
                if stopped() {
                    return Err(PrepareError::Stopped);
                }
                trained.map_err(TrainError::data)?
            }
        },
    };
    emit(Event::Phase(Phase::Tokenizing {
        done: 0,
        total: train_texts.len() + val_texts.len(),
    }));
    let train = TokenDataset::from_texts_until(&tokenizer, &train_texts, cancel)
        .ok_or(PrepareError::Stopped)?;
    emit(Event::Phase(Phase::Tokenizing {
        done: train_texts.len(),
        total: train_texts.len() + val_texts.len(),
    }));
    let val = TokenDataset::from_texts_until(&tokenizer, &val_texts, cancel)
        .ok_or(PrepareError::Stopped)?;
    if stopped() {
        return Err(PrepareError::Stopped);
    }
    let fingerprint = DataFingerprint::new(&texts, &train, &val, &tokenizer.to_json());
    Ok(Prepared {
        tokenizer,
        train,
        val,
        files: texts.len(),
        fingerprint,
    })
}
