//! The command line: one file per subcommand.

pub mod export;
pub mod inspect;
