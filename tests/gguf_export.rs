//! `cllm export --format gguf`, read back by a GGUF reader written here from
//! the specification (independent of the writer): header, every metadata
//! key with its type and value, every tensor's llama.cpp name, dimensions,
//! type, aligned offset, and its values (f32 bit for bit, f16 as the nearest
//! half), for a byte-tokenizer model, a BPE one with `<|endoftext|>` and
//! the FIM tokens, and one from before FIM; and the Ollama Modelfile
//! written beside the file.

use cllm_core::{Gpt, ModelConfig, ParamLayout};
use cllm_data::tokenizer::{EOT, Tokenizer, byte_to_char};
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Clone, PartialEq)]
enum V {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Arr(Vec<V>),
}

struct Tensor {
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

struct Gguf {
    kv: HashMap<String, V>,
    keys: Vec<String>,
    tensors: Vec<(String, Tensor)>,
    data_start: usize,
    bytes: Vec<u8>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn value(&mut self, ty: u32) -> V {
        match ty {
            4 => V::U32(self.u32()),
            5 => V::I32(self.u32() as i32),
            6 => V::F32(f32::from_bits(self.u32())),
            7 => V::Bool(self.take(1)[0] != 0),
            8 => V::Str(self.string()),
            9 => {
                let elem = self.u32();
                let n = self.u64();
                V::Arr((0..n).map(|_| self.value(elem)).collect())
            }
            other => panic!("unexpected value type {other}"),
        }
    }
}

fn read_gguf(path: &Path) -> Gguf {
    let bytes = std::fs::read(path).unwrap();
    let mut r = Reader { b: &bytes, at: 0 };
    assert_eq!(r.take(4), b"GGUF");
    assert_eq!(r.u32(), 3, "version");
    let n_tensors = r.u64();
    let n_kv = r.u64();
    let mut kv = HashMap::new();
    let mut keys = Vec::new();
    for _ in 0..n_kv {
        let k = r.string();
        let ty = r.u32();
        let v = r.value(ty);
        keys.push(k.clone());
        assert!(kv.insert(k, v).is_none(), "duplicate key");
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = r.string();
        let nd = r.u32();
        let dims = (0..nd).map(|_| r.u64()).collect();
        let ty = r.u32();
        let offset = r.u64();
        tensors.push((name, Tensor { dims, ty, offset }));
    }
    let data_start = r.at.div_ceil(32) * 32;
    Gguf {
        kv,
        keys,
        tensors,
        data_start,
        bytes,
    }
}

fn tiny_config(vocab: usize) -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = vocab;
    cfg.n_ctx = 48;
    cfg
}

fn write_checkpoint(path: &Path, model: &Gpt, tok: &Tokenizer) {
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &tok.to_json(),
            train_config: &TrainConfig::default(),
            state: &TrainingState::start(),
            memory: None,
        },
    )
    .unwrap();
}

/// Runs `cllm export --format gguf`; returns what it printed.
fn export(model: &Path, out: &Path, outtype: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args([
            "export",
            "--model",
            model.to_str().unwrap(),
            "--format",
            "gguf",
        ])
        .args(["--outtype", outtype, "--output", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("exported"), "{stdout}");
    stdout
}

fn gguf_name(ours: &str) -> String {
    let map = [
        ("wte.weight", "token_embd.weight"),
        ("wpe.weight", "position_embd.weight"),
        ("ln_f.weight", "output_norm.weight"),
        ("ln_f.bias", "output_norm.bias"),
    ];
    if let Some((_, g)) = map.iter().find(|(o, _)| *o == ours) {
        return g.to_string();
    }
    let parts = [
        ("ln_1", "attn_norm"),
        ("attn.c_attn", "attn_qkv"),
        ("attn.c_proj", "attn_output"),
        ("ln_2", "ffn_norm"),
        ("mlp.c_fc", "ffn_up"),
        ("mlp.c_proj", "ffn_down"),
    ];
    let rest = ours.strip_prefix("h.").unwrap();
    let (layer, rest) = rest.split_once('.').unwrap();
    let (part, kind) = rest.rsplit_once('.').unwrap();
    let part = parts.iter().find(|(o, _)| *o == part).unwrap().1;
    format!("blk.{layer}.{part}.{kind}")
}

/// Checks every key and tensor of `path` against `model` and `tok`.
fn check(path: &Path, model: &Gpt, tok: &Tokenizer, f16: bool) {
    let g = read_gguf(path);
    let cfg = &model.config;
    let u = |x: usize| V::U32(x as u32);
    let expect = [
        ("general.architecture", V::Str("gpt2".into())),
        ("general.file_type", V::U32(u32::from(f16))),
        ("gpt2.context_length", u(cfg.n_ctx)),
        ("gpt2.embedding_length", u(cfg.n_embd)),
        ("gpt2.block_count", u(cfg.n_layer)),
        ("gpt2.feed_forward_length", u(cfg.n_inner)),
        ("gpt2.attention.head_count", u(cfg.n_head)),
        ("gpt2.attention.layer_norm_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::Str("gpt2".into())),
        ("tokenizer.ggml.pre", V::Str("gpt-2".into())),
        ("tokenizer.ggml.add_bos_token", V::Bool(false)),
        ("tokenizer.ggml.add_space_prefix", V::Bool(false)),
    ];
    for (k, v) in &expect {
        assert_eq!(g.kv.get(*k), Some(v), "{k}");
    }
    assert!(matches!(g.kv.get("general.name"), Some(V::Str(_))));
    // Tokens: GPT-2's byte-to-unicode spelling of each id's bytes.
    let V::Arr(tokens) = &g.kv["tokenizer.ggml.tokens"] else {
        panic!("tokens")
    };
    let V::Arr(types) = &g.kv["tokenizer.ggml.token_type"] else {
        panic!("types")
    };
    assert_eq!(tokens.len(), cfg.vocab_size);
    assert_eq!(types.len(), cfg.vocab_size);
    for id in 0..tok.vocab_size() as u32 {
        let want = if Some(id) == tok.eot_id() {
            "<|endoftext|>".to_string()
        } else {
            tok.token_bytes(id).into_iter().map(byte_to_char).collect()
        };
        assert_eq!(tokens[id as usize], V::Str(want), "token {id}");
        // Special tokens are CONTROL, so llama.cpp never makes them from text.
        let ty = if tok.is_special(id) { 3 } else { 1 };
        assert_eq!(types[id as usize], V::I32(ty), "type of {id}");
    }
    let V::Arr(merges) = &g.kv["tokenizer.ggml.merges"] else {
        panic!("merges")
    };
    // Each merge joins two tokens into a third one of the vocabulary.
    for m in merges {
        let V::Str(m) = m else { panic!("merge") };
        let (a, b) = m.split_once(' ').unwrap();
        assert!(tokens.contains(&V::Str(format!("{a}{b}"))), "merge {m}");
    }
    match tok.eot_id() {
        Some(eot) => {
            assert!(!merges.is_empty());
            assert_eq!(tokens[eot as usize], V::Str(EOT.into()));
            assert_eq!(g.kv["tokenizer.ggml.eos_token_id"], V::U32(eot));
            assert_eq!(g.kv["tokenizer.ggml.bos_token_id"], V::U32(eot));
            assert_eq!(g.kv["tokenizer.ggml.eot_token_id"], V::U32(eot));
        }
        None => {
            assert!(merges.is_empty());
            assert!(!g.kv.contains_key("tokenizer.ggml.eos_token_id"));
            assert!(!g.kv.contains_key("tokenizer.ggml.eot_token_id"));
        }
    }
    // The FIM ids under llama.cpp's keys, each naming its token, only for
    // a tokenizer that has them.
    let fim_keys =
        ["pre", "suf", "mid", "pad", "sep"].map(|k| format!("tokenizer.ggml.fim_{k}_token_id"));
    match tok.fim_tokens() {
        Some(f) => {
            let want = [
                (f.prefix, "<fim_prefix>"),
                (f.suffix, "<fim_suffix>"),
                (f.middle, "<fim_middle>"),
                (f.pad, "<fim_pad>"),
                (f.file_sep, "<file_sep>"),
            ];
            for (key, (id, text)) in fim_keys.iter().zip(want) {
                assert_eq!(g.kv.get(key), Some(&V::U32(id)), "{key}");
                assert_eq!(tokens[id as usize], V::Str(text.into()), "{key}");
                assert_eq!(types[id as usize], V::I32(3), "{key} is CONTROL");
            }
        }
        None => {
            for key in &fim_keys {
                assert!(!g.kv.contains_key(key), "{key} without FIM tokens");
            }
        }
    }
    assert!(!g.kv.contains_key("tokenizer.ggml.fim_rep_token_id"));
    assert_eq!(g.keys.len(), g.kv.len());

    // Tensors: every parameter once, in llama.cpp's names and layout.
    let layout = ParamLayout::new(cfg);
    assert_eq!(g.tensors.len(), layout.specs.len());
    let mut end = 0;
    for spec in &layout.specs {
        let name = gguf_name(&spec.name);
        let (_, t) = g
            .tensors
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        let dims: Vec<u64> = spec.shape.iter().rev().map(|&d| d as u64).collect();
        assert_eq!(t.dims, dims, "{name}");
        assert_eq!(t.offset % 32, 0, "{name} aligned");
        let values = &model.params[spec.range()];
        let at = g.data_start + t.offset as usize;
        let half = f16 && spec.shape.len() == 2;
        assert_eq!(t.ty, u32::from(half), "{name} type");
        for (i, &x) in values.iter().enumerate() {
            if half {
                let b = &g.bytes[at + 2 * i..at + 2 * i + 2];
                let got = half::f16::from_le_bytes([b[0], b[1]]);
                assert_eq!(got, half::f16::from_f32(x), "{name}[{i}]");
                assert!((got.to_f32() - x).abs() <= x.abs() * 1e-3 + 1e-7);
            } else {
                let b = &g.bytes[at + 4 * i..at + 4 * i + 4];
                assert_eq!(
                    f32::from_le_bytes(b.try_into().unwrap()).to_bits(),
                    x.to_bits()
                );
            }
        }
        end = end.max(at + values.len() * if half { 2 } else { 4 });
    }
    assert!(
        g.bytes.len() >= end && g.bytes.len() - end < 32,
        "no trailing junk"
    );
    // Expected per-block tensors for llama.cpp's GPT-2 loader.
    for l in 0..cfg.n_layer {
        for part in [
            "attn_norm",
            "attn_qkv",
            "attn_output",
            "ffn_norm",
            "ffn_up",
            "ffn_down",
        ] {
            for kind in ["weight", "bias"] {
                let n = format!("blk.{l}.{part}.{kind}");
                assert!(g.tensors.iter().any(|(x, _)| *x == n), "{n}");
            }
        }
    }
}

#[test]
fn byte_tokenizer_model_exports_f32_and_f16() {
    let dir = tempfile::tempdir().unwrap();
    let model = Gpt::new(tiny_config(256), 3).unwrap();
    let tok = Tokenizer::bytes();
    let ckpt = dir.path().join("bytes.cllm");
    write_checkpoint(&ckpt, &model, &tok);
    let f32_path = dir.path().join("bytes.f32.gguf");
    export(&ckpt, &f32_path, "f32");
    check(&f32_path, &model, &tok, false);
    let f16_path = dir.path().join("bytes.f16.gguf");
    export(&ckpt, &f16_path, "f16");
    check(&f16_path, &model, &tok, true);
}

fn trained_bpe() -> Tokenizer {
    let text =
        "int main(void) { return 0; }\nstatic int add(int a, int b) { return a + b; }\n".repeat(20);
    Tokenizer::train_bpe(
        &[text.as_str()],
        300,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap()
}

/// The Modelfile lines that start with `what`, that prefix cut off.
fn modelfile_lines<'a>(modelfile: &'a str, what: &str) -> Vec<&'a str> {
    modelfile
        .lines()
        .filter_map(|l| l.strip_prefix(what))
        .collect()
}

#[test]
fn bpe_model_exports_tokens_merges_end_of_text_fim_and_a_modelfile() {
    let dir = tempfile::tempdir().unwrap();
    let tok = trained_bpe();
    assert!(tok.eot_id().is_some() && tok.fim_tokens().is_some());
    // A model vocabulary a little larger than the tokenizer's: padded ids.
    let model = Gpt::new(tiny_config(tok.vocab_size() + 4), 9).unwrap();
    let ckpt = dir.path().join("bpe.cllm");
    write_checkpoint(&ckpt, &model, &tok);
    let out = dir.path().join("bpe.gguf");
    let stdout = export(&ckpt, &out, "f32");
    check(&out, &model, &tok, false);
    let f = tok.fim_tokens().unwrap();
    let ids = format!(
        "infill: FIM token ids written (<fim_prefix>={} <fim_suffix>={} <fim_middle>={} <fim_pad>={} <file_sep>={})",
        f.prefix, f.suffix, f.middle, f.pad, f.file_sep
    );
    assert!(stdout.contains(&ids), "{stdout}");

    // The Ollama Modelfile beside it, named in the output.
    let modelfile_path = dir.path().join("bpe.Modelfile");
    assert!(
        stdout.contains(&format!("Ollama Modelfile: {}", modelfile_path.display())),
        "{stdout}"
    );
    let modelfile = std::fs::read_to_string(&modelfile_path).unwrap();
    assert_eq!(modelfile_lines(&modelfile, "FROM "), ["./bpe.gguf"]);
    assert_eq!(modelfile_lines(&modelfile, "PARAMETER num_ctx "), ["48"]);
    assert_eq!(
        modelfile_lines(&modelfile, "PARAMETER stop "),
        [
            "\"<|endoftext|>\"",
            "\"<fim_prefix>\"",
            "\"<fim_suffix>\"",
            "\"<fim_middle>\"",
            "\"<fim_pad>\"",
            "\"<file_sep>\""
        ]
    );
    assert_eq!(
        modelfile_lines(&modelfile, "TEMPLATE "),
        [
            "\"\"\"{{ if .Suffix }}<fim_suffix>{{ .Suffix }}<fim_prefix>{{ .Prompt }}<fim_middle>{{ else }}{{ .Prompt }}{{ end }}\"\"\""
        ]
    );
    // Every other line is a comment.
    let instructions = ["FROM ", "PARAMETER ", "TEMPLATE "];
    for line in modelfile.lines() {
        assert!(
            line.starts_with('#') || instructions.iter().any(|i| line.starts_with(i)),
            "{line}"
        );
    }
    let g = read_gguf(&out);
    let V::Arr(types) = &g.kv["tokenizer.ggml.token_type"] else {
        panic!()
    };
    assert_eq!(
        types[tok.vocab_size()..],
        [V::I32(5), V::I32(5), V::I32(5), V::I32(5)]
    );
}

#[test]
fn model_from_before_fim_exports_no_fim_keys_and_a_plain_template() {
    let dir = tempfile::tempdir().unwrap();
    // A tokenizer.json from before FIM: the same file without them.
    let mut json: serde_json::Value = serde_json::from_str(&trained_bpe().to_json()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] == EOT);
    let tok = Tokenizer::from_json(&json.to_string()).unwrap();
    assert!(tok.fim_tokens().is_none() && tok.eot_id().is_some());
    let model = Gpt::new(tiny_config(tok.vocab_size()), 5).unwrap();
    let ckpt = dir.path().join("old.cllm");
    write_checkpoint(&ckpt, &model, &tok);
    let out = dir.path().join("old.gguf");
    let stdout = export(&ckpt, &out, "f16");
    check(&out, &model, &tok, true);
    assert!(stdout.contains("infill: none"), "{stdout}");
    let modelfile = std::fs::read_to_string(dir.path().join("old.Modelfile")).unwrap();
    assert_eq!(
        modelfile_lines(&modelfile, "PARAMETER stop "),
        ["\"<|endoftext|>\""]
    );
    assert_eq!(
        modelfile_lines(&modelfile, "TEMPLATE "),
        ["\"\"\"{{ .Prompt }}\"\"\""]
    );
    assert!(!modelfile.contains("Suffix"), "{modelfile}");
}

#[test]
fn unknown_outtype_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = Gpt::new(tiny_config(256), 3).unwrap();
    let ckpt = dir.path().join("m.cllm");
    write_checkpoint(&ckpt, &model, &Tokenizer::bytes());
    let o = Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args([
            "export",
            "--model",
            ckpt.to_str().unwrap(),
            "--format",
            "gguf",
            "--outtype",
            "q4",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("q4"));
}
