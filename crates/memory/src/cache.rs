//! The document cache: what followed the longest earlier occurrence, in the
//! current document, of the tail of the tokens read so far.
//!
//! For each order k of [`ORDERS`] a hash map keys every k-token window seen
//! so far (a rolling polynomial hash, O(1) per order) to the counts of the
//! tokens that followed it and the end of its latest occurrence. Appending a
//! token updates one entry per order; a prediction looks the orders up from
//! the longest down and takes the first that holds the context's tail. Every
//! hit is verified against the tokens themselves, so a hash collision can
//! never report a match that is not one (a colliding window replaces the
//! entry). The reported length is the match against the latest occurrence,
//! extended token by token beyond k up to [`MAX_CACHE_MATCH`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Window lengths kept in the cache.
pub const ORDERS: [usize; 12] = [1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 48];
/// Longest match length reported.
pub const MAX_CACHE_MATCH: usize = 64;

/// Odd multiplier of the rolling hash (mod 2^64).
const BASE: u64 = 0x9E37_79B9_7F4A_7C15;

/// The keys are already hashes: pass them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(BASE);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Map = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

#[derive(Clone, Debug)]
struct Entry {
    /// One past the last token of the window's latest occurrence.
    end: u32,
    /// `(token, count)` of the tokens that followed, in first-seen order.
    counts: Vec<(u32, u32)>,
    total: u32,
}

/// The cache's answer for the next token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMatch<'a> {
    /// Tokens of the match (0: none).
    pub len: usize,
    /// `(token, count)` of what followed the matched window.
    pub counts: &'a [(u32, u32)],
    pub total: u32,
}

impl CacheMatch<'_> {
    pub const NONE: CacheMatch<'static> = CacheMatch {
        len: 0,
        counts: &[],
        total: 0,
    };

    pub fn count(&self, token: u32) -> u32 {
        self.counts
            .iter()
            .find(|&&(t, _)| t == token)
            .map_or(0, |&(_, c)| c)
    }
}

/// Spreads a token id over 64 bits before it enters the rolling hash.
#[inline]
fn mix(t: u32) -> u64 {
    let mut z = (t as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The cache over one document.
#[derive(Clone, Debug)]
pub struct DocCache {
    tokens: Vec<u32>,
    /// `prefix[i]`: hash of `tokens[..i]`.
    prefix: Vec<u64>,
    /// `BASE^k` for each order.
    powers: [u64; ORDERS.len()],
    maps: Vec<Map>,
    /// Whether pushed tokens enter the maps (see [`DocCache::stop_learning`]).
    learning: bool,
    /// Tokens read when learning stopped: the maps know nothing after them.
    learned: usize,
}

impl Default for DocCache {
    fn default() -> Self {
        DocCache::new()
    }
}

impl DocCache {
    pub fn new() -> DocCache {
        let mut powers = [0u64; ORDERS.len()];
        for (p, &k) in powers.iter_mut().zip(&ORDERS) {
            *p = (0..k).fold(1u64, |acc, _| acc.wrapping_mul(BASE));
        }
        DocCache {
            tokens: Vec::new(),
            prefix: vec![0],
            powers,
            maps: (0..ORDERS.len()).map(|_| Map::default()).collect(),
            learning: true,
            learned: 0,
        }
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Hash of `tokens[i-k..i]` for order index `o`.
    #[inline]
    fn window_hash(&self, o: usize, i: usize) -> u64 {
        let k = ORDERS[o];
        self.prefix[i].wrapping_sub(self.prefix[i - k].wrapping_mul(self.powers[o]))
    }

    /// From here on, pushed tokens extend the context that predictions
    /// match against but no longer enter the maps: the cache predicts only
    /// from what followed windows of the text read before. Generation calls
    /// it after the prompt, because a reply that copies from itself locks
    /// into a loop: once it repeats a line, its own repeat is the longest,
    /// most confident match, and the mix was fitted on real text, where a
    /// long repeat is rarely a mistake.
    pub fn stop_learning(&mut self) {
        self.learning = false;
        self.learned = self.tokens.len();
    }

    /// Forgets the tokens from `len` on, as if they had never been pushed
    /// (a generator taking back a line it rejected).
    ///
    /// # Panics
    /// Unless learning has stopped and `len` keeps every token read before
    /// that: the maps cannot forget.
    pub fn truncate(&mut self, len: usize) {
        assert!(
            !self.learning && len >= self.learned,
            "only tokens read after stop_learning can be taken back"
        );
        self.tokens.truncate(len);
        self.prefix.truncate(len + 1);
    }

    /// Appends the next token of the document.
    pub fn push(&mut self, token: u32) {
        let i = self.tokens.len();
        for (o, &k) in ORDERS.iter().enumerate() {
            if k > i || !self.learning {
                break;
            }
            let h = self.window_hash(o, i);
            let tokens = &self.tokens;
            let entry = self.maps[o].entry(h).or_insert_with(|| Entry {
                end: i as u32,
                counts: Vec::new(),
                total: 0,
            });
            let e = entry.end as usize;
            if e != i && tokens[e - k..e] != tokens[i - k..i] {
                // A collision: the newest window takes the slot.
                entry.counts.clear();
                entry.total = 0;
            }
            entry.end = i as u32;
            entry.total += 1;
            match entry.counts.iter_mut().find(|(t, _)| *t == token) {
                Some((_, c)) => *c += 1,
                None => entry.counts.push((token, 1)),
            }
        }
        self.tokens.push(token);
        let h = self.prefix[i].wrapping_mul(BASE).wrapping_add(mix(token));
        self.prefix.push(h);
    }

    /// The longest earlier occurrence (by the orders kept) of the tail of
    /// the document so far, and what followed it.
    pub fn predict(&self) -> CacheMatch<'_> {
        let i = self.tokens.len();
        for o in (0..ORDERS.len()).rev() {
            let k = ORDERS[o];
            if k > i {
                continue;
            }
            let Some(entry) = self.maps[o].get(&self.window_hash(o, i)) else {
                continue;
            };
            let e = entry.end as usize;
            if entry.total == 0 || self.tokens[e - k..e] != self.tokens[i - k..i] {
                continue;
            }
            let mut len = k;
            while len < MAX_CACHE_MATCH
                && len < e
                && self.tokens[e - 1 - len] == self.tokens[i - 1 - len]
            {
                len += 1;
            }
            return CacheMatch {
                len,
                counts: &entry.counts,
                total: entry.total,
            };
        }
        CacheMatch::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: the largest order k whose window (the last k tokens)
    /// occurred earlier with a follower, the counts of those followers, and
    /// the match length against the latest such occurrence.
    fn brute(tokens: &[u32]) -> (usize, Vec<(u32, u32)>) {
        brute_learned(tokens, tokens.len())
    }

    proptest! {
        #[test]
        fn cache_agrees_with_brute_force(tokens in proptest::collection::vec(0u32..4, 0..160), alphabet in 1u32..5) {
            let tokens: Vec<u32> = tokens.iter().map(|&t| t % alphabet).collect();
            let mut cache = DocCache::new();
            for i in 0..=tokens.len() {
                let m = cache.predict();
                let (len, counts) = brute(&tokens[..i]);
                prop_assert_eq!(m.len, len, "at {}", i);
                prop_assert_eq!(m.counts, &counts[..]);
                prop_assert_eq!(m.total, counts.iter().map(|&(_, c)| c).sum::<u32>());
                if i < tokens.len() {
                    cache.push(tokens[i]);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn after_it_stops_learning_the_cache_predicts_from_the_text_before(
            tokens in proptest::collection::vec(0u32..3, 1..120),
            frozen_at in 0usize..120,
        ) {
            // The reference: the brute force over the learned prefix with
            // the current tail appended, keeping only windows that end inside
            // the prefix (their follower is a learned token).
            let frozen_at = frozen_at.min(tokens.len());
            let mut cache = DocCache::new();
            for (i, &t) in tokens.iter().enumerate() {
                if i == frozen_at {
                    cache.stop_learning();
                }
                cache.push(t);
                let m = cache.predict();
                let (len, counts) = brute_learned(&tokens[..=i], frozen_at.min(i + 1));
                prop_assert_eq!(m.len, len, "at {}", i);
                prop_assert_eq!(m.counts, &counts[..], "at {}", i);
            }
        }
    }

    proptest! {
        #[test]
        fn tokens_taken_back_leave_the_cache_as_if_never_read(
            tokens in proptest::collection::vec(0u32..3, 1..100),
            other in proptest::collection::vec(0u32..3, 1..30),
            frozen_at in 0usize..100,
            back_to in 0usize..100,
        ) {
            // Read a text, take its end back to `back_to`, read `other`:
            // every prediction is that of a cache that read the kept
            // prefix and `other` straight.
            let frozen_at = frozen_at.min(tokens.len());
            let back_to = frozen_at + back_to % (tokens.len() - frozen_at + 1);
            let mut cache = DocCache::new();
            let mut straight = DocCache::new();
            for (i, &t) in tokens.iter().enumerate() {
                if i == frozen_at {
                    cache.stop_learning();
                }
                cache.push(t);
            }
            if frozen_at == tokens.len() {
                cache.stop_learning();
            }
            for &t in &tokens[..frozen_at] {
                straight.push(t);
            }
            straight.stop_learning();
            for &t in &tokens[frozen_at..back_to] {
                straight.push(t);
            }
            cache.truncate(back_to);
            prop_assert_eq!(cache.tokens(), straight.tokens());
            for &t in &other {
                cache.push(t);
                straight.push(t);
                let (a, b) = (cache.predict(), straight.predict());
                prop_assert_eq!((a.len, a.counts, a.total), (b.len, b.counts, b.total));
            }
        }
    }

    #[test]
    #[should_panic(expected = "only tokens read after stop_learning")]
    fn tokens_the_maps_learned_cannot_be_taken_back() {
        let mut cache = DocCache::new();
        for t in [1, 2, 1, 2] {
            cache.push(t);
        }
        cache.stop_learning();
        cache.push(1);
        cache.truncate(3);
    }

    /// [`brute`] over only the windows whose follower lies in
    /// `tokens[..learned]` (ends below `learned`).
    fn brute_learned(tokens: &[u32], learned: usize) -> (usize, Vec<(u32, u32)>) {
        let i = tokens.len();
        for &k in ORDERS.iter().rev() {
            if k > i {
                continue;
            }
            let tail = &tokens[i - k..];
            let ends: Vec<usize> = (k..i.min(learned))
                .filter(|&e| &tokens[e - k..e] == tail)
                .collect();
            if let Some(&latest) = ends.last() {
                let mut counts: Vec<(u32, u32)> = Vec::new();
                for &e in &ends {
                    match counts.iter_mut().find(|(t, _)| *t == tokens[e]) {
                        Some((_, c)) => *c += 1,
                        None => counts.push((tokens[e], 1)),
                    }
                }
                let mut len = k;
                while len < MAX_CACHE_MATCH
                    && len < latest
                    && tokens[latest - 1 - len] == tokens[i - 1 - len]
                {
                    len += 1;
                }
                return (len, counts);
            }
        }
        (0, Vec::new())
    }

    #[test]
    fn a_repeated_sequence_is_predicted_exactly_the_second_time() {
        let first: Vec<u32> = (0..200u32).map(|i| (i * 7919 + 13) % 1000).collect();
        let mut cache = DocCache::new();
        for &t in &first {
            cache.push(t);
        }
        for (i, &t) in first.iter().enumerate() {
            let m = cache.predict();
            if i > 0 {
                assert!(m.len >= i.min(MAX_CACHE_MATCH).min(48), "{i}: {}", m.len);
                assert_eq!(m.count(t), m.total, "{i}");
            }
            cache.push(t);
        }
    }
}
