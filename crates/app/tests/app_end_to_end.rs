//! The real app, the real scanner and the real trainer, driven headlessly:
//! scan the shipped `training_data/`, select files, START TRAINING with the
//! tiny preset, watch sphere stats and loss points arrive, STOP, and find a
//! checkpoint that verifies.

use cllm_app::WorkbenchApp;
use cllm_app::settings::Settings;
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OutputSettings, TokenizerKind, TrainConfig,
};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::time::{Duration, Instant};

fn harness(app: WorkbenchApp) -> Harness<'static, WorkbenchApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app)
}

/// Steps frames until `done` holds, failing after a generous deadline (the
/// work happens on background threads; frames never wait for it).
fn step_until(h: &mut Harness<'_, WorkbenchApp>, what: &str, done: impl Fn(&WorkbenchApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::yield_now();
    }
}

#[test]
fn scan_select_train_watch_stop_and_find_a_checkpoint() {
    let out = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../training_data").into(),
        train: TrainConfig {
            threads: 2,
            corpus: CorpusSettings {
                tokenizer: TokenizerKind::Bytes,
                ..Default::default()
            },
            model: ModelSettings {
                preset: "tiny".into(),
                ..Default::default()
            },
            batch: BatchSettings {
                batch_size: 4,
                seq_len: 16,
                ..Default::default()
            },
            budget: BudgetSettings {
                epochs: 1000,
                ..Default::default()
            },
            evaluation: EvaluationSettings {
                eval_every: 5,
                eval_batches: 2,
                ..Default::default()
            },
            outputs: OutputSettings {
                output: out.path().join("models/final.cllm"),
                checkpoint_dir: out.path().join("checkpoints"),
                runs_dir: out.path().join("runs"),
                ..Default::default()
            },
            ..TrainConfig::default()
        },
        ..Settings::default()
    };
    let mut h = harness(WorkbenchApp::new_for_test(settings));
    h.get_by_label("Scan Dir").click();
    // Let the click land (it restarts the scan) before waiting on the scan.
    h.step();
    step_until(&mut h, "the scan", |a| {
        !a.data.is_scanning() && !a.data.rows.is_empty()
    });
    h.get_by_label("Select None").click();
    h.run_steps(2);
    assert!(
        h.state().run_config().is_err(),
        "nothing selected must refuse to start"
    );
    h.get_by_label("Select All").click();
    h.run_steps(2);
    let config = h.state().run_config().expect("a startable config");
    assert!(
        config
            .corpus
            .files
            .iter()
            .any(|f| f.ends_with("repo_code.txt"))
    );

    h.get_by_label("START TRAINING").click();
    h.step();
    assert!(h.state().session.is_training());
    step_until(&mut h, "sphere stats and loss points", |a| {
        let run = &a.session.run;
        run.spheres.len() == 2
            && run.spheres.iter().all(|s| s.sequences > 0)
            && run.history.train.len() >= 3
    });
    h.run_steps(2);
    h.get_by_label("STOP TRAINING").click();
    step_until(&mut h, "the trainer to stop", |a| !a.session.is_training());
    let run = &h.state().session.run;
    assert!(run.summary.is_some(), "the run finished with a summary");
    let info = cllm_train::checkpoint::verify(&out.path().join("models/final.cllm"))
        .expect("the final checkpoint verifies");
    assert!(info.state.step >= 3);
    h.run_steps(2);
    h.get_by_label("START TRAINING");
}
