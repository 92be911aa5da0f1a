//! Damaged and forged files: every one is refused with a message naming the
//! file, none is accepted, none panics. Most cases run on bytes in memory
//! (`verify_bytes` / `load_bytes` share every check with the file readers)
//! so that every byte of a file can be tried quickly.

mod checkpoint_support;

use checkpoint_support::sample;
use cllm_core::rng::Rng;
use cllm_train::checkpoint::{CheckpointError, load, save, verify};
use cllm_train::checkpoint::{load_bytes, verify_bytes};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

const NAME: &str = "damaged.cllm";

/// A saved checkpoint's bytes.
fn saved_bytes(preset: &str, with_optimizer: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cllm");
    save(&path, &sample(preset, with_optimizer, 11).as_ref()).unwrap();
    fs::read(&path).unwrap()
}

/// Runs both in-memory readers, proving neither panics nor accepts, and
/// returns verify's error.
fn refused(bytes: &[u8], what: &str) -> CheckpointError {
    let path = Path::new(NAME);
    let verified = catch_unwind(AssertUnwindSafe(|| verify_bytes(path, bytes)))
        .unwrap_or_else(|_| panic!("verify panicked on {what}"));
    let err = match verified {
        Ok(_) => panic!("verify accepted {what}"),
        Err(e) => e,
    };
    let loaded = catch_unwind(AssertUnwindSafe(|| load_bytes(path, bytes)))
        .unwrap_or_else(|_| panic!("load panicked on {what}"));
    assert!(loaded.is_err(), "load accepted {what}");
    assert!(
        err.to_string().contains(NAME),
        "{what}: message '{err}' does not name the file"
    );
    err
}

/// Only verify (for the many-case loops, where load would double the time).
fn verify_refuses(bytes: &[u8], what: &str) -> CheckpointError {
    let verified = catch_unwind(AssertUnwindSafe(|| verify_bytes(Path::new(NAME), bytes)))
        .unwrap_or_else(|_| panic!("verify panicked on {what}"));
    match verified {
        Ok(_) => panic!("verify accepted {what}"),
        Err(e) => e,
    }
}

/// The header length and the header JSON of a file.
fn split(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, &bytes[8 + n..])
}

/// The file rebuilt with an edited header (re-padded, new length field).
fn with_header(
    bytes: &[u8],
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    let (mut header, data) = split(bytes);
    edit(&mut header);
    let mut json = serde_json::to_vec(&header).unwrap();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

fn set_meta(header: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: &str) {
    header["__metadata__"][key] = serde_json::Value::String(value.to_string());
}

#[test]
fn the_unedited_rebuild_is_accepted() {
    // The control for the forged cases below: rebuilding a header without
    // changing it gives back the identical, valid file.
    let bytes = saved_bytes("tiny", true);
    let same = with_header(&bytes, |_| {});
    assert_eq!(same, bytes);
    verify_bytes(Path::new(NAME), &same).unwrap();
    load_bytes(Path::new(NAME), &same).unwrap();
}

#[test]
fn every_single_byte_change_is_refused() {
    // Every byte of a weights-only tiny checkpoint, one bit each; the
    // header's bytes also with a second, random mask.
    let bytes = saved_bytes("tiny", false);
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut rng = Rng::new(5);
    let mut damaged = bytes.clone();
    let mut cases = 0;
    for i in 0..bytes.len() {
        let mut masks = vec![1u8 << (i % 8)];
        if i < header_end {
            masks.push(1 + rng.below(255) as u8);
        }
        for mask in masks {
            damaged[i] ^= mask;
            verify_refuses(&damaged, &format!("byte {i} xor {mask:#04x}"));
            damaged[i] = bytes[i];
            cases += 1;
        }
    }
    assert!(cases > bytes.len());
    eprintln!(
        "{cases} single-byte changes over {} bytes refused",
        bytes.len()
    );
}

#[test]
fn random_byte_changes_in_a_full_checkpoint_are_refused() {
    let bytes = saved_bytes("tiny", true);
    let mut rng = Rng::new(6);
    let mut damaged = bytes.clone();
    for case in 0..3000 {
        let i = rng.below(bytes.len() as u64) as usize;
        let mask = 1 + rng.below(255) as u8;
        damaged[i] ^= mask;
        if case % 10 == 0 {
            refused(&damaged, &format!("byte {i} xor {mask:#04x}"));
        } else {
            verify_refuses(&damaged, &format!("byte {i} xor {mask:#04x}"));
        }
        damaged[i] = bytes[i];
    }
}

#[test]
fn every_truncation_is_refused() {
    let bytes = saved_bytes("tiny", false);
    for len in 0..bytes.len() {
        verify_refuses(&bytes[..len], &format!("the first {len} bytes"));
    }
    let full = saved_bytes("tiny", true);
    for len in (0..full.len()).step_by(97) {
        refused(&full[..len], &format!("the first {len} bytes"));
    }
    // Bytes appended are refused too.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    let err = refused(&longer, "8 extra bytes");
    assert!(err.to_string().contains("tensor data"), "{err}");
}

#[test]
fn truncated_files_on_disk_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = saved_bytes("tiny", true);
    for len in [
        0,
        1,
        7,
        8,
        9,
        100,
        bytes.len() / 2,
        bytes.len() - 4,
        bytes.len() - 1,
    ] {
        let path = dir.path().join(format!("cut_{len}.cllm"));
        fs::write(&path, &bytes[..len]).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            err.to_string().contains(&format!("cut_{len}.cllm")),
            "{err}"
        );
        assert!(verify(&path).is_err());
    }
}

#[test]
fn headers_claiming_huge_sizes_are_refused_before_allocating() {
    let bytes = saved_bytes("tiny", false);
    for claim in [
        u64::MAX,
        1 << 62,
        1 << 40,
        100_000_001,
        bytes.len() as u64 - 7,
    ] {
        let mut damaged = bytes.clone();
        damaged[..8].copy_from_slice(&claim.to_le_bytes());
        let err = refused(&damaged, &format!("a header length of {claim}"));
        assert!(err.to_string().contains("claims"), "{err}");
    }

    // A config that passes validate() (about 1.6e9 parameters in 1e8 layers)
    // but whose tensors the header does not hold: refused by the tensor
    // count, before any layout or buffer is built for it.
    let forged = with_header(&bytes, |h| {
        let cfg = r#"{"vocab_size":1,"n_ctx":1,"n_layer":100000000,"n_head":1,"n_embd":1,"n_inner":1,"dropout":0.0}"#;
        set_meta(h, "model_config", cfg);
    });
    let err = refused(&forged, "100 million layers");
    assert!(err.to_string().contains("tensors"), "{err}");

    let forged = with_header(&bytes, |h| {
        let cfg = r#"{"vocab_size":4000000000000,"n_ctx":16,"n_layer":2,"n_head":2,"n_embd":16,"n_inner":64,"dropout":0.0}"#;
        set_meta(h, "model_config", cfg);
    });
    let err = refused(&forged, "a huge vocabulary");
    assert!(
        err.to_string().contains("parameters") || err.to_string().contains("overflows"),
        "{err}"
    );

    let forged = with_header(&bytes, |h| {
        h["wte.weight"]["data_offsets"] = serde_json::json!([0u64, 1u64 << 62]);
    });
    let err = refused(&forged, "huge data offsets");
    assert!(err.to_string().contains("wte.weight"), "{err}");

    let forged = with_header(&bytes, |h| {
        h["h.1.mlp.c_fc.weight"]["shape"] = serde_json::json!([64, 16, 1u64 << 40]);
    });
    let err = refused(&forged, "a huge shape");
    assert!(err.to_string().contains("h.1.mlp.c_fc.weight"), "{err}");
}

#[test]
fn wrong_format_version_is_named() {
    let bytes = saved_bytes("tiny", true);
    for version in ["2", "0", "one", ""] {
        let forged = with_header(&bytes, |h| set_meta(h, "format_version", version));
        let err = refused(&forged, &format!("version '{version}'"));
        assert!(
            matches!(err, CheckpointError::UnsupportedVersion { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("version {version}")),
            "{err}"
        );
    }
}

#[test]
fn forged_headers_are_refused_with_the_reason() {
    let bytes = saved_bytes("tiny", true);
    type Edit = fn(&mut serde_json::Map<String, serde_json::Value>);
    let cases: [(&str, Edit, &str); 9] = [
        (
            "another format",
            |h| set_meta(h, "format", "gguf"),
            "format",
        ),
        (
            "no metadata",
            |h| {
                h.remove("__metadata__");
            },
            "__metadata__",
        ),
        (
            "no model config",
            |h| {
                h["__metadata__"]
                    .as_object_mut()
                    .unwrap()
                    .remove("model_config");
            },
            "model_config",
        ),
        (
            "a bad model config",
            |h| set_meta(h, "model_config", "{\"n_layer\":2}"),
            "model config",
        ),
        (
            "n_head not dividing n_embd",
            |h| {
                set_meta(
                    h,
                    "model_config",
                    r#"{"vocab_size":37,"n_ctx":16,"n_layer":2,"n_head":3,"n_embd":16,"n_inner":64,"dropout":0.0}"#,
                )
            },
            "n_head",
        ),
        (
            "a missing tensor",
            |h| {
                h.remove("h.0.ln_1.bias");
                h.insert("h.0.ln_1.extra".into(), h["h.0.ln_2.bias"].clone());
            },
            "h.0.ln_1.bias",
        ),
        (
            "a half-precision tensor",
            |h| h["ln_f.bias"]["dtype"] = "F16".into(),
            "F16",
        ),
        (
            "a transposed matrix",
            |h| h["h.0.attn.c_attn.weight"]["shape"] = serde_json::json!([16, 48]),
            "h.0.attn.c_attn.weight",
        ),
        (
            "a bad training state",
            |h| set_meta(h, "training_state", "{}"),
            "training state",
        ),
    ];
    for (what, edit, needle) in cases {
        let forged = with_header(&bytes, edit);
        let err = refused(&forged, what);
        assert!(err.to_string().contains(needle), "{what}: {err}");
    }
    // A consistent-looking header whose content changed is caught by the checksum.
    let forged = with_header(&bytes, |h| {
        let state = h["__metadata__"]["training_state"]
            .as_str()
            .unwrap()
            .replace("\"epoch\":3", "\"epoch\":4");
        set_meta(h, "training_state", &state);
    });
    let err = refused(&forged, "an edited epoch");
    assert!(
        matches!(err, CheckpointError::ChecksumMismatch { .. }),
        "{err}"
    );
}

#[test]
fn empty_files_directories_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let check = |path: &PathBuf, needle: &str| {
        let err = catch_unwind(|| verify(path))
            .expect("verify panicked")
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.to_string().contains(name), "{err}");
        assert!(catch_unwind(|| load(path)).expect("load panicked").is_err());
    };
    let empty = dir.path().join("empty.cllm");
    fs::write(&empty, b"").unwrap();
    check(&empty, "empty");
    let folder = dir.path().join("folder.cllm");
    fs::create_dir(&folder).unwrap();
    check(&folder, "directory");
    check(&dir.path().join("missing.cllm"), "open");
    let text = dir.path().join("text.cllm");
    fs::write(&text, b"int main() { return 0; }\n").unwrap();
    check(&text, "claims");

    // A valid safetensors file that cllm did not write.
    let data = [1.0f32, 2.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect::<Vec<u8>>();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    let stranger = dir.path().join("stranger.cllm");
    safetensors::serialize_to_file([("x", view)], None, &stranger).unwrap();
    check(&stranger, "__metadata__");
}
