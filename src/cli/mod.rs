//! The command line: one file per subcommand. With no subcommand `cllm`
//! opens the desktop app.
//!
//! One language across the commands: the model file is always `--model
//! FILE`; `--threads 0` means all cores; files a command writes land next to
//! the model (in its run's folder) unless an explicit `--output` says where.

pub mod bench;
pub mod choice;
pub mod cluster;
pub mod completions;
pub mod crawl;
pub mod eval;
pub mod eval_gen;
pub mod eval_infill;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod interrupt;
pub mod prepare;
pub mod progress;
pub mod report;
pub mod runs;
pub mod serve;
pub mod tokenize;
pub mod train;

use clap::{Parser, Subcommand};
/// A typed error as text for a [`Failure`] or a command's `Err(String)`:
/// its message and the causes it does not already say.
pub use cllm_app::error_text::error_text;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "cllm",
    version,
    about = "CLLM Workbench: train a small GPT on your own code, on every CPU core",
    long_about = "CLLM Workbench: train a small GPT on your own code, on every CPU core.\n\n\
                  With no command, opens the desktop app (it needs a display).\n\
                  Every command that reads a model takes it as --model FILE."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Train a model (headless): progress bar, checkpoints, metrics log; Ctrl-C stops and saves
    Train(Box<train::TrainArgs>),
    /// Scan folders and consolidate the kept files into one training text
    Prepare(prepare::PrepareArgs),
    /// Train a BPE tokenizer and write the token ids of the input
    Tokenize(tokenize::TokenizeArgs),
    /// Time training steps: one-thread profile and MFU, then thread scaling
    Bench(bench::BenchArgs),
    /// Evaluate a checkpoint: loss, perplexity, bits per byte, accuracy, P/R/F1
    Eval(eval::EvalArgs),
    /// Verify a checkpoint and print its config, training state and sizes
    Inspect(inspect::InspectCommand),
    /// Export a checkpoint for other tools (Hugging Face GPT-2 layout)
    Export(export::ExportCommand),
    /// Stream a completion of a prompt from a trained model
    Generate(generate::GenerateArgs),
    /// Code metrics: complete C function openings from the data (and the
    /// preset prompts) until their braces close; closed rate, parse rate,
    /// syntax accuracy and first error kinds
    EvalGen(eval_gen::EvalGenArgs),
    /// Infill metrics: holes cut from C function bodies of held-out files
    /// (a line's end, an if/for/while/switch body) filled with and without
    /// the suffix and the memory: exact match, edit similarity, parse rate
    EvalInfill(eval_infill::EvalInfillArgs),
    /// List the training runs (status, size, data, best loss, speed); --csv exports metrics
    Runs(runs::RunsArgs),
    /// Write a run's report: runs/<name>/report.md with its benchmark sheet and PNG plots
    Report(report::ReportArgs),
    /// Collect training text from web pages: in scope, polite (robots.txt,
    /// delays), resumable; pages land in the data folder the trainer scans
    Crawl(crawl::CrawlArgs),
    /// Serve a model over an OpenAI-compatible HTTP API and llama.cpp's /infill for editors (loopback by default); Ctrl-C stops
    Serve(serve::ServeArgs),
    /// Print the shell completion script for cllm (bash, zsh, fish, ...),
    /// e.g. `cllm completions bash > ~/.local/share/bash-completion/completions/cllm`
    Completions(completions::CompletionsArgs),
}

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status of a run stopped by SIGTERM (128 + 15).
pub const EXIT_TERMINATED: u8 = 143;

/// Why a command failed and the exit status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// 1 for errors, [`EXIT_INTERRUPTED`] after Ctrl-C, [`EXIT_TERMINATED`]
    /// after SIGTERM.
    pub code: u8,
}

impl Failure {
    /// A command stopped cleanly by a signal: `code` is 128 + its number.
    pub fn stopped_by(code: u8, message: String) -> Failure {
        Failure { message, code }
    }

    /// Whether the command was stopped by Ctrl-C or SIGTERM (its message
    /// then says so itself, without "error:").
    pub fn is_stop(&self) -> bool {
        self.code == EXIT_INTERRUPTED || self.code == EXIT_TERMINATED
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, code: 1 }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::from(message.to_string())
    }
}

/// Runs one subcommand; the message is printed by `main`.
pub fn run(command: Commands) -> Result<(), Failure> {
    match command {
        Commands::Train(args) => train::run(*args),
        Commands::Prepare(args) => Ok(prepare::run(args)?),
        Commands::Tokenize(args) => Ok(tokenize::run(args)?),
        Commands::Bench(args) => Ok(bench::run(args)?),
        Commands::Eval(args) => Ok(eval::run(args)?),
        Commands::Inspect(args) => Ok(inspect::run(args.resolve()?)?),
        Commands::Export(args) => Ok(export::run(args.resolve()?)?),
        Commands::Generate(args) => Ok(generate::run(args)?),
        Commands::EvalGen(args) => Ok(eval_gen::run(args)?),
        Commands::EvalInfill(args) => Ok(eval_infill::run(args)?),
        Commands::Runs(args) => Ok(runs::run(args)?),
        Commands::Report(args) => Ok(report::run(args)?),
        Commands::Crawl(args) => crawl::run(args),
        Commands::Serve(args) => Ok(serve::run(args)?),
        Commands::Completions(args) => Ok(completions::run(args)?),
    }
}

/// The model file of a command that also accepts it positionally (the old
/// form, hidden from `--help`): `--model FILE` wins, clap forbids both.
pub fn model_path(model: Option<PathBuf>, positional: Option<PathBuf>) -> Result<PathBuf, String> {
    model
        .or(positional)
        .ok_or_else(|| "no model given: pass the checkpoint as --model FILE".to_string())
}

/// Where a command puts a file it writes about a model when no `--output`
/// is given: beside the model, named after it, e.g.
/// `checkpoints/run/final.cllm` + `-hf` -> `checkpoints/run/final-hf`.
pub fn beside_model(model: &Path, suffix: &str) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let name = format!("{stem}{suffix}");
    match model.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => PathBuf::from(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_default_beside_the_model() {
        assert_eq!(
            beside_model(Path::new("checkpoints/run/final.cllm"), "-hf"),
            PathBuf::from("checkpoints/run/final-hf")
        );
        assert_eq!(
            beside_model(Path::new("tiny.cllm"), "-eval-gen.jsonl"),
            PathBuf::from("tiny-eval-gen.jsonl")
        );
    }

    #[test]
    fn the_model_flag_wins_and_a_missing_model_is_named() {
        let got = model_path(Some("a.cllm".into()), None).unwrap();
        assert_eq!(got, PathBuf::from("a.cllm"));
        let got = model_path(None, Some("b.cllm".into())).unwrap();
        assert_eq!(got, PathBuf::from("b.cllm"));
        assert!(model_path(None, None).unwrap_err().contains("--model"));
    }

    #[test]
    fn every_model_command_takes_model_and_inspect_export_keep_the_old_form() {
        for cmd in ["inspect", "export", "eval", "generate", "eval-gen"] {
            let mut args = vec!["cllm", cmd, "--model", "m.cllm"];
            if cmd == "generate" {
                args.extend(["--prompt", "x"]);
            }
            let parsed = Cli::try_parse_from(&args);
            assert!(parsed.is_ok(), "{cmd}: {:?}", parsed.err());
        }
        for cmd in ["inspect", "export"] {
            let parsed = Cli::try_parse_from(["cllm", cmd, "old.cllm"]);
            assert!(parsed.is_ok(), "{cmd} positional: {:?}", parsed.err());
            let both = Cli::try_parse_from(["cllm", cmd, "old.cllm", "--model", "new.cllm"]);
            assert!(both.is_err(), "{cmd}: both forms at once must be refused");
            let none = Cli::try_parse_from(["cllm", cmd]);
            assert!(none.is_err(), "{cmd}: a model is required");
        }
    }

    #[test]
    fn bench_threads_take_a_list_and_zero() {
        for args in [
            &["cllm", "bench", "--threads", "1,2"][..],
            &["cllm", "bench", "--threads", "1", "2"][..],
            &["cllm", "bench", "--threads", "0"][..],
        ] {
            let Ok(Cli {
                command: Some(Commands::Bench(b)),
            }) = Cli::try_parse_from(args)
            else {
                panic!("{args:?} did not parse as bench");
            };
            assert!(!b.threads.is_empty(), "{args:?}");
        }
    }
}
