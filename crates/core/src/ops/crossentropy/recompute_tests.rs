//! The recomputing head against the storing one (the same bits) and
//! against finite differences, on shapes whose edges the tiles and
//! chunks must handle.

use super::*;
use crate::ops::fast_math::{available_paths, with_path};
use crate::ops::fd;

/// Loss and gradients' bits of one backward in `mode`, with a scratch of
/// exactly the mode's size; dwte starts from non-zero values (it is
/// accumulated into).
fn run(
    mode: HeadMode,
    w: HeadWeights,
    x: &[f32],
    targets: &[u32],
    s: HeadShape,
) -> (u64, Vec<u32>, Vec<u32>) {
    let mut scratch = vec![f32::NAN; scratch_len_for(mode, s.chunk.min(s.rows), s.vocab)];
    let mut dx = vec![f32::NAN; x.len()];
    let mut dwte: Vec<f32> = (0..s.vocab * s.channels)
        .map(|i| (i % 7) as f32 * 0.125)
        .collect();
    let loss = head_loss_backward_in(
        mode,
        &mut dx,
        &mut dwte,
        x,
        targets,
        w,
        &mut scratch,
        s,
        0.375,
    );
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    (loss.to_bits(), bits(&dx), bits(&dwte))
}

fn inputs(s: HeadShape, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
    let x: Vec<f32> = fd::random(s.rows * s.channels, seed)
        .iter()
        .map(|v| v * 2.0)
        .collect();
    let wte = fd::random(s.vocab * s.channels, seed + 1);
    // Targets in the first, the last and a middle tile.
    let targets = (0..s.rows)
        .map(|r| match r % 3 {
            0 => s.vocab - 1,
            1 => (r * 131 + 5) % s.vocab,
            _ => r % VOCAB_TILE.min(s.vocab),
        } as u32)
        .collect();
    (x, wte, targets)
}

/// The shapes at the edges: one row; rows that are not a multiple of the
/// chunk (and of the bf16 head's doubled chunk, and of its 48-row
/// forward blocks); a vocabulary that is not a multiple of the tile, odd
/// (the bf16 pairs' pad), and one shorter than a tile.
fn edge_shapes() -> Vec<HeadShape> {
    let shape = |rows, channels, vocab, chunk| HeadShape {
        rows,
        channels,
        vocab,
        chunk,
    };
    vec![
        shape(1, 8, 2 * VOCAB_TILE + 37, 4),
        shape(7, 6, 2 * VOCAB_TILE + 37, 3),
        shape(53, 12, VOCAB_TILE + 77, 25),
        shape(9, 5, 301, 16),
        shape(4, 16, VOCAB_TILE, 4),
    ]
}

/// Recomputing gives the storing head's bits, f32 and bf16, on every SIMD
/// path the CPU has, with a scratch of one tile.
#[test]
fn recomputing_head_gives_the_stored_heads_bits() {
    for (i, s) in edge_shapes().into_iter().enumerate() {
        let (x, wte, targets) = inputs(s, 60 + 2 * i as u64);
        let mut packs = WeightPacks::default();
        packs.pack(&wte, s.vocab, s.channels);
        for path in available_paths() {
            for w in [HeadWeights::F32(&wte), HeadWeights::Bf16(&packs)] {
                let kind = match w {
                    HeadWeights::F32(_) => "f32",
                    HeadWeights::Bf16(_) => "bf16",
                };
                let (stored, recomputed) = with_path(path, || {
                    (
                        run(HeadMode::Store, w, &x, &targets, s),
                        run(HeadMode::Recompute, w, &x, &targets, s),
                    )
                });
                assert!(
                    stored == recomputed,
                    "{kind} head on {path:?}, {s:?}: recomputing differs from storing"
                );
                let loss = f64::from_bits(stored.0);
                assert!(loss.is_finite() && loss > 0.0, "{kind} {s:?}: loss {loss}");
                assert!(
                    stored.1.iter().all(|b| f32::from_bits(*b).is_finite()),
                    "{kind} {s:?}: every dx written"
                );
            }
        }
    }
}

/// The recomputing f32 head's gradients against finite differences of
/// the loss (evaluated with a scratch of one tile), over several tiles,
/// a short last tile and a chunk that does not divide the rows; dwte on
/// the rows that matter (the whole check is slow).
#[test]
fn recomputing_head_matches_finite_differences() {
    for s in [
        edge_shapes()[1],
        HeadShape {
            rows: 1,
            channels: 5,
            vocab: VOCAB_TILE + 3,
            chunk: 2,
        },
    ] {
        let (x, wte, targets) = inputs(s, 80);
        let scale = 0.5f32;
        let len = scratch_len_for(HeadMode::Recompute, s.chunk.min(s.rows), s.vocab);
        let mut scratch = vec![0.0; len];
        let mut dx = vec![0.0; x.len()];
        let mut dwte = vec![0.0; wte.len()];
        head_loss_backward_in(
            HeadMode::Recompute,
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
        let mut loss = |x: &[f32], w: &[f32]| {
            scale as f64 * head_loss(x, &targets, HeadWeights::F32(w), &mut sc, s, None)
        };
        fd::check("dx", &x, &dx, 2e-3, &mut |p| loss(p, &wte));
        let mut rows: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
        rows.extend([0, VOCAB_TILE - 1, VOCAB_TILE, s.vocab - 2]);
        for j in rows {
            for i in 0..s.channels {
                let k = j * s.channels + i;
                let h = 1e-2f32;
                let mut wp = wte.clone();
                wp[k] += h;
                let up = loss(&x, &wp);
                wp[k] -= 2.0 * h;
                let down = loss(&x, &wp);
                let num = (up - down) / (2.0 * h as f64);
                let got = dwte[k] as f64;
                assert!(
                    (got - num).abs() < 2e-3 * (1.0 + num.abs()),
                    "{s:?} dwte[{j}, {i}]: {got} vs {num}"
                );
            }
        }
    }
}

/// A scratch shorter than the mode needs is refused, not overrun.
#[test]
#[should_panic(expected = "head scratch too small")]
fn recomputing_head_refuses_a_short_scratch() {
    let s = edge_shapes()[0];
    let (x, wte, targets) = inputs(s, 90);
    let mut scratch = vec![0.0; scratch_len_for(HeadMode::Recompute, 1, s.vocab) - 1];
    let (mut dx, mut dwte) = (vec![0.0; x.len()], vec![0.0; wte.len()]);
    let w = HeadWeights::F32(&wte);
    head_loss_backward_in(
        HeadMode::Recompute,
        &mut dx,
        &mut dwte,
        &x,
        &targets,
        w,
        &mut scratch,
        s,
        1.0,
    );
}

/// The chosen mode is the one the plain entry point runs, and the
/// storing mode's scratch is the larger.
#[test]
fn the_chosen_mode_is_read_back() {
    let before = head_mode();
    for m in HeadMode::ALL {
        set_head_mode(m);
        assert_eq!(head_mode(), m);
    }
    set_head_mode(before);
    let v = 3 * VOCAB_TILE + 1;
    assert_eq!(scratch_len(16, v), scratch_len_for(HeadMode::Store, 16, v));
    assert!(scratch_len_for(HeadMode::Recompute, 16, v) * 4 == scratch_len(16, v));
}
