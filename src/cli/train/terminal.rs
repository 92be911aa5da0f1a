//! The run on the terminal: a progress bar with the lines printed above it,
//! or plain lines when stdout is not a terminal (or under `mpirun`), and the
//! summary at the end.

use cllm_train::events::ClusterStats;
use cllm_train::events::{Event, Phase, RunInfo, SaveReason, Summary};
use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar and the lines printed above it, on stdout. When stdout
/// is not a terminal the bar hides itself, so lines go straight to stdout
/// and a plain progress line is printed every few seconds instead.
pub(super) struct Terminal {
    bar: ProgressBar,
    best: Option<f32>,
    epochs: usize,
    last_plain: Option<std::time::Instant>,
    /// The last step's figures across ranks (distributed runs), and when
    /// they were last printed.
    cluster: Option<ClusterStats>,
    cluster_said: Option<std::time::Instant>,
    cluster_steps: u64,
    /// Times a run given time changed its plan (said in the summary).
    replans: u32,
}

impl Terminal {
    pub(super) fn new() -> Terminal {
        Terminal::with_target(crate::cli::progress::stdout_target())
    }

    /// Plain lines, no bar: under `mpirun` a rank's stdout looks like a
    /// terminal even when the job's output goes to a file or a scheduler's
    /// log, and a bar's redraws would fill it.
    pub(super) fn plain() -> Terminal {
        Terminal::with_target(indicatif::ProgressDrawTarget::hidden())
    }

    fn with_target(target: indicatif::ProgressDrawTarget) -> Terminal {
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(ProgressStyle::default_spinner());
        bar.set_message("preparing data");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Terminal {
            bar,
            best: None,
            epochs: 0,
            last_plain: None,
            cluster: None,
            cluster_said: None,
            cluster_steps: 0,
            replans: 0,
        }
    }

    /// A line above the bar (or plain, without one). The bar is cleared
    /// while the line is printed with its own newline, then redrawn (see
    /// `cli::progress` for why not `ProgressBar::println`).
    fn say(&self, line: String) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// A message for the person at the keyboard: above the bar when there
    /// is one (on the bar's stream, so the two never overlap), else on
    /// stderr.
    pub(super) fn notice(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.suspend(|| println!("{line}"));
        }
    }

    /// Leaves the bar's last state on the screen for a run that failed,
    /// and the cursor on the line below it, where the error is printed (the
    /// bar's line ends without a newline, so the cursor is still on it).
    pub(super) fn abandon(&self) {
        self.bar.abandon();
        if !self.bar.is_hidden() {
            println!();
        }
    }

    pub(super) fn show(&mut self, event: &Event) {
        match event {
            Event::Phase(Phase::Scanning { files_seen }) => self
                .bar
                .set_message(format!("scanning: {files_seen} files")),
            Event::Phase(Phase::Tokenizing { done, total }) => {
                self.bar.set_message(format!("tokenizing: {done}/{total}"))
            }
            Event::Phase(Phase::Training) => {}
            Event::Ready(RunInfo {
                files,
                train_tokens,
                val_tokens,
                vocab_size,
                params,
                threads,
                total_steps,
                first_step,
                run_name,
                run_dir,
                workspace_bytes,
            }) => {
                let start = if *first_step > 0 {
                    format!("resuming at step {first_step}; ")
                } else {
                    String::new()
                };
                self.say(format!(
                    "run {run_name}: {start}checkpoints in {}",
                    run_dir.display()
                ));
                let steps = if *total_steps == 0 {
                    "steps planned after a timed warm-up and re-planned as the speed changes"
                        .to_string()
                } else {
                    format!("{total_steps} steps")
                };
                self.say(format!(
                    "{files} files, {train_tokens} training + {val_tokens} validation tokens, \
                     vocabulary {vocab_size}, {:.2}M parameters, {threads} spheres \
                     ({:.1} MiB of activations), {steps}",
                    *params as f64 / 1e6,
                    *workspace_bytes as f64 / (1 << 20) as f64
                ));
                self.bar.disable_steady_tick();
                self.bar.set_length(*total_steps);
                self.bar.set_position(*first_step);
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:30.cyan/blue} {pos}/{len} steps {percent:>3}% | {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
            }
            Event::Step(s) => {
                self.epochs = s.epochs;
                self.bar.set_position(s.step);
                let best = self
                    .best
                    .map(|b| format!("{b:.4}"))
                    .unwrap_or_else(|| "-".into());
                // Without a bar (piped), the cluster rides on the plain line.
                let ranks = match &self.cluster {
                    Some(c) if self.bar.is_hidden() => format!(" | {}", cluster_text(c)),
                    _ => String::new(),
                };
                let line = format!(
                    "epoch {} loss {:.4} best val {best} lr {:.2e} {:.0} tok/s ETA {}{ranks}",
                    if s.epochs > 0 {
                        format!("{}/{}", s.epoch + 1, s.epochs)
                    } else {
                        (s.epoch + 1).to_string()
                    },
                    s.loss,
                    s.lr,
                    s.tokens_per_sec,
                    clock(s.eta_secs)
                );
                if self.bar.is_hidden() {
                    let due = self
                        .last_plain
                        .is_none_or(|t| t.elapsed().as_secs_f64() >= 5.0);
                    if due || s.step == s.total_steps {
                        if s.total_steps == 0 {
                            println!("step {} (timing the warm-up) {line}", s.step);
                        } else {
                            println!("step {}/{} {line}", s.step, s.total_steps);
                        }
                        self.last_plain = Some(std::time::Instant::now());
                    }
                } else {
                    self.bar.set_message(line);
                }
            }
            Event::Eval(e) => {
                if self.best.is_none_or(|b| e.loss < b) {
                    self.best = Some(e.loss);
                }
                let memory = e
                    .bits_per_byte_with_memory
                    .map(|b| format!(" ({b:.3} with memory)"))
                    .unwrap_or_default();
                let code = match (e.syntax_accuracy, e.closed_rate) {
                    (Some(s), Some(c)) => format!(
                        "  code: {:.0}% closed, {:.0}% closed and parse",
                        c * 100.0,
                        s * 100.0
                    ),
                    _ => String::new(),
                };
                self.say(format!(
                    "eval @ step {}: loss {:.4}  ppl {:.2}  {:.3} bits/byte{memory}  acc {:.3}  P/R/F1 {:.3}/{:.3}/{:.3}{code}",
                    e.step, e.loss, e.perplexity, e.bits_per_byte, e.accuracy, e.precision, e.recall, e.f1
                ));
            }
            Event::Sample { step, text } => {
                self.say(format!("sample @ step {step}:\n{text}\n"));
            }
            Event::Checkpoint { path, reason } => {
                let why = match reason {
                    SaveReason::Periodic => "periodic",
                    SaveReason::Best => "best",
                    SaveReason::Manual => "manual",
                    SaveReason::Final => "final",
                };
                self.say(format!("saved ({why}): {}", path.display()));
            }
            Event::Planned {
                total_steps,
                message,
            } => {
                self.bar.set_length(*total_steps);
                self.say(message.clone());
            }
            Event::Replanned {
                total_steps,
                message,
                ..
            } => {
                self.replans += 1;
                self.bar.set_length(*total_steps);
                self.say(message.clone());
            }
            Event::Info(text) => self.say(text.clone()),
            Event::Warning(w) => self.say(format!("warning: {w}")),
            Event::Cluster(c) => {
                // A line above the bar now and then (the bar's own line is
                // full): ranks, their speeds, the all-reduce.
                // The first steps warm caches and connections: skip them.
                self.cluster_steps += 1;
                let due = self.cluster_steps >= 10
                    && self
                        .cluster_said
                        .is_none_or(|t| t.elapsed().as_secs_f64() >= 30.0);
                if due && !self.bar.is_hidden() {
                    self.say(format!("cluster: {}", cluster_text(c)));
                    self.cluster_said = Some(std::time::Instant::now());
                }
                self.cluster = Some(c.clone());
            }
            Event::Spheres(_) | Event::Finished(_) | Event::Error(_) => {}
        }
    }

    pub(super) fn finish(&mut self, s: &Summary) {
        if let Some(c) = &self.cluster {
            self.say(format!(
                "cluster: {} ranks x {} sphere{}; the per-sphere figures below are rank 0's",
                c.ranks,
                c.threads_per_rank,
                if c.threads_per_rank == 1 { "" } else { "s" }
            ));
        }
        self.bar.finish_and_clear();
        let _ = self.epochs;
        println!(
            "done: {} steps, {} epochs in {}",
            s.steps,
            s.epochs_done,
            clock(s.total_secs)
        );
        if s.epoch_secs.len() > 8 {
            // Hundreds of short epochs would fill the screen: summarise.
            let n = s.epoch_secs.len();
            let mean = s.epoch_secs.iter().sum::<f64>() / n as f64;
            let min = s.epoch_secs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = s.epoch_secs.iter().copied().fold(0.0, f64::max);
            println!("  per epoch: {mean:.1}s on average over {n} epochs ({min:.1}s to {max:.1}s)");
        } else if !s.epoch_secs.is_empty() {
            let per: Vec<String> = s.epoch_secs.iter().map(|t| format!("{t:.1}s")).collect();
            println!("  per epoch: {}", per.join(", "));
        }
        println!(
            "  {:.1} ms per sequence, {:.0} tokens/s",
            s.secs_per_sequence * 1e3,
            s.tokens_per_sec
        );
        println!(
            "  loss: initial {:.4}, final {:.4}",
            s.initial_loss, s.final_loss
        );
        if let (Some(l), Some(b)) = (s.best_val_loss, s.best_bits_per_byte) {
            println!("  best validation loss {l:.4} ({b:.3} bits per byte)");
        }
        if let (Some(step), Some(last)) = (s.final_weights_step, s.last_val_loss) {
            println!(
                "  final weights: step {step}'s, the best; the last step's validation loss \
                 was {last:.4}"
            );
        }
        println!(
            "  sequences per sphere: {:?} (imbalance {:.1}%)",
            s.sphere_sequences,
            s.load_imbalance * 100.0
        );
        println!(
            "  peak memory {:.1} MiB",
            s.peak_memory_bytes as f64 / (1 << 20) as f64
        );
        if s.skipped_updates > 0 {
            println!("  {} updates skipped (non-finite)", s.skipped_updates);
        }
        if let (Some(budget), Some(used)) = (s.time_budget_secs, s.budget_used_secs) {
            use cllm_train::budget::format_duration;
            let cap = s.epoch_cap.map_or(String::new(), |e| {
                format!(", the run ended at its cap of {e} epochs")
            });
            let replans = match self.replans {
                0 => String::new(),
                1 => ", re-planned once".to_string(),
                n => format!(", re-planned {n} times"),
            };
            println!(
                "  time budget {}: used {} ({:.1}%){replans}{cap}",
                format_duration(budget),
                format_duration(used),
                100.0 * used / budget
            );
        }
        if let Some(p) = &s.final_model {
            println!("  model: {}", p.display());
        }
    }
}

/// The cluster's part of the progress line: ranks x spheres, each rank's
/// tokens/s, and the all-reduce with the share of the step it was not hidden.
fn cluster_text(c: &ClusterStats) -> String {
    let per_rank: Vec<String> = c
        .rank_tokens_per_sec
        .iter()
        .map(|t| format!("{t:.0}"))
        .collect();
    format!(
        "{} ranks x {} sphere{}: {} tok/s; all-reduce {:.1} ms a step, {:.0}% of the step not hidden",
        c.ranks,
        c.threads_per_rank,
        if c.threads_per_rank == 1 { "" } else { "s" },
        per_rank.join("+"),
        c.allreduce_secs * 1e3,
        c.exposed_share * 100.0
    )
}

/// Seconds as h:mm:ss or m:ss.
pub fn clock(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
