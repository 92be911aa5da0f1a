//! Data preparation: scan folders, clean and consolidate text, tokenize,
//! build token datasets, split them and batch them.

pub mod scan;
