//! `--adapt`, `--adapt-lr`, `--adapt-decay`: adapting while reading, the
//! model's own setting unless given ([`AdaptSettings`]).

use super::eval::Switch;
use clap::Args;
use cllm_train::adapt::AdaptSettings;

/// The adaptation flags shared by `eval` and `generate`.
#[derive(Args, Debug, Clone, Default)]
pub struct AdaptArgs {
    /// Learn from the text while reading it: after each segment is scored
    /// (or each prompt segment read), one gradient step on it, decayed
    /// toward the trained weights; each document starts from the trained
    /// weights [default: the model's own setting]
    #[arg(long, value_enum)]
    pub adapt: Option<Switch>,
    /// Step size of each adaptation step (>= 0) [default: the model's own]
    #[arg(long, value_name = "LR", allow_negative_numbers = true)]
    pub adapt_lr: Option<f32>,
    /// Share of the way back to the trained weights after each step, 0 to
    /// 1 [default: the model's own]
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub adapt_decay: Option<f32>,
}

impl AdaptArgs {
    /// The flags over the model's `saved` settings; out-of-range values are
    /// refused.
    pub fn over(&self, saved: AdaptSettings) -> Result<AdaptSettings, String> {
        let settings = AdaptSettings {
            enabled: self.adapt.map_or(saved.enabled, |s| s == Switch::On),
            lr: self.adapt_lr.unwrap_or(saved.lr),
            decay: self.adapt_decay.unwrap_or(saved.decay),
        };
        settings.check().map_err(|e| e.to_string())?;
        Ok(settings)
    }

    /// The settings to adapt with (`None`: do not adapt), from
    /// [`over`](Self::over).
    pub fn resolve(&self, saved: AdaptSettings) -> Result<Option<AdaptSettings>, String> {
        let settings = self.over(saved)?;
        Ok(settings.enabled.then_some(settings))
    }
}
