//! What the app remembers between runs: the data folder, the extension
//! filter, the training configuration, view preferences, and the LLM tab's
//! model path, prompt and sampling controls. Kept apart from runtime
//! handles (threads, channels) so it serialises cleanly; every field has a
//! default so settings written by older versions still load.

use super::llm_settings::LlmSettings;
use cllm_train::TrainConfig;
use serde::{Deserialize, Serialize};

/// Persisted through eframe's storage under [`eframe::APP_KEY`].
/// Extensions offered in the filter field by default.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "c", "h", "cpp", "hpp", "cc", "rs", "py", "go", "java", "js", "ts", "md", "txt", "toml", "sh",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The folder typed in (or picked for) the data panel.
    pub data_dir: String,
    /// Space- or comma-separated extensions, e.g. "c h rs md".
    pub extension_filter: String,
    pub train: TrainConfig,
    pub show_advanced: bool,
    pub plot: PlotSettings,
    /// The LLM tab: model path, prompt, sampling controls.
    #[serde(default)]
    pub llm: LlmSettings,
}

/// Loss-graph preferences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlotSettings {
    /// Exponential smoothing factor in [0, 1): 0 = raw.
    pub smoothing: f32,
    pub log_scale: bool,
    pub show_lr: bool,
    pub show_grad_norm: bool,
    /// The code check's syntax accuracy under the loss (when the run has one).
    pub show_syntax: bool,
    /// Keep the newest data in view while training.
    pub follow: bool,
}

impl Default for PlotSettings {
    fn default() -> Self {
        PlotSettings {
            smoothing: 0.9,
            log_scale: false,
            show_lr: false,
            show_grad_norm: false,
            show_syntax: true,
            follow: true,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: "training_data/".into(),
            extension_filter: DEFAULT_EXTENSIONS.join(" "),
            train: TrainConfig::default(),
            show_advanced: false,
            plot: PlotSettings::default(),
            llm: LlmSettings::default(),
        }
    }
}

impl Settings {
    /// Restores settings from eframe storage; anything unreadable falls back
    /// to defaults rather than stopping the app from opening. A resume file
    /// is never restored: it would silently make every later START continue
    /// that checkpoint instead of the files selected.
    pub fn load(storage: Option<&dyn eframe::Storage>) -> Settings {
        let mut s: Settings = storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        s.train.resume = None;
        s
    }

    /// Saves everything but the resume file (see [`Settings::load`]).
    pub fn store(&self, storage: &mut dyn eframe::Storage) {
        let mut kept = self.clone();
        kept.train.resume = None;
        eframe::set_value(storage, eframe::APP_KEY, &kept);
    }

    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string_pretty(self).map_err(|e| format!("settings: {e}"))
    }

    pub fn from_json(text: &str) -> Result<Settings, String> {
        serde_json::from_str(text).map_err(|e| format!("settings: {e}"))
    }

    /// The extensions in the filter field, lower-cased, without dots.
    pub fn extensions(&self) -> Vec<String> {
        parse_extensions(&self.extension_filter)
    }
}

/// Splits "c, .H rs" into ["c", "h", "rs"].
pub fn parse_extensions(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_normalised() {
        assert_eq!(parse_extensions(" c, .H ;rs  "), vec!["c", "h", "rs"]);
        assert!(parse_extensions("  ").is_empty());
    }

    #[test]
    fn missing_fields_take_defaults() {
        let s = Settings::from_json(r#"{"data_dir": "src"}"#).unwrap();
        assert_eq!(s.data_dir, "src");
        assert_eq!(s.train, TrainConfig::default());
        assert_eq!(s.plot, PlotSettings::default());
        assert!(Settings::from_json("[1,").unwrap_err().contains("settings"));
    }
}
