//! The mix of the transformer with the n-gram index and the document cache:
//!
//! ```text
//! p(x) = w_t·p_transformer(x) + w_n·p_ngram(x) + w_c·p_cache(x)
//! ```
//!
//! `p_ngram` and `p_cache` are the empirical distributions of the tokens that
//! followed the longest matches (count / total; the transformer's share is
//! what smooths them). The weights depend on a bucket of the position's
//! features: the n-gram match length, its number of occurrences and whether
//! they all agreed, and the cache match length. A source without a match
//! (length 0) is absent from its bucket, which then mixes only the others
//! (their weights renormalised), so the mix is a distribution whenever the
//! transformer's is. Every stored weight is at least [`FLOOR`], so
//! `p(x) > 0` wherever `p_transformer(x) > 0`.
//!
//! The weights are fitted per bucket by EM on the true tokens' probabilities
//! of a validation stream, with a small prior towards the defaults (a bucket
//! seen a few times stays near them); a bucket whose fitted weights would
//! score worse on the fitting data than the defaults keeps the defaults.

use serde::{Deserialize, Serialize};

/// Smallest weight of any source.
pub const FLOOR: f32 = 1e-3;

/// Bucket boundaries: n-gram length `0, 1, 2, 3-4, 5-8, 9-16, 17-32, 33+`.
const NGRAM_LEN_BUCKETS: usize = 8;
/// Occurrences `1, 2-3, 4-15, 16+`.
const COUNT_BUCKETS: usize = 4;
/// Whether every counted occurrence had the same follower.
const AGREE_BUCKETS: usize = 2;
/// Cache length `0, 1-2, 3-4, 5-8, 9-16, 17+`.
const CACHE_LEN_BUCKETS: usize = 6;
/// Number of weight buckets.
pub const NUM_BUCKETS: usize =
    NGRAM_LEN_BUCKETS * COUNT_BUCKETS * AGREE_BUCKETS * CACHE_LEN_BUCKETS;

/// Pseudo-observations of the prior, per bucket.
const PRIOR: f64 = 2.0;
const EM_ITERATIONS: usize = 200;

/// What the bucket of a position is chosen from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Longest n-gram match (0: none).
    pub ngram_len: usize,
    /// Its occurrences with a follower.
    pub ngram_occurrences: usize,
    /// Whether all counted followers were the same token.
    pub ngram_agree: bool,
    /// Longest cache match (0: none).
    pub cache_len: usize,
}

fn ngram_len_bucket(len: usize) -> usize {
    match len {
        0 => 0,
        1 => 1,
        2 => 2,
        3..=4 => 3,
        5..=8 => 4,
        9..=16 => 5,
        17..=32 => 6,
        _ => 7,
    }
}

fn count_bucket(n: usize) -> usize {
    match n {
        0..=1 => 0,
        2..=3 => 1,
        4..=15 => 2,
        _ => 3,
    }
}

fn cache_len_bucket(len: usize) -> usize {
    match len {
        0 => 0,
        1..=2 => 1,
        3..=4 => 2,
        5..=8 => 3,
        9..=16 => 4,
        _ => 5,
    }
}

/// The bucket of a position.
pub fn bucket(f: &Features) -> usize {
    let n = ngram_len_bucket(f.ngram_len);
    let (c, a) = if n == 0 {
        (0, 0)
    } else {
        (
            count_bucket(f.ngram_occurrences),
            usize::from(f.ngram_agree),
        )
    };
    ((n * COUNT_BUCKETS + c) * AGREE_BUCKETS + a) * CACHE_LEN_BUCKETS
        + cache_len_bucket(f.cache_len)
}

/// Which sources take part in a bucket: `[transformer, n-gram, cache]`.
pub fn present(bucket: usize) -> [bool; 3] {
    let cache = !bucket.is_multiple_of(CACHE_LEN_BUCKETS);
    let ngram = bucket / (CACHE_LEN_BUCKETS * AGREE_BUCKETS * COUNT_BUCKETS) != 0;
    [true, ngram, cache]
}

/// Stored weights: each at least [`FLOOR`], summing to 1 (in f64).
fn floored(raw: [f64; 3]) -> [f32; 3] {
    let sum: f64 = raw.iter().sum();
    let f = FLOOR as f64;
    let w = raw.map(|r| f + (1.0 - 3.0 * f) * r / sum);
    w.map(|x| x as f32)
}

/// The default weights of a bucket: more trust in a source the longer its
/// match, and in an n-gram whose occurrences agree.
pub fn default_weights(bucket: usize) -> [f32; 3] {
    let n = bucket / (CACHE_LEN_BUCKETS * AGREE_BUCKETS * COUNT_BUCKETS);
    let agree = (bucket / CACHE_LEN_BUCKETS) % AGREE_BUCKETS == 1;
    let c = bucket % CACHE_LEN_BUCKETS;
    let ngram = 0.25 * n as f64 * if agree { 1.5 } else { 1.0 };
    let cache = 0.3 * c as f64;
    floored([1.0, ngram, cache])
}

/// A position for fitting: its bucket and the true token's probability
/// under each source (0 for an absent source).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub bucket: usize,
    pub p: [f64; 3],
}

/// How a fit went, in bits per token on the fitting stream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitStats {
    pub positions: usize,
    /// The transformer alone.
    pub bits_transformer: f64,
    /// The mix with the default weights.
    pub bits_default: f64,
    /// The mix with the fitted weights.
    pub bits_fitted: f64,
    /// Buckets with at least one position.
    pub buckets_used: usize,
}

/// The per-bucket weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Mixer {
    weights: Vec<[f32; 3]>,
}

impl Default for Mixer {
    fn default() -> Self {
        Mixer {
            weights: (0..NUM_BUCKETS).map(default_weights).collect(),
        }
    }
}

/// `-log2 p`, with an impossible token costing as much as `p = 1e-30`.
fn bits(p: f64) -> f64 {
    -p.max(1e-30).log2()
}

/// The mixed probability from the effective weights and the sources'
/// probabilities of one token. Scoring and the full distribution both call
/// this, so they agree to the last bit.
#[inline]
pub fn combine(eff: &[f64; 3], pt: f32, pn: f64, pc: f64) -> f32 {
    (eff[0] * pt as f64 + eff[1] * pn + eff[2] * pc) as f32
}

/// The mixed probability of a sample under `w` (stored weights).
fn sample_prob(w: &[f32; 3], s: &Sample) -> f64 {
    let eff = effective_of(w, s.bucket);
    combine(&eff, s.p[0] as f32, s.p[1], s.p[2]) as f64
}

/// Stored weights masked to the bucket's sources and renormalised.
fn effective_of(w: &[f32; 3], bucket: usize) -> [f64; 3] {
    let on = present(bucket);
    let mut eff = [0.0f64; 3];
    let mut sum = 0.0;
    for j in 0..3 {
        if on[j] {
            eff[j] = w[j] as f64;
            sum += eff[j];
        }
    }
    eff.map(|x| x / sum)
}

impl Mixer {
    /// Rebuilds a mixer from stored weights; `None` unless there are
    /// [`NUM_BUCKETS`] of them, finite, at least [`FLOOR`] (within f32
    /// rounding) and summing to 1.
    pub fn from_weights(weights: Vec<[f32; 3]>) -> Option<Mixer> {
        let ok = weights.len() == NUM_BUCKETS
            && weights.iter().all(|w| {
                w.iter().all(|x| x.is_finite() && *x >= FLOOR * 0.999)
                    && (w.iter().map(|&x| x as f64).sum::<f64>() - 1.0).abs() < 1e-4
            });
        ok.then_some(Mixer { weights })
    }

    pub fn weights(&self) -> &[[f32; 3]] {
        &self.weights
    }

    /// The weights used at a position: the bucket's, over its sources only.
    pub fn effective(&self, f: &Features) -> [f64; 3] {
        let b = bucket(f);
        effective_of(&self.weights[b], b)
    }

    /// Fits the weights by EM on `samples`; returns the bits per token of
    /// the transformer alone, the defaults and the fit.
    pub fn fit(&mut self, samples: &[Sample]) -> FitStats {
        let mut by_bucket: Vec<Vec<Sample>> = vec![Vec::new(); NUM_BUCKETS];
        for s in samples {
            by_bucket[s.bucket].push(*s);
        }
        let mut stats = FitStats {
            positions: samples.len(),
            bits_transformer: 0.0,
            bits_default: 0.0,
            bits_fitted: 0.0,
            buckets_used: 0,
        };
        for (b, group) in by_bucket.iter().enumerate() {
            let defaults = default_weights(b);
            if group.is_empty() {
                self.weights[b] = defaults;
                continue;
            }
            stats.buckets_used += 1;
            let fitted = em(b, group, &defaults);
            let loss = |w: &[f32; 3]| group.iter().map(|s| bits(sample_prob(w, s))).sum::<f64>();
            let (d, f) = (loss(&defaults), loss(&fitted));
            let keep = if f <= d { fitted } else { defaults };
            self.weights[b] = keep;
            stats.bits_default += d;
            stats.bits_fitted += f.min(d);
            stats.bits_transformer += group.iter().map(|s| bits(s.p[0])).sum::<f64>();
        }
        let n = samples.len().max(1) as f64;
        stats.bits_transformer /= n;
        stats.bits_default /= n;
        stats.bits_fitted /= n;
        stats
    }
}

/// EM for one bucket's weights, with `PRIOR` pseudo-observations of the
/// defaults; the result is floored like every stored weight.
fn em(bucket: usize, group: &[Sample], defaults: &[f32; 3]) -> [f32; 3] {
    let on = present(bucket);
    let prior = effective_of(defaults, bucket);
    let mut w = prior;
    for _ in 0..EM_ITERATIONS {
        let mut acc = prior.map(|p| p * PRIOR);
        for s in group {
            let parts: [f64; 3] = std::array::from_fn(|j| if on[j] { w[j] * s.p[j] } else { 0.0 });
            let total: f64 = parts.iter().sum();
            if total > 0.0 {
                for j in 0..3 {
                    acc[j] += parts[j] / total;
                }
            }
        }
        let sum: f64 = acc.iter().sum();
        let next = acc.map(|a| a / sum);
        let change = (0..3).map(|j| (next[j] - w[j]).abs()).fold(0.0, f64::max);
        w = next;
        if change < 1e-7 {
            break;
        }
    }
    floored(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_in_range_and_presence_follows_the_lengths() {
        for ngram_len in [0, 1, 2, 3, 5, 9, 17, 40] {
            for occ in [0, 1, 2, 5, 100] {
                for agree in [false, true] {
                    for cache_len in [0, 1, 3, 6, 10, 30] {
                        let f = Features {
                            ngram_len,
                            ngram_occurrences: occ,
                            ngram_agree: agree,
                            cache_len,
                        };
                        let b = bucket(&f);
                        assert!(b < NUM_BUCKETS);
                        assert_eq!(present(b), [true, ngram_len > 0, cache_len > 0]);
                        let eff = Mixer::default().effective(&f);
                        assert!((eff.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                        assert!(eff[0] >= FLOOR as f64);
                    }
                }
            }
        }
    }

    #[test]
    fn defaults_are_floored_and_sum_to_one() {
        for b in 0..NUM_BUCKETS {
            let w = default_weights(b);
            assert!(w.iter().all(|&x| x >= FLOOR * 0.999), "{b}: {w:?}");
            assert!((w.iter().map(|&x| x as f64).sum::<f64>() - 1.0).abs() < 1e-6);
        }
        assert!(Mixer::from_weights(Mixer::default().weights).is_some());
        assert!(Mixer::from_weights(vec![[1.0, 0.0, 0.0]; NUM_BUCKETS]).is_none());
        assert!(Mixer::from_weights(vec![[0.5, 0.25, 0.25]; 3]).is_none());
    }

    #[test]
    fn em_finds_the_mixing_proportion_of_a_two_source_mixture() {
        // The true token comes from the n-gram source (which then gives it
        // probability 1) 70% of the time, otherwise from a uniform model
        // over 100 tokens (the n-gram then gives it 0). The likelihood
        // 0.7·... is maximised at w_n = 0.7 + 0.3·0.01·(...) ≈ the share.
        let f = Features {
            ngram_len: 10,
            ngram_occurrences: 3,
            ngram_agree: true,
            cache_len: 0,
        };
        let b = bucket(&f);
        let mut samples = Vec::new();
        for i in 0..10_000 {
            let from_ngram = i % 10 < 7;
            samples.push(Sample {
                bucket: b,
                p: [0.01, if from_ngram { 1.0 } else { 0.0 }, 0.0],
            });
        }
        let mut mixer = Mixer::default();
        let stats = mixer.fit(&samples);
        // Brute force over a grid of w_n for the best likelihood.
        let loss = |wn: f64| {
            samples
                .iter()
                .map(|s| bits((1.0 - wn) * s.p[0] + wn * s.p[1]))
                .sum::<f64>()
        };
        let best = (1..1000)
            .map(|i| i as f64 / 1000.0)
            .min_by(|a, b| loss(*a).total_cmp(&loss(*b)))
            .unwrap();
        let eff = mixer.effective(&f);
        assert!((eff[1] - best).abs() < 0.003, "{eff:?} vs {best}");
        assert!(stats.bits_fitted <= stats.bits_default);
        assert!((stats.bits_fitted - loss(eff[1]) / samples.len() as f64).abs() < 1e-6);
    }
}
