//! The settings: edits and refusals, persistence, the resume file, the time
//! budget, memory, code check and precision reaching the trainer's config.

use super::*;

#[test]
fn config_edits_and_invalid_input_is_refused() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.get_by_label("Learning rate")
        .set_text_value_accesskit("0.01");
    h.run();
    assert_eq!(h.state().settings.train.optimizer.lr, 0.01);

    h.get_by_label("Learning rate")
        .set_text_value_accesskit("fast");
    h.run();
    h.get_by_label_contains("Learning rate: 'fast' is not a number");
    assert_eq!(
        h.state().settings.train.optimizer.lr,
        0.01,
        "a bad value is not taken"
    );
    h.get_by_label("START TRAINING").click();
    h.run();
    assert!(!h.state().session.is_training());
    h.get_by_label_contains("Cannot start: Learning rate: 'fast'");

    // Parses, but validate() refuses it: its message is shown in place.
    h.get_by_label("Learning rate")
        .set_text_value_accesskit("-1");
    h.run();
    h.get_by_label_contains("learning rate (-1) must be in (0, 10)");
    h.get_by_label("START TRAINING").click();
    h.run();
    assert!(!h.state().session.is_training());

    h.get_by_label("Learning rate")
        .set_text_value_accesskit("0.002");
    h.run();
    assert!(h.query_by_label_contains("Invalid:").is_none());
    assert!(h.query_by_label_contains("Cannot start").is_none());
    assert!(h.state().run_config().is_ok());
}

#[test]
fn settings_round_trip() {
    let mut s = Settings {
        data_dir: "my_code/".into(),
        extension_filter: "rs toml".into(),
        show_advanced: true,
        ..Settings::default()
    };
    s.train.optimizer.lr = 0.0123;
    s.train.model.preset = "baby".into();
    s.train.model.dropout = Some(0.2);
    s.plot.log_scale = true;
    let json = s.to_json().unwrap();
    assert_eq!(Settings::from_json(&json).unwrap(), s);

    // Through eframe's storage, as the app saves and restores them.
    let mut storage = MemStorage::default();
    s.store(&mut storage);
    assert_eq!(Settings::load(Some(&storage)), s);
    s.train.budget.early_stop_patience = 4;
    s.store(&mut storage);
    assert_eq!(
        Settings::load(Some(&storage))
            .train
            .budget
            .early_stop_patience,
        4
    );
    assert_eq!(Settings::load(None), Settings::default());
    eframe::Storage::set_string(&mut storage, eframe::APP_KEY, "not json".into());
    assert_eq!(Settings::load(Some(&storage)), Settings::default());
}

/// eframe storage in memory, as the app saves to and restores from.
#[derive(Default)]
struct MemStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.into(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

const RESUME_FILE: &str = "checkpoints/old-run/checkpoint_best.cllm";

/// A resume file set before the app closed is not silently active after a
/// restart: later STARTs train on the selected files.
#[test]
fn resume_is_not_restored_after_a_restart() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.state_mut().settings.train.resume = Some(PathBuf::from(RESUME_FILE));
    h.state_mut().settings.train.optimizer.lr = 0.0123;
    h.run();
    h.get_by_label_contains(&format!(
        "Resuming from {RESUME_FILE} — the run continues that checkpoint's data and settings"
    ));
    assert_eq!(
        h.state().run_config().unwrap().resume,
        Some(PathBuf::from(RESUME_FILE))
    );

    // The app saves at exit; a new app starts from what was saved.
    let mut storage = MemStorage::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let restored = Settings::load(Some(&storage));
    assert_eq!(
        restored.train.optimizer.lr, 0.0123,
        "other settings persist"
    );
    let app = WorkbenchApp::with_engines(restored, None, script_scanner, script_trainer);
    let mut h = harness(app);
    finish_scan(&mut h);
    h.run();
    assert!(h.query_by_label_contains("Resuming from").is_none());
    assert_eq!(h.state().run_config().unwrap().resume, None);
}

#[test]
fn dont_resume_drops_the_checkpoint_before_start() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.state_mut().settings.train.resume = Some(PathBuf::from(RESUME_FILE));
    h.run();
    h.get_by_label_contains("Resuming from");
    h.get_by_label("× Don't resume").click();
    h.run();
    assert_eq!(h.state().settings.train.resume, None);
    assert!(h.query_by_label_contains("Resuming from").is_none());
    assert_eq!(h.state().run_config().unwrap().resume, None);
}

/// Settings whose memory the machine lacks are refused in place and at
/// START with the engine's message; nothing is allocated.
#[test]
fn settings_the_machine_cannot_hold_are_refused() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.state_mut().editor.assume_available_memory(Some(2 << 30));
    set_number(&mut h, "Batch size", 4096.0);
    set_number(&mut h, "Sequence length", 8192.0);
    assert_eq!(h.state().settings.train.batch.seq_len, 8192);
    let spheres = h.state().settings.train.resolved_threads();
    let what = format!("batch size 4096 x sequence length 8192 on {spheres} sphere");
    h.get_by_label_contains(&format!("Does not fit: {what}"));
    h.get_by_label_contains("this machine has 2.0 GiB available");

    h.get_by_label("START TRAINING").click();
    h.run();
    assert!(!h.state().session.is_training());
    h.get_by_label_contains(&format!("Cannot start: {what}"));

    // Back to sizes that fit: the refusal goes and START runs.
    set_number(&mut h, "Batch size", 16.0);
    set_number(&mut h, "Sequence length", 64.0);
    assert!(h.query_by_label_contains("Does not fit").is_none());
    assert!(h.query_by_label_contains("Cannot start").is_none());
    h.get_by_label("START TRAINING").click();
    h.step();
    assert!(h.state().session.is_training());
    h.step();
    h.get_by_label("STOP TRAINING").click();
    h.step();
    step_until(&mut h, "the stop", |a| !a.session.is_training());
}

/// "Train for … minutes" is the time budget: it replaces the epochs in the
/// config the trainer gets, and "epochs" brings them back.
#[test]
fn a_time_budget_replaces_the_epochs() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.get_by_label("minutes").click();
    h.run();
    set_number(&mut h, "Train for", 15.0);
    let cfg = h.state().run_config().unwrap();
    assert_eq!((cfg.budget.time_budget_secs, cfg.budget.epochs), (900.0, 0));
    cfg.validate().unwrap();

    h.get_by_label("epochs").click();
    h.run();
    let cfg = h.state().run_config().unwrap();
    assert_eq!(cfg.budget.time_budget_secs, 0.0);
    assert_eq!(cfg.budget.epochs, TrainConfig::default().budget.epochs);
}

/// Advanced: the repository memory (on by default) and the code check
/// reach the config the trainer gets.
#[test]
fn memory_and_code_check_are_settings() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    assert!(h.state().run_config().unwrap().model.memory);
    h.get_by_label("Advanced").click();
    h.run();
    set_number(&mut h, "Code check (functions)", 8.0);
    h.get_by_label("Repository memory").click();
    h.run();
    let cfg = h.state().run_config().unwrap();
    assert_eq!((cfg.evaluation.eval_gen, cfg.model.memory), (8, false));
}

/// Advanced: the matmul precision (auto by default) reaches the config the
/// trainer gets, picked from its list.
#[test]
fn precision_is_a_setting() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    assert_eq!(
        h.state().run_config().unwrap().model.precision,
        PrecisionChoice::Auto
    );
    h.get_by_label("Advanced").click();
    h.run();
    h.get_by_label("Precision").click();
    h.run();
    h.get_by_label("fp32").click();
    h.run();
    assert_eq!(
        h.state().run_config().unwrap().model.precision,
        PrecisionChoice::Fp32
    );
}

/// Advanced: the fill-in-the-middle rate (0.5 by default) reaches the
/// config the trainer gets; with the bytes tokenizer a note says it is off.
#[test]
fn the_fim_rate_is_a_setting() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    assert_eq!(h.state().run_config().unwrap().batch.fim_rate, 0.5);
    h.get_by_label("Advanced").click();
    h.run();
    // The slider, not the number box beside it (both carry the label).
    let set_rate = |h: &mut Harness<'_, WorkbenchApp>, rate: f64| {
        h.get_by_role_and_label(egui::accesskit::Role::Slider, "FIM rate")
            .set_value_accesskit(rate);
        h.run();
    };
    set_rate(&mut h, 0.25);
    assert_eq!(h.state().run_config().unwrap().batch.fim_rate, 0.25);
    assert!(h.query_by_label_contains("no FIM tokens").is_none());
    h.state_mut().settings.train.corpus.tokenizer = cllm_train::TokenizerKind::Bytes;
    h.run();
    h.get_by_label("off with the bytes tokenizer (no FIM tokens)");
    set_rate(&mut h, 0.0);
    assert_eq!(h.state().run_config().unwrap().batch.fim_rate, 0.0);
    assert!(h.query_by_label_contains("no FIM tokens").is_none());
}
