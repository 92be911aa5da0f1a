//! The data panel: folder field, Browse…, Scan Dir, the streaming file list
//! with checkboxes, skipped files with their reason, Select All / None, the
//! extension filter, selection totals, and drag-and-drop of files/folders.
//!
//! Scanning runs on its own thread and streams `ScannedFile`s back through a
//! channel; the panel drains it every frame and never waits on it.

use cllm_data::DataError;
use cllm_data::scan::{FileStatus, ScanOptions, ScannedFile, SkipReason};
use cllm_train::TokenizerKind;
use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use eframe::egui;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::crawl_panel::CrawlPanel;
use super::error_text::panic_text;
use super::format::{format_bytes, format_count};
use super::settings::Settings;

/// The signature of `cllm_data::scan::scan`, so tests can drive the job
/// with a scanner of their own.
pub type Scanner =
    fn(&ScanOptions, &AtomicBool, &mut dyn FnMut(ScannedFile)) -> Result<(), DataError>;

/// What the scan thread sends.
#[derive(Debug)]
pub enum ScanMsg {
    File(ScannedFile),
    Done(Result<(), String>),
}

/// A scan in progress: the thread's channel and its cancel flag.
pub struct ScanJob {
    rx: Receiver<ScanMsg>,
    cancel: Arc<AtomicBool>,
}

impl ScanJob {
    /// Starts `scanner` on a new thread. A panic inside the scanner becomes
    /// an error message instead of taking the UI down.
    pub fn start(opts: ScanOptions, scanner: Scanner, repaint: Option<egui::Context>) -> ScanJob {
        let (tx, rx) = unbounded();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        std::thread::spawn(move || {
            let file_tx = tx.clone();
            let ctx = repaint.clone();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scanner(&opts, &flag, &mut |f| {
                    let _ = file_tx.send(ScanMsg::File(f));
                    if let Some(c) = &ctx {
                        c.request_repaint();
                    }
                })
            }));
            let result = match outcome {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(panic) => Err(format!("scanner crashed: {}", panic_text(&panic))),
            };
            let _ = tx.send(ScanMsg::Done(result));
            if let Some(c) = &repaint {
                c.request_repaint();
            }
        });
        ScanJob { rx, cancel }
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// One line of the file list.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRow {
    pub file: ScannedFile,
    pub checked: bool,
}

impl FileRow {
    pub fn is_kept(&self) -> bool {
        self.file.status == FileStatus::Kept
    }

    /// The extension, lower-cased, without the dot ("" when none).
    pub fn extension(&self) -> String {
        self.file
            .path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// Totals of the checked (and visible) files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub files: usize,
    pub bytes: u64,
    pub lines: usize,
    /// Estimated tokens: bytes / 4 for BPE (a typical ratio for code with a
    /// small vocabulary), bytes for the byte tokenizer.
    pub tokens: u64,
}

/// The panel's state: the list and the scan feeding it.
#[derive(Default)]
pub struct DataState {
    pub rows: Vec<FileRow>,
    known: HashSet<PathBuf>,
    pub scan: Option<ScanJob>,
    /// The last scan's error, shown under the list.
    pub error: Option<String>,
    /// Files seen by the current scan.
    pub seen_this_scan: usize,
    /// The Crawl section (`crawl_panel`): its fields and running crawl.
    pub crawl: CrawlPanel,
    /// Source URLs of crawled pages in the list, by path.
    pub sources: HashMap<PathBuf, String>,
}

impl DataState {
    /// Starts a scan of `roots`; `append` keeps the current list (drag and
    /// drop), otherwise the list is replaced.
    pub fn start_scan(
        &mut self,
        roots: Vec<PathBuf>,
        extensions: Vec<String>,
        append: bool,
        scanner: Scanner,
        repaint: Option<egui::Context>,
    ) {
        if let Some(job) = self.scan.take() {
            job.cancel();
        }
        if !append {
            self.rows.clear();
            self.known.clear();
        }
        self.error = None;
        self.seen_this_scan = 0;
        for r in &roots {
            if !r.exists() {
                self.error = Some(format!("{}: no such file or folder", r.display()));
                return;
            }
        }
        let opts = ScanOptions {
            roots,
            extensions,
            ..ScanOptions::default()
        };
        self.scan = Some(ScanJob::start(opts, scanner, repaint));
    }

    /// Drains whatever the scan thread has sent so far; never blocks.
    pub fn poll(&mut self) {
        let Some(rx) = self.scan.as_ref().map(|j| j.rx.clone()) else {
            return;
        };
        let mut finished = None;
        loop {
            match rx.try_recv() {
                Ok(ScanMsg::File(f)) => {
                    self.seen_this_scan += 1;
                    self.add_file(f);
                }
                Ok(ScanMsg::Done(r)) => {
                    finished = Some(r);
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    finished = Some(Err("scanner stopped without reporting".into()));
                    break;
                }
            }
        }
        if let Some(r) = finished {
            self.scan = None;
            if let Err(e) = r {
                self.error = Some(e);
            }
        }
    }

    pub fn is_scanning(&self) -> bool {
        self.scan.is_some()
    }

    /// Adds one scanned file; kept files start checked. A path already in
    /// the list is ignored (dropping the same folder twice adds nothing).
    pub fn add_file(&mut self, file: ScannedFile) {
        if !self.known.insert(file.path.clone()) {
            return;
        }
        let checked = file.status == FileStatus::Kept;
        self.rows.push(FileRow { file, checked });
    }

    /// Drains the crawl's news: the pages it kept join the list, checked,
    /// with their source URL. Never blocks.
    pub fn take_crawled(&mut self) {
        for (file, source) in self.crawl.poll() {
            self.add_crawled(file, source);
        }
    }

    /// Adds a page the crawler kept, checked, remembering its source URL.
    pub fn add_crawled(&mut self, file: ScannedFile, source: String) {
        self.sources.insert(file.path.clone(), source);
        self.add_file(file);
    }

    /// Rows shown under the extension filter (empty filter: all).
    pub fn visible<'a>(
        &'a self,
        extensions: &'a [String],
    ) -> impl Iterator<Item = &'a FileRow> + 'a {
        self.rows
            .iter()
            .filter(move |r| extensions.is_empty() || extensions.contains(&r.extension()))
    }

    pub fn set_all(&mut self, checked: bool, extensions: &[String]) {
        for r in &mut self.rows {
            let shown = extensions.is_empty() || extensions.contains(&r.extension());
            if r.is_kept() && shown {
                r.checked = checked;
            }
        }
    }

    pub fn selection(&self, extensions: &[String], tokenizer: TokenizerKind) -> Selection {
        let mut s = Selection::default();
        for r in self
            .visible(extensions)
            .filter(|r| r.checked && r.is_kept())
        {
            s.files += 1;
            s.bytes += r.file.size;
            s.lines += r.file.lines;
        }
        s.tokens = match tokenizer {
            TokenizerKind::Bpe => s.bytes / 4,
            TokenizerKind::Bytes => s.bytes,
        };
        s
    }

    /// The checked files to train on, in list order.
    pub fn checked_paths(&self, extensions: &[String]) -> Vec<PathBuf> {
        self.visible(extensions)
            .filter(|r| r.checked && r.is_kept())
            .map(|r| r.file.path.clone())
            .collect()
    }

    pub fn skipped_count(&self) -> usize {
        self.rows.iter().filter(|r| !r.is_kept()).count()
    }
}

/// A short human reason for a skipped file.
pub fn skip_reason_text(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Binary => "binary".into(),
        SkipReason::TooLarge { size, limit } => {
            format!(
                "too large ({} > {})",
                format_bytes(*size),
                format_bytes(*limit)
            )
        }
        SkipReason::Unreadable(e) => format!("unreadable: {e}"),
        SkipReason::Empty => "empty".into(),
        SkipReason::Duplicate { of } => format!("duplicate of {}", of.display()),
        SkipReason::NotRegularFile => "not a regular file".into(),
        SkipReason::Vanished => "vanished while scanning".into(),
    }
}

fn shown_path(f: &ScannedFile) -> String {
    let p: &Path = if f.relative.as_os_str().is_empty() {
        &f.path
    } else {
        &f.relative
    };
    p.display().to_string()
}

/// What the user asked for in this frame that the app must act on.
#[derive(Debug, PartialEq)]
pub enum DataAction {
    None,
    Scan,
    /// Browse… was clicked: open the folder dialog (off the UI thread).
    Browse,
}

/// Draws the panel. Returns `DataAction::Scan` when Scan Dir was clicked
/// (the app starts the scan so it can pass the repaint context) and
/// `DataAction::Browse` for Browse…; `picking`: a file dialog is open.
pub fn data_panel_ui(
    ui: &mut egui::Ui,
    data: &mut DataState,
    settings: &mut Settings,
    enabled: bool,
    picking: bool,
) -> DataAction {
    let mut action = DataAction::None;
    ui.add_enabled_ui(enabled, |ui| {
        // Buttons are laid out from the right first and the text field takes
        // what is left, so a row never asks for more than the panel has (a
        // resizable panel would otherwise grow with it every frame).
        ui.horizontal(|ui| {
            let label = ui.label("Folder");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .add_enabled(!data.is_scanning(), egui::Button::new("Scan Dir"))
                    .clicked()
                {
                    action = DataAction::Scan;
                }
                if ui
                    .add_enabled(!picking, egui::Button::new("Browse…"))
                    .on_hover_text("Pick a folder with the system dialog")
                    .clicked()
                {
                    action = DataAction::Browse;
                }
                if picking {
                    ui.spinner().on_hover_text("Waiting for the file dialog to close");
                }
                ui.add(
                    egui::TextEdit::singleline(&mut settings.data_dir)
                        .desired_width(ui.available_width())
                        .hint_text("training_data/"),
                )
                .labelled_by(label.id);
            });
        });
        ui.horizontal(|ui| {
            let label = ui.label("Extensions");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let exts = settings.extensions();
                if ui.button("Select None").clicked() {
                    data.set_all(false, &exts);
                }
                if ui.button("Select All").clicked() {
                    data.set_all(true, &exts);
                }
                ui.add(
                    egui::TextEdit::singleline(&mut settings.extension_filter)
                        .desired_width(ui.available_width())
                        .hint_text("all kinds the scanner knows"),
                )
                .labelled_by(label.id)
                .on_hover_text("Shown and scanned file kinds, e.g. \"c h rs md\". Rescan to pick up kinds added here.");
            });
        });
    });

    let exts = settings.extensions();
    let rows: Vec<usize> = data
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| exts.is_empty() || exts.contains(&r.extension()))
        .map(|(i, _)| i)
        .collect();
    let row_h = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_min_height(120.0);
        if rows.is_empty() {
            ui.weak(if data.is_scanning() {
                "Scanning…"
            } else {
                "No files yet: type a folder and press Scan Dir, or drop files here."
            });
        }
        egui::ScrollArea::vertical()
            .id_salt("file_list")
            .max_height(260.0)
            .auto_shrink([false, true])
            .show_rows(ui, row_h, rows.len(), |ui, range| {
                for &i in &rows[range] {
                    let row = &mut data.rows[i];
                    ui.horizontal(|ui| {
                        let name = shown_path(&row.file);
                        let w = (ui.available_width() - 210.0).max(80.0);
                        match &row.file.status {
                            FileStatus::Kept => {
                                ui.add_enabled_ui(enabled, |ui| {
                                    ui.allocate_ui(egui::vec2(w, row_h), |ui| {
                                        ui.add(
                                            egui::Checkbox::new(&mut row.checked, name.clone())
                                                .indeterminate(false),
                                        )
                                        .on_hover_text(
                                            match data.sources.get(&row.file.path) {
                                                Some(url) => format!(
                                                    "{}\nfrom {url}",
                                                    row.file.path.display()
                                                ),
                                                None => row.file.path.display().to_string(),
                                            },
                                        );
                                    });
                                });
                                ui.add_sized(
                                    [70.0, row_h],
                                    egui::Label::new(format_bytes(row.file.size)),
                                );
                                ui.add_sized(
                                    [80.0, row_h],
                                    egui::Label::new(egui::RichText::new(&row.file.kind).weak())
                                        .truncate(),
                                );
                                ui.add_sized(
                                    [50.0, row_h],
                                    egui::Label::new(format_count(row.file.lines as u64)),
                                );
                            }
                            FileStatus::Skipped(reason) => {
                                ui.allocate_ui(egui::vec2(w, row_h), |ui| {
                                    ui.add(
                                        egui::Label::new(
                                            egui::RichText::new(format!("  × {name}")).weak(),
                                        )
                                        .truncate(),
                                    );
                                });
                                ui.label(
                                    egui::RichText::new(format!(
                                        "skipped: {}",
                                        skip_reason_text(reason)
                                    ))
                                    .color(ui.visuals().warn_fg_color)
                                    .small(),
                                );
                            }
                        }
                    });
                }
            });
    });

    let sel = data.selection(&exts, settings.train.corpus.tokenizer);
    ui.horizontal_wrapped(|ui| {
        ui.label(egui::RichText::new(format!(
            "Selected: {} files · {} · {} lines · ~{} tokens",
            sel.files,
            format_bytes(sel.bytes),
            format_count(sel.lines as u64),
            format_count(sel.tokens)
        ))
        .strong())
        .on_hover_text("Tokens estimated as bytes / 4 for BPE (typical for source code), bytes for the byte tokenizer.");
        let skipped = data.skipped_count();
        if skipped > 0 {
            ui.weak(format!("· {skipped} skipped"));
        }
        if data.is_scanning() {
            ui.spinner();
            ui.weak(format!("scanning… {} files", data.seen_this_scan));
        }
    });
    if let Some(e) = &data.error {
        ui.colored_label(ui.visuals().error_fg_color, format!("Error: {e}"));
    }
    action
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, status: FileStatus) -> ScannedFile {
        ScannedFile {
            path: PathBuf::from(path),
            relative: PathBuf::from(path),
            size,
            kind: "C source".into(),
            lines: 3,
            status,
        }
    }

    fn wait(data: &mut DataState) {
        // The job ends after a fixed, finite amount of work; each poll drains
        // what has arrived, so this loop ends when `Done` is received.
        while data.is_scanning() {
            std::thread::yield_now();
            data.poll();
        }
    }

    #[test]
    fn a_crashing_scanner_becomes_a_message() {
        fn crashing(
            _: &ScanOptions,
            _: &AtomicBool,
            _: &mut dyn FnMut(ScannedFile),
        ) -> Result<(), DataError> {
            panic!("walker exploded")
        }
        let mut d = DataState::default();
        d.start_scan(vec![PathBuf::from(".")], vec![], false, crashing, None);
        wait(&mut d);
        let e = d.error.clone().unwrap();
        assert!(e.contains("walker exploded"), "{e}");
    }

    #[test]
    fn streamed_files_fill_the_list_and_totals() {
        fn two(
            _: &ScanOptions,
            _: &AtomicBool,
            on: &mut dyn FnMut(ScannedFile),
        ) -> Result<(), DataError> {
            on(file("a.c", 400, FileStatus::Kept));
            on(file("b.md", 100, FileStatus::Kept));
            on(file("c.bin", 9, FileStatus::Skipped(SkipReason::Binary)));
            on(file("a.c", 400, FileStatus::Kept));
            Ok(())
        }
        let mut d = DataState::default();
        d.start_scan(vec![PathBuf::from(".")], vec![], false, two, None);
        wait(&mut d);
        assert!(d.error.is_none());
        assert_eq!(d.rows.len(), 3, "the repeated path is listed once");
        let all = d.selection(&[], TokenizerKind::Bpe);
        assert_eq!((all.files, all.bytes, all.tokens), (2, 500, 125));
        let c_only = vec!["c".to_string()];
        assert_eq!(d.selection(&c_only, TokenizerKind::Bytes).tokens, 400);
        d.set_all(false, &c_only);
        assert_eq!(d.checked_paths(&[]), vec![PathBuf::from("b.md")]);
        d.set_all(true, &[]);
        assert_eq!(
            d.checked_paths(&[]).len(),
            2,
            "skipped files are never checked"
        );
        assert_eq!(d.skipped_count(), 1);
    }

    #[test]
    fn missing_folder_is_named() {
        let mut d = DataState::default();
        d.start_scan(
            vec![PathBuf::from("/no/such/dir")],
            vec![],
            false,
            cllm_data::scan::scan,
            None,
        );
        assert!(!d.is_scanning());
        assert!(d.error.unwrap().contains("/no/such/dir"));
    }
}
