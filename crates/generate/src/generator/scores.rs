//! Sampling scores: a refused token, the memory's mix on the logits'
//! scale, and the most probable alternatives of a step.

/// Sets `id`'s score to −∞ unless no other token would be left.
pub(super) fn refuse(scores: &mut [f32], id: u32) {
    let others = scores
        .iter()
        .enumerate()
        .any(|(i, &s)| i != id as usize && s > f32::NEG_INFINITY);
    if others && let Some(s) = scores.get_mut(id as usize) {
        *s = f32::NEG_INFINITY;
    }
}

/// Sampling scores for the memory's mix `probs`: its log-probabilities
/// shifted by the log-normaliser of the model's `logits`, so that a token
/// the mix leaves at the model's probability keeps its logit. The
/// repetition penalty divides positive scores and multiplies negative ones,
/// so it only acts alike with and without the memory on this scale; on
/// bare log-probabilities (all negative) it barely touches a confident
/// token, and a reply with the memory fell into loops more often.
pub(super) fn mix_scores(probs: &[f32], logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let shift = max + sum.ln() as f32;
    probs.iter().map(|&p| p.max(1e-30).ln() + shift).collect()
}

/// The n largest probabilities with their ids, largest first (ties by id).
pub(super) fn top_n(probs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &p) in probs.iter().enumerate() {
        if best.len() == n && best.last().is_some_and(|&(_, q)| p <= q) {
            continue;
        }
        let at = best.partition_point(|&(_, q)| q >= p);
        best.insert(at, (i as u32, p));
        best.truncate(n);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_scores_of_an_unchanged_distribution_are_the_logits() {
        let logits = [3.0f32, -1.5, 0.25, 7.0, -20.0];
        let probs = crate::sampling::softmax(&logits, 1.0);
        let scores = mix_scores(&probs, &logits);
        for (s, l) in scores.iter().zip(&logits) {
            assert!((s - l).abs() < 1e-4, "{s} vs {l}");
        }
        // A token the mix makes 4 times as likely gains ln 4 (before the
        // renormalisation that sampling's softmax does anyway).
        let mut mixed = probs.clone();
        mixed[1] *= 4.0;
        let scores = mix_scores(&mixed, &logits);
        assert!((scores[1] - (logits[1] + 4f32.ln())).abs() < 1e-4);
    }

    #[test]
    fn top_n_orders_by_probability_then_id() {
        let probs = [0.1, 0.4, 0.1, 0.3, 0.1];
        assert_eq!(top_n(&probs, 3), vec![(1, 0.4), (3, 0.3), (0, 0.1)]);
    }
}
