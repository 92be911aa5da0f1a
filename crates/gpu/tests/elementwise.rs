//! The elementwise ops on the device against their CPU ops in
//! `cllm_core::ops`, within 1e-4 relative.
#![cfg(feature = "cubecl")]

mod common;

use cllm_core::ops::gelu::{gelu_backward, gelu_forward};
use cllm_core::ops::residual::{residual_backward, residual_forward};
use common::{assert_close, random};

/// Sizes around the workgroup (256) and one MLP activation of the `seed`
/// preset's shape class.
const LENGTHS: &[usize] = &[1, 255, 257, 4 * 256 * 64];

#[test]
fn gelu_forward_and_backward_match_the_cpu() {
    let Some(gpu) = common::gpu() else { return };
    for &len in LENGTHS {
        // Spread wide enough to reach both tails of the tanh.
        let x: Vec<f32> = random(len, 1).iter().map(|v| 3.0 * v).collect();
        let dout = random(len, 2);
        let mut want = vec![0.0; len];
        gelu_forward(&mut want, &x);
        let x_dev = gpu.upload(&x);
        let mut out = gpu.zeros(len);
        gpu.gelu_forward(&mut out, &x_dev).unwrap();
        assert_close(
            &format!("gelu forward, {len}"),
            &gpu.download(&out).unwrap(),
            &want,
        );
        let mut dx_want = vec![0.0; len];
        gelu_backward(&mut dx_want, &dout, &x);
        // The backward overwrites dx, as on the CPU.
        let mut dx = gpu.upload(&random(len, 3));
        gpu.gelu_backward(&mut dx, &gpu.upload(&dout), &x_dev)
            .unwrap();
        assert_close(
            &format!("gelu backward, {len}"),
            &gpu.download(&dx).unwrap(),
            &dx_want,
        );
    }
}

#[test]
fn residual_forward_and_backward_match_the_cpu() {
    let Some(gpu) = common::gpu() else { return };
    for &len in LENGTHS {
        let (a, b, dout) = (random(len, 1), random(len, 2), random(len, 3));
        let mut want = vec![0.0; len];
        residual_forward(&mut want, &a, &b);
        let mut out = gpu.zeros(len);
        gpu.residual_forward(&mut out, &gpu.upload(&a), &gpu.upload(&b))
            .unwrap();
        assert_close(
            &format!("residual forward, {len}"),
            &gpu.download(&out).unwrap(),
            &want,
        );
        // The backward accumulates onto both gradients.
        let (da_start, db_start) = (random(len, 4), random(len, 5));
        let (mut da_want, mut db_want) = (da_start.clone(), db_start.clone());
        residual_backward(&mut da_want, &mut db_want, &dout);
        let (mut da, mut db) = (gpu.upload(&da_start), gpu.upload(&db_start));
        gpu.residual_backward(&mut da, &mut db, &gpu.upload(&dout))
            .unwrap();
        assert_close(
            &format!("residual da, {len}"),
            &gpu.download(&da).unwrap(),
            &da_want,
        );
        assert_close(
            &format!("residual db, {len}"),
            &gpu.download(&db).unwrap(),
            &db_want,
        );
    }
}

#[test]
fn short_outputs_are_refused() {
    let Some(gpu) = common::gpu() else { return };
    let x = gpu.zeros(10);
    let mut out = gpu.zeros(9);
    assert!(gpu.gelu_forward(&mut out, &x).is_err());
    assert!(gpu.residual_forward(&mut out, &x, &x).is_err());
}
