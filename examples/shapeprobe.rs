use cllm::model::ops::bf16::*;
use cllm::model::ops::matmul::{MatMut, MatRef};
use std::time::Instant;
fn time(m: usize, k: usize, n: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    let pa = pack_rows(&mut pa, MatRef::new(&a, m, k));
    let pb = pack_columns(&mut pb, MatRef::new(&b, k, n));
    let mut out = vec![0.0f32; m * n];
    let mut best = f64::MAX;
    for _ in 0..12 {
        let t = Instant::now();
        matmul_pairs_with(Kernel::detect(), MatMut::new(&mut out, m, n), pa, pb, false);
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
fn main() {
    let preset = std::env::args().nth(1).unwrap_or("seed".into());
    let (c, inner) = if preset == "seed" {
        (256, 1024)
    } else {
        (128, 512)
    };
    let r = 1024;
    // (m, k, n) of each layer's products: forward, dx, dW.
    let shapes = [
        (r, c, 3 * c),
        (r, c, inner),
        (r, c, c),
        (r, inner, c),
        (r, 3 * c, c),
        (r, inner, c),
        (r, c, c),
        (r, c, inner),
        (3 * c, r, c),
        (inner, r, c),
        (c, r, c),
        (c, r, inner),
    ];
    let mut total = (0.0, 0.0);
    for &(m, k, n) in &shapes {
        let s = time(m, k, n);
        let f = 2.0 * (m * n * k) as f64;
        total.0 += s;
        total.1 += f;
        print!("{m}x{k}x{n} {:.0}  ", f / s / 1e9);
    }
    println!(
        "\n{preset}: all {:.1} GFLOP/s, {:.3} ms",
        total.1 / total.0 / 1e9,
        total.0 * 1e3
    );
}
