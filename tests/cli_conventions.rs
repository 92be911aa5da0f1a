//! The command line's conventions, run as a person runs them: shell
//! completions, fixed choices listed and refused by clap, and `cllm train
//! --config FILE` (TOML, a flag over it, a finished run's config.json
//! repeating that run, an unknown key refused by name).

mod cli_support;

use cli_support::*;
use std::path::{Path, PathBuf};

/// The settings of `tiny_train_args`, as a TOML file's lines.
fn tiny_toml(data: &Path, dir: &Path, name: &str) -> String {
    format!(
        "data = [{data:?}]\npreset = \"tiny\"\ntokenizer = \"bytes\"\nthreads = 1\n\
         batch_size = 4\nseq_len = 16\nepochs = 0\nmax_steps = 6\neval_every = 10\n\
         eval_batches = 2\nlr = 0.005\nseed = 11\nschedule = \"linear\"\n\
         output = {output:?}\ncheckpoint_dir = {checkpoints:?}\nrun_name = {name:?}\n",
        data = data.to_str().unwrap(),
        output = dir.join(format!("{name}.cllm")).to_str().unwrap(),
        checkpoints = dir.join("checkpoints").to_str().unwrap(),
    )
}

/// The `train` part of `runs/<run>/config.json` under `dir`.
fn saved_settings(dir: &Path, run: &str) -> serde_json::Map<String, serde_json::Value> {
    let path = dir.join("runs").join(run).join("config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["train"].as_object().unwrap().clone()
}

fn final_weights(dir: &Path, run: &str) -> Vec<u32> {
    let path: PathBuf = dir.join("checkpoints").join(run).join("final.cllm");
    let ckpt =
        cllm_train::checkpoint::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ckpt.params.iter().map(|w| w.to_bits()).collect()
}

#[test]
fn completions_name_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let out = piped(tmp.path(), &["completions", "bash"], SHORT);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("complete -F _cllm"), "{}", out.stdout);
    for command in [
        "train",
        "prepare",
        "tokenize",
        "bench",
        "eval",
        "inspect",
        "export",
        "generate",
        "eval-gen",
        "eval-infill",
        "runs",
        "report",
        "crawl",
        "serve",
        "completions",
    ] {
        assert!(
            out.stdout.contains(command),
            "'{command}' missing from the bash completions"
        );
    }
    // The fixed choices complete too.
    assert!(out.stdout.contains("constant cosine linear step"));
    for shell in ["zsh", "fish"] {
        let out = piped(tmp.path(), &["completions", shell], SHORT);
        assert!(
            out.success() && out.stdout.contains("train"),
            "{shell}: {out:?}"
        );
    }
    let out = piped(tmp.path(), &["completions", "tcsh"], SHORT);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("possible values: bash"), "{out:?}");
}

#[test]
fn fixed_choices_are_listed_and_others_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let help = piped(tmp.path(), &["train", "-h"], SHORT);
    for values in [
        "[possible values: constant, cosine, linear, step]",
        "[possible values: bpe, bytes]",
        "[possible values: auto, fp32, bf16]",
        "[possible values: best, last]",
        "[possible values: auto, tiny, baby, small, medium, large, seed]",
        "[possible values: on, off]",
    ] {
        assert!(
            help.stdout.contains(values),
            "{values} not in:\n{}",
            help.stdout
        );
    }
    let help = piped(tmp.path(), &["export", "-h"], SHORT);
    assert!(
        help.stdout.contains("[possible values: hf, gguf]"),
        "{help:?}"
    );
    assert!(
        help.stdout.contains("[possible values: f32, f16]"),
        "{help:?}"
    );
    for (args, value) in [
        (&["train", "--schedule", "wavy"][..], "wavy"),
        (&["train", "--preset", "huge"][..], "huge"),
        (&["bench", "--precision", "fp8"][..], "fp8"),
        (
            &[
                "generate",
                "--model",
                "m.cllm",
                "--prompt",
                "x",
                "--precision",
                "int4",
            ][..],
            "int4",
        ),
        (
            &["export", "--model", "m.cllm", "--format", "onnx"][..],
            "onnx",
        ),
        (
            &["crawl", "http://127.0.0.1:9/", "--scope", "site"][..],
            "site",
        ),
    ] {
        let out = piped(tmp.path(), args, SHORT);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(&format!("invalid value '{value}'"))
                && out.stderr.contains("[possible values: "),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// A TOML file gives the run its settings; a flag given beside it wins.
#[test]
fn a_toml_config_trains_with_its_settings_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    std::fs::write(dir.join("tiny.toml"), tiny_toml(&src, dir, "fromfile")).unwrap();
    let out = piped(
        dir,
        &["train", "--config", "tiny.toml", "--max-steps", "3"],
        SHORT,
    );
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("done: 3 steps"), "{out:?}");
    assert!(dir.join("fromfile.cllm").is_file());
    let saved = saved_settings(dir, "fromfile");
    assert_eq!(saved["max_steps"], 3, "the flag wins over the file's 6");
    assert_eq!(saved["lr"], 0.005);
    assert_eq!(saved["seq_len"], 16);
    assert_eq!(saved["seed"], 11);
    assert_eq!(saved["schedule"], "linear");
    assert_eq!(saved["tokenizer"], "bytes");
    assert_eq!(saved["preset"], "tiny");
}

/// A finished run's `runs/<run>/config.json` given as --config trains a
/// new run with the same settings, and (same seed, one thread) the same
/// weights.
#[test]
fn a_runs_config_json_repeats_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    let mut args = tiny_train_args(dir, &src, "original", 4);
    args.extend(["--lr", "0.004", "--seed", "5", "--weight-decay", "0.2"].map(String::from));
    let out = piped(dir, &strs(&args), SHORT);
    assert!(out.success(), "{out:?}");
    let config = dir.join("runs/original/config.json");
    let out = piped(dir, &["train", "--config", config.to_str().unwrap()], SHORT);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("done: 4 steps"), "{out:?}");
    let repeat = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name != "original")
        .expect("the repeat has a run of its own");
    let mut first = saved_settings(dir, "original");
    let mut again = saved_settings(dir, &repeat);
    assert_eq!(first.remove("run_name").unwrap(), "original");
    assert_eq!(again.remove("run_name").unwrap(), repeat.as_str());
    assert_eq!(first, again, "the repeat's settings differ");
    assert_eq!(again["lr"], 0.004);
    assert_eq!(again["adamw"]["weight_decay"], 0.2);
    assert_eq!(
        final_weights(dir, "original"),
        final_weights(dir, &repeat),
        "the repeat trained other weights"
    );
}

#[test]
fn an_unknown_key_in_the_config_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("typo.toml"), "lr = 0.01\nlearning_rate = 0.1\n").unwrap();
    let out = piped(dir, &["train", "--config", "typo.toml"], SHORT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("unknown setting `learning_rate`") && out.stderr.contains("typo.toml"),
        "{}",
        out.stderr
    );
    assert!(!dir.join("runs").exists(), "nothing may start");
}
