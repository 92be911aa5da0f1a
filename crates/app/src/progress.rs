//! The progress bar and status line: phase (tokenizing first), epoch and
//! step, percent, ETA, tokens/s, current and best loss, memory use and the
//! last checkpoint; warnings and errors as visible notices.

use super::format::{format_bytes, format_count, format_duration};
use super::palette::notice_frame;
use super::run_state::{NoticeKind, RunView};
use cllm_train::events::{Phase, SaveReason};
use eframe::egui;

/// The bar's fraction and the text written on it.
pub fn progress_text(run: &RunView) -> (f32, String) {
    match (&run.phase, &run.last_step) {
        (_, Some(s)) => {
            let pct = run.fraction() * 100.0;
            (
                run.fraction(),
                format!(
                    "epoch {} · step {}/{} · {pct:.1}% · ETA {}",
                    // A run given time has no epoch count to show.
                    if s.epochs > 0 {
                        format!("{}/{}", s.epoch + 1, s.epochs)
                    } else {
                        (s.epoch + 1).to_string()
                    },
                    format_count(s.step),
                    format_count(s.total_steps),
                    format_duration(s.eta_secs)
                ),
            )
        }
        (Some(Phase::Scanning { files_seen }), None) => {
            (0.0, format!("Scanning files… {files_seen} seen"))
        }
        (Some(Phase::Tokenizing { done, total }), None) => {
            let f = if *total > 0 {
                *done as f32 / *total as f32
            } else {
                0.0
            };
            (f, format!("Tokenizing… {done}/{total} ({:.0}%)", f * 100.0))
        }
        (Some(Phase::Training), None) => (0.0, "Starting the first step…".into()),
        (None, None) => (0.0, "Idle".into()),
    }
}

/// "loss 2.31 (best 2.20) · val 2.40 (best 2.35) · 12,345 tok/s".
pub fn loss_line(run: &RunView) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &run.last_step {
        parts.push(format!("loss {:.4}", s.loss));
        if let Some(b) = run.best_train_loss {
            parts.push(format!("best {b:.4}"));
        }
        parts.push(format!(
            "{} tok/s",
            format_count(s.tokens_per_sec.max(0.0).round() as u64)
        ));
        parts.push(format!("lr {:.2e}", s.lr));
    }
    if let Some(e) = &run.last_eval {
        let best = run
            .best_val_loss
            .map_or(String::new(), |b| format!(" (best {b:.4})"));
        parts.push(format!("val {:.4}{best} · ppl {:.1}", e.loss, e.perplexity));
        parts.push(match e.bits_per_byte_with_memory {
            Some(m) => format!("{:.3} bits/byte ({m:.3} with memory)", e.bits_per_byte),
            None => format!("{:.3} bits/byte", e.bits_per_byte),
        });
        if let Some(s) = e.syntax_accuracy {
            parts.push(format!("code {:.0}% parses", s * 100.0));
        }
    }
    parts.join(" · ")
}

pub fn reason_name(r: SaveReason) -> &'static str {
    match r {
        SaveReason::Periodic => "periodic",
        SaveReason::Best => "best",
        SaveReason::Manual => "manual",
        SaveReason::Final => "final",
    }
}

/// Memory figures for the status line: resident set size of this process
/// (Linux /proc; None elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn progress_ui(ui: &mut egui::Ui, run: &RunView, memory: Option<u64>) {
    let (fraction, text) = progress_text(run);
    ui.add(
        egui::ProgressBar::new(fraction)
            .text(text)
            .desired_height(22.0),
    );
    let line = loss_line(run);
    if !line.is_empty() {
        ui.label(egui::RichText::new(line).monospace());
    }
    ui.horizontal_wrapped(|ui| {
        if let Some(m) = memory {
            ui.weak(format!("memory {}", format_bytes(m)));
            ui.separator();
        }
        if let Some(i) = &run.info {
            ui.weak(format!(
                "{} params · {} threads · {} train / {} val tokens",
                format_count(i.params as u64),
                i.threads,
                format_count(i.train_tokens as u64),
                format_count(i.val_tokens as u64)
            ));
            ui.separator();
        }
        match &run.last_checkpoint {
            Some((path, reason)) => {
                ui.weak(format!(
                    "last checkpoint ({}): {}",
                    reason_name(*reason),
                    path.display()
                ));
            }
            None => {
                ui.weak("no checkpoint yet");
            }
        }
    });
    if let Some(sum) = &run.summary {
        let planned = run.info.as_ref().map(|i| i.total_steps);
        let how = if sum.stopped_early {
            " (early stop: no validation gain)"
        } else if planned.is_some_and(|total| sum.steps < total) {
            " (stopped)"
        } else {
            ""
        };
        let how = match sum.epoch_cap {
            Some(cap) if how.is_empty() => format!(" after {cap} epochs, before the time ran out"),
            _ => how.to_string(),
        };
        ui.label(format!(
            "Finished{}: {} steps in {} · loss {:.4} -> {:.4}{}{}",
            how,
            format_count(sum.steps),
            format_duration(sum.total_secs),
            sum.initial_loss,
            sum.final_loss,
            sum.best_val_loss
                .map_or(String::new(), |v| format!(" · best val {v:.4}")),
            sum.final_weights_step.map_or(String::new(), |s| format!(
                " · the model holds step {}'s weights (the best)",
                format_count(s)
            ))
        ));
    }
    for n in run.notices.iter().rev().take(3) {
        let (colour, icon) = match n.kind {
            NoticeKind::Error => (ui.visuals().error_fg_color, "Error"),
            NoticeKind::Warning => (ui.visuals().warn_fg_color, "Warning"),
            NoticeKind::Note => (ui.visuals().hyperlink_color, "Note"),
        };
        notice_frame(colour).show(ui, |ui| {
            ui.colored_label(colour, format!("{icon} at step {}: {}", n.step, n.text));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_train::events::StepStats;

    fn at(epoch: usize, epochs: usize) -> RunView {
        RunView {
            last_step: Some(StepStats {
                epoch,
                epochs,
                step: 7,
                total_steps: 20,
                loss: 2.0,
                lr: 1e-3,
                grad_norm: 1.0,
                clipped: false,
                tokens_per_sec: 100.0,
                elapsed_secs: 7.0,
                eta_secs: 13.0,
            }),
            ..RunView::default()
        }
    }

    #[test]
    fn a_run_given_time_shows_its_epoch_without_a_count() {
        assert!(
            progress_text(&at(2, 4))
                .1
                .starts_with("epoch 3/4 · step 7/20")
        );
        // Epochs 0: the run has a time budget, not an epoch count.
        let (_, text) = progress_text(&at(12, 0));
        assert!(text.starts_with("epoch 13 · step 7/20"), "{text}");
    }
}
