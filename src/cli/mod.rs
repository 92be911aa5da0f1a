//! The command line: one file per subcommand.

pub mod prepare;
pub mod tokenize;
