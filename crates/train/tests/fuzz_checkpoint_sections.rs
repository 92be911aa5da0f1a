//! Damaged checkpoints that carry every section: the weights, the AdamW
//! moments, a BPE tokenizer and a repository memory (with its fitted mix).
//! Each file goes through what a front end does before using a model (the
//! app's model loader, `cllm generate`): verify, load, the memory, the
//! tokenizer, the model, then a few tokens generated with the memory
//! scoring them. Every damaged file is refused with a message naming it or,
//! where the damage is one a forger made consistent (checksums recomputed),
//! refused or used without a panic. Seeded: a failure names the case, which
//! the same seed repeats. `checkpoint_damage.rs` tries every byte of a
//! weights-only file; this one the sections.

mod fuzz_support;

use cllm_core::{Gpt, ModelConfig, ParamLayout};
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{
    Checkpoint, OptimizerState, TrainingState, load_bytes, save, trained_context, verify_bytes,
};
use fuzz_support::{FuzzRng, Tally, mutate_json};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

const NAME: &str = "fuzzed.cllm";
const SEED: u64 = 0x5eed_c11a;

/// A source file to train the tokenizer and fill the memory.
fn corpus() -> String {
    (0..120)
        .map(|i| {
            format!(
                "int f{}(int x) {{ return x * {} + {}; }} /* é {} */\n",
                i % 9,
                i % 7,
                i % 5,
                i % 3
            )
        })
        .collect()
}

/// A tiny model with every section, saved; its bytes.
fn full_checkpoint() -> (Checkpoint, Vec<u8>) {
    let text = corpus();
    let never = std::sync::atomic::AtomicBool::new(false);
    let tok = Tokenizer::train_bpe(&[&text], 300, &mut |_, _| {}, &never).unwrap();
    let tokens = tok.encode(&text);
    let mut model = ModelConfig::preset("tiny").unwrap();
    model.vocab_size = tok.vocab_size();
    model.n_ctx = 32;
    let layout = ParamLayout::new(&model);
    let mut rng = cllm_core::rng::Rng::new(SEED);
    let params: Vec<f32> = (0..layout.total).map(|_| rng.normal() * 0.05).collect();
    let optimizer = Some(OptimizerState {
        config: cllm_train::AdamWConfig::default(),
        step: 40,
        m: (0..layout.total).map(|_| rng.normal() * 1e-3).collect(),
        v: (0..layout.total).map(|_| rng.next_f32() * 1e-6).collect(),
    });
    let (train, val) = tokens.split_at(tokens.len() * 9 / 10);
    let mut memory = Memory::build(train.to_vec(), tok.vocab_size());
    let probs: Vec<f32> = (1..val.len())
        .map(|i| 0.02 + (i % 7) as f32 * 0.1)
        .collect();
    memory.fit(val, &probs);
    let mut train_config = TrainConfig::default();
    train_config.batch.seq_len = 32;
    let mut state = TrainingState::start();
    state.step = 40;
    let ck = Checkpoint {
        model,
        params,
        optimizer,
        tokenizer_json: tok.to_json(),
        train_config,
        state,
        created_unix: 0,
        program_version: String::new(),
        memory: Some(memory.to_bytes()),
    };
    (ck.clone(), saved(&ck))
}

fn saved(ck: &Checkpoint) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cllm");
    save(&path, &ck.as_ref()).unwrap();
    std::fs::read(&path).unwrap()
}

/// What a front end does with a checkpoint before using it; every refusal
/// names the file. Accepted, the model, tokenizer and memory are used.
fn open(bytes: &[u8]) -> Result<(), String> {
    let path = Path::new(NAME);
    let ck = load_bytes(path, bytes).map_err(|e| e.to_string())?;
    let memory = ck.repository_memory(path).map_err(|e| e.to_string())?;
    let tok = Tokenizer::from_json(&ck.tokenizer_json)
        .map_err(|e| format!("{NAME}: its tokenizer: {e}"))?;
    let context = trained_context(&ck);
    let model = Gpt::from_params(ck.model, ck.params)
        .and_then(|m| m.with_context(context))
        .map_err(|e| format!("{NAME}: {e}"))?;
    let prompt = "int f3(int x) { return";
    let ids = tok.encode(prompt);
    let _ = tok.decode(&ids);
    if let Some(memory) = &memory {
        let known: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&t| (t as usize) < memory.vocab_size())
            .collect();
        if !known.is_empty() {
            let probs = vec![0.3; known.len() - 1];
            let _ = memory.score(&known, &probs);
        }
    }
    let _ = cllm_generate::sample_text(&model, &tok, prompt, 3, 7);
    Ok(())
}

/// The file's header (as JSON) and its data section.
fn split(bytes: &[u8]) -> (Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// A file with `header` and `data`, its checksum recomputed as the writer
/// computes it: a forger's file.
fn forge(mut header: Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let zeros = "0".repeat(64);
    if let Some(meta) = header
        .get_mut("__metadata__")
        .and_then(Value::as_object_mut)
    {
        meta.insert("checksum_sha256".into(), Value::String(zeros.clone()));
    }
    let mut json = serde_json::to_vec(&header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    let hex: String = Sha256::digest(&out)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let needle = format!("\"checksum_sha256\":\"{zeros}\"");
    if let Some(at) = find(&out, needle.as_bytes()) {
        let digits = at + needle.len() - 65;
        out[digits..digits + 64].copy_from_slice(hex.as_bytes());
    }
    out
}

/// The file with `memory` in place of its stored memory, its description
/// and tensor entry matched to the new length and its checksum recomputed
/// (what a forger does; the writer itself refuses a memory it cannot read).
fn with_memory(bytes: &[u8], old_len: usize, memory: &[u8]) -> Vec<u8> {
    let (mut header, mut data) = split(bytes);
    data.truncate(data.len() - old_len);
    let begin = data.len() as u64;
    data.extend_from_slice(memory);
    let meta = header["__metadata__"].as_object_mut().unwrap();
    let mut description: Value = serde_json::from_str(meta["memory"].as_str().unwrap()).unwrap();
    description["bytes"] = (memory.len() as u64).into();
    meta.insert("memory".into(), Value::String(description.to_string()));
    header["memory"]["shape"] = serde_json::json!([memory.len()]);
    header["memory"]["data_offsets"] = serde_json::json!([begin, begin + memory.len() as u64]);
    forge(header, &data)
}

/// The file with another tokenizer text, its checksum recomputed.
fn with_tokenizer(header: &Map<String, Value>, data: &[u8], text: String) -> Vec<u8> {
    let mut header = header.clone();
    header["__metadata__"]["tokenizer_json"] = Value::String(text);
    forge(header, data)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where each section lies in the file: (name, range).
fn sections(bytes: &[u8], ck: &Checkpoint) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let p = ck.params.len() * 4;
    let memory = ck.memory.as_ref().unwrap().len();
    let end = bytes.len();
    vec![
        ("length field", 0..8),
        ("header", 8..header_end),
        ("weights", header_end..header_end + p),
        ("moments", header_end + p..end - memory),
        ("memory", end - memory..end),
    ]
}

/// The stored memory with its own checksum recomputed (`CLLM-MEM`: the
/// SHA-256 of every byte before it closes it).
fn reseal_memory(mut body: Vec<u8>) -> Vec<u8> {
    let digest = Sha256::digest(&body);
    body.extend_from_slice(&digest);
    body
}

/// A stored memory's JSON header, and the bytes around it.
fn memory_parts(stored: &[u8]) -> (Vec<u8>, Value, Vec<u8>) {
    let n = u32::from_le_bytes(stored[12..16].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&stored[16..16 + n]).unwrap();
    (
        stored[..12].to_vec(),
        header,
        stored[16 + n..stored.len() - 32].to_vec(),
    )
}

fn memory_from_parts(preamble: &[u8], header: &Value, tokens: &[u8]) -> Vec<u8> {
    let json = serde_json::to_vec(header).unwrap();
    let mut body = preamble.to_vec();
    body.extend_from_slice(&(json.len() as u32).to_le_bytes());
    body.extend_from_slice(&json);
    body.extend_from_slice(tokens);
    reseal_memory(body)
}

#[test]
fn damaged_sections_are_refused_or_used_without_a_panic() {
    let (ck, bytes) = full_checkpoint();
    open(&bytes).expect("the undamaged file opens and is used");
    let mut rng = FuzzRng::new(SEED);
    let mut tally = Tally::new(NAME);
    let parts = sections(&bytes, &ck);
    let (header, data) = split(&bytes);

    // 1. Bytes changed in each section: the checksum refuses them all.
    for (name, range) in &parts {
        for case in 0..1000 {
            let mut damaged = bytes.clone();
            // One to three changes (two at one byte may cancel: go on
            // until the file differs).
            let mut changes = 1 + rng.below(3);
            while changes > 0 || damaged == bytes {
                let at = range.start + rng.index(range.len());
                damaged[at] ^= 1 + rng.below(255) as u8;
                changes = changes.saturating_sub(1);
            }
            tally.refused(&format!("bytes changed in the {name}"), case, || {
                // `cllm inspect` verifies; the others load.
                verify_bytes(Path::new(NAME), &damaged).map_err(|e| e.to_string())?;
                open(&damaged)
            });
        }
    }
    // 2. Cut short at any length, or with bytes appended.
    for case in 0..1200 {
        let len = rng.below(bytes.len() as u64) as usize;
        tally.refused("truncated", case, || open(&bytes[..len]));
    }
    for case in 0..100 {
        let mut longer = bytes.clone();
        longer.extend((0..1 + rng.below(64)).map(|_| rng.below(256) as u8));
        tally.refused("bytes appended", case, || open(&longer));
    }
    // 3. The memory's bytes changed, the file's checksum recomputed: the
    // memory's own checksum refuses them.
    let stored = ck.memory.clone().unwrap();
    for case in 0..800 {
        let mut memory = stored.clone();
        let at = rng.below(memory.len() as u64) as usize;
        memory[at] ^= 1 + rng.below(255) as u8;
        let damaged = with_memory(&bytes, stored.len(), &memory);
        tally.refused("memory bytes changed", case, || open(&damaged));
    }
    // 4. The memory forged whole (both checksums recomputed): its header
    // fields edited, its tokens changed or cut.
    let (preamble, mem_header, tokens) = memory_parts(&stored);
    for case in 0..1200 {
        let (mut header, mut toks) = (mem_header.clone(), tokens.clone());
        match rng.below(3) {
            0 => mutate_json(&mut header, &mut rng),
            1 => {
                let at = rng.below(toks.len() as u64) as usize;
                toks[at] = rng.below(256) as u8;
            }
            _ => toks.truncate(rng.below(toks.len() as u64 + 1) as usize),
        }
        let damaged = with_memory(
            &bytes,
            stored.len(),
            &memory_from_parts(&preamble, &header, &toks),
        );
        tally.refused_or_used("memory forged", case, || open(&damaged));
    }
    // 5. The tokenizer's text changed (characters replaced, cut), and 6.
    // its JSON fields edited; the file's checksum recomputed.
    let tok_text: Vec<char> = ck.tokenizer_json.chars().collect();
    let alphabet: Vec<char> = "{}[]\",:0123456789-.eE aZ\\u".chars().collect();
    for case in 0..1000 {
        let mut text = tok_text.clone();
        if rng.below(4) == 0 {
            text.truncate(rng.below(text.len() as u64) as usize);
        } else {
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(text.len() as u64) as usize;
                text[at] = alphabet[rng.below(alphabet.len() as u64) as usize];
            }
        }
        let damaged = with_tokenizer(&header, &data, text.into_iter().collect());
        tally.refused_or_used("tokenizer text changed", case, || open(&damaged));
    }
    let tok_json: Value = serde_json::from_str(&ck.tokenizer_json).unwrap();
    for case in 0..1200 {
        let mut json = tok_json.clone();
        for _ in 0..1 + rng.below(2) {
            mutate_json(&mut json, &mut rng);
        }
        let damaged = with_tokenizer(&header, &data, json.to_string());
        tally.refused_or_used("tokenizer fields edited", case, || open(&damaged));
    }
    // A tokenizer with more tokens than the model has rows: one of them in
    // every prompt.
    let mut bigger = tok_json.clone();
    let id = ck.model.vocab_size;
    bigger["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": id, "content": "int", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    bigger["model"]["vocab"]["int!"] = id.into();
    let damaged = with_tokenizer(&header, &data, bigger.to_string());
    tally.refused_or_used("tokenizer larger than the model", 0, || open(&damaged));
    // 7. Header fields edited (the metadata's records, the tensor table),
    // the checksum recomputed.
    for case in 0..1500 {
        let mut h = header.clone();
        let keys: Vec<String> = h.keys().cloned().collect();
        let key = &keys[rng.below(keys.len() as u64) as usize];
        if key == "__metadata__" {
            let meta = h[key].as_object_mut().unwrap();
            let names: Vec<String> = meta.keys().cloned().collect();
            let name = &names[rng.below(names.len() as u64) as usize];
            // Records are JSON inside strings: edit inside where they are.
            let text = meta[name].as_str().unwrap_or_default().to_string();
            let edited = match serde_json::from_str::<Value>(&text) {
                Ok(mut inner) if name != "tokenizer_json" => {
                    mutate_json(&mut inner, &mut rng);
                    Value::String(inner.to_string())
                }
                _ => {
                    let mut v = Value::String(text);
                    mutate_json(&mut v, &mut rng);
                    v
                }
            };
            meta.insert(name.clone(), edited);
        } else {
            mutate_json(h.get_mut(key).unwrap(), &mut rng);
        }
        let damaged = forge(h, &data);
        tally.refused_or_used("header fields edited", case, || open(&damaged));
    }
    // 8. Weights a forger set to NaN, infinities or huge values (the
    // checksum recomputed): used without a panic.
    for case in 0..200 {
        let mut params = ck.params.clone();
        let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30];
        for _ in 0..1 + rng.below(50) {
            let at = rng.below(params.len() as u64) as usize;
            params[at] = bad[rng.below(bad.len() as u64) as usize];
        }
        let mut forged = data.clone();
        for (at, x) in params.iter().enumerate() {
            forged[4 * at..4 * at + 4].copy_from_slice(&x.to_le_bytes());
        }
        let damaged = forge(header.clone(), &forged);
        tally.refused_or_used("weights forged", case, || open(&damaged));
    }
    tally.finish(10_000);
}
