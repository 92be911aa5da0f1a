//! Evaluation metrics over next-token predictions: top-1 accuracy and macro
//! precision, recall and F1 over the token classes that occur; loss
//! conversions (perplexity, bits per byte).

use std::collections::HashMap;

/// Counts gathered over an evaluation, mergeable across threads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassCounts {
    /// class -> (true positives, predicted count, actual count)
    counts: HashMap<u32, (u64, u64, u64)>,
    correct: u64,
    total: u64,
}

impl ClassCounts {
    pub fn add(&mut self, targets: &[u32], predictions: &[u32]) {
        assert_eq!(targets.len(), predictions.len());
        for (&t, &p) in targets.iter().zip(predictions) {
            self.total += 1;
            self.counts.entry(t).or_default().2 += 1;
            self.counts.entry(p).or_default().1 += 1;
            if t == p {
                self.correct += 1;
                self.counts.entry(t).or_default().0 += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &ClassCounts) {
        self.correct += other.correct;
        self.total += other.total;
        for (&k, &(tp, pred, actual)) in &other.counts {
            let e = self.counts.entry(k).or_default();
            e.0 += tp;
            e.1 += pred;
            e.2 += actual;
        }
    }

    pub fn accuracy(&self) -> f32 {
        if self.total == 0 {
            return 0.0;
        }
        self.correct as f32 / self.total as f32
    }

    /// Macro precision, recall and F1 over the classes that occur as a
    /// target or as a prediction. A class never predicted has precision 0;
    /// a class never a target has recall 0 (both count in the averages, so
    /// spraying rare predictions is penalised).
    pub fn macro_prf(&self) -> (f32, f32, f32) {
        if self.counts.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        let (mut p_sum, mut r_sum, mut f_sum) = (0.0f64, 0.0f64, 0.0f64);
        for &(tp, pred, actual) in self.counts.values() {
            let p = if pred > 0 {
                tp as f64 / pred as f64
            } else {
                0.0
            };
            let r = if actual > 0 {
                tp as f64 / actual as f64
            } else {
                0.0
            };
            let f = if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
            p_sum += p;
            r_sum += r;
            f_sum += f;
        }
        let k = self.counts.len() as f64;
        ((p_sum / k) as f32, (r_sum / k) as f32, (f_sum / k) as f32)
    }
}

/// Bits per byte from a mean loss in nats per token and the dataset's
/// bytes per token.
pub fn bits_per_byte(loss_nats: f32, bytes_per_token: f64) -> f32 {
    (loss_nats as f64 / std::f64::consts::LN_2 / bytes_per_token.max(1e-9)) as f32
}

/// (max - min) / mean of the per-sphere sequence counts.
pub fn imbalance(sequences: &[u64]) -> f64 {
    if sequences.is_empty() {
        return 0.0;
    }
    let max = *sequences.iter().max().unwrap() as f64;
    let min = *sequences.iter().min().unwrap() as f64;
    let mean = sequences.iter().sum::<u64>() as f64 / sequences.len() as f64;
    if mean > 0.0 { (max - min) / mean } else { 0.0 }
}

/// Peak resident memory of this process (Linux; 0 elsewhere).
pub fn peak_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_is_spread_over_mean() {
        assert_eq!(imbalance(&[4, 4, 4]), 0.0);
        assert!((imbalance(&[2, 1, 0]) - 2.0).abs() < 1e-12);
        assert_eq!(imbalance(&[]), 0.0);
    }

    /// Worked by hand: targets  a a b c, predictions a b b a.
    /// a: tp 1, predicted 2, actual 2 -> p 1/2, r 1/2, f 1/2
    /// b: tp 1, predicted 2, actual 1 -> p 1/2, r 1,   f 2/3
    /// c: tp 0, predicted 0, actual 1 -> p 0,   r 0,   f 0
    /// macro p = 1/3, r = 1/2, f = (1/2 + 2/3) / 3 = 7/18; accuracy 2/4.
    #[test]
    fn macro_scores_match_hand_computation() {
        let mut c = ClassCounts::default();
        c.add(&[0, 0, 1, 2], &[0, 1, 1, 0]);
        assert_eq!(c.accuracy(), 0.5);
        let (p, r, f) = c.macro_prf();
        assert!((p - 1.0 / 3.0).abs() < 1e-6);
        assert!((r - 0.5).abs() < 1e-6);
        assert!((f - 7.0 / 18.0).abs() < 1e-6);
    }

    #[test]
    fn merging_equals_counting_together() {
        let (t, p) = ([3u32, 1, 4, 1, 5, 9, 2, 6], [3u32, 1, 1, 1, 5, 2, 2, 7]);
        let mut whole = ClassCounts::default();
        whole.add(&t, &p);
        let mut a = ClassCounts::default();
        a.add(&t[..3], &p[..3]);
        let mut b = ClassCounts::default();
        b.add(&t[3..], &p[3..]);
        a.merge(&b);
        assert_eq!(a, whole);
    }

    #[test]
    fn bits_per_byte_of_a_character_model() {
        // One byte per token: bpb = nats / ln 2.
        assert!((bits_per_byte(std::f32::consts::LN_2, 1.0) - 1.0).abs() < 1e-6);
        assert!((bits_per_byte(2.0, 4.0) - 2.0 / 4.0 / std::f32::consts::LN_2).abs() < 1e-6);
    }
}
