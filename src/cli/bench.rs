//! `cllm bench`: training-step throughput on one thread with a per-operation
//! profile and MFU against the kernel's measured peak, then thread scaling
//! of full optimizer steps on the sphere tree.

use crate::bench::{bench_train_step, matmul_peak_gflops};
use crate::model::ModelConfig;
use crate::train::scaling;
use clap::Args;
use serde_json::json;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model preset to time
    #[arg(long, default_value = "seed")]
    pub preset: String,
    /// Sequences per step
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Thread counts to compare, e.g. 1,2,13 or 1 2 13; 0 = all cores
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Timed steps per measurement (the best is reported)
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Skip the single-thread profile, only measure scaling
    #[arg(long)]
    pub no_profile: bool,
    /// One JSON object per line per measurement
    #[arg(long)]
    pub json: bool,
    /// Measure generation instead (batch 1): tokens/s and the cost of a
    /// cached token against a full forward over the context
    #[arg(long)]
    pub generate: bool,
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    // Under `mpirun -np K`: the thread-scaling table across K ranks.
    let launch = super::cluster::Launch::detect()?;
    let cluster = launch.cluster();
    let result = run_rank(args, &cluster);
    if let Err(e) = &result
        && cluster.is_distributed()
    {
        launch.end_all_ranks(e, 1);
    }
    result
}

fn run_rank(args: BenchArgs, cluster: &crate::train::cluster::Cluster) -> Result<(), String> {
    let cfg = ModelConfig::preset(&args.preset)
        .ok_or_else(|| format!("unknown preset '{}'", args.preset))?;
    if args.generate {
        return run_generate(&args);
    }
    let cores = std::thread::available_parallelism()
        .map(|c| c.get())
        .unwrap_or(1);
    if args.threads.iter().any(|&t| t > 1024) {
        return Err("--threads takes counts from 0 (all cores) to 1024".into());
    }
    // 0 = all cores, as everywhere else; a count given twice is timed once.
    let mut threads: Vec<usize> = Vec::new();
    for t in args.threads.iter().map(|&t| if t == 0 { cores } else { t }) {
        if !threads.contains(&t) {
            threads.push(t);
        }
    }
    let peak = matmul_peak_gflops(1024, 10);
    // Rank 0 speaks for a distributed bench; the single-thread profile is
    // a one-machine figure.
    let quiet = !cluster.is_writer();
    if !args.no_profile && !cluster.is_distributed() {
        let r = bench_train_step(&cfg, args.batch, args.seq, args.steps, 1)?;
        if args.json {
            let line = json!({
                "measurement": "train_step",
                "preset": args.preset,
                "threads": 1,
                "batch": args.batch,
                "seq": args.seq,
                "tokens_per_sec": r.tokens_per_sec,
                "step_secs": r.best_step_secs,
                "gflops": r.gflops,
                "peak_gflops": r.peak_gflops,
                "mfu": r.mfu,
                "profile": r.per_op_profile.iter().map(|(k, v)| json!({"op": k, "secs": v})).collect::<Vec<_>>(),
                "limits": limits_json(&cfg, &r),
            });
            println!("{line}");
        } else {
            println!(
                "{} preset ({:.2}M parameters), {} x {} tokens, one thread, best of {} steps",
                args.preset,
                cfg.num_params() as f64 / 1e6,
                args.batch,
                args.seq,
                r.steps
            );
            println!(
                "  {:.0} tokens/s, step {:.3} s, {:.1} model GFLOP/s = {:.1}% of the {:.1} GFLOP/s matmul peak",
                r.tokens_per_sec,
                r.best_step_secs,
                r.gflops,
                100.0 * r.mfu,
                r.peak_gflops
            );
            let (bw, rows) = crate::bench::profile_limits(&cfg, &r);
            println!(
                "  where a step's time goes (thread CPU time), against each op's floor \
                 max(bytes / bandwidth, FLOPs / FMA peak):"
            );
            print!(
                "{}",
                crate::bench::format_profile_limits(&bw, r.cpu_peak_gflops, &rows)
            );
        }
    }
    let points =
        scaling::measure_in_cluster(&cfg, args.batch, args.seq, &threads, args.steps, cluster)?;
    if quiet {
        return Ok(());
    }
    // MFU of a multi-thread run is against the peak of the cores it can use.
    let mfu_of = |p: &scaling::ScalingPoint| p.gflops / (peak * p.threads.min(cores) as f64);
    if !args.json {
        if cluster.is_distributed() {
            println!(
                "{}: {} ranks, each step's {} sequences shared by rank, then by sphere",
                cluster.describe(),
                cluster.size(),
                args.batch
            );
        }
        println!("thread scaling (full optimizer steps on the sphere tree):");
        println!("  threads  tokens/s  speedup  efficiency  GFLOP/s   MFU");
    }
    for p in &points {
        if args.json {
            let line = json!({
                "measurement": "scaling",
                "preset": args.preset,
                "ranks": p.ranks,
                "params": cfg.num_params(),
                "embedding_params": (cfg.vocab_size + cfg.n_ctx) * cfg.n_embd,
                "flops_per_token": cfg.train_flops_per_token(args.seq),
                "threads": p.threads,
                "allreduce_secs": p.allreduce_secs,
                "exposed_secs": p.exposed_secs,
                "allreduce_bytes": p.allreduce_bytes,
                "batch": args.batch,
                "seq": args.seq,
                "tokens_per_sec": p.tokens_per_sec,
                "step_secs": p.step_secs,
                "gflops": p.gflops,
                "peak_gflops": peak,
                "mfu": mfu_of(p),
                "speedup": p.speedup,
                "efficiency": p.efficiency,
            });
            println!("{line}");
        } else {
            println!(
                "  {:>7}  {:>8.0}  {:>6.2}x  {:>9.1}%  {:>7.1}  {:>4.1}%",
                p.threads,
                p.tokens_per_sec,
                p.speedup,
                100.0 * p.efficiency,
                p.gflops,
                100.0 * mfu_of(p)
            );
            if p.ranks > 1 {
                println!(
                    "           all-reduce of {:.1} MB: {:.1} ms per step, {:.1} ms of it not \
                     hidden behind backward",
                    p.allreduce_bytes as f64 / 1e6,
                    p.allreduce_secs * 1e3,
                    p.exposed_secs * 1e3
                );
            }
        }
    }
    Ok(())
}

/// `--generate`: a greedy reply of 128 tokens after a 64-token prompt with
/// random weights, then one cached token vs a full forward at n_ctx.
fn run_generate(args: &BenchArgs) -> Result<(), String> {
    let r = crate::generate::bench::bench_generate(&args.preset, 64, 128, args.steps)?;
    let ratio = r.cached_token_secs / r.full_forward_secs;
    if args.json {
        let line = json!({
            "measurement": "generate",
            "preset": r.preset,
            "batch": 1,
            "prompt_tokens": r.prompt_tokens,
            "generated_tokens": r.generated_tokens,
            "tokens_per_sec": r.tokens_per_sec,
            "context": r.context,
            "cached_token_secs": r.cached_token_secs,
            "full_forward_secs": r.full_forward_secs,
            "prefill_secs": r.prefill_secs,
        });
        println!("{line}");
    } else {
        println!(
            "{} preset ({:.2}M parameters), generation at batch 1, random weights",
            r.preset,
            r.num_params as f64 / 1e6
        );
        println!(
            "  {:.1} tokens/s ({} tokens after a {}-token prompt, greedy, KV cache)",
            r.tokens_per_sec, r.generated_tokens, r.prompt_tokens
        );
        println!(
            "  at context {}: one cached token {:.2} ms; full forward without a cache (Gpt::logits, all {} positions) {:.1} ms; \
             prefill of {} tokens with last logits only {:.1} ms",
            r.context,
            r.cached_token_secs * 1e3,
            r.context,
            r.full_forward_secs * 1e3,
            r.context,
            r.prefill_secs * 1e3
        );
        println!(
            "  a cached token costs {:.2}% of the full forward ({:.2}% of the prefill)",
            100.0 * ratio,
            100.0 * r.cached_token_secs / r.prefill_secs
        );
    }
    Ok(())
}

/// Each profiled op's floor, for the bench's JSON line.
fn limits_json(cfg: &ModelConfig, r: &crate::bench::StepBench) -> serde_json::Value {
    let (bw, rows) = crate::bench::profile_limits(cfg, r);
    json!({
        "bandwidth_bytes_per_sec": {"l2": bw.l2, "l3": bw.l3, "dram": bw.dram},
        "fma_peak_gflops": r.cpu_peak_gflops,
        "ops": rows.iter().map(|o| json!({
            "op": o.name, "secs": o.secs, "bytes": o.bytes, "flops": o.flops,
            "level": o.level, "bound": o.bound(), "floor_secs": o.floor_secs, "ratio": o.ratio,
        })).collect::<Vec<_>>(),
    })
}
