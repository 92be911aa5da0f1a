//! One full training step (forward, backward, AdamW) of the `seed` preset on
//! 8 x 128 tokens on one thread: criterion's timing, then tokens/s, model
//! GFLOP/s, the same-run matmul peak, MFU and the per-operation profile.

use cllm_core::ModelConfig;
use cllm_core::ops::crossentropy::DEFAULT_CHUNK_ROWS;
use cllm_train::bench::{TrainStepRig, bench_train_step};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

const BATCH: usize = 8;
const SEQ: usize = 128;

fn train_step(c: &mut Criterion) {
    let cfg = ModelConfig::preset("seed").expect("seed preset");
    let mut rig = TrainStepRig::new(&cfg, BATCH, SEQ, DEFAULT_CHUNK_ROWS).expect("bench setup");
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("seed_8x128_1thread", |b| b.iter(|| rig.step(None)));
    group.finish();

    let r = bench_train_step(&cfg, BATCH, SEQ, 5, 1).expect("bench");
    println!(
        "seed preset, {BATCH} x {SEQ} tokens, 1 thread, best of {} steps:",
        r.steps
    );
    println!(
        "  step {:.3} s (mean {:.3} s)",
        r.best_step_secs, r.mean_step_secs
    );
    println!("  tokens/s     {:.0}", r.tokens_per_sec);
    println!("  model GFLOP/s {:.1}", r.gflops);
    println!(
        "  matmul peak  {:.1} GFLOP/s (1024^3, same kernel, 1 thread)",
        r.peak_gflops
    );
    println!("  MFU          {:.1} %", 100.0 * r.mfu);
    println!("  workspace    {:.1} MB", r.workspace_bytes as f64 / 1e6);
    println!("  per-operation time per step:");
    let total: f64 = r.per_op_profile.iter().map(|(_, s)| s).sum();
    for (name, secs) in &r.per_op_profile {
        println!(
            "    {name:<40} {:>8.1} ms {:>5.1} %",
            secs * 1e3,
            100.0 * secs / total
        );
    }
}

criterion_group!(benches, train_step);
criterion_main!(benches);
