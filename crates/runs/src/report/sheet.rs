//! The benchmark sheet filled in from what the run's log measured: every
//! figure with its unit, and `-` with the reason where the log does not
//! have it.

use crate::run::RunData;
use crate::table::format_utc;
use std::time::SystemTime;

/// One sphere's line of the sheet.
#[derive(Clone, Debug, PartialEq)]
pub struct SphereFigures {
    pub id: usize,
    pub sequences: u64,
    /// Mean busy share over the run's steps, 0..1.
    pub busy: f64,
    pub avg_loss: f64,
    pub grad_norm: f64,
}

/// The sheet: `(figure, value with unit)` rows and the per-sphere table.
pub struct Sheet {
    pub rows: Vec<(String, String)>,
    pub spheres: Vec<SphereFigures>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// `(max - min) / mean` of the sequences per sphere, as the trainer's
/// summary defines load imbalance.
pub fn imbalance(seqs: &[u64]) -> f64 {
    if seqs.is_empty() {
        return 0.0;
    }
    let max = *seqs.iter().max().unwrap() as f64;
    let min = *seqs.iter().min().unwrap() as f64;
    let mean = seqs.iter().sum::<u64>() as f64 / seqs.len() as f64;
    if mean == 0.0 { 0.0 } else { (max - min) / mean }
}

/// The per-sphere figures: the end line's, else the last `spheres` line's.
pub fn sphere_figures(run: &RunData) -> Vec<SphereFigures> {
    let from_end = run
        .end
        .as_ref()
        .map(|e| &e.spheres)
        .filter(|s| !s.is_empty());
    let list = from_end.or(run.spheres.as_ref().map(|s| &s.spheres));
    list.map(|l| {
        l.iter()
            .map(|s| SphereFigures {
                id: s.id,
                sequences: s.sequences,
                busy: s.busy,
                avg_loss: s.avg_loss,
                grad_norm: s.grad_norm,
            })
            .collect()
    })
    .unwrap_or_default()
}

pub fn sheet(run: &RunData, now: SystemTime) -> Sheet {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| rows.push((k.to_string(), v));
    let (status, reason) = run.status(now);
    let summary = run.end.as_ref().and_then(|e| e.summary.as_ref());
    add("Status", format!("{} ({reason})", status.name()));
    add(
        "Started",
        run.started_unix()
            .map(|t| format!("{} UTC", format_utc(t)))
            .unwrap_or_else(|| "-".into()),
    );
    let params = run
        .params()
        .map(|p| format!(", {p} parameters"))
        .unwrap_or_default();
    add("Model", format!("{}{params}", run.preset()));
    add(
        "Threads (spheres)",
        run.threads().map_or("-".into(), |t| match run.ranks() {
            1 => t.to_string(),
            k => {
                format!("{t} per rank on {k} MPI ranks (the per-sphere figures below are rank 0's)")
            }
        }),
    );
    let data = match &run.info {
        Some(i) => format!(
            "{}: {} file(s), {} training tokens, {} validation tokens",
            run.data(),
            i.files,
            i.train_tokens,
            i.val_tokens
        ),
        None => run.data(),
    };
    add("Data", data);
    let (first, last) = (run.steps.first(), run.steps.last());
    add(
        "Steps",
        format!("{} of {}", run.last_step(), run.total_steps()),
    );
    add(
        "Tokens seen",
        run.tokens_seen()
            .map_or("-".into(), |t| format!("{t} tokens")),
    );
    let train_secs = last.map_or(0.0, |s| s.elapsed_secs);
    add("Training time", format!("{train_secs:.2} s"));
    match summary.map(|s| &s.epoch_secs).filter(|e| !e.is_empty()) {
        Some(epochs) => add(
            "Time per epoch",
            format!(
                "{:.2} s (mean of {} epochs)",
                epochs.iter().sum::<f64>() / epochs.len() as f64,
                epochs.len()
            ),
        ),
        None => add(
            "Time per epoch",
            "- (no epoch completed in this log's last session)".into(),
        ),
    }
    match last.filter(|s| s.step > 0) {
        Some(s) => add(
            "Time per step",
            format!(
                "{:.2} ms (training time / steps, evaluations included)",
                s.elapsed_secs / s.step as f64 * 1000.0
            ),
        ),
        None => add("Time per step", "-".into()),
    }
    match summary.filter(|s| s.secs_per_sequence > 0.0) {
        Some(s) => add(
            "Time per sequence",
            format!("{:.3} ms", s.secs_per_sequence * 1000.0),
        ),
        None => add("Time per sequence", "- (no end line)".into()),
    }
    add(
        "Throughput",
        run.tokens_per_sec()
            .map_or("-".into(), |t| format!("{t:.0} tokens/s")),
    );
    add(
        "Initial loss",
        first.map_or("-".into(), |s| format!("{:.4} nats/token", s.loss)),
    );
    add(
        "Final loss",
        last.map_or("-".into(), |s| format!("{:.4} nats/token", s.loss)),
    );
    match run.best_eval() {
        Some(e) => {
            add(
                "Best validation loss",
                format!("{:.4} nats/token (step {})", e.loss, e.step),
            );
            add(
                "Best bits per byte",
                format!("{:.3} bits/byte", e.bits_per_byte),
            );
            add(
                "Validation accuracy at best",
                format!("{:.1} % (top-1 next token)", e.accuracy * 100.0),
            );
        }
        None => add("Best validation loss", "- (no evaluation)".into()),
    }
    if let Some(acc) = run.evals.iter().rev().find_map(|e| e.syntax_accuracy) {
        add(
            "Syntax accuracy (last code check)",
            format!("{:.1} %", acc * 100.0),
        );
    }
    let norms: Vec<f64> = run
        .steps
        .iter()
        .map(|s| s.grad_norm)
        .filter(|g| g.is_finite())
        .collect();
    if !norms.is_empty() {
        let mean = norms.iter().sum::<f64>() / norms.len() as f64;
        let max = norms.iter().copied().fold(0.0, f64::max);
        let clipped = run.steps.iter().filter(|s| s.clipped).count();
        add(
            "Gradient norm",
            format!(
                "mean {mean:.3}, max {max:.3}, last {:.3}; {clipped} of {} steps clipped",
                norms[norms.len() - 1],
                run.steps.len()
            ),
        );
    }
    let spheres = sphere_figures(run);
    if !spheres.is_empty() {
        let seqs: Vec<u64> = spheres.iter().map(|s| s.sequences).collect();
        add(
            "Load imbalance",
            format!(
                "{:.1} % ((max - min) / mean of sequences per sphere)",
                imbalance(&seqs) * 100.0
            ),
        );
        let mean_busy = spheres.iter().map(|s| s.busy).sum::<f64>() / spheres.len() as f64;
        add(
            "Sphere utilisation",
            format!("{:.1} % mean busy share", mean_busy * 100.0),
        );
    }
    add(
        "Speedup over one thread",
        "- (a training run uses one thread count: `cllm bench --threads 1,N` measures it)".into(),
    );
    match summary.filter(|s| s.peak_memory_bytes > 0) {
        Some(s) => add(
            "Peak memory",
            format!(
                "{:.1} MiB (resident, whole process)",
                s.peak_memory_bytes as f64 / MIB
            ),
        ),
        None => add("Peak memory", "- (no end line)".into()),
    }
    if let Some(i) = &run.info {
        let per = i.workspace_bytes as f64 / i.threads.max(1) as f64;
        add(
            "Activation workspace",
            format!(
                "{:.2} MiB all spheres, {:.2} MiB per sphere",
                i.workspace_bytes as f64 / MIB,
                per / MIB
            ),
        );
    }
    if let Some(s) = summary {
        add("Skipped updates", format!("{} steps", s.skipped_updates));
    }
    add(
        "Log",
        format!(
            "format version {}, {} damaged lines skipped",
            run.version(),
            run.damaged(now)
        ),
    );
    Sheet { rows, spheres }
}
