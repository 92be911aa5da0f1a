//! Damaged run logs (`runs/<name>/metrics.jsonl`, written by
//! `cllm_train::runlog`) and run configs. A tiny run is trained for a real
//! log, which is then damaged (bytes changed, cut, fields edited, lines
//! reordered, the config damaged) and read back as `cllm runs` and the
//! Runs tab read it: the row, the table, the CSV, the settings, the sheet
//! and, for some, `cllm report` with its figures. A damaged line is skipped
//! with a note naming the log file and what is wrong with it; nothing
//! panics. Seeded (`fuzz_support`).

#[path = "../../train/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use cllm_runs::report::{ReportOptions, throughput_series, write_report};
use cllm_runs::table::{RunRow, format_table};
use cllm_runs::{csv::csv_rows, diff::settings, load_run, report::sheet::sheet};
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OutputSettings, TokenizerKind, TrainConfig,
};
use fuzz_support::{FuzzRng, Tally, mutate_json};
use serde_json::Value;
use std::path::Path;
use std::time::SystemTime;

const SEED: u64 = 0x07a1_10c5;
const LOG: &str = "metrics.jsonl";

/// A finished run of the tiny preset in `root`: its folder.
fn trained_run(root: &Path) -> std::path::PathBuf {
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text: String = (0..200)
        .map(|i| format!("int f{}(int x) {{ return x + {}; }}\n", i % 11, i % 4))
        .collect();
    std::fs::write(data.join("a.c"), text).unwrap();
    let config = TrainConfig {
        threads: 1,
        corpus: CorpusSettings {
            data: vec![data],
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
            max_steps: 9,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 3,
            eval_batches: 2,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: root.join("final.cllm"),
            checkpoint_dir: root.join("checkpoints"),
            runs_dir: root.join("runs"),
            run_name: "fuzz".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let (_tx, rx) = crossbeam_channel::unbounded();
    cllm_train::trainer::run(config, Default::default(), &rx, &mut |_| {}).expect("it trains");
    root.join("runs/fuzz")
}

/// What the front ends read of a run: a refusal names the folder's log; a
/// run read with damaged lines skipped returns the note that says so.
fn read_back(dir: &Path) -> Result<(), String> {
    let run = load_run(dir).map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    let row = RunRow::of(&run, now);
    let table = format_table(std::slice::from_ref(&row));
    let _ = (csv_rows(&run), settings(&run), sheet(&run, now));
    let _ = (
        throughput_series(&run),
        run.best_checkpoint(),
        run.checkpoints(),
    );
    match &row.damage_note {
        Some(note) => {
            assert!(table.contains(note.as_str()), "the table says it: {table}");
            Err(note.clone())
        }
        None if run.damaged(now) > 0 => Err(format!("{} damaged lines, no note", run.damaged(now))),
        None => Ok(()),
    }
}

/// `cllm report` without its model section (figures included).
fn report(dir: &Path) -> Result<(), String> {
    let options = ReportOptions {
        model: false,
        ..ReportOptions::default()
    };
    write_report(dir, &options)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn damaged_run_logs_are_skipped_with_a_note_or_read() {
    let root = tempfile::tempdir().unwrap();
    let run = trained_run(root.path());
    let log = std::fs::read(run.join(LOG)).unwrap();
    let config = std::fs::read(run.join("config.json")).unwrap();
    read_back(&run).expect("the undamaged log reads back");
    report(&run).expect("the undamaged run is reported");
    // Each case in its own copy of the folder.
    let copy = root.path().join("runs/copy");
    std::fs::create_dir_all(&copy).unwrap();
    let written = std::cell::RefCell::new(Vec::new());
    let put = |log: &[u8], config: &[u8]| {
        std::fs::write(copy.join(LOG), log).unwrap();
        if *written.borrow() != config {
            std::fs::write(copy.join("config.json"), config).unwrap();
            *written.borrow_mut() = config.to_vec();
        }
    };
    let lines: Vec<Value> = String::from_utf8_lossy(&log)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let joined = |lines: &[Value]| -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    };
    let mut rng = FuzzRng::new(SEED);
    let mut tally = Tally::new(LOG);
    for case in 0..600 {
        let mut damaged = log.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.index(damaged.len());
            damaged[at] = if rng.below(2) == 0 {
                rng.byte()
            } else {
                let set = b"{}[]\":,0123456789-.en\n";
                set[rng.index(set.len())]
            };
        }
        put(&damaged, &config);
        tally.refused_or_used("bytes changed", case, || read_back(&copy));
    }
    for case in 0..400 {
        put(&log[..rng.index(log.len())], &config);
        tally.refused_or_used("truncated", case, || read_back(&copy));
    }
    for case in 0..600 {
        let mut edited = lines.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.index(edited.len());
            mutate_json(&mut edited[i], &mut rng);
        }
        put(&joined(&edited), &config);
        tally.refused_or_used("fields edited", case, || read_back(&copy));
    }
    for case in 0..300 {
        let mut moved = lines.clone();
        let (i, j) = (rng.index(moved.len()), rng.index(moved.len()));
        match rng.below(3) {
            0 => moved.swap(i, j),
            1 => {
                let line = moved[i].clone();
                moved.insert(j, line);
            }
            _ => {
                moved.remove(i);
            }
        }
        put(&joined(&moved), &config);
        tally.refused_or_used("lines moved, repeated or lost", case, || read_back(&copy));
    }
    let config_json: Value = serde_json::from_slice(&config).unwrap();
    for case in 0..300 {
        let mut edited = config_json.clone();
        mutate_json(&mut edited, &mut rng);
        put(&log, edited.to_string().as_bytes());
        tally.refused_or_used("config fields edited", case, || read_back(&copy));
    }
    // A damaged config is said apart from the log.
    let mut config_tally = Tally::new("config.json");
    for case in 0..100 {
        put(&log, &config[..rng.index(config.len())]);
        config_tally.refused("config cut short", case, || read_back(&copy));
    }
    config_tally.finish(100);
    // Reports of logs with odd values in them (figures drawn of NaN,
    // infinities, huge and negative numbers).
    for case in 0..40 {
        let mut edited = lines.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.index(edited.len());
            if let Some(map) = edited[i].as_object_mut() {
                let keys: Vec<String> = map.keys().cloned().collect();
                let key = &keys[rng.index(keys.len())];
                if key != "kind" {
                    let odd = [
                        Value::Null,
                        1e308.into(),
                        (-5).into(),
                        u64::MAX.into(),
                        0.into(),
                    ];
                    map.insert(key.clone(), odd[rng.index(odd.len())].clone());
                }
            }
        }
        put(&joined(&edited), &config);
        tally.refused_or_used("reported with odd values", case, || report(&copy));
    }
    // No log at all, or a folder in its place.
    std::fs::remove_file(copy.join(LOG)).unwrap();
    tally.refused("no log", 0, || read_back(&copy));
    std::fs::create_dir(copy.join(LOG)).unwrap();
    tally.refused("a folder", 0, || read_back(&copy));
    tally.finish(2_000);
}
