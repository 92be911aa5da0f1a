//! The runs under a runs folder: listed, read, and (for the app) kept up to
//! date on a background thread that re-scans on a timer and reads each log
//! incrementally, so the UI thread never touches the disk.

use super::run::{RunData, RunReader};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The folders under `runs_dir` that hold a `metrics.jsonl`, by name.
pub fn run_dirs(runs_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("metrics.jsonl").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Every run under `runs_dir`, read once (a log that cannot be read is
/// left out).
pub fn load_runs(runs_dir: &Path) -> Vec<RunData> {
    let mut watch = RunsWatch::new(runs_dir);
    watch.refresh();
    watch.snapshot()
}

/// Readers for every run in a folder; [`RunsWatch::refresh`] picks up new
/// runs, drops deleted ones and reads what each log gained.
pub struct RunsWatch {
    runs_dir: PathBuf,
    readers: BTreeMap<PathBuf, RunReader>,
}

impl RunsWatch {
    pub fn new(runs_dir: &Path) -> RunsWatch {
        RunsWatch {
            runs_dir: runs_dir.to_path_buf(),
            readers: BTreeMap::new(),
        }
    }

    /// True when anything changed.
    pub fn refresh(&mut self) -> bool {
        let dirs = run_dirs(&self.runs_dir);
        let before = self.readers.len();
        self.readers.retain(|d, _| dirs.contains(d));
        let mut changed = before != self.readers.len();
        for d in dirs {
            let reader = self
                .readers
                .entry(d.clone())
                .or_insert_with(|| RunReader::new(&d));
            // A log that vanished between listing and reading is dropped
            // at the next refresh.
            changed |= reader.poll().unwrap_or(false);
        }
        changed
    }

    pub fn snapshot(&self) -> Vec<RunData> {
        self.readers.values().map(|r| r.data.clone()).collect()
    }
}

/// A background watcher: snapshots of the runs arrive on `updates` when
/// something changed; `rescan` asks for one at once.
pub struct RunsWatcher {
    pub updates: Receiver<Vec<RunData>>,
    rescan: Sender<()>,
}

impl RunsWatcher {
    /// Watches `runs_dir`, re-scanning every `every`. The thread ends when
    /// the watcher is dropped.
    pub fn spawn(runs_dir: &Path, every: Duration) -> RunsWatcher {
        let (tx, updates) = crossbeam_channel::unbounded();
        let (rescan, wake) = crossbeam_channel::unbounded::<()>();
        let runs_dir = runs_dir.to_path_buf();
        std::thread::Builder::new()
            .name("cllm-runs-watch".into())
            .spawn(move || {
                let mut watch = RunsWatch::new(&runs_dir);
                let mut first = true;
                loop {
                    // Also re-sent while a run lacks an end line, so its
                    // running / stale status is re-judged.
                    if watch.refresh() || first {
                        first = false;
                        if tx.send(watch.snapshot()).is_err() {
                            return;
                        }
                    }
                    match wake.recv_timeout(every) {
                        Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("spawning the runs watcher");
        RunsWatcher { updates, rescan }
    }

    pub fn rescan(&self) {
        let _ = self.rescan.send(());
    }
}
