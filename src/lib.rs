//! The `cllm` command line: one module per command over the engine crates.
//! `src/main.rs` parses the arguments and calls [`cli::run`].

pub mod cli;
