//! `cllm train`: the trainer with a terminal progress bar (or JSON lines).

use crate::train::events::{Event, Phase, RunInfo, SaveReason, Summary};
use crate::train::{ScheduleKind, TokenizerKind, TrainConfig, spawn};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Files or folders to train on [default: training_data/]
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Extensions to keep when scanning folders (e.g. --ext c h md)
    #[arg(long = "ext", num_args = 1..)]
    pub extensions: Vec<String>,
    /// Model preset: tiny, baby, small, seed
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Worker threads (spheres); 0 = all cores
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    #[arg(long, default_value_t = TrainConfig::default().seq_len)]
    pub seq_len: usize,
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Stop after this many optimizer steps (0 = no limit)
    #[arg(long, default_value_t = 0)]
    pub max_steps: u64,
    /// Peak learning rate
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f32,
    /// Floor of the decay schedule
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    pub warmup: u64,
    /// constant, cosine, linear or step
    #[arg(long, default_value = "cosine")]
    pub schedule: ScheduleKind,
    #[arg(long, default_value_t = TrainConfig::default().adamw.weight_decay)]
    pub weight_decay: f32,
    /// Clip the global gradient norm (0 = off)
    #[arg(long, default_value_t = TrainConfig::default().grad_clip)]
    pub grad_clip: f32,
    /// Gradient accumulation: micro-batch groups per optimizer step
    #[arg(long, default_value_t = 1)]
    pub accum: usize,
    /// Dropout (overrides the preset's)
    #[arg(long)]
    pub dropout: Option<f32>,
    /// BPE vocabulary size
    #[arg(long, default_value_t = TrainConfig::default().vocab_size)]
    pub vocab_size: usize,
    /// bpe or bytes
    #[arg(long, default_value = "bpe")]
    pub tokenizer: TokenizerKind,
    /// Fraction held out for validation (the tail of the data)
    #[arg(long, default_value_t = TrainConfig::default().val_fraction)]
    pub val_fraction: f32,
    /// Evaluate every K steps (and at every epoch end)
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    pub eval_every: u64,
    /// Validation batches per evaluation (0 = the whole split)
    #[arg(long, default_value_t = TrainConfig::default().eval_batches)]
    pub eval_batches: usize,
    /// Save a checkpoint every N epochs (0 = never)
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Stop after this many evaluations without improvement (0 = off)
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// Print a short generated sample every K steps (0 = never)
    #[arg(long, default_value_t = 0)]
    pub sample_every: u64,
    /// What the samples continue
    #[arg(long, default_value = "// ")]
    pub sample_prompt: String,
    /// Continue from a checkpoint
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Where the final model goes
    #[arg(long, default_value = "models/trained_model_kissing_spheres.cllm")]
    pub output: PathBuf,
    #[arg(long, default_value = "checkpoints")]
    pub checkpoint_dir: PathBuf,
    /// Name of the run's folder under runs/
    #[arg(long, default_value = "")]
    pub run_name: String,
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Print events as JSON lines instead of a progress bar
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    pub fn to_config(&self) -> TrainConfig {
        let d = TrainConfig::default();
        let mut adamw = d.adamw.clone();
        adamw.weight_decay = self.weight_decay;
        TrainConfig {
            data: if self.data.is_empty() {
                d.data.clone()
            } else {
                self.data.clone()
            },
            extensions: self.extensions.clone(),
            preset: self.preset.clone(),
            tokenizer: self.tokenizer,
            vocab_size: self.vocab_size,
            threads: self.threads,
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            epochs: self.epochs,
            max_steps: self.max_steps,
            lr: self.lr,
            min_lr: self.min_lr.unwrap_or(self.lr / 10.0),
            warmup_steps: self.warmup,
            schedule: self.schedule,
            adamw,
            grad_clip: self.grad_clip,
            accum_steps: self.accum,
            dropout: self.dropout,
            val_fraction: self.val_fraction,
            eval_every: self.eval_every,
            eval_batches: self.eval_batches,
            checkpoint_every: self.checkpoint_every,
            early_stop_patience: self.patience,
            sample_every: self.sample_every,
            sample_prompt: self.sample_prompt.clone(),
            seed: self.seed,
            resume: self.resume.clone(),
            output: self.output.clone(),
            checkpoint_dir: self.checkpoint_dir.clone(),
            run_name: self.run_name.clone(),
            ..d
        }
    }
}

pub fn run(args: TrainArgs) -> Result<(), super::Failure> {
    use super::Failure;
    use super::interrupt::{Interrupts, command_line_with};
    let config = args.to_config();
    config.validate()?;
    // Ctrl-C: the first stops the trainer after its current step (it then
    // saves the final checkpoint); a second one quits at once.
    let interrupts = Interrupts::watch(
        "Ctrl-C again: quitting now, without the final checkpoint (the last one saved stays intact)",
    )?;
    let handle = spawn(config);
    let mut view = if args.json {
        None
    } else {
        Some(Terminal::new())
    };
    let mut ctrl_c = interrupts.first.clone();
    let mut interrupted = false;
    let mut outcome: Result<Summary, String> =
        Err("the trainer ended without a result".to_string());
    loop {
        crossbeam_channel::select! {
            recv(handle.events) -> event => {
                let Ok(event) = event else { break };
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string(&event).map_err(|e| e.to_string())?
                    );
                }
                match event {
                    Event::Finished(summary) => {
                        if let Some(v) = view.as_mut() {
                            v.finish(&summary);
                        }
                        outcome = Ok(summary);
                        break;
                    }
                    Event::Error(e) => {
                        if let Some(v) = view.as_mut() {
                            v.bar.abandon();
                        }
                        outcome = Err(e);
                        break;
                    }
                    other => {
                        if let Some(v) = view.as_mut() {
                            v.show(&other);
                        }
                    }
                }
            }
            recv(ctrl_c) -> got => {
                if got.is_err() {
                    ctrl_c = crossbeam_channel::never();
                    continue;
                }
                interrupted = true;
                handle.stop();
                let line = "Ctrl-C: stopping after the current step and saving the final checkpoint \
                            (Ctrl-C again to quit now)";
                match view.as_ref() {
                    Some(v) => v.notice(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }
    if let Some(t) = handle.thread {
        let _ = t.join();
    }
    drop(interrupts);
    match (outcome, interrupted) {
        (Ok(_), false) => Ok(()),
        (Err(e), false) => Err(Failure::from(e)),
        (Ok(summary), true) => {
            let at = format!("stopped by Ctrl-C at step {}", summary.steps);
            Err(Failure::interrupted(match &summary.final_model {
                Some(path) => format!(
                    "{at}; final checkpoint: {}\nresume with: {}",
                    path.display(),
                    command_line_with("--resume", &path.to_string_lossy())
                ),
                None => at,
            }))
        }
        (Err(e), true) => Err(Failure::interrupted(format!(
            "stopped by Ctrl-C ({e}); nothing was saved by this run"
        ))),
    }
}

/// The progress bar and the lines printed above it, on stdout. When stdout
/// is not a terminal the bar hides itself, so lines go straight to stdout
/// and a plain progress line is printed every few seconds instead.
struct Terminal {
    bar: ProgressBar,
    best: Option<f32>,
    epochs: usize,
    last_plain: Option<std::time::Instant>,
}

impl Terminal {
    fn new() -> Terminal {
        let bar = ProgressBar::with_draw_target(None, super::progress::stdout_target());
        bar.set_style(ProgressStyle::default_spinner());
        bar.set_message("preparing data");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Terminal {
            bar,
            best: None,
            epochs: 0,
            last_plain: None,
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
    fn notice(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.suspend(|| println!("{line}"));
        }
    }

    fn show(&mut self, event: &Event) {
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
            }) => {
                self.say(format!(
                    "{files} files, {train_tokens} training + {val_tokens} validation tokens, \
                     vocabulary {vocab_size}, {:.2}M parameters, {threads} spheres, {total_steps} steps",
                    *params as f64 / 1e6
                ));
                self.bar.disable_steady_tick();
                self.bar.set_length(*total_steps);
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:30.cyan/blue} {pos}/{len} steps {percent:>3}% | {msg}",
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
                let line = format!(
                    "epoch {} loss {:.4} best val {best} lr {:.2e} {:.0} tok/s ETA {}",
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
                        println!("step {}/{} {line}", s.step, s.total_steps);
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
                self.say(format!(
                    "eval @ step {}: loss {:.4}  ppl {:.2}  {:.3} bits/byte  acc {:.3}  P/R/F1 {:.3}/{:.3}/{:.3}",
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
            Event::Warning(w) => self.say(format!("warning: {w}")),
            Event::Spheres(_) | Event::Finished(_) | Event::Error(_) => {}
        }
    }

    fn finish(&mut self, s: &Summary) {
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
            s.secs_per_batch * 1e3,
            s.tokens_per_sec
        );
        println!(
            "  loss: initial {:.4}, final {:.4}",
            s.initial_loss, s.final_loss
        );
        if let (Some(l), Some(b)) = (s.best_val_loss, s.best_bits_per_byte) {
            println!("  best validation loss {l:.4} ({b:.3} bits per byte)");
        }
        println!(
            "  sequences per sphere: {:?} (imbalance {:.1}%)",
            s.sphere_batches,
            s.load_imbalance * 100.0
        );
        println!(
            "  peak memory {:.1} MiB",
            s.peak_memory_bytes as f64 / (1 << 20) as f64
        );
        if s.skipped_updates > 0 {
            println!("  {} updates skipped (non-finite)", s.skipped_updates);
        }
        if let Some(p) = &s.final_model {
            println!("  model: {}", p.display());
        }
    }
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
