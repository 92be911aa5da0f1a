//! A checkpoint carries an optional memory: it round-trips, is covered by
//! the checksum, is described by `verify`, and files without one (as the
//! format was before memories existed) load as before.

#[path = "../crates/train/tests/checkpoint_support/mod.rs"]
mod checkpoint_support;

use checkpoint_support::{assert_same, exportable, sample};
use cllm_core::ParamLayout;
use cllm_memory::Memory;
use cllm_train::checkpoint::format::{self, MemoryMeta};
use cllm_train::checkpoint::{CheckpointError, CheckpointRef, load, save, verify};
use sha2::{Digest, Sha256};
use std::fs;

fn memory_for(vocab: usize, n: usize) -> Memory {
    let tokens: Vec<u32> = (0..n).map(|i| ((i * 7 + i / 13) % vocab) as u32).collect();
    Memory::build(tokens, vocab)
}

#[test]
fn a_memory_round_trips_with_and_without_the_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    for with_opt in [false, true] {
        let mut ckpt = sample("tiny", with_opt, 5);
        let memory = memory_for(ckpt.model.vocab_size, 1001);
        ckpt.memory = Some(memory.to_bytes());
        let path = dir.path().join(format!("m{with_opt}.cllm"));
        save(&path, &ckpt.as_ref()).unwrap();
        let back = load(&path).unwrap();
        assert_same(&ckpt, &back);
        let restored = Memory::from_bytes(back.memory.as_deref().unwrap()).unwrap();
        assert_eq!(restored.tokens(), memory.tokens());
        let info = verify(&path).unwrap();
        assert_eq!(
            info.memory,
            Some(MemoryMeta {
                bytes: ckpt.memory.as_ref().unwrap().len() as u64,
                tokens: 1001,
                vocab_size: ckpt.model.vocab_size,
            })
        );
        assert_eq!(info.has_optimizer, with_opt);
        let text = cllm::cli::inspect::describe(&info);
        assert!(
            text.contains("memory      1001 training tokens indexed (vocabulary 37)"),
            "{text}"
        );
        // Any safetensors reader sees the memory as a U8 tensor.
        let bytes = fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let view = st.tensor(format::MEMORY_TENSOR).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::U8);
        assert_eq!(view.data(), &ckpt.memory.as_ref().unwrap()[..]);
    }
}

#[test]
fn the_checksum_covers_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut ckpt = sample("tiny", false, 6);
    ckpt.memory = Some(memory_for(ckpt.model.vocab_size, 300).to_bytes());
    let path = dir.path().join("m.cllm");
    save(&path, &ckpt.as_ref()).unwrap();
    let good = fs::read(&path).unwrap();
    let mem_len = ckpt.memory.as_ref().unwrap().len();
    // Bytes inside the memory, at the end of the file.
    for back in [1, 40, mem_len / 2, mem_len] {
        let mut bad = good.clone();
        let at = bad.len() - back;
        bad[at] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(
            matches!(load(&path), Err(CheckpointError::ChecksumMismatch { .. })),
            "byte {at}"
        );
        assert!(matches!(
            verify(&path),
            Err(CheckpointError::ChecksumMismatch { .. })
        ));
    }
    // A file cut inside the memory.
    fs::write(&path, &good[..good.len() - 10]).unwrap();
    let err = load(&path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn a_memory_that_is_not_one_or_of_another_vocabulary_is_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = sample("tiny", false, 7);
    let path = dir.path().join("m.cllm");
    let junk = vec![7u8; 100];
    let err = save(
        &path,
        &CheckpointRef {
            memory: Some(&junk),
            ..ckpt.as_ref()
        },
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::BadInput { .. }), "{err}");
    let other = memory_for(ckpt.model.vocab_size + 1, 50).to_bytes();
    let err = save(
        &path,
        &CheckpointRef {
            memory: Some(&other),
            ..ckpt.as_ref()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    assert!(!path.exists());
}

/// A file as the format was documented before memories existed, written
/// here by hand from that description (not by `save`).
fn old_format_file(ckpt: &cllm_train::checkpoint::Checkpoint) -> Vec<u8> {
    let layout = ParamLayout::new(&ckpt.model);
    let mut meta = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_string(), serde_json::Value::String(v));
    };
    put("format", "cllm-checkpoint".into());
    put("format_version", "1".into());
    put("checksum_sha256", "0".repeat(64));
    put("model_config", serde_json::to_string(&ckpt.model).unwrap());
    put(
        "train_config",
        serde_json::to_string(&ckpt.train_config).unwrap(),
    );
    put(
        "training_state",
        serde_json::to_string(&ckpt.state).unwrap(),
    );
    put("tokenizer_json", ckpt.tokenizer_json.clone());
    put("created_unix", "1700000000".into());
    put("program_version", "0.0.9".into());
    let mut root = serde_json::Map::new();
    root.insert("__metadata__".into(), serde_json::Value::Object(meta));
    for spec in &layout.specs {
        root.insert(
            spec.name.clone(),
            serde_json::json!({
                "dtype": "F32",
                "shape": spec.shape,
                "data_offsets": [spec.offset * 4, (spec.offset + spec.len()) * 4],
            }),
        );
    }
    let mut header = serde_json::to_vec(&root).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    for x in &ckpt.params {
        file.extend_from_slice(&x.to_le_bytes());
    }
    let digest: String = Sha256::digest(&file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let zeros = format!("\"{}\"", "0".repeat(64));
    let at = file
        .windows(zeros.len())
        .position(|w| w == zeros.as_bytes())
        .unwrap()
        + 1;
    file[at..at + 64].copy_from_slice(digest.as_bytes());
    file
}

#[test]
fn files_without_a_memory_load_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = sample("tiny", false, 8);
    let path = dir.path().join("old.cllm");
    fs::write(&path, old_format_file(&ckpt)).unwrap();
    let back = load(&path).unwrap();
    assert_eq!(back.memory, None);
    assert_eq!(back.params.len(), ckpt.params.len());
    assert_eq!(back.program_version, "0.0.9");
    let info = verify(&path).unwrap();
    assert_eq!(info.memory, None);
    assert!(cllm::cli::inspect::describe(&info).contains("memory      none"));
    // And what `save` writes without a memory is that same layout.
    let path2 = dir.path().join("new.cllm");
    save(&path2, &ckpt.as_ref()).unwrap();
    let bytes = fs::read(&path2).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert!(meta.tensors().keys().all(|k| k != format::MEMORY_TENSOR));
    assert!(
        !meta
            .metadata()
            .as_ref()
            .unwrap()
            .contains_key(format::keys::MEMORY)
    );
    // Same size too (the version and creation time have the same widths).
    assert_eq!(bytes.len(), fs::read(&path).unwrap().len());
}

#[test]
fn the_hugging_face_export_carries_the_transformer_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut ckpt = exportable(sample("tiny", false, 9));
    ckpt.memory = Some(memory_for(ckpt.model.vocab_size, 200).to_bytes());
    let path = dir.path().join("m.cllm");
    save(&path, &ckpt.as_ref()).unwrap();
    let loaded = load(&path).unwrap();
    let out = dir.path().join("hf");
    cllm_train::checkpoint::export_hf(&loaded, &out).unwrap();
    let bytes = fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().iter().all(|n| !n.contains("memory")));
    assert!(st.names().len() > 4);
}
