//! One reply as the LLM tab shows it: the prompt, the tokens as they
//! stream in, the closing stats, and the C syntax check of prompt plus
//! completion. Plain data folded from [`GenerationEvent`]s, so tests drive
//! it without a window.

use cllm_generate::{
    FinishReason, GeneratedToken, GenerationEvent, GenerationStats, SyntaxReport, check_c,
};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct Reply {
    pub prompt: String,
    /// The text after the reply (fill-in-the-middle: the reply is the
    /// middle); empty for a continuation.
    pub suffix: String,
    pub tokens: Vec<GeneratedToken>,
    /// The completion so far (the tokens' text pieces joined).
    pub text: String,
    /// Set by the closing `Finished` event.
    pub stats: Option<GenerationStats>,
    /// Why generation could not start or went wrong.
    pub error: Option<String>,
    /// The C syntax check of prompt + completion, once the reply is done
    /// (`Err` only if the parser itself failed).
    pub syntax: Option<Result<SyntaxReport, String>>,
    /// The step size the weights were adapted to the prompt with, when
    /// they were (said in the summary line).
    pub adapted_lr: Option<f32>,
    started: Instant,
    first_token_at: Option<Instant>,
}

impl Reply {
    pub fn new(prompt: String) -> Reply {
        Reply {
            prompt,
            suffix: String::new(),
            tokens: Vec::new(),
            text: String::new(),
            stats: None,
            error: None,
            syntax: None,
            adapted_lr: None,
            started: Instant::now(),
            first_token_at: None,
        }
    }

    /// A middle being filled between `prefix` and `suffix`.
    pub fn infill(prefix: String, suffix: String) -> Reply {
        Reply {
            suffix,
            ..Reply::new(prefix)
        }
    }

    /// A reply refused before it started.
    pub fn refused(prompt: String, why: String) -> Reply {
        let mut r = Reply::new(prompt);
        r.error = Some(why);
        r
    }

    pub fn is_done(&self) -> bool {
        self.stats.is_some() || self.error.is_some()
    }

    pub fn apply(&mut self, event: GenerationEvent) {
        match event {
            GenerationEvent::Token(token) => {
                self.first_token_at.get_or_insert_with(Instant::now);
                self.text.push_str(&token.text_piece);
                self.tokens.push(token);
            }
            GenerationEvent::Finished(stats) => {
                self.stats = Some(stats);
                self.syntax = Some(check_c(&self.full_text()).map_err(|e| e.to_string()));
            }
            GenerationEvent::Error(why) => self.error = Some(why.to_string()),
        }
    }

    /// Prompt, completion and suffix, as the syntax check sees them.
    pub fn full_text(&self) -> String {
        format!("{}{}{}", self.prompt, self.text, self.suffix)
    }

    /// Tokens per second: the generator's figure once done, otherwise an
    /// estimate from the tokens seen since the first one arrived.
    pub fn tokens_per_sec(&self) -> Option<f64> {
        if let Some(s) = &self.stats {
            return Some(s.tokens_per_sec);
        }
        let first = self.first_token_at?;
        let secs = first.elapsed().as_secs_f64();
        (self.tokens.len() > 1 && secs > 0.0).then(|| (self.tokens.len() - 1) as f64 / secs)
    }

    /// Seconds since Generate was pressed.
    pub fn elapsed_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// One line summing up the reply: counts, speed, and how it ended.
    pub fn summary_line(&self) -> String {
        match &self.stats {
            None => {
                let speed = self
                    .tokens_per_sec()
                    .map(|t| format!(" · {t:.1} tokens/s"))
                    .unwrap_or_default();
                format!("generating… {} tokens{speed}", self.tokens.len())
            }
            Some(s) => format!(
                "{} tokens · {:.1} tokens/s · prompt {} tokens (prefill {:.0} ms){} · {}{}",
                s.generated_tokens,
                s.tokens_per_sec,
                s.prompt_tokens,
                s.prefill_secs * 1000.0,
                self.adapted_lr
                    .map(|lr| format!(" · adapted to the prompt (lr {lr})"))
                    .unwrap_or_default(),
                finish_text(s.finish),
                match s.rewritten_lines {
                    0 => String::new(),
                    1 => " · 1 line sampled again".to_string(),
                    n => format!(" · {n} lines sampled again"),
                }
            ),
        }
    }

    /// "C syntax: parses" or where it first fails; `None` until done.
    pub fn syntax_line(&self) -> Option<(String, bool)> {
        match self.syntax.as_ref()? {
            Ok(report) if report.parses => Some(("C syntax: parses".into(), true)),
            Ok(report) => Some(match &report.first_error {
                Some(e) => (
                    format!(
                        "C syntax: first error at line {}:{} ({})",
                        e.line, e.column, e.message
                    ),
                    false,
                ),
                None => ("C syntax: does not parse".into(), false),
            }),
            Err(e) => Some((format!("C syntax: not checked ({e})"), false)),
        }
    }
}

pub fn finish_text(reason: Option<FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::MaxTokens) => "stopped at max tokens",
        Some(FinishReason::StopString) => "stopped at the stop string",
        Some(FinishReason::EndOfText) => "the model ended the text",
        Some(FinishReason::Cancelled) => "stopped by you",
        Some(FinishReason::Closed) => "its braces closed",
        None => "still going",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(piece: &str) -> GenerationEvent {
        GenerationEvent::Token(GeneratedToken {
            id: 0,
            text_piece: piece.into(),
            prob: 0.5,
            top_alternatives: vec![],
        })
    }

    fn finished(n: usize) -> GenerationEvent {
        GenerationEvent::Finished(GenerationStats {
            prompt_tokens: 3,
            generated_tokens: n,
            prefill_secs: 0.01,
            generate_secs: 0.5,
            tokens_per_sec: n as f64 / 0.5,
            finish: Some(FinishReason::MaxTokens),
            rewritten_lines: 0,
        })
    }

    #[test]
    fn pieces_join_and_the_syntax_check_sees_the_prompt() {
        let mut r = Reply::new("int main() {".into());
        for p in [" return", " 0;", " }"] {
            r.apply(token(p));
        }
        assert!(!r.is_done());
        assert!(r.syntax_line().is_none());
        r.apply(finished(3));
        assert_eq!(r.text, " return 0; }");
        assert_eq!(r.syntax_line(), Some(("C syntax: parses".into(), true)));
        let line = r.summary_line();
        assert!(line.contains("3 tokens · 6.0 tokens/s"), "{line}");
        assert!(line.contains("max tokens"), "{line}");
        assert!(!line.contains("adapted"), "{line}");
        r.adapted_lr = Some(0.01);
        let line = r.summary_line();
        assert!(line.contains("adapted to the prompt (lr 0.01)"), "{line}");
    }

    #[test]
    fn broken_c_reports_where() {
        let mut r = Reply::new("int main( {".into());
        r.apply(token("\n  return"));
        r.apply(finished(1));
        let (line, ok) = r.syntax_line().unwrap();
        assert!(!ok);
        assert!(line.contains("first error at line 1:"), "{line}");
    }
}
