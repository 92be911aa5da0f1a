//! The matrix products on the device against the CPU ops of
//! `cllm_core::ops::matmul` and `matmul_tn`: same shapes, same layouts,
//! same accumulation, within 1e-4 relative.
#![cfg(feature = "cubecl")]

mod common;

use cllm_core::ops::matmul::{MatMut, MatRef, linear_backward, linear_forward, matmul};
use cllm_core::ops::matmul_tn::matmul_tn_acc;
use cllm_gpu::{DeviceMat, GpuError};
use common::{assert_close, random};

/// Odd sizes cross the kernels' tile edges; the last is one MLP product of
/// the `seed` preset's shape class (256 channels, 4x hidden).
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (7, 5, 3),
    (33, 17, 65),
    (64, 96, 40),
    (128, 256, 1024),
];

#[test]
fn matmul_matches_the_cpu_with_transposes_and_accumulation() {
    let Some(gpu) = common::gpu() else { return };
    for &(m, k, n) in SHAPES {
        for &(ta, tb, acc) in &[
            (false, false, false),
            (true, false, true),
            (false, true, true),
            (true, true, false),
        ] {
            let (ar, ac) = if ta { (k, m) } else { (m, k) };
            let (br, bc) = if tb { (n, k) } else { (k, n) };
            let a = random(ar * ac, 1);
            let b = random(br * bc, 2);
            let start = random(m * n, 3);
            let mut want = start.clone();
            let (a_cpu, b_cpu) = (MatRef::new(&a, ar, ac), MatRef::new(&b, br, bc));
            matmul(
                MatMut::new(&mut want, m, n),
                if ta { a_cpu.t() } else { a_cpu },
                if tb { b_cpu.t() } else { b_cpu },
                acc,
            );
            let (da, db) = (gpu.upload(&a), gpu.upload(&b));
            let (a_dev, b_dev) = (DeviceMat::new(&da, ar, ac), DeviceMat::new(&db, br, bc));
            let mut out = gpu.upload(&start);
            gpu.matmul(
                &mut out,
                if ta { a_dev.t() } else { a_dev },
                if tb { b_dev.t() } else { b_dev },
                acc,
            )
            .unwrap();
            let what = format!("{m}x{k}x{n} ta={ta} tb={tb} acc={acc}");
            assert_close(&what, &gpu.download(&out).unwrap(), &want);
        }
    }
}

#[test]
fn linear_forward_and_backward_match_the_cpu() {
    let Some(gpu) = common::gpu() else { return };
    for &(n, i, o) in &[(5, 4, 3), (33, 17, 65), (64, 256, 768)] {
        let x = random(n * i, 1);
        let w = random(o * i, 2);
        let bias = random(o, 3);
        let dout = random(n * o, 4);
        let (dx_x, dw, db) = (gpu.upload(&x), gpu.upload(&w), gpu.upload(&bias));
        for with_bias in [false, true] {
            let b = with_bias.then_some(&bias[..]);
            let mut want = vec![0.0; n * o];
            linear_forward(&mut want, &x, &w, b, n, i, o);
            let mut out = gpu.zeros(n * o);
            gpu.linear_forward(&mut out, &dx_x, &dw, with_bias.then_some(&db), n, i, o)
                .unwrap();
            assert_close(
                &format!("forward {n}x{i}x{o} bias={with_bias}"),
                &gpu.download(&out).unwrap(),
                &want,
            );
        }
        // The gradients accumulate onto what dw and dbias held.
        let (dw_start, db_start) = (random(o * i, 5), random(o, 6));
        let mut dx_want = vec![0.0; n * i];
        let (mut dw_want, mut db_want) = (dw_start.clone(), db_start.clone());
        linear_backward(
            Some(&mut dx_want),
            &mut dw_want,
            Some(&mut db_want),
            &dout,
            &x,
            &w,
            n,
            i,
            o,
        );
        let mut dx_dev = gpu.upload(&random(n * i, 7));
        let (mut dw_dev, mut db_dev) = (gpu.upload(&dw_start), gpu.upload(&db_start));
        let dout_dev = gpu.upload(&dout);
        gpu.linear_backward(
            Some(&mut dx_dev),
            &mut dw_dev,
            Some(&mut db_dev),
            &dout_dev,
            &dx_x,
            &dw,
            n,
            i,
            o,
        )
        .unwrap();
        let shape = format!("{n}x{i}x{o}");
        assert_close(
            &format!("dx {shape}"),
            &gpu.download(&dx_dev).unwrap(),
            &dx_want,
        );
        assert_close(
            &format!("dw {shape}"),
            &gpu.download(&dw_dev).unwrap(),
            &dw_want,
        );
        assert_close(
            &format!("dbias {shape}"),
            &gpu.download(&db_dev).unwrap(),
            &db_want,
        );
    }
}

#[test]
fn matmul_tn_acc_matches_the_cpu() {
    let Some(gpu) = common::gpu() else { return };
    // k rows of a (k, m) and b (k, n): the head's dwte product over a chunk.
    for &(k, m, n) in &[
        (1, 1, 1),
        (3, 12, 32),
        (7, 13, 33),
        (33, 50, 64),
        (256, 1000, 256),
    ] {
        let a = random(k * m, 1);
        let b = random(k * n, 2);
        let start = random(m * n, 3);
        let mut want = start.clone();
        matmul_tn_acc(&mut want, &a, &b, k, m, n);
        let mut out = gpu.upload(&start);
        gpu.matmul_tn_acc(&mut out, &gpu.upload(&a), &gpu.upload(&b), k, m, n)
            .unwrap();
        assert_close(
            &format!("k={k} m={m} n={n}"),
            &gpu.download(&out).unwrap(),
            &want,
        );
    }
}

#[test]
fn operands_that_do_not_fit_are_refused() {
    let Some(gpu) = common::gpu() else { return };
    let (a, b) = (gpu.zeros(6), gpu.zeros(6));
    let mut out = gpu.zeros(4);
    // Inner dimensions 3 and 2 differ.
    let err = gpu.matmul(
        &mut out,
        DeviceMat::new(&a, 2, 3),
        DeviceMat::new(&b, 2, 3),
        false,
    );
    assert!(
        matches!(err, Err(GpuError::Shape { .. })),
        "{:?}",
        err.err()
    );
    // a (3, 3) does not fit in 6 values.
    let err = gpu.matmul(
        &mut out,
        DeviceMat::new(&a, 3, 3),
        DeviceMat::new(&b, 3, 2),
        false,
    );
    assert!(
        matches!(err, Err(GpuError::Shape { .. })),
        "{:?}",
        err.err()
    );
}
