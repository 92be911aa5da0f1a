//! `cllm completions SHELL`: the shell's completion script for `cllm`, on
//! stdout (how to install it for each shell: docs/command-line.md).

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;

#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<(), String> {
    let mut command = super::Cli::command();
    let name = command.get_name().to_string();
    // Written whole, so that `| head` closing the pipe early is not an error.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, name, &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the completion script: {e}"))
        }
        _ => Ok(()),
    }
}
