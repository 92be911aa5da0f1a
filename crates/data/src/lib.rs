//! Data preparation: scan folders, clean and consolidate text, tokenize,
//! build token datasets, split them and batch them. [`DataError`] says
//! which file or setting stopped any of these, and what to do.

pub mod batches;
pub mod clean;
pub mod consolidate;
pub mod dataset;
pub mod error;
pub mod fim;
pub mod fingerprint;
pub mod scan;
pub mod special_tokens;
pub mod token_file;
pub mod tokenizer;

pub use clean::read_clean;
pub use error::DataError;
