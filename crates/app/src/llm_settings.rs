//! What the LLM tab remembers between runs: the model path, the prompt and
//! the sampling controls. Persisted inside [`super::settings::Settings`];
//! every field has a default so older settings still load.

use cllm_generate::SamplingConfig;
use serde::{Deserialize, Serialize};

/// The four prompts offered as buttons.
pub const PROMPT_PRESETS: [&str; 4] = [
    "int main() {",
    "// Calculate the nth prime number",
    "void cllm_",
    "// Convert to lattice coordinates",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmSettings {
    /// The checkpoint path typed in (or picked from the list or Browse…).
    pub model_path: String,
    pub prompt: String,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no limit.
    pub top_k: usize,
    /// 1 = no limit.
    pub top_p: f32,
    /// 1 = off.
    pub repetition_penalty: f32,
    pub max_tokens: usize,
    pub seed: u64,
    /// One stop string as typed: `\n`, `\t` and `\\` are escapes, so a
    /// single-line field can ask to stop at a blank line (`\n\n`). Empty:
    /// no stop string.
    pub stop: String,
    /// Shade each generated token by the model's probability for it.
    pub shade_tokens: bool,
    /// Mix in the model's repository memory when it has one.
    pub use_memory: bool,
    /// Learn from the prompt (one gradient step per context's worth, the
    /// model's own rate) before replying.
    pub adapt_to_prompt: bool,
    /// Keep the reply's brackets balanced (for code; off for prose).
    pub balanced_brackets: bool,
    /// End the reply where the prompt's braces (or its first block) close.
    pub stop_when_closed: bool,
    /// Sample again a line that repeats a recent one or runs on (for code).
    pub line_guard: bool,
    /// Fill in the middle: the reply is written between `prompt` (the text
    /// before the cursor) and `suffix` (the text after it).
    pub infill: bool,
    /// The text after the cursor, in fill-in-the-middle mode.
    pub suffix: String,
}

impl Default for LlmSettings {
    fn default() -> Self {
        let s = SamplingConfig::default();
        LlmSettings {
            model_path: String::new(),
            prompt: PROMPT_PRESETS[0].into(),
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            repetition_penalty: s.repetition_penalty,
            max_tokens: s.max_new_tokens,
            seed: s.seed,
            stop: String::new(),
            shade_tokens: true,
            use_memory: true,
            adapt_to_prompt: false,
            balanced_brackets: false,
            stop_when_closed: true,
            line_guard: false,
            infill: false,
            suffix: String::new(),
        }
    }
}

impl LlmSettings {
    /// The sampling configuration these controls describe, checked; the
    /// message names the setting at fault.
    pub fn sampling_config(&self) -> Result<SamplingConfig, String> {
        if self.max_tokens == 0 {
            return Err("max tokens must be at least 1".into());
        }
        let stop = unescape(&self.stop)?;
        let cfg = SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            max_new_tokens: self.max_tokens,
            stop: if stop.is_empty() { vec![] } else { vec![stop] },
            seed: self.seed,
            balanced_brackets: self.balanced_brackets,
            stop_when_closed: self.stop_when_closed,
            line_guard: self.line_guard,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Turns the typed `\n`, `\t`, `\\` into the characters they stand for.
pub fn unescape(typed: &str) -> Result<String, String> {
    let mut out = String::with_capacity(typed.len());
    let mut chars = typed.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(format!(
                    "stop string: unknown escape `\\{other}` (use \\n, \\t or \\\\)"
                ));
            }
            None => return Err("stop string: a lone `\\` at the end (write \\\\)".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_characters() {
        assert_eq!(unescape(r"a\n\nb\t\\").unwrap(), "a\n\nb\t\\");
        assert!(unescape(r"\q").unwrap_err().contains("\\q"));
        assert!(unescape("x\\").is_err());
    }

    #[test]
    fn older_settings_without_the_llm_part_still_load() {
        use crate::settings::Settings;
        let old = Settings::from_json(r#"{"data_dir": "src"}"#).unwrap();
        assert_eq!(old.llm, LlmSettings::default());
        let partial =
            Settings::from_json(r#"{"llm": {"prompt": "void cllm_", "top_k": 5}}"#).unwrap();
        assert_eq!(partial.llm.prompt, "void cllm_");
        assert_eq!(partial.llm.top_k, 5);
        assert_eq!(partial.llm.max_tokens, LlmSettings::default().max_tokens);
        let back = Settings::from_json(&partial.to_json().unwrap()).unwrap();
        assert_eq!(back, partial);
    }

    #[test]
    fn controls_become_a_checked_config() {
        let mut s = LlmSettings {
            stop: r"\n\n".into(),
            max_tokens: 7,
            ..LlmSettings::default()
        };
        let cfg = s.sampling_config().unwrap();
        assert_eq!(cfg.stop, vec!["\n\n".to_string()]);
        assert_eq!(cfg.max_new_tokens, 7);
        s.stop.clear();
        assert!(s.sampling_config().unwrap().stop.is_empty());
        s.top_p = 0.0;
        assert!(s.sampling_config().unwrap_err().contains("top-p"));
        s.top_p = 1.0;
        s.max_tokens = 0;
        assert!(s.sampling_config().unwrap_err().contains("max tokens"));
    }
}
