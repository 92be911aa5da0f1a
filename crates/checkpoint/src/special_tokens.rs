//! The special tokens of a checkpoint's tokenizer, as the exports name them:
//! `<|endoftext|>` (which ends a document and a middle) and the
//! fill-in-the-middle tokens. A tokenizer trained before FIM, or the byte
//! tokenizer, has no FIM tokens: its exports carry none and cannot infill.

use super::CheckpointError;
use cllm_data::fim::{FILE_SEP, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX, FimTokens};
use cllm_data::tokenizer::{EOT, Tokenizer};

/// `<|endoftext|>` and the FIM tokens of one tokenizer, by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`; `None` for the byte tokenizer.
    pub eot: Option<u32>,
    /// `None` when the tokenizer has no FIM tokens (the model cannot infill).
    pub fim: Option<FimTokens>,
}

impl SpecialTokens {
    /// The tokens the tokenizer of a checkpoint's `tokenizer.json` has
    /// (the FIM tokens only when all are there, as
    /// [`Tokenizer::fim_tokens`] finds them).
    pub fn of(tokenizer_json: &str) -> Result<SpecialTokens, CheckpointError> {
        let tok = Tokenizer::from_json(tokenizer_json)
            .map_err(|e| CheckpointError::tokenizer(format!("tokenizer.json: {e}")))?;
        Ok(SpecialTokens {
            eot: tok.eot_id(),
            fim: tok.fim_tokens(),
        })
    }

    /// Every special token as (text, id): `<|endoftext|>` first, then the
    /// FIM tokens in [`fim_named`] order.
    pub fn named(&self) -> Vec<(&'static str, u32)> {
        let eot = self.eot.map(|id| (EOT, id));
        let fim = self.fim.as_ref().map(fim_named);
        eot.into_iter().chain(fim.into_iter().flatten()).collect()
    }
}

/// The FIM tokens as (text, id), in prompt order: prefix, suffix, middle,
/// then the pad and the file separator.
pub fn fim_named(fim: &FimTokens) -> [(&'static str, u32); 5] {
    [
        (FIM_PREFIX, fim.prefix),
        (FIM_SUFFIX, fim.suffix),
        (FIM_MIDDLE, fim.middle),
        (FIM_PAD, fim.pad),
        (FILE_SEP, fim.file_sep),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::sync::atomic::AtomicBool;

    /// What the tokenizer itself finds, for `json`.
    fn tokenizer_view(json: &str) -> SpecialTokens {
        let tok = Tokenizer::from_json(json).unwrap();
        SpecialTokens {
            eot: tok.eot_id(),
            fim: tok.fim_tokens(),
        }
    }

    #[test]
    fn same_tokens_as_the_tokenizer_finds() {
        let text = "int main(void) { return 0; }\n".repeat(10);
        let tok =
            Tokenizer::train_bpe(&[&text], 280, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
        let json = tok.to_json();
        let s = SpecialTokens::of(&json).unwrap();
        assert_eq!(s, tokenizer_view(&json));
        assert!(s.fim.is_some());
        let named = s.named();
        assert_eq!(named.len(), 6);
        assert_eq!(named[0], (EOT, tok.eot_id().unwrap()));
        assert_eq!(named[1], (FIM_PREFIX, tok.fim_tokens().unwrap().prefix));

        // A tokenizer from before FIM: the same file without them.
        let mut old: Value = serde_json::from_str(&json).unwrap();
        old["added_tokens"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["content"] == EOT);
        let old = old.to_string();
        let s = SpecialTokens::of(&old).unwrap();
        assert_eq!(s, tokenizer_view(&old));
        assert_eq!((s.eot, s.fim), (tok.eot_id(), None));
        assert_eq!(s.named(), [(EOT, tok.eot_id().unwrap())]);

        let bytes = Tokenizer::bytes().to_json();
        let s = SpecialTokens::of(&bytes).unwrap();
        assert_eq!(
            s,
            SpecialTokens {
                eot: None,
                fim: None
            }
        );
        assert_eq!(s, tokenizer_view(&bytes));
        assert!(s.named().is_empty());
        assert!(SpecialTokens::of("{not json").is_err());
    }
}
