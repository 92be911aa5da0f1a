//! Checkpoint round trips, interoperability with the safetensors crate,
//! optimizer resume, atomic replacement, write failures, names and retention.

mod checkpoint_support;

use checkpoint_support::{assert_same, bits, sample};
use cllm_core::ParamLayout;
use cllm_train::AdamW;
use cllm_train::checkpoint::{
    self, BEST_NAME, CheckpointError, CheckpointRef, OptimizerRef, is_periodic_name, load, save,
    verify,
};
use std::fs;
use std::path::Path;

#[test]
fn full_checkpoint_round_trips_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for preset in ["tiny", "baby"] {
        let ckpt = sample(preset, true, 1);
        let path = dir.path().join(format!("{preset}.cllm"));
        let bytes = save(&path, &ckpt.as_ref()).unwrap();
        assert_eq!(bytes, fs::metadata(&path).unwrap().len());
        let back = load(&path).unwrap();
        assert_same(&ckpt, &back);
        assert_eq!(back.program_version, env!("CARGO_PKG_VERSION"));
        assert!(back.created_unix > 1_600_000_000, "{}", back.created_unix);

        let info = verify(&path).unwrap();
        assert_eq!(info.model, ckpt.model);
        assert_eq!(info.num_params, ckpt.params.len());
        assert!(info.has_optimizer);
        assert_eq!(
            info.optimizer_step,
            Some(ckpt.optimizer.as_ref().unwrap().step)
        );
        assert_eq!(info.state, ckpt.state);
        assert_eq!(info.file_bytes, bytes);
        assert_eq!(info.tokenizer_bytes, ckpt.tokenizer_json.len());
        assert_eq!(info.checksum_sha256.len(), 64);
    }
}

#[test]
fn weights_only_round_trips_and_is_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let full = sample("baby", true, 2);
    let mut light = full.clone();
    light.optimizer = None;
    let full_bytes = save(&dir.path().join("full.cllm"), &full.as_ref()).unwrap();
    let light_path = dir.path().join("light.cllm");
    let light_bytes = save(&light_path, &light.as_ref()).unwrap();
    let back = load(&light_path).unwrap();
    assert_same(&light, &back);
    assert!(!verify(&light_path).unwrap().has_optimizer);
    // The moments are two more copies of the parameters.
    let params_bytes = 4 * full.params.len() as u64;
    assert!(full_bytes - light_bytes >= 2 * params_bytes);
}

#[test]
fn any_safetensors_reader_opens_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = sample("tiny", true, 3);
    let path = dir.path().join("t.cllm");
    save(&path, &ckpt.as_ref()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let layout = ParamLayout::new(&ckpt.model);
    assert_eq!(st.len(), 3 * layout.specs.len());
    let opt = ckpt.optimizer.as_ref().unwrap();
    for spec in &layout.specs {
        for (name, source) in [
            (spec.name.clone(), &ckpt.params),
            (format!("optimizer.m.{}", spec.name), &opt.m),
            (format!("optimizer.v.{}", spec.name), &opt.v),
        ] {
            let view = st.tensor(&name).unwrap();
            assert_eq!(view.dtype(), safetensors::Dtype::F32);
            assert_eq!(view.shape(), spec.shape.as_slice(), "{name}");
            let values: Vec<u32> = view
                .data()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            assert!(values == bits(&source[spec.range()]), "{name}");
        }
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().as_ref().unwrap();
    assert_eq!(meta["format"], "cllm-checkpoint");
    assert_eq!(meta["format_version"], "1");
    assert_eq!(meta["tokenizer_json"], ckpt.tokenizer_json);
}

#[test]
fn in_memory_reads_match_file_reads() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = sample("tiny", true, 4);
    let path = dir.path().join("t.cllm");
    save(&path, &ckpt.as_ref()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let from_bytes = checkpoint::load_bytes(&path, &bytes).unwrap();
    assert_same(&load(&path).unwrap(), &from_bytes);
    assert_eq!(
        checkpoint::verify_bytes(&path, &bytes).unwrap(),
        verify(&path).unwrap()
    );
}

/// Saving the live optimizer and continuing from the loaded copy gives the
/// same updates as never stopping.
#[test]
fn loaded_optimizer_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut ckpt = sample("tiny", false, 5);
    let layout = ParamLayout::new(&ckpt.model);
    let mut live = AdamW::new(Default::default(), layout.total, layout.decay_ranges());
    let grads = |k: usize| -> Vec<f32> {
        (0..layout.total)
            .map(|i| ((i * 31 + k * 7) % 97) as f32 / 97.0 - 0.5)
            .collect()
    };
    let mut params = ckpt.params.clone();
    params[3] = 0.5; // no NaN in a live run
    for k in 0..3 {
        live.update(&mut params, &grads(k), 1e-2);
    }
    ckpt.params = params.clone();
    let path = dir.path().join("resume.cllm");
    let mut ckpt_ref = ckpt.as_ref();
    ckpt_ref.optimizer = Some(OptimizerRef::from(&live));
    save(&path, &ckpt_ref).unwrap();

    let loaded = load(&path).unwrap();
    let mut resumed = AdamW::resume(loaded.optimizer.unwrap(), &layout);
    let mut resumed_params = loaded.params;
    for k in 3..6 {
        live.update(&mut params, &grads(k), 1e-2);
        resumed.update(&mut resumed_params, &grads(k), 1e-2);
    }
    assert!(bits(&params) == bits(&resumed_params));
    assert!(bits(&live.m) == bits(&resumed.m) && bits(&live.v) == bits(&resumed.v));
    assert_eq!(live.step, resumed.step);
    assert_eq!(live.decay_ranges(), resumed.decay_ranges());
}

#[test]
fn saving_replaces_the_previous_file_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/folder/c.cllm");
    let first = sample("tiny", true, 6);
    let second = sample("tiny", false, 7);
    save(&path, &first.as_ref()).unwrap();
    save(&path, &second.as_ref()).unwrap();
    assert_same(&second, &load(&path).unwrap());
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["c.cllm".to_string()]);
}

#[test]
fn save_refuses_buffers_that_do_not_fit_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.cllm");
    let ckpt = sample("tiny", true, 8);
    let short = &ckpt.params[1..];
    let err = save(
        &path,
        &CheckpointRef {
            params: short,
            ..ckpt.as_ref()
        },
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::BadInput { .. }), "{err}");
    assert!(err.to_string().contains("parameters"), "{err}");
    let opt = ckpt.optimizer.as_ref().unwrap();
    let mut bad = ckpt.as_ref();
    bad.optimizer = Some(OptimizerRef {
        m: &opt.m[..10],
        ..OptimizerRef::from(opt)
    });
    let err = save(&path, &bad).unwrap_err();
    assert!(err.to_string().contains("moments"), "{err}");
    assert!(!path.exists());
}

/// Tests run as root, so permission bits cannot make a folder unwritable;
/// these failures come from paths the kernel refuses for everyone: a folder
/// that is really a regular file, a folder inside /proc, and a temporary
/// file name already taken by a directory.
#[test]
fn write_failures_are_errors_and_keep_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = sample("tiny", true, 9);

    let not_a_folder = dir.path().join("plain_file");
    fs::write(&not_a_folder, b"x").unwrap();
    let target = not_a_folder.join("c.cllm");
    let err = save(&target, &ckpt.as_ref()).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(err.to_string().contains("plain_file"), "{err}");

    let err = save(Path::new("/proc/cllm-no-such-dir/c.cllm"), &ckpt.as_ref()).unwrap_err();
    assert!(err.to_string().contains("/proc/cllm-no-such-dir"), "{err}");

    // A good checkpoint, then a save that cannot create its temporary file.
    let path = dir.path().join("c.cllm");
    save(&path, &ckpt.as_ref()).unwrap();
    let before = fs::read(&path).unwrap();
    fs::create_dir(dir.path().join("c.cllm.tmp")).unwrap();
    let other = sample("tiny", false, 10);
    let err = save(&path, &other.as_ref()).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_same(&ckpt, &load(&path).unwrap());

    // A directory where the checkpoint itself should go: the rename fails.
    let taken = dir.path().join("taken.cllm");
    fs::create_dir(&taken).unwrap();
    let err = save(&taken, &ckpt.as_ref()).unwrap_err();
    assert!(err.to_string().contains("taken.cllm"), "{err}");
    assert!(!dir.path().join("taken.cllm.tmp").exists());
}

#[test]
fn periodic_names_parse_back() {
    assert_eq!(
        checkpoint::periodic_name(3, 1.234_567),
        "checkpoint_epoch_3_loss_1.2346.cllm"
    );
    assert_eq!(
        checkpoint::periodic_name(12, 0.5),
        "checkpoint_epoch_12_loss_0.5000.cllm"
    );
    assert_eq!(
        is_periodic_name(&checkpoint::periodic_name(40, f32::NAN)),
        Some(40)
    );
    assert_eq!(
        is_periodic_name("checkpoint_epoch_7_loss_2.0000.cllm"),
        Some(7)
    );
    for other in [
        BEST_NAME,
        "checkpoint_epoch_7_loss_2.0000.cllm.tmp",
        "checkpoint_epoch_x_loss_2.0000.cllm",
        "checkpoint_epoch_7_loss_.cllm",
        "trained_model_kissing_spheres.cllm",
    ] {
        assert_eq!(is_periodic_name(other), None, "{other}");
    }
    assert_eq!(
        checkpoint::best_path(Path::new("checkpoints")),
        Path::new("checkpoints/checkpoint_best.cllm")
    );
    assert_eq!(
        checkpoint::DEFAULT_FINAL_PATH,
        "models/trained_model_kissing_spheres.cllm"
    );
}

#[test]
fn pruning_keeps_the_newest_periodic_checkpoints_and_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Epoch 10 must sort above 9 (numerically, not by text).
    for (epoch, loss) in [(2, 3.1), (4, 2.5), (6, 2.2), (8, 2.0), (9, 1.9), (10, 1.95)] {
        fs::write(checkpoint::periodic_path(d, epoch, loss), b"x").unwrap();
    }
    for keep in [
        BEST_NAME,
        "notes.txt",
        "checkpoint_epoch_1_loss_9.0000.cllm.tmp",
    ] {
        fs::write(d.join(keep), b"x").unwrap();
    }
    fs::create_dir(d.join("checkpoint_epoch_0_loss_1.0000.cllm")).unwrap();

    let mut removed = checkpoint::prune_periodic(d, 3).unwrap();
    removed.sort();
    let expect: Vec<_> = [(2, 3.1), (4, 2.5), (6, 2.2)]
        .iter()
        .map(|&(e, l)| checkpoint::periodic_path(d, e, l))
        .collect();
    assert_eq!(removed, expect);
    let mut left: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "checkpoint_best.cllm",
            "checkpoint_epoch_0_loss_1.0000.cllm",
            "checkpoint_epoch_10_loss_1.9500.cllm",
            "checkpoint_epoch_1_loss_9.0000.cllm.tmp",
            "checkpoint_epoch_8_loss_2.0000.cllm",
            "checkpoint_epoch_9_loss_1.9000.cllm",
            "notes.txt",
        ]
    );
    assert!(checkpoint::prune_periodic(d, 3).unwrap().is_empty());
    assert!(
        checkpoint::prune_periodic(&d.join("missing"), 3)
            .unwrap()
            .is_empty()
    );
}
