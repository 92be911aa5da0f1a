//! A fingerprint of the data a run trains on: SHA-256 hashes of the training
//! and validation token streams, of the file list (names, sizes and content
//! hashes, in order) and of the tokenizer, with counts. Stored in
//! checkpoints so that a resume can tell, in plain words, when the data
//! under it changed.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::TokenDataset;

/// Per-file entries are kept only up to this many files; past it only the
/// hash of the whole list is kept, so checkpoints stay small (about 100
/// bytes per file in JSON).
pub const MAX_LISTED_FILES: usize = 20_000;

/// Hex digits of each file's content hash kept in the per-file list (64
/// bits: plenty to tell which file changed; the list hash uses full hashes).
const FILE_HASH_HEX: usize = 16;

/// One input file: its name (relative to the scanned folder, or the path as
/// given), the size of its cleaned text in bytes, and the start of the
/// SHA-256 of that text in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Number of input files.
    pub files: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    /// SHA-256 (hex) of the training token ids, little-endian u32 each.
    pub train_hash: String,
    /// SHA-256 (hex) of the validation token ids.
    pub val_hash: String,
    /// SHA-256 (hex) over every file's name, byte length and full content
    /// hash, in order.
    pub file_list_hash: String,
    /// SHA-256 (hex) of the tokenizer's JSON.
    pub tokenizer_hash: String,
    /// The per-file entries, when there are at most [`MAX_LISTED_FILES`].
    pub file_list: Option<Vec<FileEntry>>,
}

impl DataFingerprint {
    /// Fingerprints a run's data. `files` are the `(name, cleaned text)`
    /// pairs read, before any split; `train` and `val` the token datasets;
    /// `tokenizer_json` the tokenizer as saved in checkpoints.
    pub fn new(
        files: &[(String, String)],
        train: &TokenDataset,
        val: &TokenDataset,
        tokenizer_json: &str,
    ) -> DataFingerprint {
        let content: Vec<[u8; 32]> = files
            .par_iter()
            .map(|(_, text)| Sha256::digest(text.as_bytes()).into())
            .collect();
        let mut list = Sha256::new();
        for ((name, text), hash) in files.iter().zip(&content) {
            // Length-prefixed, so no two different lists hash alike.
            list.update((name.len() as u64).to_le_bytes());
            list.update(name.as_bytes());
            list.update((text.len() as u64).to_le_bytes());
            list.update(hash);
        }
        let file_list = (files.len() <= MAX_LISTED_FILES).then(|| {
            files
                .iter()
                .zip(&content)
                .map(|((name, text), hash)| FileEntry {
                    name: name.clone(),
                    bytes: text.len() as u64,
                    hash: hex(&hash[..FILE_HASH_HEX / 2]),
                })
                .collect()
        });
        DataFingerprint {
            files: files.len(),
            train_tokens: train.tokens.len(),
            val_tokens: val.tokens.len(),
            train_hash: hash_tokens(&train.tokens),
            val_hash: hash_tokens(&val.tokens),
            file_list_hash: hex(&list.finalize()),
            tokenizer_hash: hex(&Sha256::digest(tokenizer_json.as_bytes())),
            file_list,
        }
    }

    /// None when `other` (the data now) is the same as `self` (the data
    /// before); otherwise what changed, in plain words, most telling first:
    /// the file list (with counts and an example name when both sides kept
    /// their lists), the tokenizer, then the token streams.
    pub fn difference(&self, other: &DataFingerprint) -> Option<String> {
        let mut said = Vec::new();
        let files_changed = self.file_list_hash != other.file_list_hash;
        if files_changed {
            said.push(self.file_list_change(other));
        }
        let tokenizer_changed = self.tokenizer_hash != other.tokenizer_hash;
        if tokenizer_changed {
            said.push("the tokenizer changed".to_string());
        }
        let train_changed = self.train_hash != other.train_hash;
        let val_changed = self.val_hash != other.val_hash;
        // Tokens follow from files and tokenizer; name them only when
        // neither explains the change (a different split or cleaning).
        if !files_changed && !tokenizer_changed {
            match (train_changed, val_changed) {
                (true, true) => said.push(format!(
                    "the training and validation tokens changed (training {} tokens before, {} now; validation {} before, {} now: a different validation split?)",
                    self.train_tokens, other.train_tokens, self.val_tokens, other.val_tokens
                )),
                (true, false) => said.push(format!(
                    "the training tokens changed ({} tokens before, {} now)",
                    self.train_tokens, other.train_tokens
                )),
                (false, true) => said.push(format!(
                    "the validation tokens changed ({} tokens before, {} now)",
                    self.val_tokens, other.val_tokens
                )),
                (false, false) => {}
            }
        }
        if said.is_empty() && self != other {
            // Only counts or stored lists differ: not expected, still a change.
            said.push("the data's fingerprint changed".to_string());
        }
        (!said.is_empty()).then(|| said.join("; "))
    }

    fn file_list_change(&self, other: &DataFingerprint) -> String {
        let (Some(before), Some(now)) = (&self.file_list, &other.file_list) else {
            return format!(
                "the file list changed ({} files before, {} now)",
                self.files, other.files
            );
        };
        let old: HashMap<&str, &FileEntry> = before.iter().map(|e| (e.name.as_str(), e)).collect();
        let new: HashMap<&str, &FileEntry> = now.iter().map(|e| (e.name.as_str(), e)).collect();
        let added: Vec<&str> = now
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| !old.contains_key(n))
            .collect();
        let removed: Vec<&str> = before
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| !new.contains_key(n))
            .collect();
        let changed: Vec<&str> = now
            .iter()
            .filter(|e| old.get(e.name.as_str()).is_some_and(|o| *o != *e))
            .map(|e| e.name.as_str())
            .collect();
        let mut parts = Vec::new();
        let mut example = None;
        for (names, what) in [
            (&added, "added"),
            (&removed, "removed"),
            (&changed, "changed"),
        ] {
            if !names.is_empty() {
                let noun = if names.len() == 1 { "file" } else { "files" };
                parts.push(format!("{} {noun} {what}", names.len()));
                if example.is_none() {
                    example = Some(format!("{what}: {}", names[0]));
                }
            }
        }
        match example {
            Some(example) => format!(
                "the file list changed: {} (e.g. {example})",
                parts.join(", ")
            ),
            // Same names, sizes and hashes, another order.
            None => "the file list changed: the same files in another order".to_string(),
        }
    }
}

fn hash_tokens(tokens: &[u32]) -> String {
    let mut h = Sha256::new();
    for chunk in tokens.chunks(4096) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|t| t.to_le_bytes()).collect();
        h.update(&bytes);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
