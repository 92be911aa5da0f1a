//! Turning a training config into token datasets: gather the files (the
//! app's checked list, or a scan of the data folders), read and clean them,
//! train or reuse a tokenizer, tokenize, and split train / validation.

use crate::data::dataset::{Split, TokenDataset};
use crate::data::scan::{self, FileStatus, ScanOptions};
use crate::data::tokenizer::Tokenizer;
use crate::train::config::{TokenizerKind, TrainConfig};
use crate::train::events::{Event, Phase};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Everything the trainer needs from the data.
pub struct Prepared {
    pub tokenizer: Tokenizer,
    pub train: TokenDataset,
    pub val: TokenDataset,
    pub files: usize,
}

/// The files a run trains on, in a stable order.
pub fn gather_files(
    config: &TrainConfig,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Result<Vec<(PathBuf, String)>, String> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    if !config.files.is_empty() {
        for path in &config.files {
            files.push((path.clone(), path.display().to_string()));
        }
    } else {
        let opts = ScanOptions {
            roots: config.data.clone(),
            extensions: config.extensions.clone(),
            max_file_bytes: None,
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
        scan::scan(&opts, cancel, &mut on_file)?;
    }
    if files.is_empty() {
        let where_ = config
            .data
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(format!("no training files found in {where_}"));
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Reads and cleans every file (in parallel); a file that fails to read is
/// an error naming it, since the user selected it.
pub fn read_texts(files: &[(PathBuf, String)]) -> Result<Vec<(String, String)>, String> {
    files
        .par_iter()
        .map(|(path, name)| crate::data::clean::read_clean(path).map(|text| (name.clone(), text)))
        .collect()
}

/// Prepares data for a run. With `tokenizer` given (a resumed run) it is
/// reused; otherwise one is trained (or the byte tokenizer taken).
pub fn prepare(
    config: &TrainConfig,
    tokenizer: Option<Tokenizer>,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Event),
) -> Result<Prepared, String> {
    emit(Event::Phase(Phase::Scanning { files_seen: 0 }));
    let files = gather_files(config, cancel, emit)?;
    let texts = read_texts(&files)?;
    let tokenizer = match tokenizer {
        Some(t) => t,
        None => match config.tokenizer {
            TokenizerKind::Bytes => Tokenizer::bytes(),
            TokenizerKind::Bpe => {
                let refs: Vec<&str> = texts.iter().map(|(_, t)| t.as_str()).collect();
                let mut progress = |done: usize, total: usize| {
                    emit(Event::Phase(Phase::Tokenizing { done, total }));
                };
                Tokenizer::train_bpe(&refs, config.vocab_size, &mut progress, cancel)?
            }
        },
    };
    emit(Event::Phase(Phase::Tokenizing {
        done: 0,
        total: texts.len(),
    }));
    let dataset = TokenDataset::from_texts(&tokenizer, &texts);
    let (train, val) = dataset.split(Split::Fraction(config.val_fraction), config.seed);
    Ok(Prepared {
        tokenizer,
        train,
        val,
        files: files.len(),
    })
}
