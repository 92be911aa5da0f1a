//! Export to a folder that Hugging Face `transformers` loads as GPT-2:
//! `model.safetensors` (HF names and layouts), `config.json`,
//! `tokenizer.json`, `tokenizer_config.json` (the special tokens, so
//! `AutoTokenizer` knows them) and `generation_config.json` (so `generate()`
//! stops where cllm does: at `<|endoftext|>` or any other special token);
//! optionally `cllm_logits.json`, cllm's own logits for a text, which
//! `tools/compare_hf.py` compares with the loaded model's.
//!
//! Our matrices are stored (out, in) like `torch.nn.Linear`; GPT-2's `Conv1D`
//! (`c_attn`, `c_proj`, `c_fc`) stores (in, out), so those are transposed.
//! Embeddings and LayerNorm tensors keep their layout. The output head is
//! tied to `wte`, so no `lm_head.weight` is written.

use super::special_tokens::{SpecialTokens, fim_named};
use super::{Checkpoint, CheckpointError, TrainerRecords};
use cllm_core::{Gpt, Logits, ModelConfig, ParamLayout, Workspace};
use cllm_data::tokenizer::EOT;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// File names inside the export folder.
pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
pub const LOGITS_FILE: &str = "cllm_logits.json";

/// What [`export_hf`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub tensors: usize,
}

/// One tensor in Hugging Face's naming and layout.
#[derive(Clone, Debug, PartialEq)]
pub struct HfTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Whether a GPT-2 parameter is a `Conv1D` weight, stored (in, out) by HF.
fn is_conv1d_weight(name: &str) -> bool {
    name.ends_with("c_attn.weight")
        || name.ends_with("c_proj.weight")
        || name.ends_with("c_fc.weight")
}

/// `params` (in `layout` order) renamed and re-laid-out for HF GPT-2.
pub fn hf_tensors(layout: &ParamLayout, params: &[f32]) -> Vec<HfTensor> {
    layout
        .specs
        .iter()
        .map(|spec| {
            let src = &params[spec.range()];
            let name = format!("transformer.{}", spec.name);
            if is_conv1d_weight(&spec.name) {
                // Ours (out, in) row-major -> HF (in, out) row-major.
                let (rows, cols) = (spec.shape[0], spec.shape[1]);
                let mut values = vec![0.0f32; src.len()];
                for r in 0..rows {
                    for c in 0..cols {
                        values[c * rows + r] = src[r * cols + c];
                    }
                }
                HfTensor {
                    name,
                    shape: vec![cols, rows],
                    values,
                }
            } else {
                HfTensor {
                    name,
                    shape: spec.shape.clone(),
                    values: src.to_vec(),
                }
            }
        })
        .collect()
}

/// The `config.json` transformers reads for this model. BOS and EOS are
/// `<|endoftext|>` (`null` for the byte tokenizer, which has none:
/// `GPT2Config` would otherwise default both to 50256, outside a small
/// vocabulary).
pub fn hf_config(cfg: &ModelConfig, special: &SpecialTokens) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.n_ctx,
        "n_ctx": cfg.n_ctx,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.n_inner,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "bos_token_id": special.eot,
        "eos_token_id": special.eot,
        "torch_dtype": "float32",
    })
}

/// The `tokenizer_config.json` `AutoTokenizer` reads beside
/// `tokenizer.json`: `<|endoftext|>` as BOS, EOS and UNK (as GPT-2 has it;
/// the tokenizer never adds it, cllm's data places it between files), the
/// FIM tokens as additional special tokens, `<fim_pad>` as the padding
/// token (`<|endoftext|>` without FIM tokens), and the model's context as
/// the longest input.
pub fn hf_tokenizer_config(cfg: &ModelConfig, special: &SpecialTokens) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    map.insert("model_max_length".into(), cfg.n_ctx.into());
    map.insert("add_bos_token".into(), false.into());
    map.insert("add_eos_token".into(), false.into());
    map.insert("clean_up_tokenization_spaces".into(), false.into());
    if special.eot.is_some() {
        for key in ["bos_token", "eos_token", "unk_token"] {
            map.insert(key.into(), EOT.into());
        }
        map.insert("pad_token".into(), EOT.into());
    }
    if let Some(fim) = &special.fim {
        let names: Vec<&str> = fim_named(fim).iter().map(|(text, _)| *text).collect();
        map.insert("additional_special_tokens".into(), names.into());
        map.insert("pad_token".into(), cllm_data::fim::FIM_PAD.into());
    }
    serde_json::Value::Object(map)
}

/// The `generation_config.json` `generate()` reads: it ends at any special
/// token, as cllm's generation does (`<|endoftext|>` first: the end of a
/// document and of a middle), pads with the tokenizer's padding token, and
/// runs at most to the model's context.
pub fn hf_generation_config(cfg: &ModelConfig, special: &SpecialTokens) -> serde_json::Value {
    let ends: Vec<u32> = special.named().iter().map(|&(_, id)| id).collect();
    let ends = if ends.is_empty() {
        serde_json::Value::Null
    } else {
        ends.into()
    };
    let pad = special.fim.map(|f| f.pad).or(special.eot);
    serde_json::json!({
        "bos_token_id": special.eot,
        "eos_token_id": ends,
        "pad_token_id": pad,
        "max_length": cfg.n_ctx,
    })
}

/// Writes `value` as pretty JSON to `dir/name`; returns the path.
fn write_json(
    dir: &Path,
    name: &str,
    value: &serde_json::Value,
) -> Result<PathBuf, CheckpointError> {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CheckpointError::bad_input(&path, e.to_string()))?;
    fs::write(&path, text).map_err(|e| CheckpointError::io(&path, "write", e))?;
    Ok(path)
}

/// Writes `model.safetensors`, `config.json`, `tokenizer.json`,
/// `tokenizer_config.json` and `generation_config.json` for `ckpt` into
/// `dir` (created if missing).
pub fn export_hf<T: TrainerRecords>(
    ckpt: &Checkpoint<T>,
    dir: &Path,
) -> Result<ExportSummary, CheckpointError> {
    ckpt.model
        .validate()
        .map_err(|e| CheckpointError::bad_input(dir, e.to_string()))?;
    let layout = ParamLayout::new(&ckpt.model);
    if ckpt.params.len() != layout.total {
        return Err(CheckpointError::bad_input(
            dir,
            format!(
                "{} parameters, the model config needs {}",
                ckpt.params.len(),
                layout.total
            ),
        ));
    }
    let special = SpecialTokens::of(&ckpt.tokenizer_json)?;
    fs::create_dir_all(dir).map_err(|e| CheckpointError::io(dir, "create the export folder", e))?;

    let tensors = hf_tensors(&layout, &ckpt.params);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| CheckpointError::bad_input(dir, format!("tensor {}: {e}", t.name)))?;
        views.push((t.name.clone(), view));
    }
    // transformers refuses safetensors files without this marker.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let model_path = dir.join(MODEL_FILE);
    safetensors::serialize_to_file(views, Some(metadata), &model_path).map_err(|e| {
        CheckpointError::io(&model_path, "write", std::io::Error::other(e.to_string()))
    })?;
    // The crate writes through a private temporary file (mode 0600); the
    // export is meant to be shared like the other files beside it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&model_path, fs::Permissions::from_mode(0o644))
            .map_err(|e| CheckpointError::io(&model_path, "set permissions on", e))?;
    }

    let config_path = write_json(dir, CONFIG_FILE, &hf_config(&ckpt.model, &special))?;
    let tokenizer_path = dir.join(TOKENIZER_FILE);
    fs::write(&tokenizer_path, &ckpt.tokenizer_json)
        .map_err(|e| CheckpointError::io(&tokenizer_path, "write", e))?;
    let tokenizer_config_path = write_json(
        dir,
        TOKENIZER_CONFIG_FILE,
        &hf_tokenizer_config(&ckpt.model, &special),
    )?;
    let generation_config_path = write_json(
        dir,
        GENERATION_CONFIG_FILE,
        &hf_generation_config(&ckpt.model, &special),
    )?;

    Ok(ExportSummary {
        dir: dir.to_path_buf(),
        files: vec![
            model_path,
            config_path,
            tokenizer_path,
            tokenizer_config_path,
            generation_config_path,
        ],
        tensors: tensors.len(),
    })
}

/// Tokenizes `text` with the checkpoint's tokenizer (cut to the context
/// length), runs cllm's forward pass and writes the token ids and logits
/// (T, V) to `cllm_logits.json` in `dir`, for `tools/compare_hf.py`.
pub fn write_check_logits<T: TrainerRecords>(
    ckpt: &Checkpoint<T>,
    dir: &Path,
    text: &str,
) -> Result<PathBuf, CheckpointError> {
    let out = dir.join(LOGITS_FILE);
    let tokenizer = cllm_data::tokenizer::hf_from_json(&ckpt.tokenizer_json).map_err(|e| {
        CheckpointError::bad_input(
            &out,
            format!("the checkpoint's tokenizer cannot be read: {e}"),
        )
    })?;
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|e| CheckpointError::bad_input(&out, format!("cannot tokenize the text: {e}")))?;
    let mut ids = encoding.get_ids().to_vec();
    ids.truncate(ckpt.model.n_ctx);
    if ids.is_empty() {
        return Err(CheckpointError::bad_input(&out, "the text gives no tokens"));
    }
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= ckpt.model.vocab_size) {
        return Err(CheckpointError::bad_input(
            &out,
            format!(
                "token id {bad} is outside the model's vocabulary of {}",
                ckpt.model.vocab_size
            ),
        ));
    }
    let gpt = Gpt::from_params(ckpt.model.clone(), ckpt.params.clone())
        .map_err(|e| CheckpointError::bad_input(&out, e.to_string()))?;
    let mut ws = Workspace::new(&ckpt.model, 1, ids.len());
    // (T, V), row-major.
    let logits = gpt.forward(&mut ws, Logits(&ids));
    let doc = serde_json::json!({
        "text": text,
        "ids": ids,
        "vocab_size": ckpt.model.vocab_size,
        "logits": logits,
    });
    let body =
        serde_json::to_string(&doc).map_err(|e| CheckpointError::bad_input(&out, e.to_string()))?;
    fs::write(&out, body).map_err(|e| CheckpointError::io(&out, "write", e))?;
    Ok(out)
}
