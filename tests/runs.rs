//! Runs read back, from logs written by real short training runs (tiny
//! preset, a few steps): the reader, a live run followed while its log
//! grows, damaged lines skipped and counted, an old log, `cllm runs`,
//! `cllm report` end to end, and the app's Runs tab driven by kittest.
//! Nothing sleeps: every wait polls a condition under a deadline.

use cllm_app::WorkbenchApp;
use cllm_app::settings::Settings;
use cllm_runs::run::Status;
use cllm_runs::{RunReader, load_run, load_runs};
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OptimizerSettings, OutputSettings, TokenizerKind, TrainConfig,
};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const DEADLINE: Duration = Duration::from_secs(300);

/// The smallest real run: tiny preset, bytes, 2 threads, on the shipped data.
fn config(root: &Path, name: &str, max_steps: u64, lr: f32) -> TrainConfig {
    TrainConfig {
        threads: 2,
        corpus: CorpusSettings {
            data: vec![PathBuf::from("training_data")],
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
        optimizer: OptimizerSettings {
            lr,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 1000,
            max_steps,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 4,
            eval_batches: 2,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: root.join("models").join(format!("{name}.cllm")),
            checkpoint_dir: root.join("checkpoints"),
            runs_dir: root.join("runs"),
            run_name: name.into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

/// Trains to the end on this thread.
fn train(cfg: TrainConfig) {
    let (_tx, rx) = crossbeam_channel::unbounded();
    cllm_train::trainer::run(cfg, Default::default(), &rx, &mut |_| {}).expect("the run trains");
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn a_finished_run_reads_back_as_its_log_says() {
    let root = tempfile::tempdir().unwrap();
    train(config(root.path(), "done", 12, 1e-3));
    let dir = root.path().join("runs/done");
    let raw = lines(&dir.join("metrics.jsonl"));
    assert_eq!(raw[0]["kind"], "header");
    assert_eq!(raw[0]["version"], 2);
    assert_eq!(raw.last().unwrap()["kind"], "end");
    let run = load_run(&dir).unwrap();
    assert_eq!(run.version(), 2);
    assert_eq!(run.status(SystemTime::now()).0, Status::Finished);
    assert_eq!(run.steps.len(), 12);
    assert_eq!(run.evals.len(), 3);
    assert_eq!(run.tokens_seen(), Some(12 * 4 * 16));
    assert_eq!(run.threads(), Some(2));
    assert_eq!(run.preset(), "tiny");
    assert_eq!(run.damaged_lines, 0);
    let best = raw
        .iter()
        .filter(|v| v["kind"] == "eval")
        .map(|v| v["loss"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(run.best_eval().unwrap().loss, best);
    assert!(run.best_checkpoint().unwrap().exists());
}

#[test]
fn a_live_run_in_a_terminal_is_followed_and_its_stop_is_read() {
    // `cllm train` in another process, writing runs/ under its own folder.
    let root = tempfile::tempdir().unwrap();
    let data = std::env::current_dir().unwrap().join("training_data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(["train", "--data", data.to_str().unwrap()])
        .args(["--preset", "tiny", "--tokenizer", "bytes", "--threads", "2"])
        .args([
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--max-steps",
            "1000000",
        ])
        .args([
            "--eval-every",
            "4",
            "--eval-batches",
            "2",
            "--run-name",
            "live",
        ])
        .current_dir(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = root.path().join("runs/live");
    wait_for("the log", || dir.join("metrics.jsonl").exists());
    let mut reader = RunReader::new(&dir);
    // Read while the trainer writes: the step count grows across polls.
    let mut seen = Vec::new();
    wait_for("three polls that each found new steps", || {
        reader.poll().unwrap();
        let n = reader.data.steps.len();
        if seen.last().is_none_or(|&l| n > l) && n > 0 {
            seen.push(n);
        }
        seen.len() >= 3
    });
    assert_eq!(
        reader.data.status(SystemTime::now()).0,
        Status::Running,
        "no end line and a fresh log: running"
    );
    // SIGTERM stops it after the step, as Ctrl-C does: an end line.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    reader.poll().unwrap();
    let (status, reason) = reader.data.status(SystemTime::now());
    assert_eq!(status, Status::Stopped, "{reason}");
    // The incremental reader saw exactly what a fresh read sees.
    let fresh = load_run(&dir).unwrap();
    assert_eq!(fresh.steps.len(), reader.data.steps.len());
    assert_eq!(fresh.evals.len(), reader.data.evals.len());
    assert_eq!(fresh.last_step(), reader.data.last_step());
}

#[test]
fn a_log_that_stopped_growing_without_an_end_line_is_a_failed_run() {
    let root = tempfile::tempdir().unwrap();
    train(config(root.path(), "killed", 8, 1e-3));
    let log = root.path().join("runs/killed/metrics.jsonl");
    // As if the process was killed before its end line.
    let text = std::fs::read_to_string(&log).unwrap();
    let cut: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(r#""kind":"end""#))
        .collect();
    std::fs::write(&log, cut.join("\n") + "\n").unwrap();
    let dir = root.path().join("runs/killed");
    let run = load_run(&dir).unwrap();
    assert_eq!(
        run.status(SystemTime::now()).0,
        Status::Running,
        "fresh: running"
    );
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let run = load_run(&dir).unwrap();
    let (status, reason) = run.status(SystemTime::now());
    assert_eq!(status, Status::Failed);
    assert!(reason.contains("without an end line"), "{reason}");
}

#[test]
fn damaged_lines_are_skipped_and_counted_and_old_logs_load() {
    let root = tempfile::tempdir().unwrap();
    train(config(root.path(), "src", 8, 1e-3));
    let text = std::fs::read_to_string(root.path().join("runs/src/metrics.jsonl")).unwrap();
    let good: Vec<&str> = text.lines().collect();
    // A garbage line in the middle, a step line cut short, and a last line
    // without its end (a crash mid-write).
    let mut damaged = Vec::new();
    for (i, l) in good.iter().enumerate() {
        damaged.push(l.to_string());
        if i == 3 {
            damaged.push("\u{0}\u{0}garbage not json".into());
            damaged.push(r#"{"kind":"step","step":4,"lo"#.into());
        }
    }
    let damaged_dir = root.path().join("runs/damaged");
    std::fs::create_dir_all(&damaged_dir).unwrap();
    std::fs::copy(
        root.path().join("runs/src/config.json"),
        damaged_dir.join("config.json"),
    )
    .unwrap();
    std::fs::write(
        damaged_dir.join("metrics.jsonl"),
        damaged.join("\n") + "\n{\"kind\":\"eval\",\"st",
    )
    .unwrap();
    let run = load_run(&damaged_dir).unwrap();
    assert_eq!(run.steps.len(), 8, "every good line still counts");
    assert_eq!(run.damaged_lines, 2);
    assert_eq!(
        run.damaged(SystemTime::now()),
        3,
        "plus the unfinished last line"
    );

    // Version 1: step / eval lines only, without the newer fields.
    let old_dir = root.path().join("runs/old");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::copy(
        root.path().join("runs/src/config.json"),
        old_dir.join("config.json"),
    )
    .unwrap();
    let old: Vec<String> = lines(&root.path().join("runs/src/metrics.jsonl"))
        .into_iter()
        .filter(|v| v["kind"] == "step" || v["kind"] == "eval")
        .map(|mut v| {
            let m = v.as_object_mut().unwrap();
            m.remove("tokens");
            m.remove("time");
            v.to_string()
        })
        .collect();
    std::fs::write(old_dir.join("metrics.jsonl"), old.join("\n") + "\n").unwrap();
    let run = load_run(&old_dir).unwrap();
    assert_eq!(run.version(), 1);
    assert_eq!(run.steps.len(), 8);
    assert_eq!(run.tokens_seen(), Some(8 * 4 * 16), "from the config");
    let rows = cllm_runs::table::rows(&load_runs(&root.path().join("runs")), SystemTime::now());
    assert_eq!(rows.len(), 3);
}

fn cllm(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cllm_runs_lists_exports_and_reports() {
    let root = tempfile::tempdir().unwrap();
    train(config(root.path(), "alpha", 12, 1e-3));
    train(config(root.path(), "beta", 8, 3e-3));
    let runs = root.path().join("runs");
    let runs_arg = runs.to_str().unwrap();
    let cwd = std::env::current_dir().unwrap();

    let (ok, table, err) = cllm(&["runs", "--runs-dir", runs_arg], &cwd);
    assert!(ok, "{err}");
    assert!(table.starts_with("name"), "{table}");
    for name in ["alpha", "beta"] {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line.contains("finished") && line.contains("tiny"), "{line}");
    }
    let (ok, json, _) = cllm(&["runs", "--runs-dir", runs_arg, "--json"], &cwd);
    assert!(ok);
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    let alpha = rows.iter().find(|r| r["name"] == "alpha").unwrap();
    assert_eq!(alpha["steps"], 12);
    assert_eq!(alpha["tokens_seen"], 12 * 4 * 16);
    assert_eq!(alpha["status"], "finished");
    let (ok, csv, _) = cllm(
        &["runs", "--runs-dir", runs_arg, "--csv", "alpha", "beta"],
        &cwd,
    );
    assert!(ok);
    assert_eq!(csv.lines().count(), 1 + 12 + 8);
    assert!(csv.lines().nth(1).unwrap().starts_with("alpha,1,"));
    let (ok, _, err) = cllm(&["runs", "--runs-dir", runs_arg, "--csv", "nope"], &cwd);
    assert!(!ok && err.contains("no run 'nope'"), "{err}");

    // The report, end to end.
    let (ok, out, err) = cllm(
        &[
            "report",
            "alpha",
            "--runs-dir",
            runs_arg,
            "--functions",
            "4",
            "--samples",
            "1",
        ],
        &cwd,
    );
    assert!(ok, "{out}{err}");
    let dir = runs.join("alpha");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for (name, _) in cllm_runs::report::FIGURES {
        let png = std::fs::read(dir.join("figures").join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        assert!(png.len() > 5000, "{name} has a picture in it");
        assert!(
            md.contains(&format!("](figures/{name})")),
            "{name} embedded"
        );
    }
    // Every figure equals the log's, as the report formats it.
    let log = lines(&dir.join("metrics.jsonl"));
    let steps: Vec<&Value> = log.iter().filter(|v| v["kind"] == "step").collect();
    let evals: Vec<&Value> = log.iter().filter(|v| v["kind"] == "eval").collect();
    let end = log.iter().find(|v| v["kind"] == "end").unwrap();
    let info = log.iter().find(|v| v["kind"] == "info").unwrap();
    let f = |v: &Value| v.as_f64().unwrap();
    let best = evals
        .iter()
        .min_by(|a, b| f(&a["loss"]).total_cmp(&f(&b["loss"])))
        .unwrap();
    let last = steps.last().unwrap();
    let summary = &end["summary"];
    let expect = [
        "| Status | finished (reached step 12) |".to_string(),
        format!("| Model | tiny, {} parameters |", info["params"]),
        "| Threads (spheres) | 2 |".to_string(),
        "| Steps | 12 of 12 |".to_string(),
        format!("| Tokens seen | {} tokens |", last["tokens"]),
        format!(
            "| Data | training_data: {} file(s), {} training tokens, {} validation tokens |",
            info["files"], info["train_tokens"], info["val_tokens"]
        ),
        format!("| Training time | {:.2} s |", f(&last["elapsed_secs"])),
        format!(
            "| Time per step | {:.2} ms (training time / steps, evaluations included) |",
            f(&last["elapsed_secs"]) / 12.0 * 1000.0
        ),
        format!(
            "| Time per sequence | {:.3} ms |",
            f(&summary["secs_per_sequence"]) * 1000.0
        ),
        format!(
            "| Throughput | {:.0} tokens/s |",
            f(&summary["tokens_per_sec"])
        ),
        format!("| Initial loss | {:.4} nats/token |", f(&steps[0]["loss"])),
        format!("| Final loss | {:.4} nats/token |", f(&last["loss"])),
        format!(
            "| Best validation loss | {:.4} nats/token (step {}) |",
            f(&best["loss"]),
            best["step"]
        ),
        format!(
            "| Best bits per byte | {:.3} bits/byte |",
            f(&best["bits_per_byte"])
        ),
        format!(
            "| Load imbalance | {:.1} % ((max - min) / mean of sequences per sphere) |",
            f(&summary["load_imbalance"]) * 100.0
        ),
        format!(
            "| Peak memory | {:.1} MiB (resident, whole process) |",
            f(&summary["peak_memory_bytes"]) / 1048576.0
        ),
        format!(
            "| Activation workspace | {:.2} MiB all spheres, {:.2} MiB per sphere |",
            f(&info["workspace_bytes"]) / 1048576.0,
            f(&info["workspace_bytes"]) / 2.0 / 1048576.0
        ),
        format!("| Skipped updates | {} steps |", summary["skipped_updates"]),
        "| Log | format version 2, 0 damaged lines skipped |".to_string(),
    ];
    for e in &expect {
        assert!(md.contains(e.as_str()), "missing {e}\n{md}");
    }
    let norms: Vec<f64> = steps.iter().map(|s| f(&s["grad_norm"])).collect();
    let clipped = steps.iter().filter(|s| s["clipped"] == true).count();
    let grad = format!(
        "| Gradient norm | mean {:.3}, max {:.3}, last {:.3}; {clipped} of 12 steps clipped |",
        norms.iter().sum::<f64>() / 12.0,
        norms.iter().copied().fold(0.0, f64::max),
        norms[11]
    );
    assert!(md.contains(&grad), "missing {grad}");
    let header = &log[0];
    let started = format!(
        "| Started | {} UTC |",
        cllm_runs::table::format_utc(f(&header["started_unix"]))
    );
    assert!(md.contains(&started), "missing {started}");
    let accuracy = format!(
        "| Validation accuracy at best | {:.1} % (top-1 next token) |",
        f(&best["accuracy"]) * 100.0
    );
    assert!(md.contains(&accuracy), "missing {accuracy}");
    let spheres = end["spheres"].as_array().unwrap();
    let mean_busy = spheres.iter().map(|s| f(&s["busy"])).sum::<f64>() / spheres.len() as f64;
    let utilisation = format!(
        "| Sphere utilisation | {:.1} % mean busy share |",
        mean_busy * 100.0
    );
    assert!(md.contains(&utilisation), "missing {utilisation}");
    for s in end["spheres"].as_array().unwrap() {
        let row = format!(
            "| {} | {} | {:.1} % |",
            s["id"],
            s["sequences"],
            f(&s["busy"]) * 100.0
        );
        assert!(md.contains(&row), "missing sphere row {row}");
    }
    for e in &evals {
        let row = format!(
            "| {} | {:.4} | {:.3} |",
            e["step"],
            f(&e["loss"]),
            f(&e["bits_per_byte"])
        );
        assert!(md.contains(&row), "missing eval row {row}");
    }
    assert!(md.contains("checkpoint_best.cllm"), "the checkpoint list");
    // The model section: the four seed prompts (the same as eval-gen's),
    // each with its syntax check.
    assert_eq!(
        cllm_runs::report::model::SEED_PROMPTS,
        cllm::cli::eval_gen::DEFAULT_PROMPTS
    );
    assert!(md.contains("| seed prompts | 4 |"), "{md}");
    for p in cllm_runs::report::model::SEED_PROMPTS {
        assert!(md.contains(&format!("**`{p}`**")), "prompt {p}");
    }
    assert_eq!(md.matches(" as C, ").count(), 4, "one check per prompt");
}

fn harness(app: WorkbenchApp) -> Harness<'static, WorkbenchApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app)
}

fn step_until(h: &mut Harness<'_, WorkbenchApp>, what: &str, done: impl Fn(&WorkbenchApp) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::yield_now();
    }
}

#[test]
fn the_runs_tab_lists_follows_compares_and_deletes() {
    let root = tempfile::tempdir().unwrap();
    train(config(root.path(), "first", 8, 1e-3));
    train(config(root.path(), "second", 8, 3e-3));
    // A damaged line in the second run's log.
    let log = root.path().join("runs/second/metrics.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.insert_str(text.find('\n').unwrap() + 1, "not a log line\n");
    std::fs::write(&log, text).unwrap();

    let settings = Settings {
        data_dir: root.path().join("no-data").display().to_string(),
        train: config(root.path(), "", 0, 1e-3),
        ..Settings::default()
    };
    let mut h = harness(WorkbenchApp::new_for_test(settings));
    h.get_by_label("Runs").click();
    step_until(&mut h, "both runs listed", |a| a.runs.rows.len() == 2);
    h.run_steps(2);
    h.get_by_label("first");
    h.get_by_label("second");
    assert_eq!(h.query_all_by_label("finished").count(), 2);
    h.get_by_label("second: 1 damaged log line(s) skipped");

    // Overlay both: the learning rate is the setting that differs.
    h.get_by_label("plot first").click();
    h.get_by_label("plot second").click();
    h.run_steps(2);
    assert_eq!(h.state().runs.selected.len(), 2);
    h.get_by_label("train.lr");

    // A live run from "a terminal" (another trainer writing the same folder).
    let live = cllm_train::spawn(
        config(root.path(), "third", 1_000_000, 1e-3),
        Default::default(),
    );
    step_until(&mut h, "the live run shown running", |a| {
        a.runs
            .rows
            .iter()
            .any(|r| r.name == "third" && r.status == "running" && r.steps > 0)
    });
    let before = h.state().runs.row("third").unwrap().steps;
    step_until(&mut h, "the live run's steps to grow in the table", |a| {
        a.runs.row("third").is_some_and(|r| r.steps > before)
    });
    live.stop();
    wait_for("the live trainer to end", || live.is_finished());
    step_until(&mut h, "the live run shown stopped", |a| {
        a.runs.row("third").is_some_and(|r| r.status == "stopped")
    });

    // Resume the stopped run from the table: it trains on in its own log.
    let stopped_at = h.state().runs.row("third").unwrap().steps;
    h.query_all_by_label("third").next().unwrap().click();
    h.run_steps(2);
    h.get_by_label("Resume").click();
    h.step();
    assert_eq!(h.state().tab, cllm_app::Tab::Training);
    assert!(h.state().session.is_training(), "the resumed run started");
    step_until(&mut h, "the resumed run to pass its old last step", |a| {
        a.session.run.history.train.len() > 2
    });
    h.state_mut().session.stop();
    step_until(&mut h, "the resumed run to stop", |a| {
        !a.session.is_training()
    });
    let run = load_run(&root.path().join("runs/third")).unwrap();
    assert_eq!(run.resumes.len(), 1, "one resume line");
    assert!(
        run.last_step() > stopped_at,
        "steps continue in the same log"
    );
    assert_eq!(run.status(SystemTime::now()).0, Status::Stopped);
    h.get_by_label("Runs").click();
    h.run_steps(2);

    // Delete the first run, after the confirmation.
    // The name in the table (drawn before the settings grid's header).
    h.query_all_by_label("first").next().unwrap().click();
    h.run_steps(2);
    h.get_by_label("Delete…").click();
    h.run_steps(2);
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(root.path().join("runs/first").exists(), "Cancel keeps it");
    h.get_by_label("Delete…").click();
    h.run_steps(2);
    h.get_by_label("Delete run").click();
    h.run_steps(2);
    assert!(!root.path().join("runs/first").exists());
    assert!(!root.path().join("checkpoints/first").exists());
    step_until(&mut h, "the table without it", |a| {
        a.runs.rows.iter().all(|r| r.name != "first") && a.runs.rows.len() == 2
    });

    // Sort by name, both ways, then filter.
    let order = |h: &Harness<'_, WorkbenchApp>| -> Vec<String> {
        h.state()
            .runs
            .visible_rows()
            .iter()
            .map(|r| r.name.clone())
            .collect()
    };
    h.get_by_label("name").click();
    h.run_steps(2);
    assert_eq!(order(&h), ["second", "third"]);
    h.get_by_label("name ^").click();
    h.run_steps(2);
    assert_eq!(order(&h), ["third", "second"]);
    h.get_by_label("Filter").click();
    h.run_steps(1);
    h.get_by_label("Filter").type_text("thi");
    h.run_steps(2);
    assert_eq!(order(&h), ["third"]);
    assert_eq!(
        h.query_all_by_label("second").count(),
        0,
        "filtered out of the table"
    );
    h.state_mut().runs.filter.clear();
    h.run_steps(2);

    // Open the second run's best checkpoint in the LLM tab.
    h.query_all_by_label("second").next().unwrap().click();
    h.run_steps(2);
    h.get_by_label("Open in LLM tab").click();
    h.run_steps(2);
    assert_eq!(h.state().tab, cllm_app::Tab::Llm);
    assert!(
        h.state()
            .settings
            .llm
            .model_path
            .ends_with("checkpoint_best.cllm"),
        "{}",
        h.state().settings.llm.model_path
    );
}
