//! `cllm generate`, `cllm eval-gen` and `cllm bench --generate` end to end,
//! on a small checkpoint written here from a freshly initialised model.

use cllm::checkpoint::{CheckpointRef, TrainingState, save};
use cllm::data::tokenizer::Tokenizer;
use cllm::generate::{Generator, SamplingConfig, check_c};
use cllm::model::{Gpt, ModelConfig};
use cllm::train::TrainConfig;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A checkpoint of a tiny model over the byte tokenizer.
fn write_checkpoint(dir: &Path) -> (PathBuf, Gpt) {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 32;
    let model = Gpt::new(cfg, 17).unwrap();
    let path = dir.join("tiny.cllm");
    let tokenizer_json = Tokenizer::bytes().to_json();
    let train_config = TrainConfig::default();
    let state = TrainingState::start();
    save(
        &path,
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
    (path, model)
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

    // What the library produces with the same settings.
    let tok = Tokenizer::bytes();
    let cfg = SamplingConfig {
        temperature: 0.9,
        top_k: 50,
        top_p: 0.9,
        max_new_tokens: 20,
        seed: 5,
        ..SamplingConfig::default()
    };
    let mut g = Generator::new(&model, &tok, "int main() {", cfg).unwrap();
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

#[test]
fn eval_gen_writes_every_sample_and_the_parse_share() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_checkpoint(dir.path());
    let output = dir.path().join("samples.jsonl");
    let out = cllm(&[
        "eval-gen",
        "--model",
        path.to_str().unwrap(),
        "--samples",
        "3",
        "--max-tokens",
        "12",
        "--output",
        output.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        4 * 3,
        "four default prompts, three samples each"
    );
    let mut parsed = 0;
    for line in &lines {
        let prompt = line["prompt"].as_str().unwrap();
        let completion = line["completion"].as_str().unwrap();
        // The stored verdict is the checker's on prompt + completion.
        let report = check_c(&format!("{prompt}{completion}")).unwrap();
        assert_eq!(line["parses"].as_bool().unwrap(), report.parses);
        parsed += usize::from(report.parses);
    }
    assert!(stdout.contains("int main() {"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "syntax accuracy {:.1}% ({parsed}/12)",
            100.0 * parsed as f64 / 12.0
        )),
        "{stdout}"
    );

    // A prompts file: one prompt per line, `\n` for a newline.
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
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["prompt"], "int x = 1;\nint y = x;");

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
fn bench_generate_prints_speed_and_the_cached_token_cost() {
    let out = cllm(&["bench", "--generate", "--preset", "tiny", "--steps", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("tokens/s"), "{stdout}");
    assert!(stdout.contains("at context 16"), "{stdout}");
    assert!(stdout.contains("of the full forward"), "{stdout}");
}
