//! The command line: one file per subcommand. With no subcommand `cllm`
//! opens the desktop app.

pub mod bench;
pub mod eval_gen;
pub mod export;
pub mod generate;
pub mod inspect;
pub mod prepare;
pub mod tokenize;
pub mod train;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "cllm",
    version,
    about = "CLLM Workbench: train a small GPT on your own code, on every CPU core"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Train a model (headless): progress bar, checkpoints, metrics log
    Train(Box<train::TrainArgs>),
    /// Scan folders and consolidate the kept files into one training text
    Prepare(prepare::PrepareArgs),
    /// Train a BPE tokenizer and write the token ids of the input
    Tokenize(tokenize::TokenizeArgs),
    /// Time training steps: one-thread profile and MFU, then thread scaling
    Bench(bench::BenchArgs),
    /// Verify a checkpoint and print its config, training state and sizes
    Inspect(inspect::InspectArgs),
    /// Export a checkpoint for other tools (Hugging Face GPT-2 layout)
    Export(export::ExportArgs),
    /// Stream a completion of a prompt from a trained model
    Generate(generate::GenerateArgs),
    /// Syntax accuracy: share of C completions that parse, per prompt
    EvalGen(eval_gen::EvalGenArgs),
}

/// Runs one subcommand; the error is printed by `main`.
pub fn run(command: Commands) -> Result<(), String> {
    match command {
        Commands::Train(args) => train::run(*args),
        Commands::Prepare(args) => prepare::run(args),
        Commands::Tokenize(args) => tokenize::run(args),
        Commands::Bench(args) => bench::run(args),
        Commands::Inspect(args) => inspect::run(args),
        Commands::Export(args) => export::run(args),
        Commands::Generate(args) => generate::run(args),
        Commands::EvalGen(args) => eval_gen::run(args),
    }
}
