//! How much of a validation split repeats its training part verbatim.
//!
//! A split taken from the tail of one corpus can mostly repeat what came
//! before it. Validation on such a split measures recall of the training
//! text, and in-run figures flatter the model, so the trainer
//! says so at the start of a run.

use super::suffix::SuffixIndex;

/// Passage length, in tokens, that counts as a verbatim repeat: a line or
/// so of C, long past what chance or a common idiom repeats.
pub const REPEAT_WINDOW: usize = 32;

/// Positions of the validation stream looked at: evenly spaced, enough for
/// a share to about ±1.5 points.
pub const REPEAT_SAMPLES: usize = 1000;

/// The share of `samples` evenly spaced `window`-token passages of `val`
/// that occur verbatim in the indexed training tokens (followed by at least
/// one token there, as the index's matches are). `None` when `val` is
/// shorter than one window.
pub fn repeated_share(
    index: &SuffixIndex,
    val: &[u32],
    window: usize,
    samples: usize,
) -> Option<f64> {
    if window == 0 || samples == 0 || val.len() < window {
        return None;
    }
    let ends = val.len() - window + 1;
    let n = samples.min(ends);
    let repeated = (0..n)
        .map(|k| k * ends / n + window)
        .filter(|&end| index.longest_match(&val[end - window..end], window).len == window)
        .count();
    Some(repeated as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_core::rng::Rng;

    /// The same positions searched by brute force: a passage counts when it
    /// occurs in `train` with a token after it.
    fn brute_force(train: &[u32], val: &[u32], window: usize, samples: usize) -> f64 {
        let ends = val.len() - window + 1;
        let n = samples.min(ends);
        let hits = (0..n)
            .filter(|&k| {
                let end = k * ends / n + window;
                let passage = &val[end - window..end];
                train.windows(window + 1).any(|w| &w[..window] == passage)
            })
            .count();
        hits as f64 / n as f64
    }

    #[test]
    fn agrees_with_brute_force_on_planted_repeats() {
        let mut rng = Rng::new(7);
        let mut random = |n: usize| -> Vec<u32> { (0..n).map(|_| rng.below(50) as u32).collect() };
        let train = random(4000);
        // Validation: stretches copied from training between random ones.
        let mut val = Vec::new();
        for i in 0..12 {
            if i % 3 == 0 {
                val.extend(random(90));
            } else {
                let at = 97 * i + 13;
                val.extend_from_slice(&train[at..at + 120]);
            }
        }
        let index = SuffixIndex::build(train.clone(), 50);
        for (window, samples) in [(8, 100), (32, 300), (32, 5000), (1, 50)] {
            let got = repeated_share(&index, &val, window, samples).unwrap();
            let want = brute_force(&train, &val, window, samples);
            assert_eq!(got, want, "window {window}, samples {samples}");
        }
        let share = repeated_share(&index, &val, 32, 1000).unwrap();
        assert!(share > 0.4 && share < 0.8, "{share}");
        // A split that is all training text, and one that shares nothing.
        let copy = &train[1000..2000];
        assert_eq!(repeated_share(&index, copy, 32, 500), Some(1.0));
        let fresh: Vec<u32> = (0..1000).map(|i| 50 + (i % 7) as u32).collect();
        let index_wide = SuffixIndex::build(train, 64);
        assert_eq!(repeated_share(&index_wide, &fresh, 32, 500), Some(0.0));
        assert_eq!(repeated_share(&index, &val[..10], 32, 500), None);
    }
}
