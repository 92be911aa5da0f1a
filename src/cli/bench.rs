//! `cllm bench`: training-step throughput on one thread with a per-operation
//! profile and MFU against the kernel's measured peak, then thread scaling
//! of full optimizer steps on the sphere tree.

use super::choice::{choice, model_presets};
use clap::Args;
use cllm_core::ModelConfig;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_core::ops::crossentropy::{DEFAULT_CHUNK_ROWS, HeadMode, head_mode, set_head_mode};
use cllm_train::bench::{bench_train_step_in, kernel_name, matmul_peak_for};
use cllm_train::scaling;
use serde_json::json;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model preset to time
    #[arg(long, default_value = "seed", value_parser = model_presets())]
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
    /// Matmul precision: auto (bf16 where the CPU has AVX512_BF16), fp32
    /// or bf16
    #[arg(long, default_value = "auto", ignore_case = true, value_parser = choice::<PrecisionChoice>())]
    pub precision: PrecisionChoice,
    /// The vocabulary head's backward: store (each tile's exponentials
    /// kept in a (chunk, V) scratch), recompute (each tile's logits
    /// multiplied again), or both, measured one after the other
    /// (store,recompute); default: CLLM_HEAD, else store
    #[arg(long, value_delimiter = ',', num_args = 1.., value_parser = parse_head_mode)]
    pub head: Vec<HeadMode>,
    /// Skip the per-op profiles (one thread, and at each --threads count),
    /// only measure scaling
    #[arg(long)]
    pub no_profile: bool,
    /// One JSON object per line per measurement
    #[arg(long)]
    pub json: bool,
    /// Measure generation instead (batch 1): tokens/s on `small` and `seed`
    /// (or the --preset named) at each --threads count, fp32 and (where the
    /// CPU has AVX512_BF16) bf16, beside the memory-bandwidth limit; and the
    /// cost of a cached token against a full forward over the context
    #[arg(long)]
    pub generate: bool,
    /// Measure the f32 products instead: the model's own shapes (its
    /// linear layers on batch x seq rows, the head's tile products) on the
    /// `gemm` crate and on the system's OpenBLAS where it is installed,
    /// one thread, each against the FMA instruction's register peak
    #[arg(long)]
    pub products: bool,
}

impl BenchArgs {
    fn settings(&self) -> super::bench_threads::Settings<'_> {
        super::bench_threads::Settings {
            preset: &self.preset,
            batch: self.batch,
            seq: self.seq,
            steps: self.steps,
            json: self.json,
        }
    }
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

fn run_rank(args: BenchArgs, cluster: &cllm_train::cluster::Cluster) -> Result<(), String> {
    let cfg = ModelConfig::preset(&args.preset)?;
    if args.generate {
        return run_generate(&args);
    }
    if args.products {
        return super::bench_products::run(&args.settings(), &cfg);
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
    super::cluster::size_rayon_for_rank(cluster, threads.iter().copied().max().unwrap_or(1));
    let precision = args.precision.resolve();
    let peak = matmul_peak_for(precision, 1024, 10).wall;
    // Rank 0 speaks for a distributed bench; the single-thread profile is
    // a one-machine figure.
    let quiet = !cluster.is_writer();
    if !quiet && !args.json {
        println!("CPU: {}", cpu_name());
    }
    let mut modes: Vec<HeadMode> = Vec::new();
    for m in args
        .head
        .iter()
        .copied()
        .chain((args.head.is_empty()).then(head_mode))
    {
        if !modes.contains(&m) {
            modes.push(m);
        }
    }
    for (i, &mode) in modes.iter().enumerate() {
        set_head_mode(mode);
        if !quiet && !args.json {
            println!("head: {} (--head or CLLM_HEAD)", describe_head(mode));
        }
        let run = Run {
            args: &args,
            cfg: &cfg,
            cluster,
            threads: &threads,
            precision,
            peak,
            cores,
            mode,
        };
        run.measure(i == 0)?;
    }
    Ok(())
}

/// The head's mode in a few words.
fn describe_head(mode: HeadMode) -> &'static str {
    match mode {
        HeadMode::Store => "store (pass 1 keeps each tile's exponentials for the backward)",
        HeadMode::Recompute => "recompute (the backward multiplies each tile's logits again)",
    }
}

fn parse_head_mode(s: &str) -> Result<HeadMode, String> {
    HeadMode::parse(s).ok_or_else(|| format!("`{s}` is not a head mode: store or recompute"))
}

/// One head mode's measurements, on settings shared by all.
struct Run<'a> {
    args: &'a BenchArgs,
    cfg: &'a ModelConfig,
    cluster: &'a cllm_train::cluster::Cluster,
    threads: &'a [usize],
    precision: cllm_core::ops::bf16::Precision,
    peak: f64,
    cores: usize,
    mode: HeadMode,
}

impl Run<'_> {
    /// The one-thread profile, the profile at each thread count and the
    /// scaling table; the dispatch overhead too when `first`.
    fn measure(&self, first: bool) -> Result<(), String> {
        let Run {
            args,
            cfg,
            cluster,
            threads,
            precision,
            peak,
            cores,
            mode,
        } = *self;
        let cfg = cfg.clone();
        let quiet = !cluster.is_writer();
        if !args.no_profile && !cluster.is_distributed() {
            let r = bench_train_step_in(
                &cfg,
                args.batch,
                args.seq,
                args.steps,
                1,
                DEFAULT_CHUNK_ROWS,
                precision,
            )?;
            // The tied head's three products (logits, dx, dwte) against the
            // kernel's peak, both by thread CPU time.
            let head_flops = 6.0 * (args.batch * args.seq * cfg.n_embd * cfg.vocab_size) as f64;
            let head_secs = r
                .per_op_profile
                .iter()
                .find(|(op, _)| op.starts_with("head"))
                .map_or(f64::NAN, |(_, s)| *s);
            let head_share = head_flops / head_secs / 1e9 / r.cpu_peak_gflops;
            if args.json {
                let line = json!({
                    "measurement": "train_step",
                    "head": mode.name(),
                    "cpu": cpu_name(),
                    "precision": precision.name(),
                    "kernel": kernel_name(precision),
                    "head_share_of_peak": head_share,
                    "preset": args.preset,
                    "threads": 1,
                    "batch": args.batch,
                    "seq": args.seq,
                    "tokens_per_sec": r.tokens_per_sec,
                    "step_secs": r.best_step_secs,
                    "gflops": r.gflops,
                    "peak_gflops": r.peak_gflops,
                    "peak_spread": r.peak_spread,
                    "mfu": r.mfu,
                    "profile": r.per_op_profile.iter().map(|(k, v)| json!({"op": k, "secs": v})).collect::<Vec<_>>(),
                    "limits": limits_json(&cfg, &r),
                });
                println!("{line}");
            } else {
                println!(
                    "{} preset ({:.2}M parameters), {} x {} tokens, {} matmuls ({}), one thread, best of {} steps",
                    args.preset,
                    cfg.num_params() as f64 / 1e6,
                    args.batch,
                    args.seq,
                    precision.name(),
                    kernel_name(precision),
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
                println!(
                    "  the head's matmuls run at {:.1}% of the kernel's {:.1} GFLOP/s (CPU time)",
                    100.0 * head_share,
                    r.cpu_peak_gflops
                );
                if r.peak_spread > 0.03 {
                    println!(
                        "  (the peak measured {:.0}% apart before the steps and after them: the \
                     machine's speed moved during the run; the higher is used)",
                        100.0 * r.peak_spread
                    );
                }
                let (bw, rows) = cllm_train::bench::profile_limits(&cfg, &r);
                println!(
                    "  where a step's time goes (thread CPU time), against each op's floor \
                 max(bytes / bandwidth, FLOPs / FMA peak):"
                );
                print!(
                    "{}",
                    cllm_train::bench::format_profile_limits(
                        &bw,
                        cllm_train::bench::peaks_of(&r),
                        &rows
                    )
                );
                let floor_step = cllm_train::bench::floor_step_secs(&rows);
                let tokens = (r.batch * r.seq) as f64;
                let share = |step: f64| 100.0 * r.tokens_per_sec * step / tokens;
                println!(
                    "  every op at its floor: a step of {:.1} ms, {:.0} tokens/s on one thread, \
                 what these kernels allow (this run {:.1}%)",
                    floor_step * 1e3,
                    tokens / floor_step,
                    share(floor_step)
                );
                match cllm_train::bench::instruction_peaks(precision) {
                    Some((peaks, [products, f32_ops])) => {
                        let step = cllm_train::bench::floor_step_with(&cfg, &r, &bw, peaks);
                        println!(
                            "  from registers alone: {} {:.1} GFLOP/s for the products (the kernel's \
                         peak is {:.0}% of it), {} {:.1} for the f32 ops",
                            products.name(),
                            peaks.matmul,
                            100.0 * r.cpu_peak_gflops / peaks.matmul,
                            f32_ops.name(),
                            peaks.f32
                        );
                        println!(
                            "  every op at its floor at those peaks: a step of {:.1} ms, {:.0} tokens/s \
                         on one thread, about the most this machine allows (this run {:.1}%)",
                            step * 1e3,
                            tokens / step,
                            share(step)
                        );
                    }
                    None => println!(
                        "  (no ceiling from the instructions' own peak: the products or the f32 ops \
                     run without vector multiply-adds here)"
                    ),
                }
            }
        }
        if !args.no_profile && !cluster.is_distributed() {
            super::bench_threads::print_thread_profiles(
                &args.settings(),
                &cfg,
                threads,
                precision,
                mode,
            )?;
        }
        let points = scaling::measure_in_cluster(
            &cfg, args.batch, args.seq, threads, args.steps, cluster, precision,
        )?;
        if quiet {
            return Ok(());
        }
        // What the sphere pool saves each phase (before the scaling table,
        // which stays the output's last section).
        if first && !cluster.is_distributed() {
            scaling::print_dispatch_overhead(threads, args.json);
        }
        // MFU of a multi-thread run is against the peak of the cores it can use
        // (each rank's own: the cluster's GFLOP/s are every rank's).
        let mfu_of = |p: &scaling::ScalingPoint| {
            p.gflops / (peak * (p.threads.min(cores) * p.ranks.max(1)) as f64)
        };
        if !args.json {
            if cluster.is_distributed() {
                println!(
                    "{}: {} ranks, each step's {} sequences shared by rank, then by sphere",
                    cluster.describe(),
                    cluster.size(),
                    args.batch
                );
            }
            println!(
                "thread scaling (full optimizer steps on the sphere tree, {} matmuls):",
                precision.name()
            );
            println!("  threads  tokens/s  speedup  efficiency  GFLOP/s   MFU");
        }
        for p in &points {
            if args.json {
                let line = json!({
                    "measurement": "scaling",
                    "head": mode.name(),
                    "precision": precision.name(),
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
                        "           summing {:.1} MB of gradients: {:.1} ms per step in the \
                     collective, {:.1} ms of it not hidden behind backward",
                        p.allreduce_bytes as f64 / 1e6,
                        p.allreduce_secs * 1e3,
                        p.exposed_secs * 1e3
                    );
                }
            }
        }
        Ok(())
    }
}

/// `--generate`: greedy replies of 128 tokens after a 64-token prompt with
/// random weights, on `small` and `seed` (or the `--preset` named, when it
/// is not the default `seed`), at each `--threads` count in fp32 and, where
/// the CPU has AVX512_BF16, bf16; beside each, the memory-bandwidth limit
/// (weight bytes per token / read bandwidth measured at that thread count)
/// and the share of it reached. Then one cached token vs a full forward at
/// n_ctx.
fn run_generate(args: &BenchArgs) -> Result<(), String> {
    use cllm_generate::bench::{bench_generate, measure_bandwidth, measure_dispatch};
    use cllm_generate::decoder::resolve_threads;
    let presets: Vec<&str> = if args.preset == "seed" {
        vec!["small", "seed"]
    } else {
        vec![args.preset.as_str()]
    };
    for p in &presets {
        ModelConfig::preset(p)?;
    }
    if args.threads.iter().any(|&t| t > 1024) {
        return Err("--threads takes counts from 0 (all cores) to 1024".into());
    }
    let mut threads: Vec<usize> = Vec::new();
    for t in args.threads.iter().map(|&t| resolve_threads(t)) {
        if !threads.contains(&t) {
            threads.push(t);
        }
    }
    // 256 MB: many times a desktop CPU's last-level cache, so the weights'
    // bandwidth is DRAM's.
    let bandwidth: Vec<_> = threads
        .iter()
        .map(|&t| measure_bandwidth(t, 256 << 20, 3))
        .collect();
    let dispatch: Vec<(usize, f64, f64)> = threads
        .iter()
        .filter(|&&t| t > 1)
        .map(|&t| {
            let (own, rayon) = measure_dispatch(t, 500);
            (t, own, rayon)
        })
        .collect();
    let cpu = cpu_name();
    if args.json {
        for b in &bandwidth {
            println!(
                "{}",
                json!({
                    "measurement": "memory_bandwidth",
                    "cpu": cpu,
                    "threads": b.threads,
                    "buffer_bytes": b.buffer_bytes,
                    "read_bytes_per_sec": b.read_bytes_per_sec,
                    "copy_bytes_per_sec": b.copy_bytes_per_sec,
                })
            );
        }
        for (t, own, rayon) in &dispatch {
            println!(
                "{}",
                json!({
                    "measurement": "decode_dispatch",
                    "threads": t,
                    "pool_secs": own,
                    "rayon_broadcast_secs": rayon,
                })
            );
        }
    } else {
        println!("CPU: {cpu}");
        for b in &bandwidth {
            println!(
                "  memory bandwidth, {} thread{}: read {:.1} GB/s, copy {:.1} GB/s (over {} MB)",
                b.threads,
                if b.threads == 1 { "" } else { "s" },
                b.read_bytes_per_sec / 1e9,
                b.copy_bytes_per_sec / 1e9,
                b.buffer_bytes >> 20
            );
        }
        for (t, own, rayon) in &dispatch {
            println!(
                "  one dispatch to {t} threads: decoder pool {:.1} us, rayon broadcast {:.1} us",
                own * 1e6,
                rayon * 1e6
            );
        }
    }
    for preset in presets {
        let r = bench_generate(preset, 64, 128, args.steps.min(3), &threads, &bandwidth)?;
        print_generate(args, &r);
    }
    Ok(())
}

fn print_generate(args: &BenchArgs, r: &cllm_generate::bench::GenerateBench) {
    let ratio = r.cached_token_secs / r.full_forward_secs;
    if args.json {
        for run in &r.runs {
            let line = json!({
                "measurement": "generate",
                "preset": r.preset,
                "batch": 1,
                "threads": run.threads,
                "precision": run.precision.name(),
                "bf16_in_hardware": run.in_hardware,
                "prompt_tokens": r.prompt_tokens,
                "generated_tokens": r.generated_tokens,
                "tokens_per_sec": run.tokens_per_sec,
                "weight_bytes_per_token": run.weight_bytes_per_token,
                "bandwidth_limit_tokens_per_sec": run.limit_tokens_per_sec,
                "share_of_bandwidth_limit": run.share_of_limit,
                "context": r.context,
                "cached_token_secs": r.cached_token_secs,
                "full_forward_secs": r.full_forward_secs,
                "prefill_secs": r.prefill_secs,
                "chunked_prefill_secs": r.chunked_prefill_secs,
            });
            println!("{line}");
        }
    } else {
        println!(
            "{} preset ({:.2}M parameters), generation at batch 1, random weights, {} tokens after a {}-token prompt, greedy, KV cache",
            r.preset,
            r.num_params as f64 / 1e6,
            r.generated_tokens,
            r.prompt_tokens
        );
        for run in &r.runs {
            println!(
                "  {} thread{}, {}: {:.1} tokens/s; reads {:.1} MB of weights a token, bandwidth limit {:.1} tokens/s: {:.0}% of it",
                run.threads,
                if run.threads == 1 { " " } else { "s" },
                run.precision.name(),
                run.tokens_per_sec,
                run.weight_bytes_per_token as f64 / 1e6,
                run.limit_tokens_per_sec,
                100.0 * run.share_of_limit
            );
        }
        println!(
            "  at context {}: one cached token {:.2} ms (one thread, fp32); full forward without a cache (Gpt::logits, all {} positions) {:.1} ms; \
             prefill of {} tokens with last logits only {:.1} ms ({:.1} ms in {}-row chunks, as a reply starts)",
            r.context,
            r.cached_token_secs * 1e3,
            r.context,
            r.full_forward_secs * 1e3,
            r.context,
            r.prefill_secs * 1e3,
            r.chunked_prefill_secs * 1e3,
            cllm_generate::prefill_chunk(r.context)
        );
        println!(
            "  a cached token costs {:.2}% of the full forward ({:.2}% of the prefill)",
            100.0 * ratio,
            100.0 * r.cached_token_secs / r.prefill_secs
        );
    }
}

/// The CPU's model name and its AVX-512 flags (Linux), for quoting figures.
fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let name = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let mut flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| {
            l.split_whitespace()
                .filter(|f| f.starts_with("avx512"))
                .collect()
        })
        .unwrap_or_default();
    flags.sort_unstable();
    flags.dedup();
    let mut line = if flags.is_empty() {
        name
    } else {
        format!("{name} ({})", flags.join(" "))
    };
    if let Some(note) = cllm_core::ops::fast_math::cap_note() {
        line.push_str(&format!(
            "; {note}; f32 matmuls: {}",
            cllm_train::bench::gemm_isa()
        ));
    }
    line
}

/// Each profiled op's floor, for the bench's JSON line.
fn limits_json(cfg: &ModelConfig, r: &cllm_train::bench::StepBench) -> serde_json::Value {
    let (bw, rows) = cllm_train::bench::profile_limits(cfg, r);
    let floor_step = cllm_train::bench::floor_step_secs(&rows);
    let tokens = (r.batch * r.seq) as f64;
    // The machine's ceiling: the same floors at the instructions' own peaks.
    let ceiling = cllm_train::bench::instruction_peaks(r.precision).map(|(peaks, [p, f])| {
        let step = cllm_train::bench::floor_step_with(cfg, r, &bw, peaks);
        json!({
            "step_secs": step,
            "tokens_per_sec": tokens / step,
            "products": {"instruction": p.name(), "gflops": peaks.matmul},
            "f32_ops": {"instruction": f.name(), "gflops": peaks.f32},
        })
    });
    json!({
        "floor_step_secs": floor_step,
        "floor_tokens_per_sec": tokens / floor_step,
        "ceiling": ceiling,
        "bandwidth_bytes_per_sec": {"l2": bw.l2, "l3": bw.l3, "dram": bw.dram},
        "fma_peak_gflops": r.cpu_peak_gflops,
        "f32_fma_peak_gflops": r.cpu_f32_peak_gflops,
        "ops": rows.iter().map(|o| json!({
            "op": o.name, "secs": o.secs, "bytes": o.bytes, "flops": o.flops,
            "level": o.level, "bound": o.bound(), "floor_secs": o.floor_secs, "ratio": o.ratio,
        })).collect::<Vec<_>>(),
    })
}
