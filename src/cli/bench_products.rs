//! `cllm bench --products`: the model's f32 product shapes on the `gemm`
//! crate (what `cllm` runs) and on the system's OpenBLAS, one thread,
//! each as a share of the widest FMA instruction's register peak.

use super::bench_threads::Settings;
use cllm_core::ModelConfig;
use cllm_core::ops::crossentropy::DEFAULT_CHUNK_ROWS;
use cllm_train::bench::blas::{Blas, compare_products, model_shapes};
use cllm_train::bench::instruction_peak::{Instruction, measure};
use serde_json::json;

pub(super) fn run(args: &Settings, cfg: &ModelConfig) -> Result<(), String> {
    let blas = Blas::load();
    let shapes = model_shapes(cfg, args.batch * args.seq, DEFAULT_CHUNK_ROWS);
    let rates = compare_products(&shapes, blas.as_ref().ok(), args.steps.max(1), 0.2);
    // Both libraries may use the widest multiply-add the CPU has.
    let peak = [Instruction::FmaZmm, Instruction::FmaYmm]
        .into_iter()
        .find_map(|i| measure(i, 5).map(|g| (i, g)));
    let kernel = cllm_train::bench::gemm_isa();
    if args.json {
        for r in &rates {
            let line = json!({
                "measurement": "product",
                "preset": args.preset,
                "shape": r.shape.name,
                "m": r.shape.m, "k": r.shape.k, "n": r.shape.n,
                "gemm_gflops": r.model,
                "gemm_isa": kernel,
                "openblas_gflops": r.blas,
                "relative_difference": r.difference,
                "register_peak": peak.map(|(i, g)| json!({"instruction": i.name(), "gflops": g})),
            });
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "f32 products of the {} preset ({} x {} tokens; head tiles of {} rows), one thread, \
         best of {}, thread CPU time:",
        args.preset, args.batch, args.seq, DEFAULT_CHUNK_ROWS, args.steps
    );
    match &peak {
        Some((i, g)) => println!("  register peak: {} {g:.1} GFLOP/s", i.name()),
        None => println!("  (no FMA instruction to time the register peak against)"),
    }
    println!("  gemm: the `gemm` crate as cllm runs it ({kernel}; the dwte tile: matmul_tn)");
    match &blas {
        Ok(b) => println!("  OpenBLAS: {} (one thread)", b.library),
        Err(why) => println!("  OpenBLAS: not measured, {why}"),
    }
    let share = |g: f64| peak.map_or(String::new(), |(_, p)| format!(" {:>5.1}%", 100.0 * g / p));
    println!(
        "  {:<22} {:>5} {:>5} {:>5}  {:>20}  {:>20}",
        "shape", "m", "k", "n", "gemm", "OpenBLAS"
    );
    for r in &rates {
        let theirs = r
            .blas
            .map_or("-".to_string(), |g| format!("{g:.1}{}", share(g)));
        println!(
            "  {:<22} {:>5} {:>5} {:>5}  {:>20}  {:>20}",
            r.shape.name,
            r.shape.m,
            r.shape.k,
            r.shape.n,
            format!("{:.1}{}", r.model, share(r.model)),
            theirs
        );
    }
    println!("  (GFLOP/s, and the share of the register peak)");
    Ok(())
}
