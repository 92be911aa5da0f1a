//! The LLM tab's list of checkpoints on disk: every `.cllm` file in the
//! model and checkpoint folders and in their run folders
//! (`checkpoints/<run-name>/*.cllm`), grouped by run, newest run first,
//! with size, date and loss.
//!
//! Verifying a file reads and hashes all of it, which takes a noticeable
//! time for a large model, so the list is built on its own thread: the file names arrive first (marked
//! "checking"), then each file's verdict as it is ready. The UI drains the
//! channel every frame and never waits.

use super::error_text::{error_text, panic_text};
use super::format::format_bytes;
use cllm_train::checkpoint::{CheckpointInfo, verify};
use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use eframe::egui;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What is known about one listed file.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryStatus {
    Checking,
    Valid(Box<CheckpointInfo>),
    /// Why `verify` refused it (names the file and the problem).
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    pub path: PathBuf,
    /// The run that wrote it: the name of the run folder it lies in
    /// (`checkpoints/<run>/file.cllm`); `None` for a file directly in a
    /// listed folder (`models/`, or old flat checkpoints).
    pub run: Option<String>,
    pub file_bytes: u64,
    /// Last modification, seconds since the Unix epoch.
    pub modified_unix: Option<u64>,
    pub status: EntryStatus,
}

impl ModelEntry {
    /// The heading of the group this file is listed under: "run <name>" or
    /// the folder it lies in ("models/").
    pub fn group(&self) -> String {
        match &self.run {
            Some(run) => format!("run {run}"),
            None => {
                let dir = self
                    .path
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                format!("{}/", dir.trim_end_matches('/'))
            }
        }
    }

    /// The best validation loss stored in the file, when it has one.
    pub fn loss(&self) -> Option<f32> {
        match &self.status {
            EntryStatus::Valid(info) => info.state.best_val_loss,
            _ => None,
        }
    }
}

/// What the listing thread sends.
enum ListMsg {
    /// Every file found, newest first, all `Checking`.
    Found(Vec<ModelEntry>),
    /// The verdict on the file at this index of `Found`.
    Checked(usize, EntryStatus),
    Done,
}

/// The list and the job filling it.
#[derive(Default)]
pub struct ModelList {
    pub entries: Vec<ModelEntry>,
    /// The folders searched by the last refresh.
    pub dirs: Vec<PathBuf>,
    job: Option<(Receiver<ListMsg>, Arc<AtomicBool>)>,
}

impl ModelList {
    /// Lists `dirs` again on a new thread (a refresh in progress is
    /// cancelled). Folders that do not exist are simply empty.
    pub fn refresh(&mut self, dirs: Vec<PathBuf>, repaint: Option<egui::Context>) {
        self.cancel();
        self.entries.clear();
        self.dirs = dirs.clone();
        let (tx, rx) = unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let notify = move || {
            if let Some(ctx) = &repaint {
                ctx.request_repaint();
            }
        };
        std::thread::spawn(move || {
            let found = find_checkpoints(&dirs);
            let paths: Vec<PathBuf> = found.iter().map(|e| e.path.clone()).collect();
            let _ = tx.send(ListMsg::Found(found));
            notify();
            for (i, path) in paths.iter().enumerate() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let _ = tx.send(ListMsg::Checked(i, check(path)));
                notify();
            }
            let _ = tx.send(ListMsg::Done);
            notify();
        });
        self.job = Some((rx, cancel));
    }

    fn cancel(&mut self) {
        if let Some((_, flag)) = self.job.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_listing(&self) -> bool {
        self.job.is_some()
    }

    /// Takes in whatever the thread has sent; returns whether anything
    /// arrived. Never blocks.
    pub fn poll(&mut self) -> bool {
        let Some((rx, _)) = &self.job else {
            return false;
        };
        let mut news = false;
        let mut done = false;
        loop {
            match rx.try_recv() {
                Ok(ListMsg::Found(found)) => self.entries = found,
                Ok(ListMsg::Checked(i, status)) => {
                    if let Some(e) = self.entries.get_mut(i) {
                        e.status = status;
                    }
                }
                Ok(ListMsg::Done) | Err(TryRecvError::Disconnected) => {
                    done = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
            news = true;
        }
        if done {
            self.job = None;
            news = true;
        }
        news
    }
}

/// `verify` on one file; a panic inside it becomes a refusal, not a crash.
fn check(path: &Path) -> EntryStatus {
    match std::panic::catch_unwind(|| verify(path)) {
        Ok(Ok(info)) => EntryStatus::Valid(Box::new(info)),
        Ok(Err(e)) => EntryStatus::Invalid(error_text(&e)),
        Err(panic) => EntryStatus::Invalid(format!(
            "{}: checking it failed: {}",
            path.display(),
            panic_text(&panic)
        )),
    }
}

/// The `.cllm` files inside `dirs` (each folder once) and inside their
/// subfolders, which are runs' folders. Grouped: each run's files together
/// and each folder's own files together; groups ordered by their newest
/// file, newest first, and files within a group newest first.
pub fn find_checkpoints(dirs: &[PathBuf]) -> Vec<ModelEntry> {
    let mut out: Vec<ModelEntry> = Vec::new();
    let mut seen_dirs: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if seen_dirs.contains(&key) {
            continue;
        }
        seen_dirs.push(key);
        let Ok(read) = std::fs::read_dir(dir) else {
            continue;
        };
        for item in read.flatten() {
            let path = item.path();
            let Ok(meta) = item.metadata() else { continue };
            if meta.is_dir() {
                let run = item.file_name().to_string_lossy().into_owned();
                if let Ok(inner) = std::fs::read_dir(&path) {
                    for file in inner.flatten() {
                        if let Some(e) = entry_for(&file, Some(run.clone())) {
                            out.push(e);
                        }
                    }
                }
            } else if let Some(e) = entry_for(&item, None) {
                out.push(e);
            }
        }
    }
    // A group's newest file decides where the group goes.
    let mut newest: std::collections::HashMap<(PathBuf, Option<String>), Option<u64>> =
        std::collections::HashMap::new();
    for e in &out {
        let slot = newest.entry(group_key(e)).or_insert(None);
        *slot = (*slot).max(e.modified_unix);
    }
    out.sort_by(|a, b| {
        let (ka, kb) = (group_key(a), group_key(b));
        newest[&kb]
            .cmp(&newest[&ka])
            .then_with(|| ka.cmp(&kb))
            .then_with(|| b.modified_unix.cmp(&a.modified_unix))
            .then_with(|| a.path.cmp(&b.path))
    });
    out
}

/// The folder a file lies in and its run: files sharing both are listed
/// together.
fn group_key(e: &ModelEntry) -> (PathBuf, Option<String>) {
    (
        e.path.parent().map(Path::to_path_buf).unwrap_or_default(),
        e.run.clone(),
    )
}

/// An entry for `item` when it is a regular `.cllm` file.
fn entry_for(item: &std::fs::DirEntry, run: Option<String>) -> Option<ModelEntry> {
    let path = item.path();
    let is_cllm = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("cllm"));
    let meta = item.metadata().ok()?;
    if !is_cllm || !meta.is_file() {
        return None;
    }
    let modified_unix = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Some(ModelEntry {
        path,
        run,
        file_bytes: meta.len(),
        modified_unix,
        status: EntryStatus::Checking,
    })
}

/// Seconds since the Unix epoch as "2026-11-21 08:38 UTC".
pub fn format_unix_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let minute_of_day = (secs % 86_400) / 60;
    let (y, m, d) = civil_date(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// Year, month, day of the day `days` after 1970-01-01 (proleptic
/// Gregorian). Counts from 0000-03-01 so that the leap day is the last day
/// of its year, which makes every 400-year era the same length.
fn civil_date(days: i64) -> (i64, u32, u32) {
    const DAYS_PER_ERA: i64 = 146_097;
    // 1970-01-01 is day 719_468 after 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March, each run of five alternating 31/30.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What the person asked of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListAction {
    /// List and check the files again.
    Refresh,
    /// Load this file.
    Load(String),
}

/// The models on disk grouped by folder and run: click picks a file into
/// `model_path`, double-click asks to load it.
pub fn models_on_disk_ui(
    ui: &mut egui::Ui,
    list: &ModelList,
    model_path: &mut String,
) -> Option<ListAction> {
    let mut action = None;
    ui.horizontal(|ui| {
        ui.strong("Models on disk");
        if ui
            .add_enabled(!list.is_listing(), egui::Button::new("Refresh"))
            .on_hover_text("List and check the .cllm files again")
            .clicked()
        {
            action = Some(ListAction::Refresh);
        }
        if list.is_listing() {
            ui.spinner();
        }
    });
    let folders: Vec<String> = list
        .dirs
        .iter()
        .map(|d| format!("{}/", d.display().to_string().trim_end_matches('/')))
        .collect();
    ui.weak(format!("In {} and their run folders", folders.join(", ")));
    if list.entries.is_empty() {
        if !list.is_listing() {
            ui.weak("No .cllm files here yet: train a model, or Browse… for one.");
        }
        return action;
    }
    let mut load = None;
    egui::Grid::new("model_list")
        .num_columns(4)
        .striped(true)
        .show(ui, |ui| {
            ui.strong("File");
            ui.strong("Size");
            ui.strong("Saved");
            ui.strong("Val loss");
            ui.end_row();
            let mut group = None;
            for e in &list.entries {
                let heading = e.group();
                if group.as_ref() != Some(&heading) {
                    if e.run.is_some() {
                        ui.strong(&heading).on_hover_text(format!(
                            "The checkpoints of training run {}",
                            e.run.as_deref().unwrap_or_default()
                        ));
                    } else {
                        ui.strong(&heading)
                            .on_hover_text("Files directly in this folder (not in a run's folder)");
                    }
                    ui.end_row();
                    group = Some(heading);
                }
                let path_text = e.path.display().to_string();
                let name = e
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path_text.clone());
                let selected = model_path.trim() == path_text;
                let row = ui
                    .horizontal(|ui| {
                        ui.add_space(12.0);
                        ui.selectable_label(selected, &name)
                    })
                    .inner
                    .on_hover_text(format!("{path_text}\nClick to pick, double-click to load"));
                if row.clicked() {
                    *model_path = path_text.clone();
                }
                if row.double_clicked() {
                    load = Some(path_text);
                }
                ui.label(format_bytes(e.file_bytes));
                let saved = match &e.status {
                    EntryStatus::Valid(info) => Some(info.created_unix),
                    _ => e.modified_unix,
                };
                ui.label(saved.map(format_unix_utc).unwrap_or_else(|| "–".into()));
                match &e.status {
                    EntryStatus::Checking => {
                        ui.weak("checking…");
                    }
                    EntryStatus::Valid(_) => {
                        ui.label(
                            e.loss()
                                .map(|l| format!("{l:.4}"))
                                .unwrap_or_else(|| "–".into()),
                        );
                    }
                    EntryStatus::Invalid(why) => {
                        ui.colored_label(ui.visuals().error_fg_color, "damaged")
                            .on_hover_text(why);
                    }
                }
                ui.end_row();
            }
        });
    load.map(ListAction::Load).or(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks day by day from 1970 with an independent month-length rule.
    #[test]
    fn dates_match_a_day_by_day_calendar() {
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..80_000i64 {
            assert_eq!(civil_date(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_unix_utc(1_795_250_280), "2026-11-21 08:38 UTC");
    }

    #[test]
    fn lists_only_cllm_files_and_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("broken.cllm"), "not a checkpoint").unwrap();
        std::fs::create_dir(dir.path().join("sub.cllm")).unwrap();
        let missing = dir.path().join("missing");
        let dirs = vec![dir.path().to_path_buf(), missing, dir.path().to_path_buf()];
        let found = find_checkpoints(&dirs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file_bytes, 16);

        let mut list = ModelList::default();
        list.refresh(dirs, None);
        while list.is_listing() {
            list.poll();
            std::thread::yield_now();
        }
        assert_eq!(list.entries.len(), 1);
        match &list.entries[0].status {
            EntryStatus::Invalid(why) => assert!(why.contains("broken.cllm"), "{why}"),
            other => panic!("a broken file must be refused, got {other:?}"),
        }
    }

    /// Writes `name` under `root` with its modification time `secs` after
    /// a fixed moment, so the order does not depend on how fast this runs.
    fn file_at(root: &Path, name: &str, secs: u64) -> PathBuf {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, name).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000 + secs);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        path
    }

    #[test]
    fn runs_are_grouped_newest_first_with_old_flat_files_and_models() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let old_run = "20261128-090000-small";
        let new_run = "20261129-101500-small";
        file_at(root, "checkpoints/checkpoint_epoch_2_loss_3.0000.cllm", 10);
        file_at(
            root,
            &format!("checkpoints/{old_run}/checkpoint_epoch_2_loss_2.5000.cllm"),
            20,
        );
        file_at(root, &format!("checkpoints/{old_run}/final.cllm"), 30);
        file_at(
            root,
            &format!("checkpoints/{new_run}/checkpoint_best.cllm"),
            40,
        );
        file_at(
            root,
            &format!("checkpoints/{new_run}/checkpoint_epoch_2_loss_2.0000.cllm"),
            50,
        );
        file_at(root, &format!("checkpoints/{new_run}/notes.txt"), 60);
        file_at(root, "checkpoints/empty-run/readme.md", 70);
        file_at(root, "models/trained_model_kissing_spheres.cllm", 45);

        let dirs = vec![root.join("models"), root.join("checkpoints")];
        let found = find_checkpoints(&dirs);
        let listed: Vec<(String, String)> = found
            .iter()
            .map(|e| {
                let name = e.path.file_name().unwrap().to_string_lossy().into_owned();
                (e.group(), name)
            })
            .collect();
        let run = |r: &str| format!("run {r}");
        let models = format!("{}/", root.join("models").display());
        let flat = format!("{}/", root.join("checkpoints").display());
        assert_eq!(
            listed,
            vec![
                (
                    run(new_run),
                    "checkpoint_epoch_2_loss_2.0000.cllm".to_string()
                ),
                (run(new_run), "checkpoint_best.cllm".to_string()),
                (models, "trained_model_kissing_spheres.cllm".to_string()),
                (run(old_run), "final.cllm".to_string()),
                (
                    run(old_run),
                    "checkpoint_epoch_2_loss_2.5000.cllm".to_string()
                ),
                (flat, "checkpoint_epoch_2_loss_3.0000.cllm".to_string()),
            ]
        );
        assert_eq!(found[0].run.as_deref(), Some(new_run));
        assert_eq!(found[2].run, None);
    }
}
