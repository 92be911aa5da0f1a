//! The Training tab: the data and configuration panels on the left, the
//! run controls and progress on top, the sphere view and stats table in the
//! middle, and the loss graph at the bottom.

use super::WorkbenchApp;
use super::config_panel::{ConfigAction, config_panel_ui};
use super::crawl_panel::crawl_panel_ui;
use super::data_panel::{DataAction, data_panel_ui};
use super::dialog::PickPurpose;
use super::llm_tab::LlmTab;
use super::loss_plot::loss_plot_ui;
use super::progress::progress_ui;
use super::sphere_view::sphere_view_ui;
use super::stats_table::stats_table_ui;
use eframe::egui;

pub fn training_tab_ui(ui: &mut egui::Ui, app: &mut WorkbenchApp) {
    let idle = !app.session.is_training();
    // A refusal stays up only while its cause does.
    if idle
        && matches!(&app.session.message, Some((m, true)) if m.starts_with("Cannot start"))
        && app.run_config().is_ok()
    {
        app.session.message = None;
    }
    egui::Panel::left("setup")
        .resizable(true)
        .default_size(470.0)
        .min_size(340.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("setup_scroll")
                .show(ui, |ui| {
                    ui.add_space(4.0);
                    ui.heading("Data");
                    let picking = app.dialog.is_some();
                    match data_panel_ui(ui, &mut app.data, &mut app.settings, idle, picking) {
                        DataAction::Scan => app.scan_data_dir(),
                        DataAction::Browse => app.open_dialog(PickPurpose::DataFolder),
                        DataAction::None => {}
                    }
                    app.data.take_crawled();
                    crawl_panel_ui(ui, &mut app.data.crawl, &app.settings.data_dir, idle);
                    ui.add_space(6.0);
                    ui.separator();
                    ui.heading("Configuration");
                    // The models a run may start from: the LLM tab's list.
                    let unlisted = app.llm.list.dirs.is_empty() && !app.llm.list.is_listing();
                    match config_panel_ui(
                        ui,
                        &mut app.settings.train,
                        &mut app.editor,
                        &mut app.settings.show_advanced,
                        idle,
                        picking,
                        &app.llm.list,
                    ) {
                        ConfigAction::PickResume => app.open_dialog(PickPurpose::ResumeCheckpoint),
                        ConfigAction::RefreshModels => {
                            app.llm.refresh(LlmTab::model_dirs(&app.settings))
                        }
                        ConfigAction::None if unlisted => {
                            app.llm.refresh(LlmTab::model_dirs(&app.settings))
                        }
                        ConfigAction::None => {}
                    }
                });
        });

    egui::Panel::top("run_controls").show(ui, |ui| {
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let (text, fill) = if app.session.is_training() {
                ("STOP TRAINING", egui::Color32::from_rgb(190, 60, 50))
            } else {
                ("START TRAINING", egui::Color32::from_rgb(40, 140, 80))
            };
            let stopping = app.session.stop_sent;
            let button = egui::Button::new(
                egui::RichText::new(text)
                    .strong()
                    .size(16.0)
                    .color(egui::Color32::WHITE),
            )
            .fill(fill)
            .min_size(egui::vec2(170.0, 34.0));
            if ui.add_enabled(!stopping, button).clicked() {
                if app.session.is_training() {
                    app.session.stop();
                } else {
                    app.start_training();
                }
            }
            if ui
                .add_enabled(
                    app.session.is_training() && !stopping,
                    egui::Button::new("Save").min_size(egui::vec2(80.0, 34.0)),
                )
                .on_hover_text("Write a checkpoint after the current step")
                .clicked()
            {
                app.session.save_now();
            }
            if stopping {
                ui.spinner();
                ui.label("Stopping after this step and saving…");
            }
            if let Some((msg, is_err)) = &app.session.message {
                let colour = if *is_err {
                    ui.visuals().error_fg_color
                } else {
                    ui.visuals().text_color()
                };
                ui.colored_label(colour, msg);
            }
        });
        ui.add_space(4.0);
        progress_ui(ui, &app.session.run, app.memory);
        ui.add_space(4.0);
    });

    let loss_max = (ui.available_height() * 0.6).max(200.0);
    egui::Panel::bottom("loss")
        .resizable(true)
        .default_size(300.0)
        .min_size(160.0)
        .max_size(loss_max)
        .show(ui, |ui| {
            ui.add_space(4.0);
            loss_plot_ui(ui, &mut app.session.run.history, &mut app.settings.plot);
        });

    egui::CentralPanel::default().show(ui, |ui| {
        let threads = app.settings.train.resolved_threads();
        ui.columns(2, |cols| {
            sphere_view_ui(&mut cols[0], &app.session.run.spheres, threads);
            stats_table_ui(&mut cols[1], &app.session.run.spheres, &mut app.sort);
        });
    });
}
