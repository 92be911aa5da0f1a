//! `cllm bench` as a person runs it: both head modes in one run with the
//! per-op profile at each thread count, a head mode it does not know, and
//! the product comparison.

use serde_json::Value;
use std::process::{Command, Output};

fn cllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(args)
        .output()
        .expect("cllm runs")
}

fn json_lines(out: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

const TINY: [&str; 8] = [
    "bench", "--preset", "tiny", "--batch", "3", "--seq", "16", "--steps",
];

#[test]
fn both_head_modes_are_measured_with_a_profile_at_each_thread_count() {
    let mut args = TINY.to_vec();
    args.extend([
        "1",
        "--threads",
        "1,2",
        "--head",
        "store,recompute",
        "--json",
    ]);
    let out = cllm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    for mode in ["store", "recompute"] {
        let of = |what: &str| -> Vec<&Value> {
            lines
                .iter()
                .filter(|l| l["measurement"] == what && l["head"] == mode)
                .collect()
        };
        assert_eq!(of("train_step").len(), 1, "{mode}: one profile");
        assert_eq!(of("scaling").len(), 2, "{mode}: 1 and 2 threads");
        let profiles = of("thread_profile");
        let threads: Vec<u64> = profiles
            .iter()
            .map(|p| p["threads"].as_u64().unwrap())
            .collect();
        assert_eq!(threads, [1, 2], "{mode}");
        for p in profiles {
            let ops = p["ops"].as_array().unwrap();
            let head = ops
                .iter()
                .find(|o| o["op"].as_str().unwrap().starts_with("head"))
                .expect("the head is profiled");
            assert!(head["secs"].as_f64().unwrap() > 0.0, "{head}");
            assert!(head["bytes_per_sec"].as_f64().unwrap() > 0.0, "{head}");
            let shares: f64 = ops.iter().map(|o| o["share"].as_f64().unwrap()).sum();
            assert!(
                (shares - 1.0).abs() < 1e-9,
                "{mode}: shares sum to {shares}"
            );
            assert!(p["read_bandwidth_bytes_per_sec"].as_f64().unwrap() > 0.0);
        }
    }
}

#[test]
fn an_unknown_head_mode_is_refused_by_name() {
    let mut args = TINY.to_vec();
    args.extend(["1", "--head", "cached"]);
    let out = cllm(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cached") && err.contains("store or recompute"),
        "{err}"
    );
}

#[test]
fn products_are_timed_on_the_models_shapes() {
    let out = cllm(&[
        "bench",
        "--preset",
        "tiny",
        "--products",
        "--steps",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let names: Vec<&str> = lines.iter().map(|l| l["shape"].as_str().unwrap()).collect();
    assert!(names.contains(&"head logits tile") && names.contains(&"mlp.c_fc forward"));
    assert_eq!(lines.len(), 7);
    for l in &lines {
        assert!(l["gemm_gflops"].as_f64().unwrap() > 0.0, "{l}");
    }
}
