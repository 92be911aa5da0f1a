//! The Runs tab: every run under the runs folder (followed live by a
//! background watcher), sortable and filterable; tick runs to overlay their
//! curves and see the settings that differ; act on the focused run (open
//! its best checkpoint in the LLM tab, resume it, write its report, delete
//! it after a confirmation).

use super::runs_state::{RunsState, XAxis, curves};
use super::{Tab, WorkbenchApp};
use cllm_runs::diff::differing;
use cllm_runs::table::{COLUMNS, cells};
use eframe::egui;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

/// What a click in the tab asks of the app (done after drawing, when the
/// tab's borrow of the state has ended).
enum Action {
    OpenInLlm(String),
    Resume(String),
    Report(String),
    Delete(String),
}

/// Colours cycled over the overlaid runs.
const PALETTE: [egui::Color32; 6] = [
    egui::Color32::from_rgb(80, 160, 255),
    egui::Color32::from_rgb(255, 170, 60),
    egui::Color32::from_rgb(120, 210, 120),
    egui::Color32::from_rgb(230, 100, 200),
    egui::Color32::from_rgb(240, 220, 90),
    egui::Color32::from_rgb(150, 130, 255),
];

pub fn runs_tab_ui(ui: &mut egui::Ui, app: &mut WorkbenchApp) {
    let runs_dir = app.settings.train.outputs.runs_dir.clone();
    app.runs.poll(&runs_dir);
    let mut action = None;
    egui::CentralPanel::default().show(ui, |ui| {
        toolbar_ui(ui, &mut app.runs, &runs_dir);
        ui.separator();
        let table_h = (ui.available_height() * 0.42).max(120.0);
        egui::ScrollArea::both()
            .id_salt("runs_table")
            .max_height(table_h)
            .show(ui, |ui| table_ui(ui, &mut app.runs));
        ui.separator();
        action = actions_ui(ui, &app.runs, app.session.is_training());
        if let Some(m) = &app.runs.message {
            ui.label(m);
        }
        ui.separator();
        ui.columns(2, |cols| {
            plot_ui(&mut cols[0], &app.runs);
            differences_ui(&mut cols[1], &app.runs);
        });
    });
    confirm_delete_ui(ui.ctx(), &mut app.runs, &mut action);
    if let Some(a) = action {
        perform(app, a, ui.ctx());
    }
}

fn toolbar_ui(ui: &mut egui::Ui, s: &mut RunsState, runs_dir: &std::path::Path) {
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("Runs in {}", runs_dir.display()));
        let l = ui.label("Filter");
        ui.add(egui::TextEdit::singleline(&mut s.filter).desired_width(160.0))
            .labelled_by(l.id)
            .on_hover_text("Name, preset, data or status contains…");
        if ui.button("Rescan").clicked() {
            s.rescan();
        }
        ui.separator();
        ui.label("x axis");
        for x in [XAxis::Step, XAxis::Tokens, XAxis::WallTime] {
            ui.selectable_value(&mut s.x_axis, x, x.label());
        }
        ui.checkbox(&mut s.log_scale, "Log scale");
        let l = ui.label("Smoothing");
        ui.add(egui::Slider::new(&mut s.smoothing, 0.0..=0.99).fixed_decimals(2))
            .labelled_by(l.id);
    });
}

fn table_ui(ui: &mut egui::Ui, s: &mut RunsState) {
    if s.rows.is_empty() {
        ui.weak("No runs yet: every training run writes runs/<name>/metrics.jsonl.");
        return;
    }
    let mut sort_click = None;
    let mut toggles = Vec::new();
    let mut focus = None;
    let (sort_col, desc) = s.sort;
    egui::Grid::new("runs_grid")
        .striped(true)
        .num_columns(COLUMNS.len() + 1)
        .show(ui, |ui| {
            ui.label("plot");
            for (i, c) in COLUMNS.iter().enumerate() {
                let arrow = match (i == sort_col, desc) {
                    (true, true) => " v",
                    (true, false) => " ^",
                    _ => "",
                };
                if ui
                    .button(egui::RichText::new(format!("{c}{arrow}")).strong())
                    .on_hover_text("Sort by this column")
                    .clicked()
                {
                    sort_click = Some(i);
                }
            }
            ui.end_row();
            for row in s.visible_rows() {
                let mut ticked = s.selected.contains(&row.name);
                let tick = ui.checkbox(&mut ticked, "");
                // Named for screen readers and tests: "plot <run>".
                let label = format!("plot {}", row.name);
                tick.widget_info(|| {
                    egui::WidgetInfo::selected(egui::Role::CheckBox, true, ticked, &label)
                });
                if tick
                    .on_hover_text(format!("Overlay {}", row.name))
                    .changed()
                {
                    toggles.push(row.name.clone());
                }
                let c = cells(row);
                let focused = s.focus.as_deref() == Some(row.name.as_str());
                if ui.selectable_label(focused, &c[0]).clicked() {
                    focus = Some(row.name.clone());
                }
                for (i, text) in c.iter().enumerate().skip(1) {
                    let resp = if i == 3 {
                        ui.colored_label(status_colour(row.status), text)
                            .on_hover_text(&row.reason)
                    } else {
                        ui.label(text)
                    };
                    if i == 6 {
                        resp.on_hover_text(&row.data);
                    }
                }
                ui.end_row();
            }
        });
    if let Some(c) = sort_click {
        s.sort_by(c);
    }
    for name in toggles {
        if !s.selected.remove(&name) {
            s.selected.insert(name);
        }
    }
    if focus.is_some() {
        s.focus = focus;
    }
    let damaged: Vec<String> = s
        .rows
        .iter()
        .filter(|r| r.damaged_lines > 0)
        .map(|r| {
            format!(
                "{}: {} damaged log line(s) skipped",
                r.name, r.damaged_lines
            )
        })
        .collect();
    for d in damaged {
        ui.colored_label(egui::Color32::from_rgb(230, 160, 60), d);
    }
}

fn status_colour(status: &str) -> egui::Color32 {
    match status {
        "running" => egui::Color32::from_rgb(90, 200, 255),
        "finished" => egui::Color32::from_rgb(110, 210, 110),
        "stopped" => egui::Color32::from_rgb(230, 200, 80),
        _ => egui::Color32::from_rgb(240, 90, 90),
    }
}

fn actions_ui(ui: &mut egui::Ui, s: &RunsState, training: bool) -> Option<Action> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        let Some(name) = s.focus.clone() else {
            ui.weak("Click a run's name to act on it; tick runs to overlay their curves.");
            return;
        };
        let run = s.run(&name);
        let row = s.row(&name);
        ui.strong(&name);
        if let Some(r) = row {
            ui.weak(format!("{} — {}", r.status, r.reason));
        }
        let best = run.and_then(|r| r.found_best.clone());
        if ui
            .add_enabled(best.is_some(), egui::Button::new("Open in LLM tab"))
            .on_hover_text("Load the run's best checkpoint (else its final one)")
            .clicked()
        {
            action = Some(Action::OpenInLlm(name.clone()));
        }
        let resumable = row.is_some_and(|r| r.status == "stopped" || r.status == "failed")
            && run.is_some_and(|r| r.found_resume.is_some())
            && !training;
        if ui
            .add_enabled(resumable, egui::Button::new("Resume"))
            .on_hover_text("Continue a stopped run from its last checkpoint (Training tab)")
            .clicked()
        {
            action = Some(Action::Resume(name.clone()));
        }
        if ui
            .add_enabled(!s.is_writing_report(), egui::Button::new("Write report"))
            .on_hover_text("runs/<name>/report.md with its plots (as `cllm report`)")
            .clicked()
        {
            action = Some(Action::Report(name.clone()));
        }
        let running = row.is_some_and(|r| r.status == "running");
        if ui
            .add_enabled(!running, egui::Button::new("Delete…"))
            .on_hover_text("Delete the run's log folder and its checkpoints")
            .clicked()
        {
            action = Some(Action::Delete(name));
        }
    });
    action
}

fn plot_ui(ui: &mut egui::Ui, s: &RunsState) {
    ui.strong("Loss of the ticked runs (bold: train smoothed; dots: validation)");
    let log = s.log_scale;
    let y = move |v: f64| if log { v.max(1e-9).log10() } else { v };
    Plot::new("runs_overlay")
        .legend(Legend::default())
        .x_axis_label(s.x_axis.label())
        .y_axis_label(if log {
            "loss (log10)"
        } else {
            "loss (nats/token)"
        })
        .y_axis_formatter(move |mark, _| {
            if log {
                format!("{:.3}", 10f64.powf(mark.value))
            } else {
                format!("{:.2}", mark.value)
            }
        })
        .show(ui, |plot| {
            for (i, name) in s.selected.iter().enumerate() {
                let Some(run) = s.run(name) else { continue };
                let colour = PALETTE[i % PALETTE.len()];
                let (train, val) = curves(run, s.x_axis);
                let smoothed = super::loss_plot::smooth(&train, s.smoothing as f64);
                let smoothed =
                    super::loss_plot::downsample(&smoothed, super::loss_plot::MAX_DRAWN_POINTS);
                let map = |p: Vec<[f64; 2]>| -> Vec<[f64; 2]> {
                    p.into_iter().map(|[a, b]| [a, y(b)]).collect()
                };
                plot.line(
                    Line::new(format!("{name} train"), PlotPoints::from(map(smoothed)))
                        .color(colour)
                        .width(2.0),
                );
                if !val.is_empty() {
                    let val = map(val);
                    plot.line(
                        Line::new(format!("{name} val"), PlotPoints::from(val.clone()))
                            .color(colour.gamma_multiply(0.6))
                            .width(1.0),
                    );
                    plot.points(
                        Points::new(format!("{name} val"), PlotPoints::from(val))
                            .color(colour)
                            .radius(3.0),
                    );
                }
            }
        });
}

fn differences_ui(ui: &mut egui::Ui, s: &RunsState) {
    ui.strong("Settings that differ between the ticked runs");
    let runs: Vec<_> = s.selected.iter().filter_map(|n| s.run(n)).collect();
    if runs.len() < 2 {
        ui.weak("Tick two or more runs.");
        return;
    }
    let diff = differing(&runs);
    if diff.is_empty() {
        ui.weak("Same settings.");
        return;
    }
    egui::ScrollArea::both()
        .id_salt("runs_diff")
        .show(ui, |ui| {
            egui::Grid::new("runs_diff_grid")
                .striped(true)
                .show(ui, |ui| {
                    ui.strong("setting");
                    for r in &runs {
                        ui.strong(&r.name);
                    }
                    ui.end_row();
                    for (key, values) in &diff {
                        ui.label(key);
                        for v in values {
                            ui.label(v);
                        }
                        ui.end_row();
                    }
                });
        });
}

fn confirm_delete_ui(ctx: &egui::Context, s: &mut RunsState, action: &mut Option<Action>) {
    if let Some(Action::Delete(name)) = action {
        s.confirm_delete = Some(name.clone());
        *action = None;
    }
    let Some(name) = s.confirm_delete.clone() else {
        return;
    };
    let checkpoints = s
        .run(&name)
        .and_then(|r| r.checkpoint_dir())
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "-".into());
    let modal = egui::Modal::new(egui::Id::unique("confirm_delete_run")).show(ctx, |ui| {
        ui.heading(format!("Delete run {name}?"));
        ui.label(format!(
            "This deletes its log folder and its checkpoints ({checkpoints}). It cannot be undone."
        ));
        ui.horizontal(|ui| {
            if ui.button("Delete run").clicked() {
                s.delete(&name);
                s.confirm_delete = None;
            }
            if ui.button("Cancel").clicked() {
                s.confirm_delete = None;
            }
        });
    });
    if modal.should_close() {
        s.confirm_delete = None;
    }
}

fn perform(app: &mut WorkbenchApp, action: Action, ctx: &egui::Context) {
    match action {
        Action::OpenInLlm(name) => {
            let Some(path) = app.runs.run(&name).and_then(|r| r.found_best.clone()) else {
                return;
            };
            let text = path.display().to_string();
            app.settings.llm.model_path = text.clone();
            app.llm.load(&text);
            app.tab = Tab::Llm;
        }
        Action::Resume(name) => {
            let Some(path) = app.runs.run(&name).and_then(|r| r.found_resume.clone()) else {
                return;
            };
            // The checkpoint's data and settings, this machine's threads
            // (as the Training tab's resume does).
            let mut cfg = app.settings.train.clone();
            cfg.resume = Some(path.clone());
            cfg.given = vec!["threads".into()];
            app.editor.set_resume(&mut app.settings.train, path);
            app.session.start(cfg);
            app.tab = Tab::Training;
        }
        Action::Report(name) => app.runs.write_report(&name, Some(ctx.clone())),
        Action::Delete(_) => {}
    }
}
