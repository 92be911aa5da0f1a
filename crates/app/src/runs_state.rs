//! The Runs tab's state, apart from its drawing: the background watcher's
//! latest snapshot, the rows, sorting, filtering, selection, and the
//! actions (delete, write a report) that touch the disk.

use cllm_runs::table::{RunRow, rows};
use cllm_runs::{RunData, RunsWatcher};
use crossbeam_channel::Receiver;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the runs folder is re-scanned (each log is read from where
/// the last scan stopped).
pub const RESCAN_EVERY: Duration = Duration::from_millis(1000);

/// The x axis of the overlaid curves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XAxis {
    Step,
    Tokens,
    WallTime,
}

impl XAxis {
    pub fn label(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens seen",
            XAxis::WallTime => "wall time (s)",
        }
    }
}

pub struct RunsState {
    watcher: Option<(PathBuf, RunsWatcher)>,
    pub runs: Vec<RunData>,
    pub rows: Vec<RunRow>,
    rows_at: Option<Instant>,
    /// Column index into `runs::table::COLUMNS`, and descending.
    pub sort: (usize, bool),
    pub filter: String,
    /// Runs whose curves are overlaid.
    pub selected: BTreeSet<String>,
    /// The run the action buttons act on (the last one clicked).
    pub focus: Option<String>,
    pub x_axis: XAxis,
    pub log_scale: bool,
    pub smoothing: f32,
    /// The run waiting for the delete confirmation.
    pub confirm_delete: Option<String>,
    /// The last action's outcome, shown under the toolbar.
    pub message: Option<String>,
    report: Option<Receiver<Result<PathBuf, String>>>,
}

impl Default for RunsState {
    fn default() -> Self {
        RunsState {
            watcher: None,
            runs: Vec::new(),
            rows: Vec::new(),
            rows_at: None,
            sort: (1, true),
            filter: String::new(),
            selected: BTreeSet::new(),
            focus: None,
            x_axis: XAxis::Step,
            log_scale: false,
            smoothing: 0.9,
            confirm_delete: None,
            message: None,
            report: None,
        }
    }
}

impl RunsState {
    /// Takes in what the watcher found (never waits for it) and re-judges
    /// the rows once a second (a run with no end line turns from running
    /// to failed by the clock alone). True when anything changed.
    pub fn poll(&mut self, runs_dir: &Path) -> bool {
        if self.watcher.as_ref().is_none_or(|(d, _)| d != runs_dir) {
            let w = RunsWatcher::spawn(runs_dir, RESCAN_EVERY);
            self.watcher = Some((runs_dir.to_path_buf(), w));
        }
        let mut changed = false;
        if let Some((_, w)) = &self.watcher {
            while let Ok(runs) = w.updates.try_recv() {
                self.runs = runs;
                changed = true;
            }
        }
        if let Some(rx) = &self.report
            && let Ok(result) = rx.try_recv()
        {
            self.message = Some(match result {
                Ok(path) => format!("report written: {}", path.display()),
                Err(e) => format!("report failed: {e}"),
            });
            self.report = None;
            changed = true;
        }
        if changed || self.rows_at.is_none_or(|t| t.elapsed() > RESCAN_EVERY) {
            self.refresh_rows();
        }
        changed
    }

    /// Asks the watcher to look again now (after a delete).
    pub fn rescan(&self) {
        if let Some((_, w)) = &self.watcher {
            w.rescan();
        }
    }

    fn refresh_rows(&mut self) {
        self.rows = rows(&self.runs, SystemTime::now());
        self.rows_at = Some(Instant::now());
        let names: BTreeSet<String> = self.rows.iter().map(|r| r.name.clone()).collect();
        self.selected.retain(|n| names.contains(n));
        if self.focus.as_ref().is_some_and(|f| !names.contains(f)) {
            self.focus = None;
        }
    }

    pub fn run(&self, name: &str) -> Option<&RunData> {
        self.runs.iter().find(|r| r.name == name)
    }

    pub fn row(&self, name: &str) -> Option<&RunRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// The rows that pass the filter, in the chosen order.
    pub fn visible_rows(&self) -> Vec<&RunRow> {
        let needle = self.filter.trim().to_lowercase();
        let mut v: Vec<&RunRow> = self
            .rows
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || [&r.name, &r.preset, &r.data, &r.status.to_string()]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&needle))
            })
            .collect();
        let (col, desc) = self.sort;
        v.sort_by(|a, b| {
            let o = compare(a, b, col);
            if desc { o.reverse() } else { o }
        });
        v
    }

    /// Sorts by `col`, flipping the direction when it already sorts by it.
    pub fn sort_by(&mut self, col: usize) {
        self.sort = if self.sort.0 == col {
            (col, !self.sort.1)
        } else {
            (col, false)
        };
    }

    /// Deletes a run's log folder and its checkpoints (refused while it
    /// is running).
    pub fn delete(&mut self, name: &str) {
        let Some(run) = self.run(name) else {
            return;
        };
        if self.row(name).is_some_and(|r| r.status == "running") {
            self.message = Some(format!("{name} is running: stop it before deleting it"));
            return;
        }
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        let dirs = [Some(run.dir.clone()), run.checkpoint_dir()];
        for dir in dirs.into_iter().flatten().filter(|d| d.exists()) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed.push(dir.display().to_string()),
                Err(e) => failed.push(format!("{}: {e}", dir.display())),
            }
        }
        self.message = Some(if failed.is_empty() {
            format!("deleted {}", removed.join(" and "))
        } else {
            format!("could not delete {}", failed.join("; "))
        });
        self.runs.retain(|r| r.name != name);
        self.selected.remove(name);
        self.refresh_rows();
        self.rescan();
    }

    /// Writes the run's report on a background thread; the outcome shows
    /// in `message` when it is done.
    pub fn write_report(&mut self, name: &str, repaint: Option<eframe::egui::Context>) {
        let Some(run) = self.run(name) else {
            return;
        };
        if self.report.is_some() {
            return;
        }
        let dir = run.dir.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let opts = cllm_runs::report::ReportOptions::default();
            let result = cllm_runs::report::write_report(&dir, &opts)
                .map(|r| r.path)
                .map_err(|e| e.to_string());
            let _ = tx.send(result);
            if let Some(ctx) = repaint {
                ctx.request_repaint();
            }
        });
        self.report = Some(rx);
        self.message = Some(format!("writing the report of {name}…"));
    }

    pub fn is_writing_report(&self) -> bool {
        self.report.is_some()
    }
}

fn compare(a: &RunRow, b: &RunRow, col: usize) -> std::cmp::Ordering {
    let f = |x: Option<f64>, y: Option<f64>| {
        x.unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&y.unwrap_or(f64::NEG_INFINITY))
    };
    match col {
        0 => a.name.cmp(&b.name),
        1 => f(a.started_unix, b.started_unix),
        2 => a.duration_secs.total_cmp(&b.duration_secs),
        3 => a.status.cmp(b.status),
        4 => a.preset.cmp(&b.preset),
        5 => a.params.cmp(&b.params),
        6 => a.data.cmp(&b.data),
        7 => a.tokens_seen.cmp(&b.tokens_seen),
        8 => f(a.best_val_loss, b.best_val_loss),
        9 => f(a.best_bits_per_byte, b.best_bits_per_byte),
        10 => f(a.tokens_per_sec, b.tokens_per_sec),
        _ => a.threads.cmp(&b.threads),
    }
    .then_with(|| a.name.cmp(&b.name))
}

/// A run's curves on the chosen axis: (train, validation) as x/y points.
pub fn curves(run: &RunData, x: XAxis) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let start = run.started_unix().unwrap_or(0.0);
    let x_of_step = |s: &cllm_runs::record::Step| -> Option<f64> {
        match x {
            XAxis::Step => Some(s.step as f64),
            XAxis::Tokens => run.tokens_at(s).map(|t| t as f64),
            XAxis::WallTime => Some(s.elapsed_secs),
        }
    };
    let train: Vec<[f64; 2]> = run
        .steps
        .iter()
        .filter(|s| s.loss.is_finite())
        .filter_map(|s| Some([x_of_step(s)?, s.loss]))
        .collect();
    let val = run
        .evals
        .iter()
        .filter(|e| e.loss.is_finite())
        .filter_map(|e| {
            let x = match x {
                XAxis::Step => e.step as f64,
                // Evaluations sit at their step's position.
                _ => run
                    .steps
                    .iter()
                    .find(|s| s.step == e.step)
                    .and_then(x_of_step)
                    .or_else(|| e.time.map(|t| t - start))?,
            };
            Some([x, e.loss])
        })
        .collect();
    (train, val)
}
