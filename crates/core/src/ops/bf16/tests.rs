use super::*;
use crate::ops::matmul::matmul_naive;
use crate::rng::Rng;

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

#[test]
fn rounding_is_to_nearest_even() {
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to even (1).
    assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), to_bf16(1.0));
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
    assert_eq!(
        from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
        1.0 + 2f32.powi(-6)
    );
    // Just above halfway rounds up.
    assert_eq!(
        from_bf16(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))),
        1.0 + 2f32.powi(-7)
    );
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
    // Every bf16 value survives a round trip; an f64 reference picks
    // the nearest of the two bf16 neighbours of random floats.
    let mut rng = Rng::new(5);
    for _ in 0..100_000 {
        let x = rng.normal() * 2f32.powi((rng.next_u64() % 60) as i32 - 30);
        let h = to_bf16(x);
        assert_eq!(to_bf16(from_bf16(h)), h);
        let down = f32::from_bits(x.to_bits() & 0xffff_0000);
        let up = f32::from_bits((x.to_bits() & 0xffff_0000) + 0x1_0000);
        let (dd, du) = ((x as f64 - down as f64).abs(), (up as f64 - x as f64).abs());
        let want = if dd < du || (dd == du && (down.to_bits() >> 16) & 1 == 0) {
            down
        } else {
            up
        };
        assert_eq!(from_bf16(h), want, "{x}");
    }
}

#[test]
fn scalar_model_is_close_to_an_f64_product_of_the_rounded_inputs() {
    let mut rng = Rng::new(7);
    let (m, k, n) = (9, 37, 21);
    let a = random(m * k, &mut rng);
    let b = random(k * n, &mut rng);
    let round = |v: &[f32]| v.iter().map(|&x| from_bf16(to_bf16(x))).collect::<Vec<_>>();
    let (ar, br) = (round(&a), round(&b));
    let mut want = vec![0.0; m * n];
    matmul_naive(
        MatMut::new(&mut want, m, n),
        MatRef::new(&ar, m, k),
        MatRef::new(&br, k, n),
        false,
    );
    let mut got = vec![0.0; m * n];
    matmul_bf16(
        Kernel::Model,
        MatMut::new(&mut got, m, n),
        MatRef::new(&a, m, k),
        MatRef::new(&b, k, n),
        false,
    );
    for (g, w) in got.iter().zip(&want) {
        // f32 accumulation of 37 exact products: a few ulps of the sum
        // of magnitudes.
        assert!((g - w).abs() < 1e-5 * k as f32, "{g} vs {w}");
    }
}

/// One `vdpbf16ps` lane against the model, on random values over a
/// wide range (subnormals, overflowing products, infinities).
#[test]
fn hardware_matches_the_scalar_model() {
    if Kernel::detect() != Kernel::Avx512 {
        eprintln!("no AVX512_BF16 here: the model is the only kernel");
        return;
    }
    let mut rng = Rng::new(99);
    let wide = |rng: &mut Rng| {
        let e = (rng.next_u64() % 300) as i32 - 150;
        rng.normal() * 2f32.powi(e)
    };
    for case in 0..20_000 {
        let m = 1 + case % 13;
        let n = 1 + (case * 7) % 40;
        let k = 1 + (case * 3) % 9;
        let a: Vec<f32> = (0..m * k).map(|_| wide(&mut rng)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| wide(&mut rng)).collect();
        let start: Vec<f32> = (0..m * n).map(|_| wide(&mut rng)).collect();
        let acc = case % 2 == 0;
        let (mut fast, mut model) = (start.clone(), start);
        for (kernel, out) in [(Kernel::Avx512, &mut fast), (Kernel::Model, &mut model)] {
            matmul_bf16(
                kernel,
                MatMut::new(out, m, n),
                MatRef::new(&a, m, k),
                MatRef::new(&b, k, n),
                acc,
            );
        }
        for (x, y) in fast.iter().zip(&model) {
            assert!(
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                "case {case} ({m}x{k}x{n}): {x:e} vs model {y:e}"
            );
        }
    }
}

/// The blocked kernel against the model bit for bit, on shapes that
/// cross every block edge (rows past 12, columns past 32 and 512,
/// pairs past 256), with strides, transposes and accumulation.
#[test]
fn blocked_kernel_matches_the_model_bit_for_bit() {
    if Kernel::detect() != Kernel::Avx512 {
        eprintln!("no AVX512_BF16 here: the model is the only kernel");
        return;
    }
    let mut rng = Rng::new(3);
    for &(m, k, n) in &[
        (1, 1, 1),
        (13, 3, 33),
        (25, 600, 70),
        (12, 513, 530),
        (5, 64, 1),
    ] {
        let a = random(m * k, &mut rng);
        let bt = random(n * k, &mut rng);
        let start = random(m * n, &mut rng);
        for accumulate in [false, true] {
            // B given as a (n, k) matrix used transposed, the head's
            // `x · wteᵀ` shape, through the transposed packer.
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            let ap = pack_rows(&mut pa, MatRef::new(&a, m, k));
            let bp = pack_rows_transposed(&mut pb, MatRef::new(&bt, n, k));
            let (mut fast, mut model) = (start.clone(), start.clone());
            matmul_pairs_with(
                Kernel::Avx512,
                MatMut::new(&mut fast, m, n),
                ap,
                bp,
                accumulate,
            );
            matmul_pairs_with(
                Kernel::Model,
                MatMut::new(&mut model, m, n),
                ap,
                bp,
                accumulate,
            );
            assert!(
                fast.iter()
                    .zip(&model)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{m}x{k}x{n} accumulate {accumulate}"
            );
            // A given transposed (the weight-gradient shape), through
            // the column packer, into a strided output.
            let at = random(k * m, &mut rng);
            let ap = pack_columns(&mut pa, MatRef::new(&at, k, m));
            let mut pb2 = Vec::new();
            let bp = pack_rows_transposed(&mut pb2, MatRef::new(&bt, n, k));
            let wide = random(m * (n + 5), &mut rng);
            let (mut fast, mut model) = (wide.clone(), wide);
            matmul_pairs_with(
                Kernel::Avx512,
                MatMut::strided(&mut fast, m, n, n + 5),
                ap,
                bp,
                accumulate,
            );
            matmul_pairs_with(
                Kernel::Model,
                MatMut::strided(&mut model, m, n, n + 5),
                ap,
                bp,
                accumulate,
            );
            assert!(
                fast.iter()
                    .zip(&model)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
        }
    }
}

/// Sums started from a bias: the same bits as writing the bias into
/// every row and accumulating (what the linear layer did before), on
/// every kernel here, across the block edges; and the packers' reused
/// buffers give the same products as fresh ones.
#[test]
fn a_bias_start_is_the_bias_written_then_accumulated() {
    let mut rng = Rng::new(21);
    let mut kernels = vec![Kernel::Model];
    if Kernel::detect() == Kernel::Avx512 {
        kernels.push(Kernel::Avx512);
    }
    // Reused across shapes, larger ones first: stale words must not leak.
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    for &(m, k, n) in &[
        (25, 600, 70),
        (13, 3, 33),
        (12, 513, 530),
        (5, 0, 7),
        (1, 1, 1),
    ] {
        let a = random(m * k, &mut rng);
        let bt = random(n * k, &mut rng);
        let bias = random(n + 3, &mut rng);
        let ap = pack_rows(&mut pa, MatRef::new(&a, m, k));
        let bp = pack_rows_transposed(&mut pb, MatRef::new(&bt, n, k));
        for &kernel in &kernels {
            let mut fused = random(m * n, &mut rng);
            let start = Start::Bias(&bias);
            matmul_pairs_from(kernel, MatMut::new(&mut fused, m, n), ap, bp, start);
            let mut two_step: Vec<f32> = (0..m * n).map(|i| bias[i % n]).collect();
            matmul_pairs_with(kernel, MatMut::new(&mut two_step, m, n), ap, bp, true);
            assert!(
                fused
                    .iter()
                    .zip(&two_step)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{kernel:?} {m}x{k}x{n}"
            );
        }
        let (mut fresh_a, mut fresh_b) = (Vec::new(), Vec::new());
        let fa = pack_rows(&mut fresh_a, MatRef::new(&a, m, k));
        let fb = pack_columns(&mut fresh_b, MatRef::new(&bt, n, k).t());
        let (mut o1, mut o2) = (vec![0.0; m * n], vec![0.0; m * n]);
        let reused_b = pack_columns(&mut pb, MatRef::new(&bt, n, k).t());
        let reused_a = pack_rows(&mut pa, MatRef::new(&a, m, k));
        matmul_pairs_with(Kernel::Model, MatMut::new(&mut o1, m, n), fa, fb, false);
        matmul_pairs_with(
            Kernel::Model,
            MatMut::new(&mut o2, m, n),
            reused_a,
            reused_b,
            false,
        );
        assert_eq!(o1, o2, "{m}x{k}x{n}");
    }
}

#[test]
fn packers_agree_with_each_other() {
    let mut rng = Rng::new(4);
    let (m, k, n) = (7, 11, 5);
    let a = random(m * k, &mut rng);
    let b = random(k * n, &mut rng);
    let mut bt = vec![0.0; n * k];
    for r in 0..k {
        for c in 0..n {
            bt[c * k + r] = b[r * n + c];
        }
    }
    let (mut pa, mut pb, mut pbt) = (Vec::new(), Vec::new(), Vec::new());
    let ap = pack_rows(&mut pa, MatRef::new(&a, m, k));
    let b1 = pack_columns(&mut pb, MatRef::new(&b, k, n));
    let b2 = pack_rows_transposed(&mut pbt, MatRef::new(&bt, n, k));
    let (mut o1, mut o2) = (vec![0.0; m * n], vec![0.0; m * n]);
    matmul_pairs_with(Kernel::Model, MatMut::new(&mut o1, m, n), ap, b1, false);
    matmul_pairs_with(Kernel::Model, MatMut::new(&mut o2, m, n), ap, b2, false);
    assert_eq!(o1, o2);
}

#[test]
fn precision_choice_parses_and_resolves() {
    assert_eq!(PrecisionChoice::parse("BF16"), Ok(PrecisionChoice::Bf16));
    assert!(
        PrecisionChoice::parse("fp16")
            .unwrap_err()
            .to_string()
            .contains("fp16")
    );
    assert_eq!(PrecisionChoice::Fp32.resolve(), Precision::Fp32);
    assert_eq!(PrecisionChoice::Bf16.resolve(), Precision::Bf16);
    let auto = PrecisionChoice::Auto.resolve();
    assert_eq!(auto == Precision::Bf16, Kernel::detect() == Kernel::Avx512);
}
