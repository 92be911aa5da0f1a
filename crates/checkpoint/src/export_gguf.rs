//! Export to GGUF (version 3) for llama.cpp and Ollama: the `gpt2`
//! architecture keys, tensors under llama.cpp's GPT-2 names, f32 or f16, and
//! the tokenizer as `tokenizer.ggml.model = "gpt2"` (tokens in GPT-2's
//! byte-to-unicode spelling, their types, the merges) with its special
//! token ids: `<|endoftext|>` as BOS, EOS and EOT, and the
//! fill-in-the-middle tokens under the keys llama.cpp reads
//! (`tokenizer.ggml.fim_pre_token_id`, `fim_suf`, `fim_mid`, `fim_pad`,
//! `fim_sep`) when the tokenizer has them. Written from the format's
//! specification (ggml's `docs/gguf.md`).
//!
//! Our matrices are stored (out, in) row-major, which is what llama.cpp
//! expects for GPT-2 (its converter transposes HF's `Conv1D` weights into
//! this layout); GGUF lists dimensions fastest first, so a (out, in) matrix
//! has dims `[in, out]`. The output head is tied to `token_embd` (llama.cpp
//! falls back to it when `output.weight` is absent). In f16 files the
//! matrices and embeddings are f16, norms and biases stay f32, as
//! llama.cpp's converter does.

use super::special_tokens::SpecialTokens;
use super::{Checkpoint, CheckpointError, TrainerRecords};
use cllm_core::ParamLayout;
use serde_json::Value;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const GGUF_VERSION: u32 = 3;
pub const ALIGNMENT: usize = 32;
/// LayerNorm epsilon of every cllm model.
pub const LAYER_NORM_EPS: f32 = 1e-5;

/// Tensor element types written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufType {
    F32,
    F16,
}

impl GgufType {
    pub const ALL: [GgufType; 2] = [GgufType::F32, GgufType::F16];

    pub fn name(self) -> &'static str {
        match self {
            GgufType::F32 => "f32",
            GgufType::F16 => "f16",
        }
    }

    /// ggml's type id.
    pub fn id(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
        }
    }

    /// `general.file_type`: 0 all f32, 1 mostly f16.
    fn file_type(self) -> u32 {
        self.id()
    }

    pub fn parse(s: &str) -> Result<GgufType, CheckpointError> {
        match s {
            "f32" => Ok(GgufType::F32),
            "f16" => Ok(GgufType::F16),
            other => Err(CheckpointError::UnknownGgufType(other.to_string())),
        }
    }
}

/// llama.cpp's name for one of ours (`h.3.attn.c_attn.weight` ->
/// `blk.3.attn_qkv.weight`).
pub fn gguf_tensor_name(name: &str) -> Option<String> {
    let fixed = match name {
        "wte.weight" => Some("token_embd.weight"),
        "wpe.weight" => Some("position_embd.weight"),
        "ln_f.weight" => Some("output_norm.weight"),
        "ln_f.bias" => Some("output_norm.bias"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("h.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let part = match part {
        "ln_1" => "attn_norm",
        "attn.c_attn" => "attn_qkv",
        "attn.c_proj" => "attn_output",
        "ln_2" => "ffn_norm",
        "mlp.c_fc" => "ffn_up",
        "mlp.c_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}.{kind}"))
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U32(u32),
    I32(i32),
    Bool(bool),
    F32(f32),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
}

/// What [`export_gguf`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufSummary {
    pub tensors: usize,
    pub metadata: usize,
    pub bytes: u64,
}

/// The tokenizer as GGUF wants it: tokens by id, their types and the
/// merges.
pub struct GgufVocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
}

/// Token types (llama.cpp's `llama_token_type`). Special tokens are
/// CONTROL: llama.cpp then never makes them from text (unless asked to
/// parse special tokens) and prints nothing for them.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_UNUSED: i32 = 5;

/// Reads the vocabulary and merges from a byte-level BPE `tokenizer.json`
/// (the byte tokenizer is written as one with 256 tokens and no merges), for
/// a model of `n_vocab` rows: ids the tokenizer never produces are padded as
/// unused `[PADn]` tokens.
pub fn gguf_vocab(tokenizer_json: &str, n_vocab: usize) -> Result<GgufVocab, CheckpointError> {
    let json: Value = serde_json::from_str(tokenizer_json)
        .map_err(|e| CheckpointError::tokenizer(format!("tokenizer.json: {e}")))?;
    let model = &json["model"];
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| CheckpointError::tokenizer("tokenizer.json has no model.vocab"))?;
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![TOKEN_NORMAL; n_vocab];
    let mut put = |id: u64, text: &str, kind: i32| -> Result<(), CheckpointError> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            CheckpointError::tokenizer(format!(
                "token id {id} is outside the model's vocabulary of {n_vocab}"
            ))
        })?;
        *slot = Some(text.to_string());
        types[id as usize] = kind;
        Ok(())
    };
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| CheckpointError::tokenizer("a vocabulary id is not a number"))?;
        put(id, text, TOKEN_NORMAL)?;
    }
    if let Some(added) = json["added_tokens"].as_array() {
        for t in added {
            let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else {
                continue;
            };
            put(id, content, TOKEN_CONTROL)?;
        }
    }
    let mut merges = Vec::new();
    if let Some(list) = model["merges"].as_array() {
        for m in list {
            match m {
                Value::String(s) => merges.push(s.clone()),
                Value::Array(pair) => {
                    let (Some(a), Some(b)) = (
                        pair.first().and_then(Value::as_str),
                        pair.get(1).and_then(Value::as_str),
                    ) else {
                        return Err(CheckpointError::tokenizer(
                            "a merge is not a pair of strings",
                        ));
                    };
                    merges.push(format!("{a} {b}"));
                }
                _ => {
                    return Err(CheckpointError::tokenizer(
                        "a merge is neither a string nor a pair",
                    ));
                }
            }
        }
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t {
            Some(t) => t,
            None => {
                types[i] = TOKEN_UNUSED;
                format!("[PAD{i}]")
            }
        })
        .collect();
    Ok(GgufVocab {
        tokens,
        types,
        merges,
    })
}

/// The metadata key/values, in the order written.
pub fn gguf_metadata<T: TrainerRecords>(
    ckpt: &Checkpoint<T>,
    name: &str,
    ty: GgufType,
) -> Result<Vec<(String, MetaValue)>, CheckpointError> {
    let cfg = &ckpt.model;
    let vocab = gguf_vocab(&ckpt.tokenizer_json, cfg.vocab_size)?;
    let special = SpecialTokens::of(&ckpt.tokenizer_json)?;
    let u = |x: usize| MetaValue::U32(x as u32);
    let mut kv = vec![
        (
            "general.architecture".to_string(),
            MetaValue::Str("gpt2".into()),
        ),
        ("general.name".to_string(), MetaValue::Str(name.to_string())),
        (
            "general.file_type".to_string(),
            MetaValue::U32(ty.file_type()),
        ),
        ("gpt2.context_length".to_string(), u(cfg.n_ctx)),
        ("gpt2.embedding_length".to_string(), u(cfg.n_embd)),
        ("gpt2.block_count".to_string(), u(cfg.n_layer)),
        ("gpt2.feed_forward_length".to_string(), u(cfg.n_inner)),
        ("gpt2.attention.head_count".to_string(), u(cfg.n_head)),
        (
            "gpt2.attention.layer_norm_epsilon".to_string(),
            MetaValue::F32(LAYER_NORM_EPS),
        ),
        (
            "tokenizer.ggml.model".to_string(),
            MetaValue::Str("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".to_string(),
            MetaValue::Str("gpt-2".into()),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            MetaValue::StrArray(vocab.tokens),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            MetaValue::I32Array(vocab.types),
        ),
        (
            "tokenizer.ggml.merges".to_string(),
            MetaValue::StrArray(vocab.merges),
        ),
    ];
    for (key, id) in special_token_keys(&special) {
        kv.push((key.to_string(), MetaValue::U32(id)));
    }
    kv.push((
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(false),
    ));
    // cllm's tokenizer adds no space before a text; llama-cpp-python reads
    // a missing key as true and then cuts tokens off an infill's suffix.
    kv.push((
        "tokenizer.ggml.add_space_prefix".into(),
        MetaValue::Bool(false),
    ));
    Ok(kv)
}

/// The special-token id keys llama.cpp reads, for the tokens `special` has:
/// `<|endoftext|>` is BOS, EOS and EOT (llama.cpp ends generation at it);
/// the FIM keys only when the tokenizer has FIM tokens (llama.cpp's
/// `/infill` needs `fim_pre`, `fim_suf` and `fim_mid`; it also ends
/// generation at `fim_pad` and `fim_sep`, and puts `fim_sep` before files
/// given as context).
pub fn special_token_keys(special: &SpecialTokens) -> Vec<(&'static str, u32)> {
    let mut keys = Vec::new();
    if let Some(eot) = special.eot {
        keys.push(("tokenizer.ggml.bos_token_id", eot));
        keys.push(("tokenizer.ggml.eos_token_id", eot));
        keys.push(("tokenizer.ggml.eot_token_id", eot));
    }
    if let Some(fim) = special.fim {
        keys.push(("tokenizer.ggml.fim_pre_token_id", fim.prefix));
        keys.push(("tokenizer.ggml.fim_suf_token_id", fim.suffix));
        keys.push(("tokenizer.ggml.fim_mid_token_id", fim.middle));
        keys.push(("tokenizer.ggml.fim_pad_token_id", fim.pad));
        keys.push(("tokenizer.ggml.fim_sep_token_id", fim.file_sep));
    }
    keys
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &MetaValue) {
    // GGUF value types.
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STRING: u32 = 8;
    const ARRAY: u32 = 9;
    match v {
        MetaValue::Bool(b) => {
            out.extend_from_slice(&BOOL.to_le_bytes());
            out.push(u8::from(*b));
        }
        MetaValue::U32(x) => {
            out.extend_from_slice(&U32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        MetaValue::I32(x) => {
            out.extend_from_slice(&I32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        MetaValue::F32(x) => {
            out.extend_from_slice(&F32.to_le_bytes());
            out.extend_from_slice(&x.to_le_bytes());
        }
        MetaValue::Str(s) => {
            out.extend_from_slice(&STRING.to_le_bytes());
            write_str(out, s);
        }
        MetaValue::StrArray(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&STRING.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                write_str(out, s);
            }
        }
        MetaValue::I32Array(items) => {
            out.extend_from_slice(&ARRAY.to_le_bytes());
            out.extend_from_slice(&I32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for x in items {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
}

fn pad_to(n: usize) -> usize {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// Writes `ckpt` as a GGUF file at `path` (through a temporary file beside
/// it, renamed when complete).
pub fn export_gguf<T: TrainerRecords>(
    ckpt: &Checkpoint<T>,
    path: &Path,
    ty: GgufType,
) -> Result<GgufSummary, CheckpointError> {
    ckpt.model
        .validate()
        .map_err(|e| CheckpointError::bad_input(path, e.to_string()))?;
    let layout = ParamLayout::new(&ckpt.model);
    if ckpt.params.len() != layout.total {
        return Err(CheckpointError::bad_input(
            path,
            format!(
                "{} parameters, the model config needs {}",
                ckpt.params.len(),
                layout.total
            ),
        ));
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cllm".into());
    let metadata = gguf_metadata(ckpt, &name, ty)?;

    // Tensor infos and their data offsets.
    struct Planned<'a> {
        name: String,
        dims: Vec<u64>,
        ty: GgufType,
        values: &'a [f32],
        offset: usize,
    }
    let mut planned = Vec::new();
    let mut offset = 0usize;
    for spec in &layout.specs {
        let gname = gguf_tensor_name(&spec.name).ok_or_else(|| {
            CheckpointError::bad_input(path, format!("no GGUF name for {}", spec.name))
        })?;
        let t = if spec.shape.len() >= 2 {
            ty
        } else {
            GgufType::F32
        };
        let dims: Vec<u64> = spec.shape.iter().rev().map(|&d| d as u64).collect();
        let bytes = spec.len() * if t == GgufType::F16 { 2 } else { 4 };
        planned.push(Planned {
            name: gname,
            dims,
            ty: t,
            values: &ckpt.params[spec.range()],
            offset,
        });
        offset = pad_to(offset + bytes);
    }

    let mut head = Vec::new();
    head.extend_from_slice(GGUF_MAGIC);
    head.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    head.extend_from_slice(&(planned.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in &metadata {
        write_str(&mut head, k);
        write_value(&mut head, v);
    }
    for p in &planned {
        write_str(&mut head, &p.name);
        head.extend_from_slice(&(p.dims.len() as u32).to_le_bytes());
        for d in &p.dims {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&p.ty.id().to_le_bytes());
        head.extend_from_slice(&(p.offset as u64).to_le_bytes());
    }
    head.resize(pad_to(head.len()), 0);

    let tmp = path.with_extension("gguf.tmp");
    let io = |e| CheckpointError::io(&tmp, "write", e);
    let file = fs::File::create(&tmp).map_err(io)?;
    let mut w = BufWriter::new(file);
    w.write_all(&head).map_err(io)?;
    let mut written = 0usize;
    for p in &planned {
        debug_assert_eq!(written, p.offset);
        let mut bytes = Vec::with_capacity(p.values.len() * 4);
        match p.ty {
            GgufType::F32 => {
                for x in p.values {
                    bytes.extend_from_slice(&x.to_le_bytes());
                }
            }
            GgufType::F16 => {
                for x in p.values {
                    bytes.extend_from_slice(&half::f16::from_f32(*x).to_le_bytes());
                }
            }
        }
        bytes.resize(pad_to(bytes.len()), 0);
        written += bytes.len();
        w.write_all(&bytes).map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| CheckpointError::io(path, "rename into", e))?;
    Ok(GgufSummary {
        tensors: planned.len(),
        metadata: metadata.len(),
        bytes: (head.len() + written) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(gguf_tensor_name("wte.weight").unwrap(), "token_embd.weight");
        assert_eq!(
            gguf_tensor_name("h.11.attn.c_attn.bias").unwrap(),
            "blk.11.attn_qkv.bias"
        );
        assert_eq!(
            gguf_tensor_name("h.0.mlp.c_proj.weight").unwrap(),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_tensor_name("h.0.nope.weight"), None);
    }
}
