use super::*;
use crate::ops::fd;

fn naive_forward(qkv: &[f32], s: AttnShape) -> Vec<f64> {
    let (t, c, hs) = (s.seq, s.channels, s.head_size());
    let mut out = vec![0.0f64; s.batch * t * c];
    let at = |b: usize, i: usize, col: usize| qkv[(b * t + i) * 3 * c + col] as f64;
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..t {
                let scores: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..hs)
                            .map(|d| at(b, i, h * hs + d) * at(b, j, c + h * hs + d))
                            .sum::<f64>()
                            / (hs as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                for d in 0..hs {
                    out[(b * t + i) * c + h * hs + d] = (0..=i)
                        .map(|j| (scores[j] - max).exp() / z * at(b, j, 2 * c + h * hs + d))
                        .sum();
                }
            }
        }
    }
    out
}

/// The backward in f64, written out plainly: dqkv for upstream `g`.
fn naive_backward(qkv: &[f32], g: &[f32], s: AttnShape) -> Vec<f64> {
    let (t, c, hs) = (s.seq, s.channels, s.head_size());
    let scale = 1.0 / (hs as f64).sqrt();
    let mut dqkv = vec![0.0f64; qkv.len()];
    let at = |b: usize, i: usize, col: usize| qkv[(b * t + i) * 3 * c + col] as f64;
    for b in 0..s.batch {
        for h in 0..s.heads {
            let (qo, ko, vo) = (h * hs, c + h * hs, 2 * c + h * hs);
            for i in 0..t {
                let sc: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..hs)
                            .map(|d| at(b, i, qo + d) * at(b, j, ko + d))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let max = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|x| (x - max).exp()).sum();
                let p: Vec<f64> = sc.iter().map(|x| (x - max).exp() / z).collect();
                let go = |d: usize| g[(b * t + i) * c + h * hs + d] as f64;
                let dp: Vec<f64> = (0..=i)
                    .map(|j| (0..hs).map(|d| go(d) * at(b, j, vo + d)).sum())
                    .collect();
                let dot: f64 = (0..=i).map(|j| p[j] * dp[j]).sum();
                for j in 0..=i {
                    let ds = p[j] * (dp[j] - dot) * scale;
                    for d in 0..hs {
                        dqkv[(b * t + i) * 3 * c + qo + d] += ds * at(b, j, ko + d);
                        dqkv[(b * t + j) * 3 * c + ko + d] += ds * at(b, i, qo + d);
                        dqkv[(b * t + j) * 3 * c + vo + d] += p[j] * go(d);
                    }
                }
            }
        }
    }
    dqkv
}

/// Forward and backward against the f64 references at the presets'
/// head size and at sequence lengths around the kernel's 8-row blocks
/// and 16-column tiles, on every path this CPU runs; the two fused paths
/// must give the same bits.
#[test]
fn kernel_matches_f64_reference_on_every_path() {
    use crate::ops::fast_math::{SimdPath, available_paths, with_path};
    for &(seq, channels, heads) in &[
        (37usize, 64usize, 2usize),
        (64, 64, 2),
        (9, 40, 2),
        (23, 12, 3),
    ] {
        let s = AttnShape {
            batch: 2,
            seq,
            channels,
            heads,
        };
        let qkv: Vec<f32> = fd::random(s.batch * seq * 3 * channels, 21)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        let g = fd::random(s.batch * seq * channels, 22);
        let want_out = naive_forward(&qkv, s);
        let want_d = naive_backward(&qkv, &g, s);
        let mut runs = Vec::new();
        for path in available_paths() {
            let (out, dqkv) = with_path(path, || {
                let mut out = vec![f32::NAN; g.len()];
                let mut lse = vec![0.0; s.batch * heads * seq];
                let mut scratch = vec![f32::NAN; backward_scratch_len(seq)];
                attention_forward(&mut out, &mut lse, &qkv, &mut scratch, s);
                let mut dqkv = vec![f32::NAN; qkv.len()];
                attention_backward(&mut dqkv, &g, &qkv, &lse, &mut scratch, s);
                (out, dqkv)
            });
            for (a, b) in out.iter().zip(&want_out) {
                assert!(
                    (*a as f64 - b).abs() < 2e-5 * (1.0 + b.abs()),
                    "{path:?} {s:?}: out {a} vs {b}"
                );
            }
            for (a, b) in dqkv.iter().zip(&want_d) {
                assert!(
                    (*a as f64 - b).abs() < 5e-5 * (1.0 + b.abs()),
                    "{path:?} {s:?}: dqkv {a} vs {b}"
                );
            }
            runs.push((path, out, dqkv));
        }
        let fused: Vec<_> = runs.iter().filter(|r| r.0 != SimdPath::Portable).collect();
        for pair in fused.windows(2) {
            let same =
                |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same(&pair[0].1, &pair[1].1) && same(&pair[0].2, &pair[1].2),
                "{:?} vs {:?}",
                pair[0].0,
                pair[1].0
            );
        }
    }
}

const SHAPE: AttnShape = AttnShape {
    batch: 2,
    seq: 5,
    channels: 6,
    heads: 2,
};

#[test]
fn forward_matches_naive_causal_attention() {
    let s = SHAPE;
    let qkv = fd::random(s.batch * s.seq * 3 * s.channels, 1);
    let mut out = vec![0.0; s.batch * s.seq * s.channels];
    let mut lse = vec![0.0; s.batch * s.heads * s.seq];
    let mut scratch = vec![0.0; forward_scratch_len(s.seq)];
    attention_forward(&mut out, &mut lse, &qkv, &mut scratch, s);
    for (a, b) in out.iter().zip(naive_forward(&qkv, s)) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn backward_matches_finite_differences() {
    let s = SHAPE;
    let qkv: Vec<f32> = fd::random(s.batch * s.seq * 3 * s.channels, 2)
        .iter()
        .map(|v| v * 2.0)
        .collect();
    let g = fd::random(s.batch * s.seq * s.channels, 3);
    let mut out = vec![0.0; g.len()];
    let mut lse = vec![0.0; s.batch * s.heads * s.seq];
    let mut scratch = vec![0.0; backward_scratch_len(s.seq)];
    attention_forward(&mut out, &mut lse, &qkv, &mut scratch, s);
    let mut dqkv = vec![f32::NAN; qkv.len()];
    attention_backward(&mut dqkv, &g, &qkv, &lse, &mut scratch, s);
    fd::check("dqkv", &qkv, &dqkv, 2e-3, &mut |p| {
        attention_forward(&mut out, &mut lse, p, &mut scratch, s);
        fd::dot(&out, &g)
    });
}
