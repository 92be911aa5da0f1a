//! The Crawl section of the data panel: a URL, depth, max pages and delay,
//! Start / Stop, live progress (pages kept and skipped, queue, bytes, the
//! URL being fetched), kept pages added to the file list (checked, with
//! their source URL), and skipped URLs with their reasons.
//!
//! The crawler (`cllm_crawl::Crawler`) runs on its own thread and sends
//! events over a channel; the panel drains it every frame and never waits
//! on it. Pages go to `<data folder>/crawl/`, where the next Scan Dir and
//! the trainer find them too.

use cllm_crawl::frontier::Totals;
use cllm_crawl::log::Outcome;
use cllm_crawl::{CrawlEvent, CrawlOptions, Crawler, human_bytes};
use cllm_data::clean::count_lines;
use cllm_data::scan::{FileStatus, ScannedFile};
use crossbeam_channel::TryRecvError;
use eframe::egui;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Skipped URLs kept for the list (the log on disk has them all).
const MAX_SKIPPED_SHOWN: usize = 2000;

/// The panel's fields and the crawl it runs.
pub struct CrawlPanel {
    pub url: String,
    pub depth: u32,
    pub max_pages: usize,
    /// Seconds between requests to a host.
    pub delay: f64,
    crawler: Option<Crawler>,
    pub stopping: bool,
    pub totals: Totals,
    /// The URL being fetched.
    pub current: Option<String>,
    /// (URL, reason) of skipped URLs, newest last.
    pub skipped: Vec<(String, String)>,
    /// (source URL, file) of kept pages, newest last.
    pub kept: Vec<(String, PathBuf)>,
    /// The last start or finish: (text, is an error).
    pub message: Option<(String, bool)>,
}

impl Default for CrawlPanel {
    fn default() -> CrawlPanel {
        CrawlPanel {
            url: String::new(),
            depth: 2,
            max_pages: 100,
            delay: 1.0,
            crawler: None,
            stopping: false,
            totals: Totals::default(),
            current: None,
            skipped: Vec::new(),
            kept: Vec::new(),
            message: None,
        }
    }
}

impl CrawlPanel {
    pub fn is_crawling(&self) -> bool {
        self.crawler.is_some()
    }

    /// Where pages of a crawl from the data folder `data_dir` go.
    pub fn output_for(data_dir: &str) -> PathBuf {
        let dir = data_dir.trim();
        let dir = if dir.is_empty() { "training_data" } else { dir };
        Path::new(dir).join("crawl")
    }

    /// Starts a crawl into `output`; a bad URL or folder becomes the
    /// panel's message.
    pub fn start(&mut self, output: PathBuf, repaint: Option<egui::Context>) {
        if self.crawler.is_some() {
            return;
        }
        let opts = CrawlOptions {
            seeds: vec![self.url.trim().to_string()],
            output,
            depth: self.depth,
            max_pages: self.max_pages.max(1),
            delay: Duration::try_from_secs_f64(self.delay).unwrap_or(Duration::from_secs(1)),
            ..CrawlOptions::default()
        };
        let on_event: Option<Box<dyn Fn() + Send>> =
            repaint.map(|ctx| Box::new(move || ctx.request_repaint()) as Box<dyn Fn() + Send>);
        match Crawler::start(opts, on_event) {
            Ok(c) => {
                self.crawler = Some(c);
                self.stopping = false;
                self.totals = Totals::default();
                self.current = None;
                self.message = None;
            }
            Err(e) => self.message = Some((e.to_string(), true)),
        }
    }

    /// Asks the crawl to stop after its current request (it saves its
    /// state: Start again continues it).
    pub fn stop(&mut self) {
        if let Some(c) = &self.crawler {
            c.stop();
            self.stopping = true;
        }
    }

    /// Drains the crawler's events; returns the pages kept since the last
    /// call, as files for the list. Never blocks.
    pub fn poll(&mut self) -> Vec<(ScannedFile, String)> {
        let mut files = Vec::new();
        let Some(rx) = self.crawler.as_ref().map(|c| c.events.clone()) else {
            return files;
        };
        loop {
            match rx.try_recv() {
                Ok(CrawlEvent::Started {
                    resumed, queued, ..
                }) => {
                    if resumed {
                        self.message = Some((
                            format!("continuing the stopped crawl ({queued} queued)"),
                            false,
                        ));
                    } else {
                        // A new crawl: the lists start again (a continued
                        // one adds to them).
                        self.skipped.clear();
                        self.kept.clear();
                    }
                }
                Ok(CrawlEvent::Fetching { url }) => self.current = Some(url),
                Ok(CrawlEvent::Logged {
                    entry,
                    path,
                    totals,
                }) => {
                    self.totals = totals;
                    match entry.outcome {
                        Outcome::Kept | Outcome::Unchanged => {
                            if let Some(path) = path {
                                let source = entry.final_url.unwrap_or(entry.url);
                                if let Some(file) = page_file(&path, entry.file.as_deref()) {
                                    files.push((file, source.clone()));
                                }
                                self.kept.push((source, path));
                            }
                        }
                        Outcome::Skipped => {
                            let mut why = entry.reason.map_or("skipped", |r| r.label()).to_string();
                            if let Some(d) = entry.detail {
                                why.push_str(&format!(" ({d})"));
                            }
                            if self.skipped.len() < MAX_SKIPPED_SHOWN {
                                self.skipped.push((entry.url, why));
                            }
                        }
                    }
                }
                Ok(CrawlEvent::Finished { summary }) => {
                    self.totals = summary.totals;
                    self.message = Some(match (&summary.error, &summary.problem) {
                        (Some(e), _) => (format!("Crawl failed: {e}"), true),
                        (None, Some(p)) => (
                            format!("Crawl failed: {p}: {}", cllm_crawl::summary_line(&summary)),
                            true,
                        ),
                        (None, None) => {
                            let how = if summary.stopped {
                                "Crawl stopped (Start continues it)"
                            } else if let Some(limit) = summary.limit {
                                if limit == "max pages" {
                                    "Crawl ended at the page limit"
                                } else {
                                    "Crawl ended at the byte limit"
                                }
                            } else {
                                "Crawl done"
                            };
                            (
                                format!("{how}: {}", cllm_crawl::summary_line(&summary)),
                                false,
                            )
                        }
                    });
                    self.finish();
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.message = Some(("the crawler stopped without reporting".into(), true));
                    self.finish();
                    break;
                }
            }
        }
        files
    }

    fn finish(&mut self) {
        // The thread has sent its last event: joining it is immediate.
        self.crawler = None;
        self.stopping = false;
        self.current = None;
    }
}

/// A kept page as a row of the file list.
fn page_file(path: &Path, relative: Option<&str>) -> Option<ScannedFile> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(ScannedFile {
        path: path.to_path_buf(),
        relative: relative
            .map(PathBuf::from)
            .unwrap_or_else(|| path.to_path_buf()),
        size: text.len() as u64,
        kind: "web page".into(),
        lines: count_lines(&text),
        status: FileStatus::Kept,
    })
}

/// Draws the Crawl section of the data panel. The pages the crawl keeps
/// reach the file list through [`CrawlPanel::poll`] (the data panel's
/// `DataState::take_crawled`), called before this each frame. `enabled`:
/// not training.
pub fn crawl_panel_ui(ui: &mut egui::Ui, panel: &mut CrawlPanel, data_dir: &str, enabled: bool) {
    let output = CrawlPanel::output_for(data_dir);
    egui::CollapsingHeader::new("Crawl a website")
        .id_salt("crawl_section")
        .default_open(false)
        .show(ui, |ui| {
            let idle = !panel.is_crawling();
            ui.add_enabled_ui(enabled && idle, |ui| {
                ui.horizontal(|ui| {
                    let label = ui.label("URL");
                    // Exactly the width left: a field asking for more would
                    // widen the resizable panel a little every frame.
                    let size = egui::vec2(ui.available_width(), ui.spacing().interact_size.y);
                    ui.add_sized(
                        size,
                        egui::TextEdit::singleline(&mut panel.url)
                            .hint_text("https://docs.example.org/"),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Where to start; pages on the same host are followed");
                });
                ui.horizontal(|ui| {
                    let l = ui.label("Depth");
                    ui.add(egui::DragValue::new(&mut panel.depth).range(0..=20))
                        .labelled_by(l.id)
                        .on_hover_text("Links followed from the start page at most");
                    let l = ui.label("Max pages");
                    ui.add(egui::DragValue::new(&mut panel.max_pages).range(1..=100_000))
                        .labelled_by(l.id);
                    let l = ui.label("Delay (s)");
                    ui.add(
                        egui::DragValue::new(&mut panel.delay)
                            .range(0.0..=60.0)
                            .speed(0.1),
                    )
                    .labelled_by(l.id)
                    .on_hover_text(
                        "Seconds between requests to the site (its robots.txt Crawl-delay wins when longer)",
                    );
                });
            });
            ui.horizontal_wrapped(|ui| {
                if panel.is_crawling() {
                    if ui
                        .add_enabled(!panel.stopping, egui::Button::new("Stop crawl"))
                        .on_hover_text("Stop after the current request; Start continues later")
                        .clicked()
                    {
                        panel.stop();
                    }
                    ui.spinner();
                } else if ui
                    .add_enabled(
                        enabled && !panel.url.trim().is_empty(),
                        egui::Button::new("Start crawl"),
                    )
                    .on_hover_text(format!("Pages go to {}/", output.display()))
                    .clicked()
                {
                    panel.start(output.clone(), Some(ui.ctx().clone()));
                }
                let t = &panel.totals;
                if panel.is_crawling() || t.fetched > 0 {
                    ui.label(format!(
                        "{} kept · {} unchanged · {} skipped · {} queued · {}",
                        t.kept,
                        t.unchanged,
                        t.skipped,
                        t.queued,
                        human_bytes(t.bytes)
                    ));
                }
            });
            if let Some(url) = &panel.current {
                ui.add(egui::Label::new(egui::RichText::new(format!("fetching {url}")).weak()).truncate());
            }
            if let Some((msg, is_err)) = &panel.message {
                let colour = if *is_err {
                    ui.visuals().error_fg_color
                } else {
                    ui.visuals().text_color()
                };
                ui.colored_label(colour, msg);
            }
            ui.weak(format!(
                "Pages go to {}/ (log: crawl.jsonl); kept pages join the list above, checked.",
                output.display()
            ));
            if !panel.skipped.is_empty() {
                egui::CollapsingHeader::new(format!("Skipped URLs ({})", panel.skipped.len()))
                    .id_salt("crawl_skipped")
                    .show(ui, |ui| {
                        egui::ScrollArea::vertical()
                            .id_salt("crawl_skipped_list")
                            .max_height(160.0)
                            .auto_shrink([false, true])
                            .show(ui, |ui| {
                                let row_h = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
                                for (url, why) in &panel.skipped {
                                    ui.horizontal(|ui| {
                                        // Both parts truncated within the
                                        // panel's width, never widening it.
                                        let w = (ui.available_width() * 0.6).max(80.0);
                                        ui.allocate_ui(egui::vec2(w, row_h), |ui| {
                                            ui.add(
                                                egui::Label::new(
                                                    egui::RichText::new(format!("× {url}")).weak(),
                                                )
                                                .truncate(),
                                            )
                                            .on_hover_text(url);
                                        });
                                        ui.add(
                                            egui::Label::new(
                                                egui::RichText::new(format!("skipped: {why}"))
                                                    .color(ui.visuals().warn_fg_color)
                                                    .small(),
                                            )
                                            .truncate(),
                                        )
                                        .on_hover_text(why);
                                    });
                                }
                            });
                    });
            }
        });
}
