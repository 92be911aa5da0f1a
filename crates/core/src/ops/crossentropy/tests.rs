use super::*;
use crate::ops::bf16::pack_rows;
use crate::ops::fast_math::SimdPath;
use crate::ops::fd;

const SHAPE: HeadShape = HeadShape {
    rows: 7,
    channels: 4,
    vocab: 23,
    chunk: 3, // 7 rows in chunks of 3, 3 and 1: the tail chunk is exercised
};

fn naive_loss(x: &[f32], wte: &[f32], targets: &[u32], s: HeadShape) -> f64 {
    let mut total = 0.0;
    for r in 0..s.rows {
        let logits: Vec<f64> = (0..s.vocab)
            .map(|j| {
                (0..s.channels)
                    .map(|i| x[r * s.channels + i] as f64 * wte[j * s.channels + i] as f64)
                    .sum()
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
        total += lse - logits[targets[r] as usize];
    }
    total
}

fn setup() -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let s = SHAPE;
    let x: Vec<f32> = fd::random(s.rows * s.channels, 1)
        .iter()
        .map(|v| v * 3.0)
        .collect();
    let wte = fd::random(s.vocab * s.channels, 2);
    let targets = (0..s.rows as u32)
        .map(|r| (r * 5 + 2) % s.vocab as u32)
        .collect();
    (x, wte, targets)
}

#[test]
fn loss_matches_naive_and_eval_agrees_with_training() {
    let s = SHAPE;
    let (x, wte, targets) = setup();
    let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
    let want = naive_loss(&x, &wte, &targets, s);
    let mut pred = vec![0u32; s.rows];
    let eval = head_loss(
        &x,
        &targets,
        HeadWeights::F32(&wte),
        &mut scratch,
        s,
        Some(&mut pred),
    );
    let mut dx = vec![0.0; x.len()];
    let mut dwte = vec![0.0; wte.len()];
    let train = head_loss_backward(
        &mut dx,
        &mut dwte,
        &x,
        &targets,
        HeadWeights::F32(&wte),
        &mut scratch,
        s,
        1.0,
    );
    assert!((eval - want).abs() < 1e-4 * want.abs(), "{eval} vs {want}");
    assert!(
        (train - want).abs() < 1e-4 * want.abs(),
        "{train} vs {want}"
    );
    let mut logits = vec![0.0; s.rows * s.vocab];
    head_logits(&mut logits, &x, &wte, s.rows, s.channels, s.vocab);
    for (r, row) in logits.chunks(s.vocab).enumerate() {
        let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(row[pred[r] as usize], best);
    }
}

#[test]
fn backward_matches_finite_differences() {
    let s = SHAPE;
    let (x, wte, targets) = setup();
    let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
    let mut dx = vec![0.0; x.len()];
    let mut dwte = vec![0.0; wte.len()];
    let scale = 0.5;
    head_loss_backward(
        &mut dx,
        &mut dwte,
        &x,
        &targets,
        HeadWeights::F32(&wte),
        &mut scratch,
        s,
        scale,
    );
    let mut sc = scratch.clone();
    fd::check("dx", &x, &dx, 2e-3, &mut |p| {
        scale as f64 * head_loss(p, &targets, HeadWeights::F32(&wte), &mut sc, s, None)
    });
    fd::check("dwte", &wte, &dwte, 2e-3, &mut |p| {
        scale as f64 * head_loss(&x, &targets, HeadWeights::F32(p), &mut sc, s, None)
    });
}

/// The bf16 head (bf16 logits and gradient products, f32 softmax and
/// loss) stays within bf16 rounding of the f32 head: loss and both
/// gradients, on a shape whose vocabulary is odd and crosses a lane
/// tile.
#[test]
fn bf16_head_is_within_rounding_of_f32() {
    let s = HeadShape {
        rows: 29,
        channels: 24,
        vocab: 301,
        chunk: 16,
    };
    let x = fd::random(s.rows * s.channels, 5);
    let wte = fd::random(s.vocab * s.channels, 6);
    let targets: Vec<u32> = (0..s.rows as u32).map(|r| (r * 37 + 1) % 301).collect();
    let mut packs = WeightPacks::default();
    packs.pack(&wte, s.vocab, s.channels);
    let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
    let run = |w: HeadWeights, scratch: &mut [f32]| {
        let mut dx = vec![0.0; x.len()];
        let mut dwte = vec![0.0; wte.len()];
        let loss = head_loss_backward(&mut dx, &mut dwte, &x, &targets, w, scratch, s, 1.0);
        (loss, dx, dwte)
    };
    let (l32, dx32, dw32) = run(HeadWeights::F32(&wte), &mut scratch);
    let (l16, dx16, dw16) = run(HeadWeights::Bf16(&packs), &mut scratch);
    assert!((l16 - l32).abs() < 5e-3 * l32.abs(), "loss {l16} vs {l32}");
    let eval = head_loss(
        &x,
        &targets,
        HeadWeights::Bf16(&packs),
        &mut scratch,
        s,
        None,
    );
    assert_eq!(eval, l16, "evaluation and training agree in bf16");
    for (name, a, b) in [("dx", &dx16, &dx32), ("dwte", &dw16, &dw32)] {
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b.iter())
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            worst < 2e-2 * scale,
            "{name}: error {worst} of scale {scale}"
        );
        assert!(worst > 0.0, "{name}: bf16 should differ from f32 somewhere");
    }
}

/// A vocabulary over several tiles (an odd one, a short last tile),
/// an odd number of rows and chunks that do not divide it: loss
/// against the f64 formula, gradients against finite differences
/// (f32), the bf16 head within rounding of f32, and the arg-max found
/// across tiles (a maximum planted in a late tile, and a tie between
/// two tiles going to the first).
#[test]
fn tiles_across_the_vocabulary_agree_with_the_whole_row() {
    let s = HeadShape {
        rows: 7,
        channels: 6,
        vocab: 2 * VOCAB_TILE + 37,
        chunk: 4,
    };
    let x = fd::random(s.rows * s.channels, 11);
    let mut wte = fd::random(s.vocab * s.channels, 12);
    // Row 0's best token sits in the last tile; row 1 ties between
    // tiles 0 and 2 (the same embedding row twice).
    let late = 2 * VOCAB_TILE + 5;
    for i in 0..s.channels {
        wte[late * s.channels + i] = 4.0 * x[i];
    }
    let (a, b) = (7, 2 * VOCAB_TILE + 9);
    for i in 0..s.channels {
        let w = 5.0 * x[s.channels + i];
        wte[a * s.channels + i] = w;
        wte[b * s.channels + i] = w;
    }
    let targets: Vec<u32> = [3, late, VOCAB_TILE, s.vocab - 1, 0, b, VOCAB_TILE - 1]
        .iter()
        .map(|&t| t as u32)
        .collect();
    let want = naive_loss(&x, &wte, &targets, s);
    let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
    let mut pred = vec![0u32; s.rows];
    let mut losses = vec![0.0f32; s.rows];
    let eval = head_loss_rows(
        &x,
        &targets,
        HeadWeights::F32(&wte),
        &mut scratch,
        s,
        Some(&mut pred),
        Some(&mut losses),
    );
    assert!((eval - want).abs() < 1e-4 * want.abs(), "{eval} vs {want}");
    let sum: f64 = losses.iter().map(|&l| l as f64).sum();
    assert!((sum - eval).abs() < 1e-4 * eval.abs());
    let mut logits = vec![0.0; s.rows * s.vocab];
    head_logits(&mut logits, &x, &wte, s.rows, s.channels, s.vocab);
    for (r, row) in logits.chunks(s.vocab).enumerate() {
        let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let first = row.iter().position(|&l| l == best).unwrap();
        assert_eq!(pred[r] as usize, first, "row {r}");
    }
    assert_eq!(pred[0] as usize, late);
    assert_eq!(pred[1] as usize, a, "a tie goes to the first tile");

    let scale = 0.25;
    let mut dx = vec![0.0; x.len()];
    let mut dwte = vec![0.0; wte.len()];
    let train = head_loss_backward(
        &mut dx,
        &mut dwte,
        &x,
        &targets,
        HeadWeights::F32(&wte),
        &mut scratch,
        s,
        scale,
    );
    assert_eq!(train, eval, "training and evaluation agree");
    let mut sc = scratch.clone();
    fd::check("dx", &x, &dx, 2e-3, &mut |p| {
        scale as f64 * head_loss(p, &targets, HeadWeights::F32(&wte), &mut sc, s, None)
    });
    // dwte on the rows that matter (targets, the planted rows) and a
    // few others: the whole (1,061 x 6) check is slow.
    for j in [
        0usize,
        3,
        7,
        VOCAB_TILE - 1,
        VOCAB_TILE,
        late,
        b,
        s.vocab - 1,
    ] {
        for i in 0..s.channels {
            let k = j * s.channels + i;
            let h = 1e-2f32;
            let mut wp = wte.clone();
            wp[k] += h;
            let up = head_loss(&x, &targets, HeadWeights::F32(&wp), &mut sc, s, None);
            wp[k] -= 2.0 * h;
            let down = head_loss(&x, &targets, HeadWeights::F32(&wp), &mut sc, s, None);
            let num = scale as f64 * (up - down) / (2.0 * h as f64);
            let got = dwte[k] as f64;
            assert!(
                (got - num).abs() < 2e-3 * (1.0 + num.abs()),
                "dwte[{j}, {i}]: {got} vs {num}"
            );
        }
    }

    let mut packs = WeightPacks::default();
    packs.pack(&wte, s.vocab, s.channels);
    let mut dx16 = vec![0.0; x.len()];
    let mut dw16 = vec![0.0; wte.len()];
    let l16 = head_loss_backward(
        &mut dx16,
        &mut dw16,
        &x,
        &targets,
        HeadWeights::Bf16(&packs),
        &mut scratch,
        s,
        scale,
    );
    assert!((l16 - train).abs() < 5e-3 * train.abs(), "{l16} vs {train}");
    for (name, a, b) in [("dx", &dx16, &dx), ("dwte", &dw16, &dwte)] {
        let size = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(b.iter())
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(worst < 2e-2 * size, "{name}: error {worst} of scale {size}");
    }
}

/// Every SIMD path the CPU has gives the bf16 head's bits, and the
/// f32 head's to rounding; the scalar bf16 model (what runs where
/// AVX512_BF16 is missing) matches the fast kernel on a tile product.
#[test]
fn every_simd_path_agrees_and_bf16_to_the_bit() {
    use crate::ops::bf16::{Kernel, matmul_pairs_with};
    use crate::ops::fast_math::{available_paths, with_path};
    let s = HeadShape {
        rows: 9,
        channels: 8,
        vocab: VOCAB_TILE + 77,
        chunk: 4,
    };
    let x = fd::random(s.rows * s.channels, 21);
    let wte = fd::random(s.vocab * s.channels, 22);
    let targets: Vec<u32> = (0..s.rows as u32)
        .map(|r| (r * 131 + 5) % s.vocab as u32)
        .collect();
    let mut packs = WeightPacks::default();
    packs.pack(&wte, s.vocab, s.channels);
    let run = |w: HeadWeights| {
        let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
        let mut dx = vec![0.0; x.len()];
        let mut dwte = vec![0.5; wte.len()];
        let loss = head_loss_backward(&mut dx, &mut dwte, &x, &targets, w, &mut scratch, s, 0.5);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        (loss.to_bits(), bits(&dx), bits(&dwte))
    };
    // bf16: the products do not depend on the path, and the softmax
    // pieces give the same bits on every path.
    let reference = with_path(SimdPath::Portable, || run(HeadWeights::Bf16(&packs)));
    for path in available_paths() {
        let got = with_path(path, || run(HeadWeights::Bf16(&packs)));
        assert!(
            got == reference,
            "bf16 head on {path:?} differs from the portable path"
        );
    }
    // f32: the products differ by path (gemm, or the AVX-512 kernel
    // for dwte), so only to rounding.
    let reference = with_path(SimdPath::Portable, || run(HeadWeights::F32(&wte)));
    for path in available_paths() {
        let got = with_path(path, || run(HeadWeights::F32(&wte)));
        let (a, b) = (f64::from_bits(got.0), f64::from_bits(reference.0));
        assert!((a - b).abs() < 1e-6 * b.abs(), "{path:?}: loss {a} vs {b}");
        for (x, y) in got
            .1
            .iter()
            .chain(&got.2)
            .zip(reference.1.iter().chain(&reference.2))
        {
            let (x, y) = (f32::from_bits(*x), f32::from_bits(*y));
            assert!(
                (x - y).abs() < 1e-5 * (1.0 + y.abs()),
                "{path:?}: {x} vs {y}"
            );
        }
    }
    // The scalar model of the bf16 product and the fast kernel (where
    // the CPU has it) agree on one of the head's tile products.
    if Kernel::detect() == Kernel::Avx512 {
        let mut pa = Vec::new();
        let xa = pack_rows(&mut pa, MatRef::new(&x, s.rows, s.channels));
        let wf = packs.forward().row_block(VOCAB_TILE, s.vocab - VOCAB_TILE);
        let n = s.vocab - VOCAB_TILE;
        let (mut fast, mut model) = (vec![0.0; s.rows * n], vec![0.0; s.rows * n]);
        matmul_pairs_with(
            Kernel::Avx512,
            MatMut::new(&mut fast, s.rows, n),
            xa,
            wf,
            false,
        );
        matmul_pairs_with(
            Kernel::Model,
            MatMut::new(&mut model, s.rows, n),
            xa,
            wf,
            false,
        );
        assert_eq!(fast, model);
    }
}
