//! `cllm report RUN` and the app's "Write report": `runs/<name>/report.md`
//! with the benchmark sheet filled in from the run's log (`sheet`), PNG
//! plots in `runs/<name>/figures/` (`plots`), the evaluations, the
//! checkpoint list, and a model section (`model`: the seed prompts'
//! completions and the code check of `eval-gen`).

pub mod model;
pub mod plots;
pub mod sheet;

use crate::error::RunsError;
use crate::run::{RunData, load_run};
use crate::table::format_utc;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Run the model section (load the best checkpoint and generate).
    pub model: bool,
    /// Function openings of the validation split for the syntax accuracy
    /// (as `cllm eval-gen --functions`).
    pub functions: usize,
    /// Completions per opening (as `cllm eval-gen --samples`).
    pub samples: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            model: true,
            functions: 40,
            samples: 2,
        }
    }
}

pub struct ReportOutcome {
    pub path: PathBuf,
    pub figures: Vec<PathBuf>,
}

/// The figures, by file name under `figures/`, and their captions.
pub const FIGURES: [(&str, &str); 5] = [
    (
        "loss.png",
        "Training loss (raw and smoothed) and validation loss",
    ),
    ("lr_grad.png", "Learning rate and gradient norm"),
    ("throughput.png", "Throughput over time"),
    (
        "spheres.png",
        "Per-sphere sequences and busy share (load balance)",
    ),
    (
        "sphere_view.png",
        "Sphere view (drawn with plotters from the logged per-sphere figures)",
    ),
];

/// Exponential moving average, debiased at the start (as the app's loss
/// graph smooths).
pub fn smooth(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let (mut avg, mut weight) = (0.0, 0.0);
    points
        .iter()
        .map(|&(x, y)| {
            avg = alpha * avg + (1.0 - alpha) * y;
            weight = alpha * weight + (1.0 - alpha);
            (x, avg / weight)
        })
        .collect()
}

/// Tokens per second between steps a window apart, by training time.
pub fn throughput_series(run: &RunData) -> Vec<(f64, f64)> {
    let steps: Vec<(f64, f64)> = run
        .steps
        .iter()
        .filter_map(|s| Some((s.elapsed_secs, run.tokens_at(s)? as f64)))
        .collect();
    let window = (steps.len() / 50).max(1);
    steps
        .windows(window + 1)
        .filter_map(|w| {
            let (a, b) = (w[0], w[window]);
            let dt = b.0 - a.0;
            (dt > 0.0 && b.1 >= a.1).then(|| (b.0, (b.1 - a.1) / dt))
        })
        .collect()
}

fn draw_figures(run: &RunData, dir: &Path) -> Result<Vec<PathBuf>, RunsError> {
    std::fs::create_dir_all(dir).map_err(|source| RunsError::CreateFolder {
        path: dir.to_path_buf(),
        source,
    })?;
    let finite = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
        v.iter().copied().filter(|p| p.1.is_finite()).collect()
    };
    let raw: Vec<(f64, f64)> = finite(
        &run.steps
            .iter()
            .map(|s| (s.step as f64, s.loss))
            .collect::<Vec<_>>(),
    );
    let smoothed = smooth(&raw, 0.9);
    let val = finite(
        &run.evals
            .iter()
            .map(|e| (e.step as f64, e.loss))
            .collect::<Vec<_>>(),
    );
    let lr = finite(
        &run.steps
            .iter()
            .map(|s| (s.step as f64, s.lr))
            .collect::<Vec<_>>(),
    );
    let grad = finite(
        &run.steps
            .iter()
            .map(|s| (s.step as f64, s.grad_norm))
            .collect::<Vec<_>>(),
    );
    let spheres = sheet::sphere_figures(run);
    let seqs: Vec<u64> = spheres.iter().map(|s| s.sequences).collect();
    let busy: Vec<f64> = spheres.iter().map(|s| s.busy).collect();
    let path = |name: &str| dir.join(name);
    plots::loss_chart(&path(FIGURES[0].0), raw, smoothed, val)?;
    plots::lr_grad_chart(&path(FIGURES[1].0), lr, grad)?;
    plots::line_chart(
        &path(FIGURES[2].0),
        "Throughput",
        "training time (s)",
        "tokens/s",
        &[plots::Series {
            name: "training tokens per second",
            points: throughput_series(run),
            colour: plotters::style::RGBColor(40, 110, 220),
            bold: false,
            dots: false,
        }],
    )?;
    plots::sphere_bars(&path(FIGURES[3].0), &seqs, &busy)?;
    plots::sphere_view(&path(FIGURES[4].0), &seqs, &busy)?;
    Ok(FIGURES.iter().map(|(n, _)| path(n)).collect())
}

/// A cell of a Markdown table: no pipes, no newlines.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Writes the report of the run in `run_dir`; returns where.
pub fn write_report(run_dir: &Path, opts: &ReportOptions) -> Result<ReportOutcome, RunsError> {
    let run = load_run(run_dir)?;
    if run.steps.is_empty() {
        return Err(RunsError::NoSteps {
            dir: run_dir.to_path_buf(),
        });
    }
    let now = SystemTime::now();
    let figures = draw_figures(&run, &run_dir.join("figures"))?;
    let mut md = String::new();
    let _ = writeln!(md, "# Training report: {}\n", run.name);
    let _ = writeln!(
        md,
        "Written by `cllm report` (cllm {}) on {} UTC from `{}` (log format version {}).\n",
        env!("CARGO_PKG_VERSION"),
        format_utc(crate::run::unix_secs(now)),
        run.log_path().display(),
        run.version()
    );
    let s = sheet::sheet(&run, now);
    md.push_str("## Benchmark sheet\n\n| Figure | Value |\n|---|---|\n");
    for (k, v) in &s.rows {
        let _ = writeln!(md, "| {} | {} |", cell(k), cell(v));
    }
    if !s.spheres.is_empty() {
        md.push_str("\n### Per sphere\n\n| Sphere | Sequences | Busy share | Average loss | Gradient norm |\n|---|---|---|---|---|\n");
        for sp in &s.spheres {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} % | {:.4} | {:.3} |",
                sp.id,
                sp.sequences,
                sp.busy * 100.0,
                sp.avg_loss,
                sp.grad_norm
            );
        }
    }
    md.push_str("\n## Figures\n\n");
    for (name, caption) in FIGURES {
        let _ = writeln!(md, "### {caption}\n\n![{caption}](figures/{name})\n");
    }
    md.push_str("## Evaluations\n\n");
    if run.evals.is_empty() {
        md.push_str("No evaluation in the log.\n");
    } else {
        md.push_str("| Step | Validation loss (nats/token) | Bits per byte | Accuracy | Syntax accuracy |\n|---|---|---|---|---|\n");
        for e in &run.evals {
            let _ = writeln!(
                md,
                "| {} | {:.4} | {:.3} | {:.1} % | {} |",
                e.step,
                e.loss,
                e.bits_per_byte,
                e.accuracy * 100.0,
                e.syntax_accuracy
                    .map_or("-".into(), |a| format!("{:.1} %", a * 100.0))
            );
        }
    }
    md.push_str("\n## Checkpoints\n\n");
    let checkpoints = run.checkpoints();
    if checkpoints.is_empty() {
        md.push_str("None found");
        if let Some(d) = run.checkpoint_dir() {
            let _ = write!(md, " in `{}`", d.display());
        }
        md.push_str(".\n");
    } else {
        md.push_str("| File | Size | Written |\n|---|---|---|\n");
        for c in &checkpoints {
            let meta = std::fs::metadata(c).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let when = meta
                .and_then(|m| m.modified().ok())
                .map(|t| format_utc(crate::run::unix_secs(t)))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| `{}` | {:.2} MiB | {when} UTC |",
                c.display(),
                size as f64 / (1024.0 * 1024.0)
            );
        }
    }
    md.push_str("\n## Model\n\n");
    model_markdown(&run, opts, &mut md);
    let path = run_dir.join("report.md");
    if let Err(source) = std::fs::write(&path, md) {
        return Err(RunsError::WriteReport { path, source });
    }
    Ok(ReportOutcome { path, figures })
}

fn model_markdown(run: &RunData, opts: &ReportOptions, md: &mut String) {
    if !opts.model {
        md.push_str("Not generated (model section switched off).\n");
        return;
    }
    let Some(best) = run.best_checkpoint() else {
        md.push_str("No checkpoint of this run was found: no completions.\n");
        return;
    };
    let section = match model::model_section(&best, opts.functions, opts.samples) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(md, "The model section failed: {e}");
            return;
        }
    };
    let sampling = cllm_generate::code_eval::trainer_sampling();
    let _ = writeln!(
        md,
        "Checkpoint `{}`; sampling as the trainer's code check (temperature {}, top-k {}, \
         repetition penalty {}, at most {} new tokens, seed {:#x}); each completion stops when \
         its prompt's braces close, and prompt + completion is parsed as C (tree-sitter). {}\n",
        best.display(),
        sampling.temperature,
        sampling.top_k,
        sampling.repetition_penalty,
        sampling.max_new_tokens,
        section.seed_value,
        if section.with_memory {
            "The checkpoint's repository memory is mixed in (as `cllm eval-gen` does by default)."
        } else {
            "The checkpoint has no repository memory."
        }
    );
    md.push_str("| Prompt set | Completions | Closed | Parses when closed | Syntax accuracy |\n|---|---|---|---|---|\n");
    let mut line = |name: &str, r: &cllm_generate::code_eval::CodeEvalSummary| {
        let _ = writeln!(
            md,
            "| {name} | {} | {:.1} % | {:.1} % | {:.1} % |",
            r.samples,
            r.closed_rate * 100.0,
            r.parse_rate_when_closed * 100.0,
            r.syntax_accuracy * 100.0
        );
    };
    line("seed prompts", &section.seed.summary);
    match &section.functions {
        Some(f) => line(
            &format!(
                "{} function openings of the validation split ({} found), {} samples each",
                f.summary.prompts, section.openings_found, opts.samples
            ),
            &f.summary,
        ),
        None => {
            let _ = writeln!(
                md,
                "| function openings | - | - | - | - (the validation split has no usable C function openings: {} found) |",
                section.openings_found
            );
        }
    }
    md.push_str("\n### Seed prompts\n\n");
    for r in &section.seed.records {
        let _ = writeln!(
            md,
            "**`{}`** — {}, {}, {} tokens\n\n```c\n{}{}\n```\n",
            r.prompt.replace('`', "'"),
            if r.closed {
                "braces closed"
            } else {
                "braces not closed"
            },
            if r.parses {
                "parses as C"
            } else {
                "does not parse as C"
            },
            r.tokens,
            r.prompt,
            r.completion.replace("```", "'''")
        );
    }
}
