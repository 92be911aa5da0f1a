//! The matmul precision: what the user asks for ([`PrecisionChoice`]) and
//! what runs ([`Precision`]).

use super::Kernel;
use crate::CoreError;

/// Float precision of the training matmuls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 everywhere (the `gemm` crate).
    #[default]
    Fp32,
    /// bf16 inputs and f32 accumulation for the linear layers and the tied
    /// head (forward and both backward products); f32 master weights,
    /// optimizer moments, LayerNorm, attention, softmax and loss.
    Bf16,
}

/// What the user asked for: `auto` is bf16 where the CPU has AVX512_BF16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    #[default]
    Auto,
    Fp32,
    Bf16,
}

impl PrecisionChoice {
    pub const NAMES: [&'static str; 3] = ["auto", "fp32", "bf16"];
    pub const ALL: [PrecisionChoice; 3] = [
        PrecisionChoice::Auto,
        PrecisionChoice::Fp32,
        PrecisionChoice::Bf16,
    ];

    pub fn parse(s: &str) -> Result<PrecisionChoice, CoreError> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionChoice::Auto),
            "fp32" | "f32" => Ok(PrecisionChoice::Fp32),
            "bf16" => Ok(PrecisionChoice::Bf16),
            _ => Err(CoreError::UnknownPrecision {
                given: s.to_string(),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PrecisionChoice::Auto => "auto",
            PrecisionChoice::Fp32 => "fp32",
            PrecisionChoice::Bf16 => "bf16",
        }
    }

    /// The precision to run: `auto` picks bf16 only where the instruction
    /// exists; an explicit `bf16` runs everywhere (on the scalar model,
    /// slowly, where the instruction is missing: [`Kernel::detect`]).
    pub fn resolve(self) -> Precision {
        match self {
            PrecisionChoice::Fp32 => Precision::Fp32,
            PrecisionChoice::Bf16 => Precision::Bf16,
            PrecisionChoice::Auto if Kernel::detect() == Kernel::Avx512 => Precision::Bf16,
            PrecisionChoice::Auto => Precision::Fp32,
        }
    }
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}
