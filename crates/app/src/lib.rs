//! The desktop app (eframe/egui): the Training, LLM and Runs tabs. `WorkbenchApp` holds persisted `Settings` apart from runtime state
//! (scan job, trainer session); each tab and big widget has its own file,
//! and the logic they show (event folding, sorting, downsampling,
//! validation) lives in plain structs and functions that tests drive.

use eframe::egui;
pub mod config_panel;
pub mod crawl_panel;
pub mod data_panel;
pub mod dialog;
pub mod error_text;
pub mod format;
pub mod llm_settings;
pub mod llm_tab;
pub mod loss_plot;
pub mod memory_estimate;
pub mod model_list;
pub mod model_loader;
pub mod palette;
pub mod progress;
pub mod reply;
pub mod run_state;
pub mod runs_state;
pub mod runs_tab;
pub mod sampling_panel;
pub mod session;
pub mod settings;
pub mod sphere_view;
pub mod stats_table;
pub mod token_view;
pub mod training_tab;

use config_panel::ConfigEditor;
use data_panel::{DataState, Scanner};
use dialog::{PickJob, PickPurpose, PickRequest, Picker};
use session::{CLOSE_GRACE, Session, Spawner};
use settings::Settings;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Tabs along the top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Training,
    Llm,
    Runs,
}

/// How long the last frames took to build (our UI code, not the GPU) and
/// how many frames were shown in the last second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameStats {
    pub last_ms: f64,
    /// Exponential average over roughly the last 30 frames.
    pub avg_ms: f64,
    pub frames: u64,
    /// Start times of the frames in the last second.
    recent: VecDeque<Instant>,
}

impl FrameStats {
    pub fn record(&mut self, started: Instant, ms: f64) {
        self.last_ms = ms;
        self.avg_ms = if self.frames == 0 {
            ms
        } else {
            0.97 * self.avg_ms + 0.03 * ms
        };
        self.frames += 1;
        self.recent.push_back(started);
        while self
            .recent
            .front()
            .is_some_and(|t| started.duration_since(*t) > Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
    }

    /// Frames drawn during the last second.
    pub fn fps(&self) -> usize {
        self.recent.len()
    }
}

pub struct WorkbenchApp {
    pub settings: Settings,
    pub data: DataState,
    pub editor: ConfigEditor,
    pub session: Session,
    pub sort: stats_table::SortOrder,
    pub tab: Tab,
    /// The LLM tab's runtime side (model list, loaded model, reply).
    pub llm: llm_tab::LlmTab,
    /// The Runs tab's state (its watcher starts when the tab is first shown).
    pub runs: runs_state::RunsState,
    pub frame_stats: FrameStats,
    /// Resident memory, refreshed twice a second.
    pub memory: Option<u64>,
    memory_at: Option<Instant>,
    /// Shows native file dialogs (on a background thread); tests replace it.
    pub picker: Picker,
    /// The file dialog open now, if any.
    pub dialog: Option<PickJob>,
    scanner: Scanner,
    repaint: Option<egui::Context>,
}

impl WorkbenchApp {
    /// The app with `settings`, the real scanner and trainer; the data
    /// folder is scanned at once.
    pub fn new(settings: Settings, repaint: Option<egui::Context>) -> WorkbenchApp {
        Self::with_engines(settings, repaint, cllm_data::scan::scan, |config| {
            cllm_train::spawn(config, cllm_train::TrainOptions::default())
        })
    }

    /// For tests: no repaint context; frames are stepped by the harness.
    pub fn new_for_test(settings: Settings) -> WorkbenchApp {
        Self::new(settings, None)
    }

    /// With a scanner and trainer of the caller's choice (tests script them).
    pub fn with_engines(
        settings: Settings,
        repaint: Option<egui::Context>,
        scanner: Scanner,
        spawner: Spawner,
    ) -> WorkbenchApp {
        let mut app = WorkbenchApp {
            settings,
            data: DataState::default(),
            editor: ConfigEditor::default(),
            session: Session::new(spawner),
            sort: Default::default(),
            tab: Tab::Training,
            llm: llm_tab::LlmTab::new(repaint.clone()),
            runs: runs_state::RunsState::default(),
            frame_stats: FrameStats::default(),
            memory: None,
            memory_at: None,
            picker: dialog::native_picker(),
            dialog: None,
            scanner,
            repaint,
        };
        if PathBuf::from(app.settings.data_dir.trim()).exists() {
            app.scan_data_dir();
        }
        app
    }

    /// Rescans the folder in the path field, replacing the list.
    pub fn scan_data_dir(&mut self) {
        let root = PathBuf::from(self.settings.data_dir.trim());
        let exts = self.settings.extensions();
        self.data
            .start_scan(vec![root], exts, false, self.scanner, self.repaint.clone());
    }

    /// Adds dropped files and folders to the list.
    pub fn add_dropped(&mut self, paths: Vec<PathBuf>) {
        if paths.is_empty() || self.session.is_training() {
            return;
        }
        let exts = self.settings.extensions();
        self.data
            .start_scan(paths, exts, true, self.scanner, self.repaint.clone());
    }

    /// The configuration START would run with: the panel's values plus the
    /// checked files. Refused with a message naming the problem.
    pub fn run_config(&self) -> Result<cllm_train::TrainConfig, String> {
        if let Some(p) = self.editor.problem(&self.settings.train) {
            return Err(p);
        }
        let exts = self.settings.extensions();
        let files = self.data.checked_paths(&exts);
        if files.is_empty() {
            return Err("no files selected: scan a folder and tick at least one file".into());
        }
        let mut cfg = self.settings.train.clone();
        cfg.corpus.files = files;
        cfg.corpus.data = vec![PathBuf::from(self.settings.data_dir.trim())];
        cfg.corpus.extensions = exts;
        // A resumed run continues its checkpoint's data and settings (the
        // banner says so); only the thread count is this machine's.
        cfg.given = vec!["threads".into()];
        // A new run with a sequence length other than the default keeps it
        // under `auto` (which otherwise trains at its size's context); one
        // from a base model trains at the base's.
        if cfg.resume.is_none()
            && cfg.model.init.is_none()
            && cfg.batch.seq_len != cllm_train::TrainConfig::default().batch.seq_len
        {
            cfg.given.push("seq_len".into());
        }
        Ok(cfg)
    }

    pub fn start_training(&mut self) {
        match self.run_config() {
            Ok(cfg) => self.session.start(cfg),
            Err(e) => self.session.refuse(format!("Cannot start: {e}")),
        }
    }

    /// Opens a file dialog on its own thread (one at a time); its answer
    /// is taken in by a later frame.
    pub fn open_dialog(&mut self, purpose: PickPurpose) {
        if self.dialog.is_some() {
            return;
        }
        let request = match purpose {
            PickPurpose::DataFolder => PickRequest::Folder {
                start: PathBuf::from(self.settings.data_dir.trim()),
            },
            PickPurpose::ResumeCheckpoint => PickRequest::Checkpoint {
                start: self.settings.train.outputs.checkpoint_dir.clone(),
            },
        };
        self.dialog = Some(PickJob::start(
            purpose,
            request,
            &self.picker,
            self.repaint.clone(),
        ));
    }

    /// Takes in the open dialog's answer once it has closed. Never blocks.
    fn poll_dialog(&mut self) -> bool {
        let Some(job) = &self.dialog else {
            return false;
        };
        let Some(answer) = job.poll() else {
            return false;
        };
        let purpose = job.purpose;
        self.dialog = None;
        // A run may have started while the dialog was open: leave its
        // settings alone then.
        if let Some(path) = answer
            && !self.session.is_training()
        {
            match purpose {
                PickPurpose::DataFolder => {
                    self.settings.data_dir = path.display().to_string();
                    self.scan_data_dir();
                }
                PickPurpose::ResumeCheckpoint => {
                    self.editor.set_resume(&mut self.settings.train, path);
                }
            }
        }
        true
    }

    /// One frame: drain the scan and the trainer, handle drops and closing,
    /// draw. Never blocks.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let started = Instant::now();
        self.data.poll();
        let news = self.session.poll();
        let llm_news = self.llm.poll(&mut self.settings.llm.model_path);
        let dialog_news = self.poll_dialog();
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        self.add_dropped(dropped);
        self.handle_close(ui.ctx());
        if self
            .memory_at
            .is_none_or(|t| t.elapsed() > Duration::from_millis(500))
        {
            self.memory = progress::resident_bytes();
            self.memory_at = Some(Instant::now());
        }

        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading(egui::RichText::new("CLLM Workbench").strong());
                ui.add_space(16.0);
                ui.selectable_value(&mut self.tab, Tab::Training, "Training");
                ui.selectable_value(&mut self.tab, Tab::Llm, "LLM");
                ui.selectable_value(&mut self.tab, Tab::Runs, "Runs");
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.weak(format!(
                        "UI {:.1} ms/frame · {} fps",
                        self.frame_stats.avg_ms,
                        self.frame_stats.fps()
                    ))
                    .on_hover_text("Time to build each frame (average)");
                });
            });
        });
        match self.tab {
            Tab::Training => training_tab::training_tab_ui(ui, self),
            Tab::Llm => llm_tab::llm_tab_ui(ui, self),
            Tab::Runs => runs_tab::runs_tab_ui(ui, self),
        }

        if self.session.is_training() || self.data.is_scanning() || self.llm.is_busy() {
            // Events also arrive between input events: keep redrawing at
            // about 30 frames per second while there is work.
            ui.ctx().request_repaint_after(Duration::from_millis(33));
        } else if news > 0 || llm_news || dialog_news {
            ui.ctx().request_repaint();
        }
        if self.tab == Tab::Runs {
            // The runs watcher reports from its own thread: look again
            // about when its next scan is due.
            ui.ctx().request_repaint_after(runs_state::RESCAN_EVERY);
        }
        self.frame_stats
            .record(started, started.elapsed().as_secs_f64() * 1000.0);
    }

    /// Closing mid-run: stop, keep the window until the final save arrives
    /// (bounded by `CLOSE_GRACE`), then close.
    fn handle_close(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.viewport().close_requested()) && self.session.is_training() {
            if self.session.close_deadline.is_none() {
                self.session.stop();
                self.session.close_deadline = Some(Instant::now() + CLOSE_GRACE);
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
        if let Some(deadline) = self.session.close_deadline
            && (!self.session.is_training() || Instant::now() >= deadline)
        {
            self.session.close_deadline = None;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

impl eframe::App for WorkbenchApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.settings.store(storage);
    }

    fn on_exit(&mut self) {
        // The window is gone already (e.g. the process is being ended):
        // still give the trainer its chance to write the final checkpoint.
        if self.session.is_training() {
            self.session.stop_and_wait(CLOSE_GRACE);
        }
    }
}

/// Opens the window. Without a display, says so and points to the
/// headless commands.
pub fn run_app() -> Result<(), String> {
    // Only X11/Wayland systems need these variables; macOS and Windows
    // always have their window system, so eframe is simply run there.
    #[cfg(any(
        target_os = "linux",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd"
    ))]
    {
        let has_display = ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !has_display {
            return Err(no_display_message());
        }
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("CLLM Workbench")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([960.0, 600.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "CLLM Workbench",
        options,
        Box::new(|cc| {
            let settings = Settings::load(cc.storage);
            Ok(Box::new(WorkbenchApp::new(
                settings,
                Some(cc.egui_ctx.clone()),
            )))
        }),
    )
    .map_err(|e| {
        let text = error_text::error_text(&e);
        if text.contains("DISPLAY") || text.contains("WAYLAND") {
            no_display_message()
        } else {
            format!("could not open the window: {text}")
        }
    })
}

fn no_display_message() -> String {
    "no display found (DISPLAY/WAYLAND_DISPLAY unset): use `cllm train` for headless training"
        .into()
}
