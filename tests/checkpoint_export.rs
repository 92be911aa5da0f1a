//! The Hugging Face export (names, Conv1D transposes, config, tokenizer,
//! tokenizer and generation configs with the special tokens) and the
//! `inspect` / `export` commands' library entry points.

#[path = "../crates/train/tests/checkpoint_support/mod.rs"]
mod checkpoint_support;

use checkpoint_support::{bits, exportable, sample};
use cllm::cli::export::{ExportArgs, ExportFormat};
use cllm::cli::inspect::{InspectArgs, describe};
use cllm_core::ParamLayout;
use cllm_data::tokenizer::Tokenizer;
use cllm_train::checkpoint::export_gguf::GgufType;
use cllm_train::checkpoint::export_hf::{
    CONFIG_FILE, GENERATION_CONFIG_FILE, MODEL_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
    hf_tensors,
};
use cllm_train::checkpoint::{export_hf, save};
use serde_json::{Value, json};
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn hf_tensors_use_gpt2_names_and_conv1d_layout() {
    let ckpt = sample("tiny", false, 21);
    let layout = ParamLayout::new(&ckpt.model);
    let tensors = hf_tensors(&layout, &ckpt.params);
    assert_eq!(tensors.len(), layout.specs.len());
    let c = ckpt.model.n_embd;
    let inner = ckpt.model.n_inner;
    let find = |name: &str| tensors.iter().find(|t| t.name == name).unwrap();
    let ours = |name: &str| &ckpt.params[layout.get(name).unwrap().range()];

    // Conv1D weights: HF[i][o] == ours[o][i].
    for (name, rows_out, cols_in) in [
        ("h.1.attn.c_attn.weight", 3 * c, c),
        ("h.0.attn.c_proj.weight", c, c),
        ("h.1.mlp.c_fc.weight", inner, c),
        ("h.0.mlp.c_proj.weight", c, inner),
    ] {
        let hf = find(&format!("transformer.{name}"));
        assert_eq!(hf.shape, vec![cols_in, rows_out], "{name}");
        let src = ours(name);
        for o in 0..rows_out {
            for i in 0..cols_in {
                assert_eq!(
                    hf.values[i * rows_out + o].to_bits(),
                    src[o * cols_in + i].to_bits(),
                    "{name}[{o}][{i}]"
                );
            }
        }
    }
    // Everything else keeps its layout.
    for name in [
        "wte.weight",
        "wpe.weight",
        "h.0.ln_1.weight",
        "h.1.attn.c_attn.bias",
        "ln_f.bias",
    ] {
        let hf = find(&format!("transformer.{name}"));
        assert_eq!(hf.shape, layout.get(name).unwrap().shape);
        assert!(bits(&hf.values) == bits(ours(name)), "{name}");
    }
    assert!(tensors.iter().all(|t| !t.name.starts_with("lm_head")));
}

#[test]
fn export_writes_a_folder_transformers_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = exportable(sample("tiny", true, 22));
    let out = dir.path().join("hf");
    let summary = export_hf(&ckpt, &out).unwrap();
    let names: Vec<_> = summary
        .files
        .iter()
        .map(|f| f.file_name().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            MODEL_FILE,
            CONFIG_FILE,
            TOKENIZER_FILE,
            TOKENIZER_CONFIG_FILE,
            GENERATION_CONFIG_FILE
        ]
    );
    assert!(
        summary
            .files
            .iter()
            .all(|f| f.starts_with(&out) && f.exists())
    );

    let bytes = fs::read(out.join(MODEL_FILE)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let layout = ParamLayout::new(&ckpt.model);
    assert_eq!(st.len(), layout.specs.len());
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    let c_attn = st.tensor("transformer.h.0.attn.c_attn.weight").unwrap();
    assert_eq!(c_attn.shape(), &[16, 48]);

    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["activation_function"], "gelu_new");
    assert_eq!(config["n_layer"], 2);
    assert_eq!(config["n_embd"], 16);
    assert_eq!(config["n_inner"], 64);
    assert_eq!(config["n_positions"], 16);
    assert_eq!(config["vocab_size"], 37);
    assert_eq!(config["layer_norm_epsilon"], 1e-5);
    assert_eq!(config["tie_word_embeddings"], true);
    // This tokenizer has no `<|endoftext|>`: no BOS/EOS anywhere, rather
    // than GPT2Config's default 50256.
    assert!(config["eos_token_id"].is_null());
    assert!(config["bos_token_id"].is_null());
    assert_eq!(
        fs::read_to_string(out.join(TOKENIZER_FILE)).unwrap(),
        ckpt.tokenizer_json
    );
    assert_eq!(
        read_json(&out.join(TOKENIZER_CONFIG_FILE)),
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": 16,
            "add_bos_token": false,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
        })
    );
    assert_eq!(
        read_json(&out.join(GENERATION_CONFIG_FILE)),
        json!({"bos_token_id": null, "eos_token_id": null, "pad_token_id": null, "max_length": 16})
    );
}

#[test]
fn export_names_the_special_tokens_so_generate_stops_at_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = "int main(void) { return 0; }\n".repeat(20);
    let tok = Tokenizer::train_bpe(&[&text], 280, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
    let (eot, f) = (tok.eot_id().unwrap(), tok.fim_tokens().unwrap());
    let mut ckpt = sample("tiny", false, 24);
    ckpt.tokenizer_json = tok.to_json();
    let out = dir.path().join("hf");
    export_hf(&ckpt, &out).unwrap();
    let config = read_json(&out.join(CONFIG_FILE));
    assert_eq!(config["bos_token_id"], eot);
    assert_eq!(config["eos_token_id"], eot);
    assert_eq!(
        read_json(&out.join(TOKENIZER_CONFIG_FILE)),
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": 16,
            "add_bos_token": false,
            "add_eos_token": false,
            "clean_up_tokenization_spaces": false,
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "pad_token": "<fim_pad>",
            "additional_special_tokens":
                ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<file_sep>"],
        })
    );
    // generate() ends at any special token, as cllm does; `<|endoftext|>` first.
    assert_eq!(
        read_json(&out.join(GENERATION_CONFIG_FILE)),
        json!({
            "bos_token_id": eot,
            "eos_token_id": [eot, f.prefix, f.suffix, f.middle, f.pad, f.file_sep],
            "pad_token_id": f.pad,
            "max_length": 16,
        })
    );

    // A tokenizer from before FIM: `<|endoftext|>` only, and pads with it.
    let mut old: Value = serde_json::from_str(&tok.to_json()).unwrap();
    old["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] == "<|endoftext|>");
    ckpt.tokenizer_json = old.to_string();
    export_hf(&ckpt, &out).unwrap();
    let tokenizer_config = read_json(&out.join(TOKENIZER_CONFIG_FILE));
    assert_eq!(tokenizer_config["pad_token"], "<|endoftext|>");
    assert_eq!(tokenizer_config["eos_token"], "<|endoftext|>");
    assert!(tokenizer_config.get("additional_special_tokens").is_none());
    let generation = read_json(&out.join(GENERATION_CONFIG_FILE));
    assert_eq!(generation["eos_token_id"], json!([eot]));
    assert_eq!(generation["pad_token_id"], eot);
}

#[test]
fn commands_succeed_on_good_files_and_explain_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = exportable(sample("tiny", true, 23));
    let path = dir.path().join("good.cllm");
    save(&path, &ckpt.as_ref()).unwrap();

    let text = describe(&cllm_train::checkpoint::verify(&path).unwrap());
    for needle in [
        "good.cllm",
        "checksum    OK",
        "2 layers",
        "step 1257",
        "epoch 3",
        "can resume",
        "infill      no: tokenizer has no FIM tokens",
    ] {
        assert!(text.contains(needle), "'{needle}' missing from:\n{text}");
    }
    cllm::cli::inspect::run(InspectArgs {
        file: path.clone(),
        json: true,
    })
    .unwrap();
    cllm::cli::inspect::run(InspectArgs {
        file: path.clone(),
        json: false,
    })
    .unwrap();

    let bad = dir.path().join("bad.cllm");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&bad, &bytes).unwrap();
    let err = cllm::cli::inspect::run(InspectArgs {
        file: bad.clone(),
        json: false,
    })
    .unwrap_err();
    assert!(
        err.contains("bad.cllm") && err.contains("checksum"),
        "{err}"
    );

    let out = dir.path().join("export");
    cllm::cli::export::run(ExportArgs {
        file: path.clone(),
        format: ExportFormat::Hf,
        outtype: GgufType::F32,
        output: out.clone(),
        check_text: None,
    })
    .unwrap();
    assert!(out.join(MODEL_FILE).exists());
    // An unknown format is refused where the command line is read.
    let err = <cllm::cli::Cli as clap::Parser>::try_parse_from([
        "cllm",
        "export",
        "--model",
        path.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--format",
        "onnx",
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("onnx"), "{err}");
    let err = cllm::cli::export::run(ExportArgs {
        file: bad,
        format: ExportFormat::Hf,
        outtype: GgufType::F32,
        output: dir.path().join("never"),
        check_text: None,
    })
    .unwrap_err();
    assert!(err.contains("bad.cllm"), "{err}");
}
