//! `cllm generate` (also filling a middle with `--suffix`), `cllm eval-gen`
//! and `cllm bench --generate` end to end, on small checkpoints written here
//! from freshly initialised or constructed models.

use cllm_core::{Gpt, ModelConfig, ParamLayout};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{Generator, SamplingConfig, check_c};
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

/// A checkpoint of a tiny model over the byte tokenizer.
fn write_checkpoint(dir: &Path) -> (PathBuf, Gpt) {
    let model = Gpt::new(tiny_config(), 17).unwrap();
    let path = dir.join("tiny.cllm");
    save_model(&path, &model);
    (path, model)
}

fn tiny_config() -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 32;
    cfg
}

/// A model whose next byte is always `}`: every weight zero but the final
/// LayerNorm's bias (e_0) and `}`'s first embedding entry, so the tied head
/// scores `}` 10 and every other byte 0.
fn closing_model() -> Gpt {
    let cfg = tiny_config();
    let layout = ParamLayout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    params[layout.ln_f_bias] = 1.0;
    params[layout.wte + b'}' as usize * cfg.n_embd] = 10.0;
    Gpt::from_params(cfg, params).unwrap()
}

fn save_model(path: &Path, model: &Gpt) {
    save_with_tokenizer(path, model, &Tokenizer::bytes());
}

fn save_with_tokenizer(path: &Path, model: &Gpt, tok: &Tokenizer) {
    let tokenizer_json = tok.to_json();
    let train_config = TrainConfig::default();
    let state = TrainingState::start();
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &tokenizer_json,
            train_config: &train_config,
            state: &state,
            memory: None,
        },
    )
    .unwrap();
}

fn cllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(args)
        .output()
        .expect("run cllm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn generate_streams_the_library_reply_and_reports_speed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, model) = write_checkpoint(dir.path());
    let model_arg = path.to_str().unwrap();
    let args = [
        "generate",
        "--model",
        model_arg,
        "--prompt",
        "int main() {",
        "--max-tokens",
        "20",
        "--temperature",
        "0.9",
        "--top-k",
        "50",
        "--top-p",
        "0.9",
        "--seed",
        "5",
    ];
    let first = cllm(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let again = cllm(&args);
    assert_eq!(first.stdout, again.stdout, "same seed, same output");

    // What the library produces with the same settings (the CLI decodes
    // on every core, bf16 where the CPU has it).
    let tok = Tokenizer::bytes();
    let cfg = SamplingConfig {
        temperature: 0.9,
        top_k: 50,
        top_p: 0.9,
        max_new_tokens: 20,
        seed: 5,
        ..SamplingConfig::default()
    };
    let options = cllm_generate::decoder::DecodeOptions::interactive();
    let mut g = Generator::with_options(&model, &tok, "int main() {", cfg, options).unwrap();
    while g.next_token().is_some() {}
    assert_eq!(text(&first.stdout), format!("int main() {{{}\n", g.text()));

    // The stats line starts with the count ("120 tokens" also contains
    // "20 tokens", so the count is matched from the start).
    let stderr = text(&first.stderr);
    assert!(stderr.starts_with("20 tokens in "), "{stderr}");
    assert!(stderr.contains("tokens/s"), "{stderr}");

    // A stop string that can never appear changes nothing; max tokens holds.
    let plain = [
        "generate",
        "--model",
        model_arg,
        "--prompt",
        "x",
        "--max-tokens",
        "3",
        "--no-echo",
    ];
    let without = cllm(&plain);
    assert!(without.status.success(), "{}", text(&without.stderr));
    let mut with_stop = plain.to_vec();
    with_stop.extend(["--stop", "\u{1}\u{2}\u{3}"]);
    let out = cllm(&with_stop);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&without.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("3 tokens in "), "{stderr}");
    assert!(stderr.contains("stopped by max tokens"), "{stderr}");
}

#[test]
fn generate_names_a_missing_model_file() {
    let out = cllm(&["generate", "--model", "no/such/model.cllm", "--prompt", "x"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no/such/model.cllm"),
        "{}",
        text(&out.stderr)
    );
}

/// A checkpoint over a BPE tokenizer with the FIM tokens, trained here on a
/// little C, of a model whose next token is always `x` (built as
/// [`closing_model`] is).
fn write_fim_checkpoint(dir: &Path) -> (PathBuf, Tokenizer) {
    let text = "static int add(int a, int b) {\n  return a + b;\n}\n".repeat(30);
    let tok = Tokenizer::train_bpe(&[&text], 300, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
    let mut cfg = tiny_config();
    cfg.vocab_size = tok.vocab_size();
    cfg.n_ctx = 64;
    let layout = ParamLayout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    params[layout.ln_f_bias] = 1.0;
    let x = tok.encode("x");
    assert_eq!(x.len(), 1, "x is one token");
    params[layout.wte + x[0] as usize * cfg.n_embd] = 10.0;
    let path = dir.join("fim.cllm");
    save_with_tokenizer(&path, &Gpt::from_params(cfg, params).unwrap(), &tok);
    (path, tok)
}

#[test]
fn generate_suffix_fills_the_middle_and_inspect_and_eval_say_who_can() {
    let dir = tempfile::tempdir().unwrap();
    let (fim_model, tok) = write_fim_checkpoint(dir.path());
    let (prefix, suffix) = ("static int add(int a, int b) {\n  return ", ";\n}\n");
    let model_arg = fim_model.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", model_arg, "--prompt", prefix];
        args.extend(["--max-tokens", "5", "--temperature", "0"]);
        args.extend(extra);
        cllm(&args)
    };
    let out = run(&["--suffix", suffix, "--no-echo"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "xxxxx\n");
    // Read: <fim_suffix> suffix <fim_prefix> prefix <fim_middle> line.
    let (head, line) = prefix.split_at(prefix.rfind('\n').unwrap() + 1);
    let pieces = [head, line, suffix].map(|s| tok.encode(s).len());
    let prompt = 3 + pieces.iter().sum::<usize>();
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("(infill, prompt {prompt} tokens")),
        "{stderr}"
    );
    // Echoed, the middle stands in its place; --suffix-file reads the same.
    let file = dir.path().join("suffix.c");
    std::fs::write(&file, suffix).unwrap();
    let echoed = run(&["--suffix-file", file.to_str().unwrap()]);
    assert!(echoed.status.success(), "{}", text(&echoed.stderr));
    assert_eq!(text(&echoed.stdout), format!("{prefix}xxxxx{suffix}\n"));
    // Without a suffix it is a plain completion of the prompt.
    let plain = run(&["--no-echo"]);
    let stderr = text(&plain.stderr);
    assert!(
        stderr.contains(&format!("(prompt {} tokens", tok.encode(prefix).len())),
        "{stderr}"
    );
    // Both at once, or a file that is not there: refused, saying why.
    let both = run(&["--suffix", suffix, "--suffix-file", file.to_str().unwrap()]);
    assert!(!both.status.success() && text(&both.stderr).contains("--suffix-file"));
    let missing = run(&["--suffix-file", "no/such/suffix.c"]);
    assert!(!missing.status.success());
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains("no/such/suffix.c") && stderr.contains("cannot read"),
        "{stderr}"
    );

    // A model without FIM tokens cannot fill a middle, and says so.
    let (byte_model, _) = write_checkpoint(dir.path());
    let byte_arg = byte_model.to_str().unwrap();
    let out = cllm(&[
        "generate", "--model", byte_arg, "--prompt", "int f(", "--suffix", ")",
    ]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let why = "tiny.cllm: infill is not supported by this model";
    assert!(stderr.contains(why), "{stderr}");

    // inspect and eval say which model can infill, in text and JSON.
    let f = tok.fim_tokens().unwrap();
    let yes = format!(
        "yes (FIM tokens <fim_prefix>={} <fim_suffix>={} <fim_middle>={} <fim_pad>={} <file_sep>={})",
        f.prefix, f.suffix, f.middle, f.pad, f.file_sep
    );
    let no = "no: tokenizer has no FIM tokens";
    let json = |args: &[&str]| -> serde_json::Value {
        let out = cllm(args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let c = write_c_file(dir.path());
    let c_arg = c.to_str().unwrap();
    for (model, want, can) in [(model_arg, yes.as_str(), true), (byte_arg, no, false)] {
        let out = cllm(&["inspect", "--model", model]);
        assert!(
            text(&out.stdout).contains(&format!("\ninfill      {want}")),
            "{}",
            text(&out.stdout)
        );
        let info = json(&["inspect", "--model", model, "--json"]);
        assert_eq!(info["infill"], can);
        let eval = [
            "eval",
            "--model",
            model,
            "--data",
            c_arg,
            "--seq-len",
            "16",
            "--max-windows",
            "1",
        ];
        let out = cllm(&eval);
        assert!(
            text(&out.stdout).contains(&format!("\n  infill: {want}")),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let stats = json(&[&eval[..], &["--json"]].concat());
        assert_eq!(
            (&stats["infill"], &info["fim_tokens"]),
            (&info["infill"], &stats["fim_tokens"])
        );
    }
    let info = json(&["inspect", "--model", model_arg, "--json"]);
    assert_eq!(info["fim_tokens"]["<fim_prefix>"], f.prefix);
    assert_eq!(info["fim_tokens"]["<file_sep>"], f.file_sep);
    assert!(json(&["inspect", "--model", byte_arg, "--json"])["fim_tokens"].is_null());
}

/// Six short C functions (each opening 15 bytes: they fit the tiny
/// model's context of 32 bytes, half of it for the prompt).
fn write_c_file(dir: &Path) -> PathBuf {
    let mut c = String::from("/* é: not ASCII */\n#include <stdio.h>\n\n");
    for i in 0..6 {
        c.push_str(&format!("int f{i}(int x) {{\n  return x * {i};\n}}\n\n"));
    }
    let path = dir.join("small.c");
    std::fs::write(&path, c).unwrap();
    path
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn eval_gen_writes_every_sample_and_the_parse_share() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_checkpoint(dir.path());
    let data = write_c_file(dir.path());
    let output = dir.path().join("samples.jsonl");
    let out = cllm(&[
        "eval-gen",
        "--model",
        path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--functions",
        "4",
        "--samples",
        "3",
        "--max-tokens",
        "12",
        "--output",
        output.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = jsonl(&output);
    assert_eq!(
        lines.len(),
        4 * 3 + 4 * 3,
        "four openings and four seed prompts, three samples each"
    );
    let mut correct = [0usize; 2];
    // Good completions per (set, prompt), for the standard error.
    let mut per_prompt = std::collections::BTreeMap::<(String, u64), (f64, f64)>::new();
    for line in &lines {
        let prompt = line["prompt"].as_str().unwrap();
        let completion = line["completion"].as_str().unwrap();
        // The stored verdict is the checker's on prompt + completion.
        let report = check_c(&format!("{prompt}{completion}")).unwrap();
        assert_eq!(line["parses"].as_bool().unwrap(), report.parses);
        let closed = line["closed"].as_bool().unwrap();
        assert_eq!(closed, line["finish"] == "Closed");
        let set = line["set"].as_str().unwrap();
        if set == "functions" {
            assert!(prompt.starts_with("int f") && prompt.ends_with(") {"));
            assert_eq!(line["file"], "small.c");
            assert!(line["line"].as_u64().unwrap() >= 4);
        } else {
            assert_eq!(set, "seed");
        }
        correct[usize::from(set == "seed")] += usize::from(closed && report.parses);
        let key = (set.to_string(), line["prompt_index"].as_u64().unwrap());
        let e = per_prompt.entry(key).or_default();
        e.0 += f64::from(u8::from(closed && report.parses));
        e.1 += 1.0;
    }
    // The spread of the prompts' shares over √prompts.
    let stderr = |set: &str| {
        let rates: Vec<f64> = per_prompt
            .iter()
            .filter(|((s, _), _)| s == set)
            .map(|(_, (good, of))| good / of)
            .collect();
        let n = rates.len() as f64;
        let mean = rates.iter().sum::<f64>() / n;
        let var = rates.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0);
        (var / n).sqrt()
    };
    assert!(
        stdout.contains("4 function openings from 1 file (6 C functions found)"),
        "{stdout}"
    );
    assert!(stdout.contains("syntax accuracy"), "{stdout}");
    for (name, ok) in [("functions", correct[0]), ("seed", correct[1])] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{stdout}"));
        let shown = format!(
            "{:.1}% ±{:.1} ({ok}/12)",
            100.0 * ok as f64 / 12.0,
            100.0 * stderr(name)
        );
        assert!(row.contains(&shown), "{name}: {shown} in {row}");
    }

    // A prompts file: one prompt per line, `\n` for a newline; it replaces
    // the openings, the seed prompts stay.
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "int x = 1;\\nint y = x;\n\nstruct s {\n").unwrap();
    let out = cllm(&[
        "eval-gen",
        "--model",
        path.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--samples",
        "2",
        "--max-tokens",
        "4",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = jsonl(&output);
    assert_eq!(lines.len(), 2 * 2 + 4 * 2);
    assert_eq!(lines[0]["prompt"], "int x = 1;\nint y = x;");
    assert_eq!(lines[0]["set"], "prompts");
    assert!(text(&out.stdout).contains("2 prompts from prompts file"));

    let out = cllm(&[
        "eval-gen",
        "--model",
        path.to_str().unwrap(),
        "--prompts",
        "missing_prompts.txt",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("missing_prompts.txt"));
}

#[test]
fn eval_gen_json_reports_what_a_closing_model_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closer.cllm");
    save_model(&path, &closing_model());
    let data = write_c_file(dir.path());
    let out = cllm(&[
        "eval-gen",
        "--model",
        path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--samples",
        "2",
        "--temperature",
        "0",
        "--max-tokens",
        "5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(report["openings_found"], 6);
    assert_eq!(report["source"], "1 file");
    assert_eq!(report["samples_per_prompt"], 2);
    // Every opening gets exactly `}`: closed, and it parses.
    let f = &report["sets"]["functions"];
    assert_eq!(f["prompts"], 6);
    assert_eq!(f["samples"], 12);
    assert_eq!(f["closed"], 12);
    assert_eq!(f["parsed_when_closed"], 12);
    assert_eq!(f["syntax_accuracy"], 1.0);
    assert_eq!(f["first_errors"], serde_json::json!({}));
    assert_eq!(f["mean_generated_tokens"], 1.0);
    // The seed prompts: `int main() {` closes; the two comments swallow
    // the `}`s and parse without closing; `void cllm_}}}}}` neither.
    let s = &report["sets"]["seed"];
    assert_eq!(s["samples"], 8);
    assert_eq!(s["closed"], 2);
    assert_eq!(s["parsed"], 6);
    assert_eq!(s["parsed_when_closed"], 2);
    assert_eq!(s["syntax_accuracy"], 0.25);
    assert_eq!(s["parse_rate_when_closed"], 1.0);
    let errors: u64 = s["first_errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 2);
    assert_eq!(s["finish"]["Closed"], 2);
    assert_eq!(s["finish"]["MaxTokens"], 6);
    // The samples went beside the model.
    let samples = jsonl(&dir.path().join("closer-eval-gen.jsonl"));
    assert_eq!(samples.len(), 12 + 8);
    assert_eq!(
        report["samples_file"],
        dir.path().join("closer-eval-gen.jsonl").to_str().unwrap()
    );
}

#[test]
fn eval_gen_says_when_the_data_has_no_c_functions_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_checkpoint(dir.path());
    let model = path.to_str().unwrap();
    let rust = dir.path().join("lib.rs");
    std::fs::write(
        &rust,
        "impl Tokenizer {\n    pub fn new(é: u8) -> Self { Self { é } }\n}\n",
    )
    .unwrap();
    let output = dir.path().join("s.jsonl");
    let out = cllm(&[
        "eval-gen",
        "--model",
        model,
        "--data",
        rust.to_str().unwrap(),
        "--samples",
        "1",
        "--max-tokens",
        "3",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("no C function openings in 1 file: only the seed prompts are measured"),
        "{stdout}"
    );
    assert_eq!(jsonl(&output).len(), 4);

    let out = cllm(&["eval-gen", "--model", model, "--data", "no/such/dir"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no/such/dir"),
        "{}",
        text(&out.stderr)
    );

    let out = cllm(&[
        "eval-gen",
        "--model",
        model,
        "--data",
        "x.c",
        "--prompts",
        "p.txt",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--prompts"),
        "{}",
        text(&out.stderr)
    );
}

/// The decoding bench at its quickest: the test-only preset, one repeat.
const TINY_GENERATE_BENCH: &[&str] = &["bench", "--generate", "--preset", "tiny", "--steps", "1"];

#[test]
fn bench_generate_prints_speed_and_the_cached_token_cost() {
    let out = cllm(TINY_GENERATE_BENCH);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("tokens/s"), "{stdout}");
    assert!(stdout.contains("at context 16"), "{stdout}");
    assert!(stdout.contains("of the full forward"), "{stdout}");
}

#[test]
fn bench_generate_json_names_precision_threads_and_the_bandwidth_limit() {
    let mut args = TINY_GENERATE_BENCH.to_vec();
    args.extend(["--threads", "1,2", "--json"]);
    let out = cllm(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| {
        lines
            .iter()
            .filter(|l| l["measurement"] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let bandwidth = of("memory_bandwidth");
    assert_eq!(bandwidth.len(), 2, "{lines:?}");
    assert!(
        bandwidth
            .iter()
            .all(|b| b["read_bytes_per_sec"].as_f64().unwrap() > 0.0)
    );
    let runs = of("generate");
    assert!(runs.len() == 2 || runs.len() == 4, "{runs:?}");
    for r in &runs {
        assert_eq!(r["preset"], "tiny");
        assert!(r["precision"] == "fp32" || r["precision"] == "bf16");
        let (tps, limit, share) = (
            r["tokens_per_sec"].as_f64().unwrap(),
            r["bandwidth_limit_tokens_per_sec"].as_f64().unwrap(),
            r["share_of_bandwidth_limit"].as_f64().unwrap(),
        );
        assert!((share * limit / tps - 1.0).abs() < 1e-9, "{r}");
        assert!(r["weight_bytes_per_token"].as_u64().unwrap() > 0);
    }
    assert!(runs.iter().any(|r| r["threads"] == 2));
}

/// `CLLM_CPU` caps every kernel picked at run time: capped to portable
/// code, the bench says so and runs no bf16 decoding (that needs
/// AVX512_BF16); an unknown value is named on stderr and ignored.
#[test]
fn bench_generate_follows_the_cpu_cap() {
    let run = |cap: &str, json: bool| {
        let mut args = TINY_GENERATE_BENCH.to_vec();
        args.extend(["--threads", "1"]);
        if json {
            args.push("--json");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_cllm"))
            .args(&args)
            .env("CLLM_CPU", cap)
            .output()
            .expect("run cllm");
        assert!(out.status.success(), "{}", text(&out.stderr));
        out
    };
    let out = run("portable", true);
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let runs: Vec<_> = lines
        .iter()
        .filter(|l| l["measurement"] == "generate")
        .collect();
    assert!(!runs.is_empty(), "{lines:?}");
    assert!(runs.iter().all(|r| r["precision"] == "fp32"), "{runs:?}");

    let stdout = text(&run("portable", false).stdout);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        assert!(
            stdout.contains("kernels capped to portable code by CLLM_CPU"),
            "{stdout}"
        );
    }
    assert!(!stdout.contains(", bf16:"), "{stdout}");

    let out = run("avx1024", true);
    assert!(
        text(&out.stderr).contains("CLLM_CPU=avx1024 is not one of avx512, avx2, portable"),
        "{}",
        text(&out.stderr)
    );
}
