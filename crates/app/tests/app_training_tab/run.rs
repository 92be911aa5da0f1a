//! A scripted run: the table, plot and progress, Stop, the patience the
//! trainer gets, and dialogs that never block the frames.

use super::*;

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
    assert_eq!(h.state().settings.train.budget.early_stop_patience, 3);

    h.get_by_label("START TRAINING").click();
    h.step();
    assert!(h.state().session.is_training());
    h.step();
    let seen = STARTED_WITH
        .lock()
        .unwrap()
        .clone()
        .expect("the trainer was started");
    assert_eq!(seen.budget.early_stop_patience, 3);
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
