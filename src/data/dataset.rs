//! Token datasets: the token ids of many files, with `<|endoftext|>` between
//! them, the token range of each file, and how many raw bytes the tokens
//! stand for (for bits per byte); and the train / validation split.

use std::ops::Range;

use super::tokenizer::Tokenizer;
use crate::rng::Rng;

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
        let fraction = f64::from(fraction).clamp(0.0, 1.0);
        let n = self.docs.len();
        let mut order: Vec<usize> = (0..n).collect();
        Rng::derive(seed, &[SPLIT_STREAM]).shuffle(&mut order);
        let total: usize = self.docs.iter().map(|d| d.len()).sum();
        let target = total as f64 * fraction;
        let mut held_out = vec![false; n];
        let mut held_tokens = 0usize;
        for &i in &order {
            // Keep at least one file for training when there are two or more.
            let held_files = held_out.iter().filter(|&&h| h).count();
            if held_tokens as f64 >= target || (n >= 2 && held_files + 1 == n) {
                break;
            }
            held_out[i] = true;
            held_tokens += self.docs[i].len();
        }
        let mut train = Builder::new(self.eot);
        let mut val = Builder::new(self.eot);
        for (i, doc) in self.docs.iter().enumerate() {
            let side = if held_out[i] { &mut val } else { &mut train };
            side.push(&self.names[i], &self.tokens[doc.clone()], self.doc_bytes[i]);
        }
        (train.finish(), val.finish())
    }
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
