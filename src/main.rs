//! `cllm`: with no subcommand, the desktop app; otherwise a headless command.

use clap::Parser;
use cllm::cli::{Cli, Failure, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(command) => run(command),
        None => cllm_app::run_app().map_err(Failure::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if failure.message.is_empty() {
                // Already said where it belonged.
            } else if failure.is_stop() {
                eprintln!("{}", failure.message);
            } else {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}
