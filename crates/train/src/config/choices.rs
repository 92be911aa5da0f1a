//! The named choices a training config holds (tokenizer, schedule, final
//! weights) and AdamW's hyper-parameters.

use super::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// Byte-level BPE trained on the selected files.
    #[default]
    Bpe,
    /// One token per byte (vocabulary 256): character-level experiments.
    Bytes,
}

impl TokenizerKind {
    pub const ALL: [TokenizerKind; 2] = [TokenizerKind::Bpe, TokenizerKind::Bytes];

    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Bpe => "bpe",
            TokenizerKind::Bytes => "bytes",
        }
    }
}

impl std::str::FromStr for TokenizerKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "bpe" => Ok(TokenizerKind::Bpe),
            "bytes" => Ok(TokenizerKind::Bytes),
            _ => Err(ConfigError::unknown("tokenizer", s, "bpe or bytes")),
        }
    }
}

/// The learning-rate schedule's shape after warmup (the maths is in
/// `train::schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    #[default]
    Cosine,
    Linear,
    Step,
}

/// Which weights a finished run's final model holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FinalWeights {
    /// Those of the best validation loss when the last step's are worse
    /// (the run went on past its best: many epochs over a small corpus).
    #[default]
    Best,
    /// Always the last step's.
    Last,
}

impl FinalWeights {
    pub const ALL: [FinalWeights; 2] = [FinalWeights::Best, FinalWeights::Last];

    pub fn name(self) -> &'static str {
        match self {
            FinalWeights::Best => "best",
            FinalWeights::Last => "last",
        }
    }
}

impl std::str::FromStr for FinalWeights {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "best" => Ok(FinalWeights::Best),
            "last" => Ok(FinalWeights::Last),
            _ => Err(ConfigError::unknown("final weights", s, "best or last")),
        }
    }
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 4] = [
        ScheduleKind::Constant,
        ScheduleKind::Cosine,
        ScheduleKind::Linear,
        ScheduleKind::Step,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Linear => "linear",
            ScheduleKind::Step => "step",
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        ScheduleKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ConfigError::unknown("schedule", s, "constant, cosine, linear or step"))
    }
}

/// AdamW's hyper-parameters (the update is in `train::optimizer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}
