//! `cllm train`: the trainer with a terminal progress bar (or JSON lines).

use clap::Args;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_train::cluster::Cluster;
use cllm_train::events::ClusterStats;
use cllm_train::events::{Event, Phase, RunInfo, SaveReason, Summary};
use cllm_train::trainer::{TrainOptions, spawn};
use cllm_train::{FinalWeights, ScheduleKind, TokenizerKind, TrainConfig};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

/// `cllm train` flags. Every setting is optional: a new run takes the
/// defaults shown in `--help`; a resumed run takes the checkpoint's, and only
/// the flags given here may change it (see `train::resume`).
#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Files or folders to train on [default: training_data/]
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Extensions to keep when scanning folders (e.g. --ext c h md)
    #[arg(long = "ext", num_args = 1..)]
    pub extensions: Vec<String>,
    /// Model size: auto (for the data, the machine and the time), tiny, baby, small, medium, large, seed [default: auto]
    #[arg(long)]
    pub preset: Option<String>,
    /// Worker threads (spheres); 0 = all cores [default: 0]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sequences per micro-batch [default: 16]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Tokens per sequence; also the model's context [default: 128]
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Passes over the data; 0 = train by --max-steps [default: 10]. With
    /// --time: the most passes the run makes [default: 16]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train for this long instead of epochs (e.g. 30m, 1h, 90s): the steps
    /// that fit are fixed after a timed warm-up, at most 16 passes over the
    /// data unless --epochs says otherwise (more overfit a small corpus)
    #[arg(long, value_name = "DURATION", value_parser = parse_time)]
    pub time: Option<f64>,
    /// Stop after this many optimizer steps (0 = no limit) [default: 0]
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Peak learning rate [default: 0.003]
    #[arg(long)]
    pub lr: Option<f32>,
    /// Floor of the decay schedule [default: lr / 10]
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warmup steps [default: 20]
    #[arg(long)]
    pub warmup: Option<u64>,
    /// constant, cosine, linear or step [default: cosine]
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    /// AdamW weight decay on matrices [default: 0.1]
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip the global gradient norm (0 = off) [default: 1]
    #[arg(long)]
    pub grad_clip: Option<f32>,
    /// Gradient accumulation: micro-batches per optimizer step [default: 1]
    #[arg(long)]
    pub accum: Option<usize>,
    /// Dropout [default: the preset's]
    #[arg(long)]
    pub dropout: Option<f32>,
    /// BPE vocabulary size [default: 2048]
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// bpe or bytes [default: bpe]
    #[arg(long)]
    pub tokenizer: Option<TokenizerKind>,
    /// Repository memory: an n-gram index over the training tokens and a
    /// document cache mixed with the model, fitted at each evaluation and
    /// saved with the checkpoints [default: on]
    #[arg(long, value_enum, value_name = "on|off")]
    pub memory: Option<super::eval::Switch>,
    /// At each evaluation, complete N function openings of the validation
    /// split and report the share that closes and parses as C (0 = off)
    /// [default: 0]
    #[arg(long, value_name = "N")]
    pub eval_gen: Option<usize>,
    /// Matmul precision: auto (bf16 where the CPU has AVX512_BF16), fp32
    /// or bf16 (bf16 inputs, f32 accumulation, f32 master weights)
    /// [default: auto]
    #[arg(long, value_name = "auto|fp32|bf16", value_parser = parse_precision)]
    pub precision: Option<PrecisionChoice>,
    /// Fraction held out for validation (the tail of the data) [default: 0.1]
    #[arg(long)]
    pub val_fraction: Option<f32>,
    /// Evaluate every K steps, and at every epoch end [default: 50]
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Validation sequences per evaluation (0 = the whole split) [default: 16]
    #[arg(long)]
    pub eval_batches: Option<usize>,
    /// Save a checkpoint every N epochs (0 = never) [default: 2]
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Stop after this many evaluations without improvement (0 = off) [default: 0]
    #[arg(long)]
    pub patience: Option<usize>,
    /// The final model's weights: best (the best validation loss's, when
    /// the last step's are worse: the run trained past its best) or last
    /// [default: best]
    #[arg(long, value_name = "best|last")]
    pub final_weights: Option<FinalWeights>,
    /// Print a short generated sample every K steps (0 = never) [default: 0]
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// What the samples continue [default: "// "]
    #[arg(long)]
    pub sample_prompt: Option<String>,
    /// Continue the run saved in this checkpoint, with its settings
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Resume even though the training data changed since the checkpoint
    #[arg(long, requires = "resume")]
    pub allow_data_change: bool,
    /// Where the final model goes (a copy also stays in the run's folder); a
    /// folder (one that exists, or a path ending in `/`) gets
    /// `trained_model_kissing_spheres.cllm` inside it
    #[arg(long, default_value = "models/trained_model_kissing_spheres.cllm")]
    pub output: PathBuf,
    /// Checkpoints go to <checkpoint-dir>/<run-name>/
    #[arg(long, default_value = "checkpoints")]
    pub checkpoint_dir: PathBuf,
    /// Name of the run [default: date-time and preset, e.g. 20261129-101500-small]
    #[arg(long)]
    pub run_name: Option<String>,
    /// Seed of the initial weights, data order and dropout [default: 1337]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print events as JSON lines instead of a progress bar
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    /// The run's config: the defaults, with every flag given applied, and
    /// the names of the settings given (what a resume may change).
    pub fn to_config(&self) -> TrainConfig {
        let mut c = TrainConfig::default();
        let mut given: Vec<&str> = Vec::new();
        macro_rules! set {
            ($arg:ident => $field:ident) => {
                if let Some(v) = &self.$arg {
                    c.$field = v.clone();
                    given.push(stringify!($field));
                }
            };
        }
        if !self.data.is_empty() {
            c.data = self.data.clone();
            given.push("data");
        }
        if !self.extensions.is_empty() {
            c.extensions = cllm_data::scan::parse_extensions(&self.extensions);
            given.push("extensions");
        }
        set!(preset => preset);
        set!(threads => threads);
        set!(batch_size => batch_size);
        set!(seq_len => seq_len);
        set!(epochs => epochs);
        set!(max_steps => max_steps);
        set!(time => time_budget_secs);
        if self.time.is_some() {
            // The budget decides the length, not the default epochs; epochs
            // given with it are its cap.
            c.epochs = self.epochs.unwrap_or(0);
        } else if self.epochs.is_some() {
            // Epochs given to a run that was given time (on resume): the
            // epochs decide from here.
            c.time_budget_secs = 0.0;
            given.push("time_budget_secs");
        }
        set!(lr => lr);
        set!(warmup => warmup_steps);
        set!(schedule => schedule);
        set!(grad_clip => grad_clip);
        set!(accum => accum_steps);
        set!(vocab_size => vocab_size);
        set!(tokenizer => tokenizer);
        set!(val_fraction => val_fraction);
        set!(eval_gen => eval_gen);
        set!(precision => precision);
        set!(eval_every => eval_every);
        set!(eval_batches => eval_batches);
        set!(checkpoint_every => checkpoint_every);
        set!(patience => early_stop_patience);
        set!(final_weights => final_weights);
        set!(sample_every => sample_every);
        set!(sample_prompt => sample_prompt);
        set!(run_name => run_name);
        set!(seed => seed);
        // The floor follows the peak unless given (on resume, unless given,
        // the checkpoint's floor stands).
        c.min_lr = self.min_lr.unwrap_or(c.lr / 10.0);
        if self.min_lr.is_some() {
            given.push("min_lr");
        }
        if let Some(m) = self.memory {
            c.memory = m == super::eval::Switch::On;
            given.push("memory");
        }
        if let Some(d) = self.dropout {
            c.dropout = Some(d);
            given.push("dropout");
        }
        if let Some(wd) = self.weight_decay {
            c.adamw.weight_decay = wd;
            given.push("adamw");
        }
        c.resume = self.resume.clone();
        c.allow_data_change = self.allow_data_change;
        c.output = model_path(&self.output);
        c.checkpoint_dir = self.checkpoint_dir.clone();
        c.given = given.into_iter().map(String::from).collect();
        c
    }
}

/// `--time`: a duration with units, in seconds.
/// `--output` as a model file: a folder (one that exists, or a path
/// written with a trailing `/`) gets the default file name inside it, so
/// `--output models/` does not replace the folder with a file.
fn model_path(output: &std::path::Path) -> PathBuf {
    let written_as_folder = output.as_os_str().to_string_lossy().ends_with('/');
    if written_as_folder || output.is_dir() {
        output.join("trained_model_kissing_spheres.cllm")
    } else {
        output.to_path_buf()
    }
}

fn parse_time(text: &str) -> Result<f64, String> {
    cllm_train::budget::parse_duration(text)
        .map(|d| d.as_secs_f64())
        .map_err(String::from)
}

pub fn run(args: TrainArgs) -> Result<(), super::Failure> {
    let launch = super::cluster::Launch::detect()?;
    let cluster = launch.cluster();
    let result = run_rank(args, cluster.clone());
    if let Err(failure) = &result
        && cluster.is_distributed()
        && !failure.is_stop()
    {
        // The other ranks wait for this one in a collective: end them all.
        launch.end_all_ranks(&failure.message, failure.code);
    }
    if let Err(failure) = &result
        && cluster.is_distributed()
        && cluster.is_writer()
        && failure.is_stop()
    {
        // mpirun stops forwarding stderr once it has signalled the job: the
        // stop and the command that resumes it go out on stdout, now.
        println!("{}", failure.message);
        return Err(super::Failure {
            message: String::new(),
            code: failure.code,
        });
    }
    if !cluster.is_writer() {
        // Rank 0 speaks for the run; the others only report their errors.
        return result.map_err(|f| super::Failure {
            message: format!("rank {}: {}", cluster.rank(), f.message),
            ..f
        });
    }
    result
}

fn run_rank(args: TrainArgs, cluster: Cluster) -> Result<(), super::Failure> {
    use super::Failure;
    use super::interrupt::{Interrupts, StopSignal, shell_quote};
    let config = args.to_config();
    config.validate().map_err(String::from)?;
    super::cluster::size_rayon_for_rank(&cluster, config.resolved_threads());
    let quiet = !cluster.is_writer();
    let cluster_size = cluster.size();
    // Ctrl-C or SIGTERM: the first stops the trainer after its current
    // step (it then saves the final checkpoint); a second one quits at once.
    let interrupts = Interrupts::watch(
        "again: quitting now, without the final checkpoint (the last one saved stays intact)",
    )?;
    let handle = spawn(config, TrainOptions::in_cluster(cluster));
    let mut view = if args.json || quiet {
        None
    } else if cluster_size > 1 {
        Some(Terminal::plain())
    } else {
        Some(Terminal::new())
    };
    if cluster_size > 1 && !quiet {
        // OpenMPI kills the ranks a second after Ctrl-C on mpirun
        // (odls_base_sigkill_timeout): too soon to finish a step and save.
        let process = std::path::Path::new(&program_name())
            .file_name()
            .map_or_else(|| "cllm".into(), |n| n.to_string_lossy().into_owned());
        let hint = format!(
            "to stop and save: SIGTERM to the ranks (pkill -TERM -x {process} on each machine); \
             Ctrl-C on mpirun lets OpenMPI kill them a second later, before the final save \
             (the last checkpoint stays intact)"
        );
        match view.as_ref() {
            Some(v) => v.notice(&hint),
            None => eprintln!("{hint}"),
        }
    }
    let mut ctrl_c = interrupts.first.clone();
    let mut interrupted: Option<StopSignal> = None;
    let mut outcome: Result<Summary, String> =
        Err("the trainer ended without a result".to_string());
    loop {
        crossbeam_channel::select! {
            recv(handle.events) -> event => {
                let Ok(event) = event else { break };
                if args.json && !quiet {
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
                let Ok(signal) = got else {
                    ctrl_c = crossbeam_channel::never();
                    continue;
                };
                interrupted = Some(signal);
                handle.stop();
                let line = format!(
                    "{}: stopping after the current step and saving the final checkpoint \
                     (Ctrl-C again to quit now)",
                    signal.name()
                );
                let line = line.as_str();
                match view.as_ref() {
                    _ if quiet => {}
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
        (Ok(_), None) => Ok(()),
        (Err(e), None) => Err(Failure::from(e)),
        (Ok(summary), Some(signal)) => {
            // A cluster run resumes as it ran (any number of ranks works).
            let launcher = if cluster_size > 1 {
                format!("mpirun -np {cluster_size} ")
            } else {
                String::new()
            };
            let at = format!("stopped by {} at step {}", signal.name(), summary.steps);
            Err(Failure::stopped_by(
                signal.exit_code(),
                match &summary.final_model {
                    Some(path) => format!(
                        "{at}; final checkpoint: {}\nresume with: {launcher}{} train --resume {}",
                        path.display(),
                        shell_quote(&program_name()),
                        shell_quote(&path.to_string_lossy())
                    ),
                    None => at,
                },
            ))
        }
        (Err(e), Some(signal)) => Err(Failure::stopped_by(
            signal.exit_code(),
            format!(
                "stopped by {} ({e}); nothing was saved by this run",
                signal.name()
            ),
        )),
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
    /// The last step's figures across ranks (distributed runs), and when
    /// they were last printed.
    cluster: Option<ClusterStats>,
    cluster_said: Option<std::time::Instant>,
    cluster_steps: u64,
}

impl Terminal {
    fn new() -> Terminal {
        Terminal::with_target(super::progress::stdout_target())
    }

    /// Plain lines, no bar: under `mpirun` a rank's stdout looks like a
    /// terminal even when the job's output goes to a file or a scheduler's
    /// log, and a bar's redraws would fill it.
    fn plain() -> Terminal {
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
                    "steps fixed after a timed warm-up".to_string()
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

    fn finish(&mut self, s: &Summary) {
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
            println!(
                "  time budget {}: used {} ({:.1}%){cap}",
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

/// How this program was called (`cllm`, or its path), for commands to type.
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

fn program_name() -> String {
    std::env::args().next().unwrap_or_else(|| "cllm".into())
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

fn parse_precision(s: &str) -> Result<PrecisionChoice, String> {
    PrecisionChoice::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_folder_gets_the_model_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("trained_model_kissing_spheres.cllm");
        assert_eq!(model_path(dir.path()), inside);
        let new_folder = dir.path().join("new/");
        assert_eq!(
            model_path(&new_folder),
            dir.path()
                .join("new")
                .join("trained_model_kissing_spheres.cllm")
        );
        let file = dir.path().join("mine.cllm");
        assert_eq!(model_path(&file), file);
    }
}
