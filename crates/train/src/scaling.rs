//! Thread scaling: the same optimizer steps on 1, 2, ... spheres, timed in
//! one run, so tokens/s, speedup and parallel efficiency come from the same
//! machine state. Used by `cllm bench --threads`.

use crate::cluster::Cluster;
use crate::error::TrainError;
use crate::optimizer::{AdamW, AdamWConfig};
use crate::spheres::{Spheres, StepInput};
use cllm_core::ops::bf16::Precision;
use cllm_core::rng::Rng;
use cllm_core::{Gpt, ModelConfig};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, serde::Serialize)]
pub struct ScalingPoint {
    /// Ranks (MPI processes) the step ran on, each with `threads` spheres.
    pub ranks: usize,
    pub threads: usize,
    pub tokens_per_sec: f64,
    /// Best step time seen.
    pub step_secs: f64,
    /// tokens/s relative to the first thread count measured (normally 1).
    pub speedup: f64,
    /// speedup / min(threads, cores): 1.0 is perfect use of the cores the
    /// threads can occupy.
    pub efficiency: f64,
    pub gflops: f64,
    /// Distributed runs: seconds per step inside the gradient all-reduce,
    /// of them the seconds no compute hid, and the bytes all-reduced.
    pub allreduce_secs: f64,
    pub exposed_secs: f64,
    pub allreduce_bytes: u64,
}

/// Times `steps` full optimizer steps (forward, backward, tree reduction,
/// AdamW) of `batch` x `seq` tokens at each thread count, after one warm-up
/// step. Tokens are random but fixed.
pub fn measure(
    cfg: &ModelConfig,
    batch: usize,
    seq: usize,
    thread_counts: &[usize],
    steps: usize,
) -> Result<Vec<ScalingPoint>, TrainError> {
    measure_in_cluster(
        cfg,
        batch,
        seq,
        thread_counts,
        steps,
        &Cluster::solo(),
        Precision::Fp32,
    )
}

/// [`measure`] on every rank of `cluster` at once: each step's `batch`
/// sequences are shared by rank, then by sphere, and the gradients summed
/// across ranks (`mpirun -np K cllm bench`). Every rank returns the same
/// points: rank 0's step times.
pub fn measure_in_cluster(
    cfg: &ModelConfig,
    batch: usize,
    seq: usize,
    thread_counts: &[usize],
    steps: usize,
    cluster: &Cluster,
    precision: Precision,
) -> Result<Vec<ScalingPoint>, TrainError> {
    if seq > cfg.n_ctx {
        return Err(TrainError::LongerThanContext {
            seq_len: seq,
            n_ctx: cfg.n_ctx,
        });
    }
    let mut model = Gpt::new(cfg.clone(), 1).map_err(TrainError::model)?;
    model.set_precision(precision);
    let mut rng = Rng::new(7);
    let n = batch * seq;
    let vocab = cfg.vocab_size as u64;
    let inputs: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
    let targets: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    let flops_per_token = cfg.train_flops_per_token(seq);
    let mut points: Vec<ScalingPoint> = Vec::new();
    for &threads in thread_counts {
        let threads = threads.max(1);
        let mut spheres = Spheres::new(&model, threads, batch.div_ceil(cluster.size()), seq);
        spheres.join_cluster(cluster.clone());
        spheres.share_packs(&mut model);
        let (mut comm_secs, mut exposed_secs, mut comm_bytes) = (0.0, 0.0, 0u64);
        let mut opt = AdamW::new(
            AdamWConfig::default(),
            model.layout.total,
            model.layout.decay_ranges(),
        );
        let mut best = f64::INFINITY;
        for step in 0..=steps.max(1) {
            let input = StepInput {
                inputs: &inputs,
                targets: &targets,
                n_seqs: batch,
                seq_len: seq,
                step: step as u64,
                seed: 1,
                dropout: cfg.dropout > 0.0,
            };
            let t0 = Instant::now();
            let out =
                spheres.compute_gradients(&model, &input, Duration::from_secs(3600), &mut |_| {});
            spheres.apply_update(
                &mut model.params,
                &mut opt,
                1e-4,
                1.0,
                out.shards.as_deref(),
            );
            spheres.refresh_packs(&mut model);
            let took = t0.elapsed().as_secs_f64();
            if step > 0 {
                best = best.min(took);
                if let Some(c) = out.comm {
                    comm_secs += c.allreduce_secs / steps.max(1) as f64;
                    exposed_secs += c.exposed_secs / steps.max(1) as f64;
                    comm_bytes = c.allreduce_bytes;
                }
            }
        }
        // Rank 0's best step, the same figure on every rank.
        let best = cluster.gather(best)[0];
        let tokens_per_sec = n as f64 / best;
        let base = points
            .first()
            .map(|p| p.tokens_per_sec)
            .unwrap_or(tokens_per_sec);
        let speedup = tokens_per_sec / base;
        points.push(ScalingPoint {
            ranks: cluster.size(),
            threads,
            tokens_per_sec,
            step_secs: best,
            speedup,
            efficiency: speedup / threads.min(cores) as f64,
            gflops: tokens_per_sec * flops_per_token / 1e9,
            allreduce_secs: comm_secs,
            exposed_secs,
            allreduce_bytes: comm_bytes,
        });
    }
    Ok(points)
}

/// What starting the spheres' threads costs one parallel phase: threads
/// spawned and joined for the phase (as before the pool), against the
/// pool's dispatch and join of parked threads. A step has three such
/// phases (compute, reduction, AdamW).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DispatchPoint {
    pub threads: usize,
    /// Mean seconds per phase, threads spawned for it.
    pub spawn_secs: f64,
    /// Mean seconds per phase on the pool.
    pub pool_secs: f64,
}

/// Phases per optimizer step on one machine.
pub const PHASES_PER_STEP: usize = 3;

/// Times `rounds` empty phases (one trivial job per sphere) both ways at
/// each thread count: the fixed cost a phase pays before and after any
/// work, without the work.
pub fn dispatch_overhead(thread_counts: &[usize], rounds: usize) -> Vec<DispatchPoint> {
    let rounds = rounds.max(1);
    thread_counts
        .iter()
        .map(|&threads| {
            let threads = threads.max(1);
            let mut items = vec![0usize; threads];
            let t0 = Instant::now();
            for _ in 0..rounds {
                std::thread::scope(|scope| {
                    for (i, x) in items.iter_mut().enumerate() {
                        scope.spawn(move || *x = std::hint::black_box(i));
                    }
                });
            }
            let spawn_secs = t0.elapsed().as_secs_f64() / rounds as f64;
            let mut pool = crate::pool::SpherePool::new();
            // The threads start once, outside the timing, as in a run.
            pool.for_each(&mut items, |i, x| *x = i);
            let t0 = Instant::now();
            for _ in 0..rounds {
                pool.for_each(&mut items, |i, x| *x = std::hint::black_box(i));
            }
            let pool_secs = t0.elapsed().as_secs_f64() / rounds as f64;
            DispatchPoint {
                threads,
                spawn_secs,
                pool_secs,
            }
        })
        .collect()
}

/// Prints [`dispatch_overhead`] after `cllm bench`'s scaling table (or one
/// JSON line per thread count).
pub fn print_dispatch_overhead(thread_counts: &[usize], json: bool) {
    let points = dispatch_overhead(thread_counts, 300);
    if !json {
        println!("sphere threads, cost of one empty phase ({PHASES_PER_STEP} phases a step):");
        println!("  threads  spawned+joined  pool dispatch+join  saved per step");
    }
    for p in &points {
        let saved = (p.spawn_secs - p.pool_secs) * PHASES_PER_STEP as f64;
        if json {
            let line = serde_json::json!({
                "measurement": "dispatch",
                "threads": p.threads,
                "spawn_secs": p.spawn_secs,
                "pool_secs": p.pool_secs,
                "phases_per_step": PHASES_PER_STEP,
            });
            println!("{line}");
        } else {
            println!(
                "  {:>7}  {:>11.1} us  {:>15.1} us  {:>11.1} us",
                p.threads,
                p.spawn_secs * 1e6,
                p.pool_secs * 1e6,
                saved * 1e6
            );
        }
    }
}
