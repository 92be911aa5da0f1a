//! *Start from*: a base model on disk picked for a new run (`--init`),
//! from the LLM tab's list, reaching the trainer's config; new weights
//! bring the preset back; a resumed run starts from its checkpoint.

use super::*;
use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_train::OutputSettings;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use std::path::Path;

/// A tiny model over bytes at `root/models/base.cllm`.
fn write_base(root: &Path) -> PathBuf {
    let mut mc = ModelConfig::preset("tiny").unwrap();
    mc.vocab_size = 256;
    let model = Gpt::new(mc, 3).unwrap();
    let path = root.join("models/base.cllm");
    let checkpoint = CheckpointRef {
        model: &model.config,
        params: &model.params,
        optimizer: None,
        tokenizer_json: &Tokenizer::bytes().to_json(),
        train_config: &TrainConfig::default(),
        state: &TrainingState::start(),
        memory: None,
    };
    save(&path, &checkpoint).unwrap();
    path
}

#[test]
fn a_base_model_on_disk_is_a_choice_to_start_from() {
    let root = tempfile::tempdir().unwrap();
    let base = write_base(root.path());
    let mut settings = Settings {
        data_dir: ".".into(),
        extension_filter: String::new(),
        ..Settings::default()
    };
    settings.train.outputs = OutputSettings {
        output: root.path().join("models/final.cllm"),
        checkpoint_dir: root.path().join("checkpoints"),
        ..Default::default()
    };
    settings.train.batch.seq_len = 64;
    let app = WorkbenchApp::with_engines(settings, None, script_scanner, script_trainer);
    let mut h = harness(app);
    finish_scan(&mut h);
    // The Training tab lists the models on disk for the choice.
    step_until(&mut h, "the models on disk", |a| {
        !a.llm.list.is_listing() && a.llm.list.entries.iter().any(|e| e.path == base)
    });
    h.run();
    h.get_by_label("Start from").click();
    h.run();
    h.get_by_label(&base.display().to_string()).click();
    h.run();
    assert_eq!(h.state().settings.train.model.init, Some(base.clone()));
    // Size, tokenizer and context are the base's now: not set here.
    h.get_by_label("the base model's size, tokenizer and vocabulary");
    h.get_by_label("the base model's context");
    assert!(h.query_by_label("Vocabulary size").is_none());
    let cfg = h.state().run_config().unwrap();
    assert_eq!(cfg.model.init, Some(base.clone()));
    assert!(!cfg.given.iter().any(|g| g == "seq_len"), "{:?}", cfg.given);
    // New weights bring the size back.
    h.get_by_label("Start from").click();
    h.run();
    h.get_by_label("new weights").click();
    h.run();
    assert_eq!(h.state().settings.train.model.init, None);
    h.get_by_label("Model preset");
    h.get_by_label("Vocabulary size");
    assert!(
        h.state()
            .run_config()
            .unwrap()
            .given
            .iter()
            .any(|g| g == "seq_len")
    );
    // A resumed run starts from its checkpoint.
    h.state_mut().settings.train.resume = Some(base);
    h.run();
    h.get_by_label("the checkpoint it resumes");
}
