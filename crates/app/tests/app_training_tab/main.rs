//! UI tests of the Training tab: the real `WorkbenchApp` driven headlessly
//! with egui_kittest. A scripted scanner and a scripted trainer feed the
//! app the same messages the engine sends, so these tests check what the
//! view does with them; `scan_lists_real_files` uses the real scanner.

use cllm_app::WorkbenchApp;
use cllm_app::settings::Settings;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_data::DataError;
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

mod data;
mod run;
mod settings;
mod start_from;

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
) -> Result<(), DataError> {
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
            files: config.corpus.files.len(),
            train_tokens: 900,
            val_tokens: 100,
            vocab_size: 300,
            params: 10_000,
            threads: 3,
            total_steps: 10,
            first_step: 0,
            run_name: "scripted".into(),
            run_dir: config.outputs.checkpoint_dir.join("scripted"),
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
