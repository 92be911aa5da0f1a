//! `cllm bench`'s per-op profile at each `--threads` count: where the
//! gradients' time goes with 1, 2, ... workers running at once, each op's
//! speedup, and the memory traffic it achieved beside the machine's read
//! bandwidth at that thread count, so that a scaling loss names its op.

use cllm_core::ModelConfig;
use cllm_core::ops::bf16::Precision;
use cllm_core::ops::crossentropy::{DEFAULT_CHUNK_ROWS, HeadMode};
use cllm_train::bench::{format_thread_profiles, profile_at_threads};
use serde_json::json;

/// What the bench measures: the preset's name, sequences and tokens per
/// step, timed steps, and whether to print JSON lines.
pub(super) struct Settings<'a> {
    pub preset: &'a str,
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    pub json: bool,
}

/// Profiles the gradients at each of `threads` and prints the table (or
/// one JSON line per thread count).
pub(super) fn print_thread_profiles(
    args: &Settings,
    cfg: &ModelConfig,
    threads: &[usize],
    precision: Precision,
    mode: HeadMode,
) -> Result<(), String> {
    let steps = (1, args.steps.clamp(1, 3));
    let profiles = profile_at_threads(
        cfg,
        args.batch,
        args.seq,
        threads,
        steps,
        DEFAULT_CHUNK_ROWS,
        precision,
    )?;
    // 256 MB: many times a desktop CPU's last-level cache, so the rate is
    // DRAM's.
    let bandwidth: Vec<f64> = profiles
        .iter()
        .map(|p| {
            cllm_generate::bench::measure_bandwidth(p.threads, 256 << 20, 3).read_bytes_per_sec
        })
        .collect();
    if args.json {
        let first = &profiles[0];
        for (p, bw) in profiles.iter().zip(&bandwidth) {
            let ops: Vec<_> = p
                .ops
                .iter()
                .zip(&p.bytes)
                .map(|((name, secs), bytes)| {
                    json!({
                        "op": name,
                        "secs": secs,
                        "share": secs / p.total_secs(),
                        "speedup": first.secs(name).map(|a| a / secs),
                        "bytes": bytes,
                        "bytes_per_sec": p.traffic(name),
                    })
                })
                .collect();
            let line = json!({
                "measurement": "thread_profile",
                "head": mode.name(),
                "precision": precision.name(),
                "preset": args.preset,
                "threads": p.threads,
                "batch": args.batch,
                "seq": args.seq,
                "gradient_secs": p.total_secs(),
                "read_bandwidth_bytes_per_sec": bw,
                "ops": ops,
            });
            println!("{line}");
        }
    } else {
        println!(
            "where the gradients' time goes at each thread count (zero gradients, forward, \
             backward; N workers at once, each on its share of the {} sequences; thread CPU \
             time per step, a worker's mean; speedup: the op's time on the whole batch against \
             a worker's on its share; GB/s: the bytes the op must move, from the shapes, over \
             its time, all workers together):",
            args.batch
        );
        print!("{}", format_thread_profiles(&profiles, &bandwidth));
    }
    Ok(())
}
