//! Timing of the tied head's pieces, one 256-row chunk of the seed preset
//! (ignored; run by hand under the bench lock:
//! `cargo test --release --test head_timing -- --ignored --nocapture`).
use cllm_core::ops::bf16::{
    LANES, PairsRef, Precision, WeightPacks, matmul_pairs, pack_columns, pack_rows,
};
use cllm_core::ops::crossentropy::{
    HeadShape, HeadWeights, head_loss_backward, head_mode, scratch_len,
};
use cllm_core::ops::matmul::{MatMut, MatRef, matmul};
use std::time::Instant;

fn rnd(n: usize, s: u64) -> Vec<f32> {
    let mut x = s.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn best(mut f: impl FnMut()) -> f64 {
    f();
    let mut b = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}

#[test]
#[ignore]
fn head_pieces() {
    // HEAD_CHUNK=512 (say) times the whole head with another chunk size.
    let chunk = std::env::var("HEAD_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256usize);
    let (n, c, v) = (1024usize, 256usize, 50257usize);
    let x = rnd(n * c, 1);
    let wte = rnd(v * c, 2);
    let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
    let mut packs = WeightPacks::default();
    packs.pack(&wte, v, c);
    let mut scratch = vec![0.0; scratch_len(chunk, v)];
    let mut dx = vec![0.0; n * c];
    let mut dwte = vec![0.0; v * c];
    let s = HeadShape {
        rows: n,
        channels: c,
        vocab: v,
        chunk,
    };
    let gf = |t: f64, f: f64| f / t / 1e9;
    let fl = 2.0 * (chunk * c * v) as f64;
    // HEAD_ONLY=bf16 (or fp32) times just that head, for a profiler.
    let only = std::env::var("HEAD_ONLY").ok();
    for prec in ["fp32", "bf16"] {
        if only.as_deref().is_some_and(|o| o != prec) {
            continue;
        }
        let w = if prec == "fp32" {
            HeadWeights::F32(&wte)
        } else {
            HeadWeights::Bf16(&packs)
        };
        let t = best(|| {
            head_loss_backward(&mut dx, &mut dwte, &x, &targets, w, &mut scratch, s, 1.0);
        });
        let peak = cllm_train::bench::matmul_peak_for(
            if prec == "fp32" {
                Precision::Fp32
            } else {
                Precision::Bf16
            },
            1024,
            5,
        )
        .wall;
        let rate = gf(t, 6.0 * (n * c * v) as f64);
        println!(
            "{prec} whole head, {} mode (CLLM_HEAD), {}-row chunks: {:.1} ms, {rate:.1} model GFLOP/s \
             (6 N C V), {:.1}% of the kernel's {peak:.1}",
            head_mode().name(),
            // The bf16 head takes twice the scratch's rows (bf16
            // exponentials).
            if prec == "fp32" { chunk } else { 2 * chunk },
            t * 1e3,
            100.0 * rate / peak
        );
    }
    if only.is_some() {
        return;
    }
    // fp32 pieces, one chunk
    let xc = &x[..chunk * c];
    let logits = &mut scratch[..chunk * v];
    let t = best(|| {
        matmul(
            MatMut::new(logits, chunk, v),
            MatRef::new(xc, chunk, c),
            MatRef::new(&wte, v, c).t(),
            false,
        )
    });
    println!("fp32 logits: {:.2} ms {:.1} GFLOP/s", t * 1e3, gf(t, fl));
    let t = best(|| {
        matmul(
            MatMut::new(&mut dx[..chunk * c], chunk, c),
            MatRef::new(logits, chunk, v),
            MatRef::new(&wte, v, c),
            false,
        )
    });
    println!("fp32 dx: {:.2} ms {:.1} GFLOP/s", t * 1e3, gf(t, fl));
    let t = best(|| {
        matmul(
            MatMut::new(&mut dwte, v, c),
            MatRef::new(logits, chunk, v).t(),
            MatRef::new(xc, chunk, c),
            true,
        )
    });
    println!("fp32 dwte: {:.2} ms {:.1} GFLOP/s", t * 1e3, gf(t, fl));
    let t = best(|| unsafe {
        gemm::gemm(
            c,
            v,
            chunk,
            dwte.as_mut_ptr(),
            c as isize,
            1,
            true,
            xc.as_ptr(),
            c as isize,
            1,
            logits.as_ptr(),
            1,
            v as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    });
    println!(
        "fp32 dwte as (C,V): {:.2} ms {:.1} GFLOP/s",
        t * 1e3,
        gf(t, fl)
    );
    // bf16 pieces
    let mut pa = Vec::new();
    let xa = pack_rows(&mut pa, MatRef::new(xc, chunk, c));
    let t = best(|| matmul_pairs(MatMut::new(logits, chunk, v), xa, packs.forward(), false));
    println!("bf16 logits: {:.2} ms {:.1} GFLOP/s", t * 1e3, gf(t, fl));
    let pairs = v.div_ceil(2);
    let along = vec![0x3f803f80u32; chunk * pairs];
    let a = PairsRef::new(&along, chunk, pairs, pairs, 1);
    let t = best(|| {
        matmul_pairs(
            MatMut::new(&mut dx[..chunk * c], chunk, c),
            a,
            packs.backward(),
            false,
        )
    });
    println!("bf16 dx: {:.2} ms {:.1} GFLOP/s", t * 1e3, gf(t, fl));
    let stride = v.next_multiple_of(LANES);
    let down = vec![0x3f803f80u32; chunk / 2 * stride];
    let d = PairsRef::new(&down, v, chunk / 2, 1, stride);
    let mut pxs = Vec::new();
    let xcp = pack_columns(&mut pxs, MatRef::new(xc, chunk, c));
    let t = best(|| matmul_pairs(MatMut::new(&mut dwte, v, c), d, xcp, true));
    println!("bf16 dwte: {:.2} ms {:.1} GFLOP/s", t * 1e3, gf(t, fl));
}

/// The bf16 head's three products as the head runs them, one chunk of
/// rows (HEAD_CHUNK, default 512) against every vocabulary tile, each
/// product timed on its own against the kernel's 1024³ peak: where the
/// head's matmul time goes, product by product.
#[test]
#[ignore]
fn head_tile_products() {
    use cllm_core::ops::crossentropy::VOCAB_TILE;
    let rows = std::env::var("HEAD_CHUNK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512usize);
    let (c, v) = (256usize, 50257usize);
    let x = rnd(rows * c, 1);
    let wte = rnd(v * c, 2);
    let mut packs = WeightPacks::default();
    packs.pack(&wte, v, c);
    let peak = cllm_train::bench::matmul_peak_for(Precision::Bf16, 1024, 5).wall;
    let tiles = v.div_ceil(VOCAB_TILE);
    let flops = 2.0 * (rows * c * v) as f64;
    let report = |name: &str, t: f64| {
        let rate = flops / t / 1e9;
        println!(
            "bf16 {name:<28} {:6.2} ms {rate:6.1} GFLOP/s {:5.1}% of {peak:.1}",
            t * 1e3,
            100.0 * rate / peak
        );
    };
    let mut pa = Vec::new();
    let xa = pack_rows(&mut pa, MatRef::new(&x, rows, c));
    let mut logits = vec![0.0f32; rows * VOCAB_TILE];
    let width_of = |t: usize| VOCAB_TILE.min(v - t * VOCAB_TILE);
    let t = best(|| {
        for t in 0..tiles {
            let w = width_of(t);
            let wt = packs.forward().row_block(t * VOCAB_TILE, w);
            matmul_pairs(MatMut::new(&mut logits[..rows * w], rows, w), xa, wt, false);
        }
    });
    report("logits (tile of all rows)", t);
    let pairs = VOCAB_TILE / 2;
    let along = vec![0x3c003c00u32; rows * pairs];
    let mut dx = vec![0.0f32; rows * c];
    let t = best(|| {
        for t in 0..tiles {
            let p = width_of(t).div_ceil(2);
            let a = PairsRef::new(&along, rows, p, pairs, 1);
            let wb = packs.backward().pair_block(t * pairs, p);
            matmul_pairs(MatMut::new(&mut dx, rows, c), a, wb, t > 0);
        }
    });
    report("dx (accumulated over tiles)", t);
    let down = vec![0x3c003c00u32; rows.div_ceil(2) * VOCAB_TILE];
    let mut pxs = Vec::new();
    let xc = pack_columns(&mut pxs, MatRef::new(&x, rows, c));
    let mut dwte = vec![0.0f32; v * c];
    let t = best(|| {
        for t in 0..tiles {
            let (j0, w) = (t * VOCAB_TILE, width_of(t));
            let d = PairsRef::new(&down, w, rows.div_ceil(2), 1, VOCAB_TILE);
            let out = MatMut::new(&mut dwte[j0 * c..(j0 + w) * c], w, c);
            matmul_pairs(out, d, xc, true);
        }
    });
    report("dwte (tile by tile)", t);
}
