//! A prompt drawn from what a model was trained on: a C function opening
//! (signature and `{`) found in the training tokens its repository memory
//! keeps. The preset prompts (`int main() {`, ...) are not shaped like a
//! person's repository: a model of SQLite answers `int main() {` with
//! comment lines that loop, while an opening from its own code shows what
//! it learned.

use super::error::GenerateError;
use super::openings::{DEFAULT_MAX_OPENING_BYTES, extract_openings};
use cllm_core::rng::Rng;
use cllm_data::tokenizer::Tokenizer;

/// Tokens decoded per try: several whole functions of C (an opening
/// counts only if its whole function is in the window and parses).
const WINDOW_TOKENS: usize = 8192;

/// Windows tried before giving up: data that is not C has no openings,
/// and a window can fall inside one long function.
const TRIES: usize = 8;

/// A function opening from `tokens` (a model's training tokens), at
/// places chosen by `seed`: each try decodes a window of the tokens and
/// takes one of its usable openings, at most
/// [`DEFAULT_MAX_OPENING_BYTES`] long and at most `max_tokens` tokens (half
/// the model's context leaves room for the reply). `Ok(None)` when no
/// window holds one. Errs only if the C grammar cannot be loaded.
pub fn opening_from_tokens(
    tokens: &[u32],
    tok: &Tokenizer,
    seed: u64,
    max_tokens: usize,
) -> Result<Option<String>, GenerateError> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let mut rng = Rng::derive(seed, &[0x5052_4f4d]); // "PROM"
    let len = WINDOW_TOKENS.min(tokens.len());
    for _ in 0..TRIES {
        let start = rng.below((tokens.len() - len + 1) as u64) as usize;
        let text = tok.decode(&tokens[start..start + len]);
        let usable: Vec<String> = extract_openings(&[("training data".to_string(), text)])?
            .into_iter()
            .map(|o| o.text)
            .filter(|t| t.len() <= DEFAULT_MAX_OPENING_BYTES && tok.encode(t).len() <= max_tokens)
            .collect();
        if !usable.is_empty() {
            let k = rng.below(usable.len() as u64) as usize;
            return Ok(usable.into_iter().nth(k));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c_text() -> String {
        let mut s = String::new();
        for i in 0..40 {
            s += &format!(
                "/* helper {i} */\nstatic int add{i}(int a, int b){{\n  return a + b + {i};\n}}\n\n"
            );
        }
        s
    }

    #[test]
    fn an_opening_of_the_training_text_is_drawn_and_seeds_vary_it() {
        let text = c_text();
        let tok = Tokenizer::Bytes;
        let tokens = tok.encode(&text);
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..12 {
            let got = opening_from_tokens(&tokens, &tok, seed, 64)
                .unwrap()
                .unwrap();
            assert!(
                got.starts_with("static int add") && got.ends_with('{'),
                "{got:?}"
            );
            assert!(text.contains(&got), "{got:?} is not in the text");
            // Same seed, same prompt.
            assert_eq!(
                opening_from_tokens(&tokens, &tok, seed, 64).unwrap(),
                Some(got.clone())
            );
            seen.insert(got);
        }
        assert!(
            seen.len() > 3,
            "seeds should draw different openings: {seen:?}"
        );
    }

    #[test]
    fn prose_long_openings_and_no_tokens_give_none() {
        let tok = Tokenizer::Bytes;
        let prose = "It was the best of times, it was the worst of times. ".repeat(300);
        assert_eq!(
            opening_from_tokens(&tok.encode(&prose), &tok, 1, 64).unwrap(),
            None
        );
        // Every opening here is 29 bytes or more: a limit of 10 tokens fits none.
        let tokens = tok.encode(&c_text());
        assert_eq!(opening_from_tokens(&tokens, &tok, 1, 10).unwrap(), None);
        assert_eq!(opening_from_tokens(&[], &tok, 1, 64).unwrap(), None);
    }
}
