//! Token datasets: the token ids of many files, with `<|endoftext|>` between
//! them, the token range of each file, and how many raw bytes the tokens
//! stand for (for bits per byte); and the train / validation split.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

use super::tokenizer::Tokenizer;
use cllm_core::rng::Rng;

/// Stream id for the file split, so it does not share random numbers with
/// any other use of the same seed.
const SPLIT_STREAM: u64 = 0x0053_504c_4954; // "SPLIT"

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenDataset {
    pub tokens: Vec<u32>,
    /// Token range of each file (separators excluded).
    pub docs: Vec<Range<usize>>,
    /// Raw UTF-8 bytes the tokens stand for; bits per byte =
    /// loss_nats * tokens / (bytes * ln 2). Separators stand for no bytes.
    pub bytes: u64,
    /// Raw bytes of each file, parallel to `docs`.
    pub doc_bytes: Vec<u64>,
    /// Name of each file, parallel to `docs`.
    pub names: Vec<String>,
    /// Separator placed between files (None for the byte tokenizer).
    pub eot: Option<u32>,
}

/// How to hold out validation data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Split {
    /// The last fraction of the tokens.
    Fraction(f32),
    /// Whole files, chosen by the seed, until about this fraction of the
    /// tokens is held out.
    Files(f32),
}

impl TokenDataset {
    /// Encodes `(name, text)` pairs (in parallel) and joins them with the
    /// tokenizer's `<|endoftext|>` between files.
    pub fn from_texts(tokenizer: &Tokenizer, files: &[(String, String)]) -> TokenDataset {
        let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        let encoded = tokenizer.encode_many(&texts);
        let mut builder = Builder::new(tokenizer.eot_id());
        for ((name, text), ids) in files.iter().zip(&encoded) {
            builder.push(name, ids, text.len() as u64);
        }
        builder.finish()
    }

    /// Like [`TokenDataset::from_texts`], but gives up (None) as soon as
    /// `cancel` is set; files are encoded in parallel.
    pub fn from_texts_until(
        tokenizer: &Tokenizer,
        files: &[(String, String)],
        cancel: &AtomicBool,
    ) -> Option<TokenDataset> {
        let encoded: Option<Vec<Vec<u32>>> = files
            .par_iter()
            .map(|(_, text)| (!cancel.load(Ordering::Relaxed)).then(|| tokenizer.encode(text)))
            .collect();
        let encoded = encoded?;
        let mut builder = Builder::new(tokenizer.eot_id());
        for ((name, text), ids) in files.iter().zip(&encoded) {
            builder.push(name, ids, text.len() as u64);
        }
        Some(builder.finish())
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Bits per byte for a mean loss (nats per token) over this data.
    pub fn bits_per_byte(&self, loss_nats: f64) -> f64 {
        if self.bytes == 0 {
            return 0.0;
        }
        loss_nats * self.tokens.len() as f64 / (self.bytes as f64 * std::f64::consts::LN_2)
    }

    /// Returns (train, validation). The same data, choice and seed always
    /// give the same split.
    pub fn split(&self, how: Split, seed: u64) -> (TokenDataset, TokenDataset) {
        match how {
            Split::Fraction(f) => self.split_tail(f),
            Split::Files(f) => self.split_files(f, seed),
        }
    }

    /// Cuts the token stream; a file cut in two keeps a share of its bytes
    /// proportional to its tokens on each side.
    fn split_tail(&self, fraction: f32) -> (TokenDataset, TokenDataset) {
        let fraction = f64::from(fraction).clamp(0.0, 1.0);
        let cut = self.tokens.len() - (self.tokens.len() as f64 * fraction).round() as usize;
        let mut train = Builder::new(self.eot);
        let mut val = Builder::new(self.eot);
        for (i, doc) in self.docs.iter().enumerate() {
            let ids = &self.tokens[doc.clone()];
            let bytes = self.doc_bytes[i];
            if doc.end <= cut {
                train.push(&self.names[i], ids, bytes);
            } else if doc.start >= cut {
                val.push(&self.names[i], ids, bytes);
            } else {
                let head = cut - doc.start;
                let head_bytes = (bytes as f64 * head as f64 / ids.len() as f64).round() as u64;
                train.push(&self.names[i], &ids[..head], head_bytes);
                val.push(&self.names[i], &ids[head..], bytes - head_bytes);
            }
        }
        (train.finish(), val.finish())
    }

    fn split_files(&self, fraction: f32, seed: u64) -> (TokenDataset, TokenDataset) {
        let sizes: Vec<usize> = self.docs.iter().map(|d| d.len()).collect();
        let held_out = choose_held_out(&sizes, fraction, seed);
        let mut train = Builder::new(self.eot);
        let mut val = Builder::new(self.eot);
        for (i, doc) in self.docs.iter().enumerate() {
            let side = if held_out[i] { &mut val } else { &mut train };
            side.push(&self.names[i], &self.tokens[doc.clone()], self.doc_bytes[i]);
        }
        (train.finish(), val.finish())
    }
}

/// `(name, text)` pairs: the files on one side of a split.
pub type NamedTexts = Vec<(String, String)>;

/// Splits texts into (train, validation) *before* anything is tokenized, so
/// that a tokenizer can be trained on the training side alone.
///
/// - `Split::Fraction(f)`: the last `f` of the text bytes (files in order)
///   is held out. The file the cut falls in is cut at the first line start
///   at or after the cut (or, in a file with no line end there, at the
///   character boundary just before it); its two parts keep the file's
///   name. This is [`TokenDataset::split`]'s tail split, measured in bytes
///   of text instead of tokens.
/// - `Split::Files(f)`: whole files, chosen by the seed in the same order as
///   [`TokenDataset::split`], until about `f` of the bytes are held out.
///
/// A cut never leaves an empty piece. The same texts, choice and seed
/// always give the same split.
pub fn split_texts(files: &[(String, String)], how: Split, seed: u64) -> (NamedTexts, NamedTexts) {
    match how {
        Split::Fraction(f) => split_texts_tail(files, f),
        Split::Files(f) => split_texts_files(files, f, seed),
    }
}

fn split_texts_tail(files: &[(String, String)], fraction: f32) -> (NamedTexts, NamedTexts) {
    let fraction = f64::from(fraction).clamp(0.0, 1.0);
    let total: usize = files.iter().map(|(_, t)| t.len()).sum();
    let cut = total - (total as f64 * fraction).round() as usize;
    let mut train = Vec::new();
    let mut val = Vec::new();
    let mut start = 0usize;
    for (name, text) in files {
        let end = start + text.len();
        if end <= cut {
            train.push((name.clone(), text.clone()));
        } else if start >= cut {
            val.push((name.clone(), text.clone()));
        } else {
            let at = cut_point(text, cut - start);
            let (head, tail) = text.split_at(at);
            if !head.is_empty() {
                train.push((name.clone(), head.to_string()));
            }
            if !tail.is_empty() {
                val.push((name.clone(), tail.to_string()));
            }
        }
        start = end;
    }
    (train, val)
}

/// The first line start at or after byte `at`, or, with no line end after
/// it, the character boundary at or before it. Always a char boundary.
fn cut_point(text: &str, at: usize) -> usize {
    let at = text.floor_char_boundary(at.min(text.len()));
    match text.as_bytes()[at..].iter().position(|&b| b == b'\n') {
        // `at` itself may already be a line start.
        Some(_) if at == 0 || text.as_bytes()[at - 1] == b'\n' => at,
        Some(i) => at + i + 1,
        None => at,
    }
}

fn split_texts_files(
    files: &[(String, String)],
    fraction: f32,
    seed: u64,
) -> (NamedTexts, NamedTexts) {
    let lengths: Vec<usize> = files.iter().map(|(_, t)| t.len()).collect();
    let held_out = choose_held_out(&lengths, fraction, seed);
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (file, held) in files.iter().zip(held_out) {
        if held {
            val.push(file.clone());
        } else {
            train.push(file.clone());
        }
    }
    (train, val)
}

/// Which items to hold out: items in the seed's shuffled order until about
/// `fraction` of the total size is held out, keeping at least one item for
/// training when there are two or more.
fn choose_held_out(sizes: &[usize], fraction: f32, seed: u64) -> Vec<bool> {
    let fraction = f64::from(fraction).clamp(0.0, 1.0);
    let n = sizes.len();
    let mut order: Vec<usize> = (0..n).collect();
    Rng::derive(seed, &[SPLIT_STREAM]).shuffle(&mut order);
    let total: usize = sizes.iter().sum();
    let target = total as f64 * fraction;
    let mut held_out = vec![false; n];
    let mut held = 0usize;
    for (held_items, &i) in order.iter().enumerate() {
        if held as f64 >= target || (n >= 2 && held_items + 1 == n) {
            break;
        }
        held_out[i] = true;
        held += sizes[i];
    }
    held_out
}

/// Appends files one by one, placing the separator between them.
struct Builder {
    data: TokenDataset,
}

impl Builder {
    fn new(eot: Option<u32>) -> Builder {
        Builder {
            data: TokenDataset {
                eot,
                ..TokenDataset::default()
            },
        }
    }

    fn push(&mut self, name: &str, ids: &[u32], bytes: u64) {
        let d = &mut self.data;
        if !d.docs.is_empty()
            && let Some(eot) = d.eot
        {
            d.tokens.push(eot);
        }
        let start = d.tokens.len();
        d.tokens.extend_from_slice(ids);
        d.docs.push(start..d.tokens.len());
        d.doc_bytes.push(bytes);
        d.names.push(name.to_string());
        d.bytes += bytes;
    }

    fn finish(self) -> TokenDataset {
        self.data
    }
}
