//! The model's memory of the repository: beside the transformer, an n-gram
//! index over the training tokens (a suffix array, [`suffix`]) and a cache
//! of the current document ([`cache`]) predict what was seen before, and a
//! small learned mix ([`mixer`]) joins them with the transformer's
//! distribution at evaluation and generation.
//!
//! - [`Memory::build`] indexes the training tokens; [`Memory::fit`] fits the
//!   mix on a validation stream given the transformer's probability of each
//!   true next token.
//! - [`Memory::score`] gives the mixed probability of each true next token
//!   of a document (for evaluation); [`Memory::session`] streams a
//!   document and mixes full distributions in place (for generation). Both
//!   compute each probability by the same arithmetic, so they agree exactly.
//! - [`Memory::to_bytes`] / [`Memory::from_bytes`]: the stored form
//!   ([`format`](mod@format)), which the checkpoint carries; [`MemoryError`] says why
//!   a stored memory cannot be read back.
//! - [`overlap`]: how much of a validation split repeats the training part.

pub mod cache;
pub mod error;
pub mod format;
pub mod mixer;
pub mod overlap;
pub mod suffix;

pub use error::MemoryError;
pub use mixer::{FitStats, Mixer};

use cache::{CacheMatch, DocCache};
use mixer::{Features, Sample};
use suffix::{FOLLOWER_CAP, Followers, MAX_MATCH, SuffixIndex};

/// The n-gram index over the training tokens and the mix's weights.
#[derive(Clone, Debug)]
pub struct Memory {
    index: SuffixIndex,
    vocab_size: usize,
    mixer: Mixer,
    fit: Option<FitStats>,
}

impl Memory {
    /// Indexes `train_tokens` (every id below `vocab_size`); the mix starts
    /// with its default weights.
    ///
    /// # Panics
    /// When a token is not below `vocab_size`.
    pub fn build(train_tokens: Vec<u32>, vocab_size: usize) -> Memory {
        Memory {
            index: SuffixIndex::build(train_tokens, vocab_size),
            vocab_size,
            mixer: Mixer::default(),
            fit: None,
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The indexed training tokens.
    pub fn tokens(&self) -> &[u32] {
        self.index.tokens()
    }

    pub fn index(&self) -> &SuffixIndex {
        &self.index
    }

    pub fn mixer(&self) -> &Mixer {
        &self.mixer
    }

    /// The last fit's statistics (`None` while the weights are the defaults).
    pub fn fit_stats(&self) -> Option<&FitStats> {
        self.fit.as_ref()
    }

    /// A document read from its start: push its tokens, mix the model's
    /// next-token distributions.
    pub fn session(&self) -> MemorySession<'_> {
        MemorySession {
            memory: self,
            cache: DocCache::new(),
            last_ngram: None,
        }
    }

    /// The mixed probability of each true next token of `tokens`:
    /// `result[i]` is that of `tokens[i + 1]` given `tokens[..=i]`, where
    /// `model_probs[i]` is the transformer's. The document cache reads
    /// `tokens` from its start.
    ///
    /// # Panics
    /// When `model_probs` is not one shorter than `tokens` (or both empty),
    /// or a token is outside the vocabulary.
    pub fn score(&self, tokens: &[u32], model_probs: &[f32]) -> Vec<f32> {
        self.walk(tokens, model_probs, |s, pt, next| s.prob_of(pt, next))
    }

    /// Fits the mix's weights on a validation stream (`model_probs` as for
    /// [`score`](Self::score)) and records the statistics.
    pub fn fit(&mut self, val_tokens: &[u32], model_probs: &[f32]) -> FitStats {
        self.fit_documents(&[(val_tokens, model_probs)])
    }

    /// [`fit`](Self::fit) over several documents at once, each read by the
    /// cache from its own start.
    pub fn fit_documents(&mut self, docs: &[(&[u32], &[f32])]) -> FitStats {
        let mut samples = Vec::new();
        for (tokens, probs) in docs {
            samples.extend(self.walk(tokens, probs, |s, pt, next| s.sample(pt, next)));
        }
        let stats = self.mixer.fit(&samples);
        self.fit = Some(stats);
        stats
    }

    fn walk<T>(
        &self,
        tokens: &[u32],
        model_probs: &[f32],
        mut each: impl FnMut(&mut MemorySession<'_>, f32, u32) -> T,
    ) -> Vec<T> {
        assert_eq!(
            model_probs.len(),
            tokens.len().saturating_sub(1),
            "one model probability per next token"
        );
        let mut out = Vec::with_capacity(model_probs.len());
        let mut session = self.session();
        if let Some(&first) = tokens.first() {
            session.push(first);
        }
        for (&pt, &next) in model_probs.iter().zip(tokens.iter().skip(1)) {
            out.push(each(&mut session, pt, next));
            session.push(next);
        }
        out
    }

    fn with_mixer(
        index: SuffixIndex,
        vocab_size: usize,
        mixer: Mixer,
        fit: Option<FitStats>,
    ) -> Memory {
        Memory {
            index,
            vocab_size,
            mixer,
            fit,
        }
    }
}

/// One document being read or generated.
#[derive(Clone, Debug)]
pub struct MemorySession<'a> {
    memory: &'a Memory,
    cache: DocCache,
    /// `(document length, n-gram match length)` of the last prediction: the
    /// next position's match is at most one longer.
    last_ngram: Option<(usize, usize)>,
}

/// `count / total`, 0 for an absent source.
#[inline]
fn ratio(count: u32, total: u32) -> f64 {
    if total == 0 {
        0.0
    } else {
        count as f64 / total as f64
    }
}

impl<'a> MemorySession<'a> {
    /// Appends the next token of the document.
    ///
    /// # Panics
    /// When the token is outside the vocabulary.
    pub fn push(&mut self, token: u32) {
        assert!(
            (token as usize) < self.memory.vocab_size,
            "token {token} is outside the vocabulary of {}",
            self.memory.vocab_size
        );
        self.cache.push(token);
    }

    /// The document cache stops learning from the tokens pushed after this
    /// (see [`DocCache::stop_learning`]); they still extend the context.
    pub fn stop_learning(&mut self) {
        self.cache.stop_learning();
    }

    /// Forgets the document's tokens from `len` on (see
    /// [`cache::DocCache::truncate`]: only tokens read after
    /// [`MemorySession::stop_learning`]).
    pub fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
        self.last_ngram = None;
    }

    /// The document so far.
    pub fn tokens(&self) -> &[u32] {
        self.cache.tokens()
    }

    /// The n-gram followers, the cache's match and the bucket's features
    /// for the next token.
    fn sources(&mut self) -> (Followers, CacheMatch<'_>, Features) {
        let doc = self.cache.tokens();
        let max = match self.last_ngram {
            Some((at, len)) if at + 1 == doc.len() => (len + 1).min(MAX_MATCH),
            _ => MAX_MATCH,
        };
        let index = &self.memory.index;
        let m = index.longest_match(doc, max);
        self.last_ngram = Some((doc.len(), m.len));
        let followers = index.followers(&m, FOLLOWER_CAP);
        let cached = self.cache.predict();
        let features = Features {
            ngram_len: m.len,
            ngram_occurrences: followers.occurrences,
            ngram_agree: followers.counts.len() == 1,
            cache_len: cached.len,
        };
        (followers, cached, features)
    }

    /// The mixed probability of `token` as the next one, given the
    /// transformer's probability `model_prob` of it.
    pub fn prob_of(&mut self, model_prob: f32, token: u32) -> f32 {
        let memory: &'a Memory = self.memory;
        let (ngram, cached, features) = self.sources();
        let eff = memory.mixer.effective(&features);
        mixer::combine(
            &eff,
            model_prob,
            ratio(ngram.count(token), ngram.total),
            ratio(cached.count(token), cached.total),
        )
    }

    /// The fitting sample of the next position.
    fn sample(&mut self, model_prob: f32, token: u32) -> Sample {
        let (ngram, cached, features) = self.sources();
        Sample {
            bucket: mixer::bucket(&features),
            p: [
                model_prob as f64,
                ratio(ngram.count(token), ngram.total),
                ratio(cached.count(token), cached.total),
            ],
        }
    }

    /// Replaces the transformer's next-token distribution `probs` (the
    /// whole vocabulary) by the mix, in place. The result sums to 1 when
    /// `probs` does.
    ///
    /// # Panics
    /// When `probs` is not one entry per token of the vocabulary.
    pub fn mix_into(&mut self, probs: &mut [f32]) {
        self.mix_into_from(probs, 0);
    }

    /// [`MemorySession::mix_into`] only where the memory matches at least
    /// `min_match` tokens (n-gram or cache); elsewhere `probs` is left as
    /// the transformer gave it. Sampling from the mix at short matches
    /// jumps between unrelated places of the training text, so generation
    /// copies only from long matches. Returns whether it mixed.
    pub fn mix_into_from(&mut self, probs: &mut [f32], min_match: usize) -> bool {
        let memory: &'a Memory = self.memory;
        assert_eq!(probs.len(), memory.vocab_size, "one probability per token");
        let (ngram, cached, features) = self.sources();
        if features.ngram_len.max(features.cache_len) < min_match {
            return false;
        }
        let eff = memory.mixer.effective(&features);
        // The tokens either source names, with their transformer
        // probability read before the pass below overwrites it.
        let mut named: Vec<(u32, f32, f64, f64)> = Vec::new();
        for &(t, c) in &ngram.counts {
            named.push((
                t,
                probs[t as usize],
                ratio(c, ngram.total),
                ratio(cached.count(t), cached.total),
            ));
        }
        for &(t, c) in cached.counts {
            if ngram.count(t) == 0 {
                named.push((t, probs[t as usize], 0.0, ratio(c, cached.total)));
            }
        }
        for p in probs.iter_mut() {
            *p = mixer::combine(&eff, *p, 0.0, 0.0);
        }
        for (t, pt, pn, pc) in named {
            probs[t as usize] = mixer::combine(&eff, pt, pn, pc);
        }
        true
    }
}
