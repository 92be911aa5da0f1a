//! The special tokens: `<|endoftext|>` between files and the
//! fill-in-the-middle tokens (StarCoder's names). The tokenizer gives them
//! ids; [`crate::fim`] arranges text around them.

/// The special token placed between files.
pub const EOT: &str = "<|endoftext|>";

pub const FIM_PREFIX: &str = "<fim_prefix>";
pub const FIM_MIDDLE: &str = "<fim_middle>";
pub const FIM_SUFFIX: &str = "<fim_suffix>";
pub const FIM_PAD: &str = "<fim_pad>";
/// Separates files given as context (StarCoder2's name).
pub const FILE_SEP: &str = "<file_sep>";

/// The FIM tokens in id order after `<|endoftext|>` (ids 1 to 5 in a
/// tokenizer trained by this crate).
pub const FIM_SPECIALS: [&str; 5] = [FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILE_SEP];

/// The ids of the fill-in-the-middle tokens (and `<|endoftext|>`, which ends
/// a middle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FimTokens {
    pub prefix: u32,
    pub middle: u32,
    pub suffix: u32,
    pub pad: u32,
    pub file_sep: u32,
    pub eot: u32,
}

impl FimTokens {
    /// Looks each token up by name; `None` unless all are there.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<u32>) -> Option<FimTokens> {
        Some(FimTokens {
            prefix: lookup(FIM_PREFIX)?,
            middle: lookup(FIM_MIDDLE)?,
            suffix: lookup(FIM_SUFFIX)?,
            pad: lookup(FIM_PAD)?,
            file_sep: lookup(FILE_SEP)?,
            eot: lookup(EOT)?,
        })
    }

    pub fn contains(&self, id: u32) -> bool {
        [
            self.prefix,
            self.middle,
            self.suffix,
            self.pad,
            self.file_sep,
            self.eot,
        ]
        .contains(&id)
    }
}
