//! `cllm train`'s flags and the run's config they make, over the settings
//! of a `--config` file when one is given.

use super::config_file;
use crate::cli::choice::{choice, train_presets};
use crate::cli::eval::Switch;
use clap::Args;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_train::{FinalWeights, ScheduleKind, TokenizerKind, TrainConfig};
use std::path::{Path, PathBuf};

/// `cllm train` flags. Every setting is optional: a new run takes the
/// defaults shown in `--help` (or the `--config` file's settings); a resumed
/// run takes the checkpoint's, and only the settings given here or in the
/// file may change it (see `train::resume`).
#[derive(Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Settings from a file: TOML (`lr = 0.003`, `data = ["src"]`) or JSON,
    /// keys as in a run's runs/<run>/config.json, which is itself accepted to
    /// repeat that run; flags given here override the file
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Files or folders to train on [default: training_data/]
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Extensions to keep when scanning folders (e.g. --ext c h md)
    #[arg(long = "ext", num_args = 1..)]
    pub extensions: Vec<String>,
    /// Model size: auto (for the data, the machine and the time) or a named
    /// size [default: auto]
    #[arg(long, value_parser = train_presets())]
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
    /// that fit are fixed after a timed warm-up and re-planned when the
    /// machine gets faster or slower, at most 16 passes over the data unless
    /// --epochs says otherwise (more overfit a small corpus)
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
    /// Learning-rate decay after the warmup [default: cosine]
    #[arg(long, value_parser = choice::<ScheduleKind>())]
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
    /// Share of training windows rearranged for fill-in-the-middle, so the
    /// model can complete between a prefix and a suffix (0 = off; needs the
    /// BPE tokenizer) [default: 0.5]
    #[arg(long, value_name = "R")]
    pub fim_rate: Option<f32>,
    /// Dropout [default: the preset's]
    #[arg(long)]
    pub dropout: Option<f32>,
    /// BPE vocabulary size [default: 2048]
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Byte-level BPE trained on the data, or one token per byte [default: bpe]
    #[arg(long, value_parser = choice::<TokenizerKind>())]
    pub tokenizer: Option<TokenizerKind>,
    /// Repository memory: an n-gram index over the training tokens and a
    /// document cache mixed with the model, fitted at each evaluation and
    /// saved with the checkpoints [default: on]
    #[arg(long, value_enum)]
    pub memory: Option<Switch>,
    /// At each evaluation, complete N function openings of the validation
    /// split and report the share that closes and parses as C (0 = off)
    /// [default: 0]
    #[arg(long, value_name = "N")]
    pub eval_gen: Option<usize>,
    /// Saved with the model: whether `eval`, `generate` and the app adapt
    /// while reading by default (one gradient step per segment read,
    /// decayed toward the trained weights) [default: off]
    #[arg(long, value_enum)]
    pub adapt: Option<Switch>,
    /// Saved with the model: the adaptation step size, >= 0 [default: 0.01]
    #[arg(long, value_name = "LR", allow_negative_numbers = true)]
    pub adapt_lr: Option<f32>,
    /// Saved with the model: the share of the way back to the trained
    /// weights after each adaptation step, 0 to 1 [default: 0]
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub adapt_decay: Option<f32>,
    /// Matmul precision: auto (bf16 where the CPU has AVX512_BF16), fp32
    /// or bf16 (bf16 inputs, f32 accumulation, f32 master weights)
    /// [default: auto]
    #[arg(long, ignore_case = true, value_parser = choice::<PrecisionChoice>())]
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
    #[arg(long, value_parser = choice::<FinalWeights>())]
    pub final_weights: Option<FinalWeights>,
    /// Print a short generated sample every K steps (0 = never) [default: 0]
    #[arg(long)]
    pub sample_every: Option<u64>,
    /// What the samples continue [default: "// "]
    #[arg(long)]
    pub sample_prompt: Option<String>,
    /// Start from this model: its size, tokenizer and weights (the data is
    /// tokenized with its tokenizer), with a fresh optimizer and schedule:
    /// fine-tune a base model on your data
    #[arg(long, value_name = "BASE.cllm", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// Continue the run saved in this checkpoint, with its settings
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Resume even though the training data changed since the checkpoint
    #[arg(long, requires = "resume")]
    pub allow_data_change: bool,
    /// Where the final model goes (a copy also stays in the run's folder); a
    /// folder (one that exists, or a path ending in `/`) gets
    /// `trained_model_kissing_spheres.cllm` inside it
    /// [default: models/trained_model_kissing_spheres.cllm]
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Checkpoints go to <checkpoint-dir>/<run-name>/ [default: checkpoints]
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
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
    /// The run's config: the defaults, then the `--config` file's settings,
    /// then every flag given, with the names of the settings given in the
    /// file or as flags (what a resume may change).
    pub fn to_config(&self) -> Result<TrainConfig, String> {
        let (mut c, mut given) = match &self.config {
            Some(path) => config_file::load(path)?,
            None => (TrainConfig::default(), Vec::new()),
        };
        // `given` holds the field's own name (as serialised), not its part's.
        macro_rules! set {
            ($arg:ident => $part:ident . $field:ident) => {
                if let Some(v) = &self.$arg {
                    c.$part.$field = v.clone();
                    mark(&mut given, stringify!($field));
                }
            };
            ($arg:ident => $field:ident) => {
                if let Some(v) = &self.$arg {
                    c.$field = v.clone();
                    mark(&mut given, stringify!($field));
                }
            };
        }
        if !self.data.is_empty() {
            c.corpus.data = self.data.clone();
            mark(&mut given, "data");
        }
        if !self.extensions.is_empty() {
            c.corpus.extensions = self.extensions.clone();
            mark(&mut given, "extensions");
        }
        c.corpus.extensions = cllm_data::scan::parse_extensions(&c.corpus.extensions);
        set!(preset => model.preset);
        set!(threads => threads);
        set!(batch_size => batch.batch_size);
        set!(seq_len => batch.seq_len);
        set!(epochs => budget.epochs);
        set!(max_steps => budget.max_steps);
        set!(time => budget.time_budget_secs);
        if has(&given, "time_budget_secs") {
            // The budget decides the length, not the default epochs; epochs
            // given with it are its cap.
            if !has(&given, "epochs") {
                c.budget.epochs = 0;
            }
        } else if has(&given, "epochs") {
            // Epochs given to a run that was given time (on resume): the
            // epochs decide from here.
            c.budget.time_budget_secs = 0.0;
            mark(&mut given, "time_budget_secs");
        }
        set!(lr => optimizer.lr);
        set!(warmup => optimizer.warmup_steps);
        set!(schedule => optimizer.schedule);
        set!(grad_clip => optimizer.grad_clip);
        set!(accum => batch.accum_steps);
        set!(fim_rate => batch.fim_rate);
        set!(vocab_size => corpus.vocab_size);
        set!(tokenizer => corpus.tokenizer);
        set!(val_fraction => corpus.val_fraction);
        set!(eval_gen => evaluation.eval_gen);
        set!(precision => model.precision);
        set!(eval_every => evaluation.eval_every);
        set!(eval_batches => evaluation.eval_batches);
        set!(checkpoint_every => outputs.checkpoint_every);
        set!(patience => budget.early_stop_patience);
        set!(final_weights => outputs.final_weights);
        set!(sample_every => evaluation.sample_every);
        set!(sample_prompt => evaluation.sample_prompt);
        set!(run_name => outputs.run_name);
        set!(seed => seed);
        // The floor follows the peak unless given (on resume, unless given,
        // the checkpoint's floor stands).
        if let Some(min_lr) = self.min_lr {
            c.optimizer.min_lr = min_lr;
            mark(&mut given, "min_lr");
        } else if !has(&given, "min_lr") {
            c.optimizer.min_lr = c.optimizer.lr / 10.0;
        }
        if let Some(m) = self.memory {
            c.model.memory = m == Switch::On;
            mark(&mut given, "memory");
        }
        if let Some(d) = self.dropout {
            c.model.dropout = Some(d);
            mark(&mut given, "dropout");
        }
        if let Some(wd) = self.weight_decay {
            c.optimizer.adamw.weight_decay = wd;
            mark(&mut given, "adamw");
        }
        if let Some(init) = &self.init {
            c.model.init = Some(init.clone());
            mark(&mut given, "init");
        }
        if self.adapt.is_some() || self.adapt_lr.is_some() || self.adapt_decay.is_some() {
            let flags = crate::cli::eval::AdaptArgs {
                adapt: self.adapt,
                adapt_lr: self.adapt_lr,
                adapt_decay: self.adapt_decay,
            };
            c.evaluation.adapt = flags.over(c.evaluation.adapt)?;
            mark(&mut given, "adapt");
        }
        if let Some(resume) = &self.resume {
            c.resume = Some(resume.clone());
        }
        c.allow_data_change = self.allow_data_change;
        if let Some(output) = &self.output {
            c.outputs.output = output.clone();
        }
        c.outputs.output = model_path(&c.outputs.output);
        if let Some(dir) = &self.checkpoint_dir {
            c.outputs.checkpoint_dir = dir.clone();
        }
        c.given = given;
        Ok(c)
    }
}

/// Notes `field` as given (once).
fn mark(given: &mut Vec<String>, field: &str) {
    if !has(given, field) {
        given.push(field.to_string());
    }
}

fn has(given: &[String], field: &str) -> bool {
    given.iter().any(|g| g == field)
}

/// `--output` as a model file: a folder (one that exists, or a path
/// written with a trailing `/`) gets the default file name inside it, so
/// `--output models/` does not replace the folder with a file.
pub(super) fn model_path(output: &Path) -> PathBuf {
    let written_as_folder = output.as_os_str().to_string_lossy().ends_with('/');
    if written_as_folder || output.is_dir() {
        output.join("trained_model_kissing_spheres.cllm")
    } else {
        output.to_path_buf()
    }
}

/// `--time`: a duration with units, in seconds.
fn parse_time(text: &str) -> Result<f64, String> {
    cllm_train::budget::parse_duration(text)
        .map(|d| d.as_secs_f64())
        .map_err(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn config(args: &[&str]) -> TrainConfig {
        let parsed = Train::try_parse_from(std::iter::once("train").chain(args.iter().copied()));
        parsed.unwrap().args.to_config().unwrap()
    }

    fn given(c: &TrainConfig, field: &str) -> bool {
        c.given.iter().any(|g| g == field)
    }

    #[test]
    fn adaptation_flags_are_saved_with_the_model_and_checked() {
        let c = config(&["--adapt", "on", "--adapt-lr", "0.05"]);
        let want = cllm_train::adapt::AdaptSettings {
            enabled: true,
            lr: 0.05,
            decay: cllm_train::adapt::AdaptSettings::default().decay,
        };
        assert_eq!(c.evaluation.adapt, want);
        assert!(given(&c, "adapt"));
        let plain = config(&[]);
        assert_eq!(plain.evaluation.adapt, Default::default());
        assert!(!given(&plain, "adapt"));
        for bad in [["--adapt-lr", "-1"], ["--adapt-decay", "1.5"]] {
            let parsed = Train::try_parse_from(std::iter::once("train").chain(bad));
            let err = parsed.unwrap().args.to_config().unwrap_err();
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn flags_go_over_the_file_and_both_are_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "lr = 0.01\ntime_budget_secs = 60.0\nseq_len = 32\n").unwrap();
        let file = path.to_str().unwrap();
        let c = config(&["--config", file, "--seq-len", "64"]);
        assert_eq!(
            (c.optimizer.lr, c.optimizer.min_lr, c.batch.seq_len),
            (0.01, 0.01 / 10.0, 64)
        );
        assert_eq!(
            c.budget.epochs, 0,
            "time without epochs: the budget decides the length"
        );
        assert!(
            ["lr", "time_budget_secs", "seq_len"]
                .iter()
                .all(|f| given(&c, f))
        );
        assert!(!given(&c, "epochs") && !given(&c, "min_lr"));
        assert_eq!(c.given.len(), 3, "{:?}", c.given);
        let c = config(&["--config", file, "--epochs", "2", "--min-lr", "0.0001"]);
        assert_eq!(
            (
                c.budget.epochs,
                c.budget.time_budget_secs,
                c.optimizer.min_lr
            ),
            (2, 60.0, 0.0001)
        );
    }

    #[test]
    fn without_a_file_the_flags_alone_decide_as_before() {
        let c = config(&["--epochs", "3", "--lr", "0.002"]);
        let defaults = TrainConfig::default();
        assert_eq!((c.budget.epochs, c.budget.time_budget_secs), (3, 0.0));
        assert!(
            given(&c, "time_budget_secs"),
            "epochs end a budget on resume"
        );
        assert_eq!((c.optimizer.lr, c.optimizer.min_lr), (0.002, 0.002 / 10.0));
        assert_eq!(c.batch.seq_len, defaults.batch.seq_len);
        assert_eq!(c.outputs.output, defaults.outputs.output);
        let c = config(&["--time", "90s"]);
        assert_eq!((c.budget.time_budget_secs, c.budget.epochs), (90.0, 0));
    }

    #[test]
    fn init_names_the_base_and_refuses_resume() {
        let c = config(&["--init", "base.cllm", "--data", "mine"]);
        assert_eq!(c.model.init, Some(PathBuf::from("base.cllm")));
        assert!(given(&c, "init") && given(&c, "data"));
        let both = Train::try_parse_from(["train", "--init", "b.cllm", "--resume", "r.cllm"]);
        let err = both
            .err()
            .expect("--init with --resume is refused")
            .to_string();
        assert!(err.contains("--init") && err.contains("--resume"), "{err}");
    }
}
