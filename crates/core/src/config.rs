//! Model configuration and the named presets.

use crate::CoreError;
use serde::{Deserialize, Serialize};

/// The shape of a GPT-2 style model. Stored in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Number of token ids (the tokenizer decides; presets give a default).
    pub vocab_size: usize,
    /// Longest context the position embedding covers.
    pub n_ctx: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// Residual stream width C.
    pub n_embd: usize,
    /// MLP hidden width (GPT-2: 4 x n_embd).
    pub n_inner: usize,
    /// Dropout on embeddings, attention output and MLP output while training.
    pub dropout: f32,
}

/// Names accepted by [`ModelConfig::preset`].
pub const PRESET_NAMES: [&str; 6] = ["tiny", "baby", "small", "medium", "large", "seed"];

/// The most parameters [`ModelConfig::validate`] accepts.
const MAX_PARAMS: usize = 4_000_000_000;

impl ModelConfig {
    /// A named preset (one of [`PRESET_NAMES`]). `vocab_size` is a default
    /// that the tokenizer overrides.
    pub fn preset(name: &str) -> Result<ModelConfig, CoreError> {
        let cfg = match name {
            // For tests: small enough for finite differences over every weight.
            "tiny" => ModelConfig {
                vocab_size: 37,
                n_ctx: 16,
                n_layer: 2,
                n_head: 2,
                n_embd: 16,
                n_inner: 64,
                dropout: 0.0,
            },
            // nanoGPT's CPU "baby GPT" (~0.8M parameters at vocabulary 65).
            "baby" => ModelConfig {
                vocab_size: 256,
                n_ctx: 64,
                n_layer: 4,
                n_head: 4,
                n_embd: 128,
                n_inner: 512,
                dropout: 0.0,
            },
            // The app's default: see docs/training.md, "Model presets".
            "small" => ModelConfig {
                vocab_size: 2048,
                n_ctx: 128,
                n_layer: 4,
                n_head: 4,
                n_embd: 128,
                n_inner: 512,
                dropout: 0.0,
            },
            // The sizes `--preset auto` chooses from beside baby and small
            // (see `cllm_train::auto` and docs/model-size-sweep.md).
            "medium" => ModelConfig {
                vocab_size: 2048,
                n_ctx: 128,
                n_layer: 6,
                n_head: 6,
                n_embd: 192,
                n_inner: 768,
                // Many epochs over a repository overfit without it
                // (docs/model-size-sweep.md).
                dropout: 0.1,
            },
            "large" => ModelConfig {
                vocab_size: 2048,
                n_ctx: 256,
                n_layer: 8,
                n_head: 8,
                n_embd: 256,
                n_inner: 1024,
                dropout: 0.1,
            },
            "seed" => ModelConfig {
                vocab_size: 50_000,
                n_ctx: 512,
                n_layer: 6,
                n_head: 8,
                n_embd: 256,
                n_inner: 1024,
                dropout: 0.1,
            },
            _ => {
                return Err(CoreError::UnknownPreset {
                    name: name.to_string(),
                });
            }
        };
        Ok(cfg)
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Checks the numbers make a buildable model; the error names the field.
    pub fn validate(&self) -> Result<(), CoreError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
            ("n_inner", self.n_inner),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(CoreError::ZeroSize { field });
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(CoreError::HeadsDoNotDivide {
                n_embd: self.n_embd,
                n_head: self.n_head,
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(CoreError::Dropout {
                dropout: self.dropout,
            });
        }
        // Keep every buffer index inside u32/usize comfortably and refuse
        // absurd sizes read from a file before anything is allocated.
        let params = self.num_params_checked().ok_or(CoreError::SizeOverflows)?;
        if params > MAX_PARAMS {
            return Err(CoreError::TooManyParams {
                params,
                max: MAX_PARAMS,
            });
        }
        Ok(())
    }

    /// Total parameter count (tied output head counted once).
    pub fn num_params(&self) -> usize {
        self.num_params_checked()
            .expect("model config size overflows")
    }

    fn num_params_checked(&self) -> Option<usize> {
        let c = self.n_embd;
        let per_layer = c
            .checked_mul(2)? // ln_1
            .checked_add(c.checked_mul(3 * c)?.checked_add(3 * c)?)? // c_attn
            .checked_add(c.checked_mul(c)?.checked_add(c)?)? // attn.c_proj
            .checked_add(2 * c)? // ln_2
            .checked_add(self.n_inner.checked_mul(c)?.checked_add(self.n_inner)?)? // c_fc
            .checked_add(c.checked_mul(self.n_inner)?.checked_add(c)?)?; // mlp.c_proj
        self.vocab_size
            .checked_mul(c)?
            .checked_add(self.n_ctx.checked_mul(c)?)?
            .checked_add(per_layer.checked_mul(self.n_layer)?)?
            .checked_add(2 * c)
    }

    /// Forward + backward FLOPs per trained token for a context of `seq_len`
    /// (the usual 6N for the weight multiplies plus attention's
    /// 6 * L * T * C for scores and weighted values, forward and backward).
    pub fn train_flops_per_token(&self, seq_len: usize) -> f64 {
        let matmul_params = (self.num_params() - self.n_ctx * self.n_embd) as f64;
        6.0 * matmul_params + 6.0 * (self.n_layer * seq_len * self.n_embd) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_count() {
        for name in PRESET_NAMES {
            let cfg = ModelConfig::preset(name).unwrap();
            cfg.validate().unwrap();
        }
        // GPT-2 small's well known count with its shapes: 124,439,808.
        let gpt2 = ModelConfig {
            vocab_size: 50257,
            n_ctx: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            n_inner: 3072,
            dropout: 0.0,
        };
        assert_eq!(gpt2.num_params(), 124_439_808);
        let unknown = ModelConfig::preset("nope").unwrap_err().to_string();
        assert!(
            unknown.contains("nope") && unknown.contains("small"),
            "{unknown}"
        );
    }

    #[test]
    fn validate_names_the_problem() {
        let mut cfg = ModelConfig::preset("tiny").unwrap();
        cfg.n_head = 3;
        assert!(cfg.validate().unwrap_err().to_string().contains("n_head"));
        cfg.n_head = 2;
        cfg.n_layer = 0;
        assert!(cfg.validate().unwrap_err().to_string().contains("n_layer"));
        cfg.n_layer = 1;
        cfg.vocab_size = usize::MAX / 2;
        assert!(cfg.validate().is_err());
    }
}
