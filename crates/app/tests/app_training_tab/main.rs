//! UI tests of the Training tab: the real `WorkbenchApp` driven headlessly
//! with egui_kittest. A scripted scanner and a scripted trainer feed the
//! app the same messages the engine sends, so these tests check what the
//! view does with them; `scan_lists_real_files` uses the real scanner.

use cllm_app::WorkbenchApp;
use cllm_app::settings::Settings;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_data::scan::{FileStatus, ScanOptions, ScannedFile, SkipReason};
use cllm_train::events::{
    EvalStats, Phase, RunInfo, SaveReason, SphereState, SphereStats, StepStats, Summary,
};
use cllm_train::{Command, Event, TrainConfig, TrainerHandle};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn harness(app: WorkbenchApp) -> Harness<'static, WorkbenchApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app)
}

fn scanned(path: &str, size: u64, status: FileStatus) -> ScannedFile {
    ScannedFile {
        path: PathBuf::from("corpus").join(path),
        relative: PathBuf::from(path),
        size,
        kind: "C source".into(),
        lines: 10,
        status,
    }
}

/// Streams three kept files and one binary for a folder, like the real
/// scanner would; a root that is a file is listed as itself.
fn script_scanner(
    opts: &ScanOptions,
    _: &AtomicBool,
    on: &mut dyn FnMut(ScannedFile),
) -> Result<(), String> {
    if let Some(file) = opts.roots.iter().find(|r| r.is_file()) {
        on(ScannedFile {
            path: file.clone(),
            relative: file.file_name().unwrap().into(),
            size: 64,
            kind: "Rust source".into(),
            lines: 4,
            status: FileStatus::Kept,
        });
        return Ok(());
    }
    on(scanned("main.c", 4000, FileStatus::Kept));
    on(scanned("util.h", 800, FileStatus::Kept));
    on(scanned("README.md", 1200, FileStatus::Kept));
    on(scanned(
        "logo.png",
        90,
        FileStatus::Skipped(SkipReason::Binary),
    ));
    Ok(())
}

fn sphere(id: usize, sequences: u64, busy: f32, state: SphereState) -> SphereStats {
    SphereStats {
        id,
        parent: cllm_train::spheres::parent_of(id),
        level: cllm_train::spheres::level_of(id),
        sequences,
        avg_loss: 3.0 - id as f32 * 0.1,
        last_loss: 3.0,
        grad_norm: 0.5,
        busy,
        state,
    }
}

fn step(n: u64, loss: f32) -> StepStats {
    StepStats {
        epoch: 0,
        epochs: 2,
        step: n,
        total_steps: 10,
        loss,
        lr: 1e-3,
        grad_norm: 0.7,
        clipped: false,
        tokens_per_sec: 1234.0,
        elapsed_secs: n as f64,
        eta_secs: (10 - n) as f64,
    }
}

/// A trainer that reports a short scripted run at once, then waits for
/// Stop and ends the way the real trainer ends a run the user stopped: a
/// warning naming the step, the final checkpoint, and a summary with
/// `stopped_early: false` (that flag means early stopping on patience).
fn script_trainer(config: TrainConfig) -> TrainerHandle {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let early = vec![
        Event::Phase(Phase::Tokenizing { done: 1, total: 2 }),
        Event::Ready(RunInfo {
            files: config.files.len(),
            train_tokens: 900,
            val_tokens: 100,
            vocab_size: 300,
            params: 10_000,
            threads: 3,
            total_steps: 10,
            first_step: 0,
            run_name: "scripted".into(),
            run_dir: config.checkpoint_dir.join("scripted"),
            workspace_bytes: 1 << 20,
        }),
        Event::Spheres(vec![
            sphere(0, 7, 0.9, SphereState::Reducing),
            sphere(1, 5, 0.4, SphereState::Computing),
            sphere(2, 9, 0.1, SphereState::Idle),
        ]),
        Event::Step(step(1, 5.0)),
        Event::Info("repository memory: 9 training tokens indexed".into()),
        Event::Step(step(2, 4.0)),
        Event::Step(step(3, f32::NAN)),
        Event::Warning("loss was NaN: update skipped".into()),
        Event::Step(step(4, 3.5)),
        Event::Eval(EvalStats {
            epoch: 0,
            step: 4,
            loss: 3.8,
            perplexity: 44.7,
            bits_per_byte: 1.5,
            accuracy: 0.2,
            precision: 0.1,
            recall: 0.1,
            f1: 0.1,
            ..EvalStats::default()
        }),
        Event::Checkpoint {
            path: PathBuf::from("checkpoints/checkpoint_epoch_1_loss_3.8000.cllm"),
            reason: SaveReason::Best,
        },
    ];
    for e in early {
        ev_tx.send(e).unwrap();
    }
    let thread = std::thread::spawn(move || {
        while let Ok(cmd) = cmd_rx.recv() {
            if cmd == Command::Stop {
                break;
            }
        }
        let final_model = PathBuf::from("models/trained_model_kissing_spheres.cllm");
        let _ = ev_tx.send(Event::Warning("stopped at step 4 of 10".into()));
        let _ = ev_tx.send(Event::Checkpoint {
            path: final_model.clone(),
            reason: SaveReason::Final,
        });
        let _ = ev_tx.send(Event::Finished(Summary {
            steps: 4,
            epochs_done: 0,
            total_secs: 4.0,
            epoch_secs: vec![],
            secs_per_sequence: 0.1,
            tokens_per_sec: 1234.0,
            initial_loss: 5.0,
            final_loss: 3.5,
            best_val_loss: Some(3.8),
            best_bits_per_byte: Some(1.5),
            sphere_sequences: vec![7, 5, 9],
            load_imbalance: 0.5,
            peak_memory_bytes: 1 << 20,
            skipped_updates: 1,
            stopped_early: false,
            final_model: Some(final_model),
            ..Summary::empty(0.0)
        }));
    });
    TrainerHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread: Some(thread),
    }
}

fn scripted_app() -> WorkbenchApp {
    let settings = Settings {
        data_dir: ".".into(),
        extension_filter: String::new(),
        ..Settings::default()
    };
    WorkbenchApp::with_engines(settings, None, script_scanner, script_trainer)
}

/// Steps frames until `done` holds, failing after a deadline in time (the
/// work is on background threads and frames never wait for it).
fn step_until(h: &mut Harness<'_, WorkbenchApp>, what: &str, done: impl Fn(&WorkbenchApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::yield_now();
    }
}

/// Steps frames until the scan thread has delivered everything.
fn finish_scan(h: &mut Harness<'_, WorkbenchApp>) {
    h.step();
    step_until(h, "the scan", |a| !a.data.is_scanning());
}

/// Sets a number field (a DragValue) the way assistive technology does.
fn set_number(h: &mut Harness<'_, WorkbenchApp>, label: &str, value: f64) {
    h.get_by_label(label).set_value_accesskit(value);
    h.run();
}

#[test]
fn select_files_and_totals() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.run();
    assert_eq!(h.state().data.rows.len(), 4);
    h.get_by_label_contains("skipped: binary");
    h.get_by_label_contains("Selected: 3 files");

    h.get_by_label("Select None").click();
    h.run();
    h.get_by_label_contains("Selected: 0 files");
    assert!(
        h.state()
            .run_config()
            .unwrap_err()
            .contains("no files selected")
    );

    h.get_by_label("util.h").click();
    h.run();
    h.get_by_label_contains("Selected: 1 files · 800 B");
    // Estimated tokens for BPE: bytes / 4.
    h.get_by_label_contains("~200 tokens");
    let cfg = h.state().run_config().unwrap();
    assert_eq!(cfg.files, vec![PathBuf::from("corpus/util.h")]);

    // The extension filter hides other kinds and keeps them out of the run.
    h.get_by_label("Select All").click();
    h.run();
    h.get_by_label("Extensions").set_text_value_accesskit("md");
    h.run();
    h.get_by_label_contains("Selected: 1 files");
    assert!(h.query_by_label("main.c").is_none());
    assert_eq!(
        h.state().run_config().unwrap().files,
        vec![PathBuf::from("corpus/README.md")]
    );
}

#[test]
fn config_edits_and_invalid_input_is_refused() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.get_by_label("Learning rate")
        .set_text_value_accesskit("0.01");
    h.run();
    assert_eq!(h.state().settings.train.lr, 0.01);

    h.get_by_label("Learning rate")
        .set_text_value_accesskit("fast");
    h.run();
    h.get_by_label_contains("Learning rate: 'fast' is not a number");
    assert_eq!(
        h.state().settings.train.lr,
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
fn scripted_run_updates_table_plot_progress_and_stops() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.get_by_label("START TRAINING").click();
    h.step();
    h.step();
    assert!(h.state().session.is_training());
    h.get_by_label("STOP TRAINING");

    let run = &h.state().session.run;
    // Loss history: the NaN step is left out of the plot, kept in progress.
    let steps: Vec<f64> = run.history.train.iter().map(|p| p[0]).collect();
    assert_eq!(steps, vec![1.0, 2.0, 4.0]);
    assert_eq!(run.history.val, vec![[4.0, 3.8f32 as f64]]);
    assert_eq!(run.best_train_loss, Some(3.5));
    assert_eq!(run.info.as_ref().unwrap().threads, 3);
    assert!((run.fraction() - 0.4).abs() < 1e-6);

    // The table shows one row per sphere, the progress bar the step.
    for label in ["root", "#1", "#2", "reducing", "computing", "idle"] {
        h.get_by_label(label);
    }
    // "#0" is sphere 0's id and the parent of spheres 1 and 2.
    assert_eq!(h.get_all_by_label("#0").count(), 3);
    h.get_by_label_contains("step 4/10");
    h.get_by_label_contains("ETA 6s");
    h.get_by_label_contains("Warning at step 3: loss was NaN: update skipped");
    // What the run did is a note, not a warning.
    h.get_by_label_contains("Note at step 1: repository memory");
    h.get_by_label_contains("checkpoint_epoch_1_loss_3.8000.cllm");

    // Sorting by sequences, descending: sphere 2 (9 sequences) first.
    h.get_by_label("Sequences").click();
    h.run_steps(2);
    h.get_by_label("Sequences ^").click();
    h.run_steps(2);
    h.get_by_label("Sequences v");
    let rows =
        cllm_app::stats_table::sorted_indices(&h.state().session.run.spheres, h.state().sort);
    assert_eq!(rows, vec![2, 0, 1]);

    h.get_by_label("STOP TRAINING").click();
    h.step();
    step_until(&mut h, "the stop", |a| !a.session.is_training());
    let run = &h.state().session.run;
    assert!(
        !run.summary.as_ref().unwrap().stopped_early,
        "a user stop is not an early stop"
    );
    assert_eq!(
        run.last_checkpoint.as_ref().unwrap().0,
        PathBuf::from("models/trained_model_kissing_spheres.cllm")
    );
    h.run();
    h.get_by_label("START TRAINING");
    h.get_by_label_contains("stopped at step 4 of 10");
    h.get_by_label_contains("Finished (stopped): 4 steps");
    assert!(h.query_by_label_contains("early stop").is_none());
}

#[test]
fn settings_round_trip() {
    let mut s = Settings {
        data_dir: "my_code/".into(),
        extension_filter: "rs toml".into(),
        show_advanced: true,
        ..Settings::default()
    };
    s.train.lr = 0.0123;
    s.train.preset = "baby".into();
    s.train.dropout = Some(0.2);
    s.plot.log_scale = true;
    let json = s.to_json().unwrap();
    assert_eq!(Settings::from_json(&json).unwrap(), s);

    // Through eframe's storage, as the app saves and restores them.
    let mut storage = MemStorage::default();
    s.store(&mut storage);
    assert_eq!(Settings::load(Some(&storage)), s);
    s.train.early_stop_patience = 4;
    s.store(&mut storage);
    assert_eq!(Settings::load(Some(&storage)).train.early_stop_patience, 4);
    assert_eq!(Settings::load(None), Settings::default());
    eframe::Storage::set_string(&mut storage, eframe::APP_KEY, "not json".into());
    assert_eq!(Settings::load(Some(&storage)), Settings::default());
}

/// Uses the real scanner; needs the data engineer's `scan` (merged later).
#[test]
fn scan_lists_real_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.c"), "int main() { return 0; }\n").unwrap();
    std::fs::write(dir.path().join("notes.md"), "# notes\nline two\n").unwrap();
    let settings = Settings {
        data_dir: dir.path().display().to_string(),
        extension_filter: "c md".into(),
        ..Settings::default()
    };
    let mut h = harness(WorkbenchApp::new_for_test(settings));
    finish_scan(&mut h);
    h.run();
    assert_eq!(h.state().data.error, None);
    h.get_by_label("hello.c");
    h.get_by_label("notes.md");
    assert_eq!(h.state().run_config().unwrap().files.len(), 2);
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_files_are_added_to_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let dropped = dir.path().join("dropped.rs");
    std::fs::write(&dropped, "fn main() {}\n").unwrap();
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(dropped.clone())));
    h.step();
    finish_scan(&mut h);
    h.run();
    assert_eq!(
        h.state().data.rows.len(),
        5,
        "added to, not replacing, the list"
    );
    h.get_by_label("dropped.rs");
    assert!(h.state().run_config().unwrap().files.contains(&dropped));
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
    h.state_mut().settings.train.lr = 0.0123;
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
    assert_eq!(restored.train.lr, 0.0123, "other settings persist");
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

/// The configuration the last run was started with, seen by the trainer.
static STARTED_WITH: Mutex<Option<TrainConfig>> = Mutex::new(None);

fn recording_trainer(config: TrainConfig) -> TrainerHandle {
    *STARTED_WITH.lock().unwrap() = Some(config.clone());
    script_trainer(config)
}

#[test]
fn early_stop_patience_reaches_the_trainer() {
    let settings = Settings {
        data_dir: ".".into(),
        extension_filter: String::new(),
        ..Settings::default()
    };
    let app = WorkbenchApp::with_engines(settings, None, script_scanner, recording_trainer);
    let mut h = harness(app);
    finish_scan(&mut h);
    h.get_by_label("Advanced").click();
    h.run();
    set_number(&mut h, "Early stop patience", 3.0);
    assert_eq!(h.state().settings.train.early_stop_patience, 3);

    h.get_by_label("START TRAINING").click();
    h.step();
    assert!(h.state().session.is_training());
    h.step();
    let seen = STARTED_WITH
        .lock()
        .unwrap()
        .clone()
        .expect("the trainer was started");
    assert_eq!(seen.early_stop_patience, 3);
    h.get_by_label("STOP TRAINING").click();
    h.step();
    step_until(&mut h, "the stop", |a| !a.session.is_training());
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
    assert_eq!(h.state().settings.train.seq_len, 8192);
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

/// Browse… and the resume picker open their dialogs on another thread:
/// frames go on, promptly, while a dialog is open, and the choice lands
/// when it closes.
#[test]
fn file_dialogs_do_not_block_the_ui() {
    use cllm_app::dialog::PickRequest;
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    let folder = tempfile::tempdir().unwrap();
    let target = folder.path().to_path_buf();
    let mut app = scripted_app();
    app.picker = Arc::new(move |request| {
        // Open until the test releases it (bounded, so a frame that waited
        // for the dialog shows up as a slow frame below, not a hang).
        let _ = release_rx.recv_timeout(Duration::from_secs(20));
        Some(match request {
            PickRequest::Folder { .. } => target.clone(),
            PickRequest::Checkpoint { .. } => target.join("picked.cllm"),
        })
    });
    let mut h = harness(app);
    finish_scan(&mut h);

    h.get_by_label("Browse…").click();
    h.step();
    assert!(h.state().dialog.is_some(), "the dialog is open");
    for _ in 0..5 {
        let began = Instant::now();
        h.step();
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "a frame waited for the dialog"
        );
    }
    assert!(h.state().dialog.is_some(), "still open");
    release_tx.send(()).unwrap();
    step_until(&mut h, "the folder choice", |a| a.dialog.is_none());
    assert_eq!(
        h.state().settings.data_dir,
        folder.path().display().to_string()
    );
    finish_scan(&mut h);
    assert_eq!(h.state().data.rows.len(), 4, "the picked folder is scanned");

    h.get_by_label("Advanced").click();
    h.run();
    // The resume picker sits low in the scrolled panel: bring it into view.
    h.get_by_label("…").scroll_to_me();
    h.run();
    h.get_by_label("…").click();
    h.step();
    assert!(h.state().dialog.is_some());
    h.step();
    release_tx.send(()).unwrap();
    step_until(&mut h, "the checkpoint choice", |a| a.dialog.is_none());
    let picked = folder.path().join("picked.cllm");
    assert_eq!(h.state().settings.train.resume, Some(picked.clone()));
    h.run();
    h.get_by_label_contains(&format!("Resuming from {}", picked.display()));
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
    assert_eq!((cfg.time_budget_secs, cfg.epochs), (900.0, 0));
    cfg.validate().unwrap();

    h.get_by_label("epochs").click();
    h.run();
    let cfg = h.state().run_config().unwrap();
    assert_eq!(cfg.time_budget_secs, 0.0);
    assert_eq!(cfg.epochs, TrainConfig::default().epochs);
}

/// Advanced: the repository memory (on by default) and the code check
/// reach the config the trainer gets.
#[test]
fn memory_and_code_check_are_settings() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    assert!(h.state().run_config().unwrap().memory);
    h.get_by_label("Advanced").click();
    h.run();
    set_number(&mut h, "Code check (functions)", 8.0);
    h.get_by_label("Repository memory").click();
    h.run();
    let cfg = h.state().run_config().unwrap();
    assert_eq!((cfg.eval_gen, cfg.memory), (8, false));
}

/// Advanced: the matmul precision (auto by default) reaches the config the
/// trainer gets, picked from its list.
#[test]
fn precision_is_a_setting() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    assert_eq!(
        h.state().run_config().unwrap().precision,
        PrecisionChoice::Auto
    );
    h.get_by_label("Advanced").click();
    h.run();
    h.get_by_label("Precision").click();
    h.run();
    h.get_by_label("fp32").click();
    h.run();
    assert_eq!(
        h.state().run_config().unwrap().precision,
        PrecisionChoice::Fp32
    );
}
