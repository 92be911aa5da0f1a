//! `cllm eval`: a checkpoint's loss, perplexity, bits per byte, accuracy and
//! macro P/R/F1 on its own validation split or on other data; when the
//! checkpoint carries a memory, the bits per byte with it too.

use super::error_text;
use clap::{Args, ValueEnum};
use cllm_core::Gpt;
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use cllm_train::adapt::AdaptSettings;
use cllm_train::checkpoint;
use cllm_train::evaluate::{EvalWindows, default_stride, evaluate_model_with_memory};
use cllm_train::prepare::{gather_files, prepare, read_texts};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// The `.cllm` checkpoint or model to evaluate
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Files or folders to evaluate on [default: the checkpoint's own validation split]
    #[arg(long, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Tokens per window [default: the training sequence length]
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Worker threads; 0 = all cores
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Tokens from one window's start to the next. Windows overlap when it
    /// is less than the window, and each token is scored once, by the first
    /// window where it has at least `seq-len - stride` tokens of context;
    /// `--stride` equal to `--seq-len` scores non-overlapping windows
    /// [default: half the window]
    #[arg(long)]
    pub stride: Option<usize>,
    /// Evaluate only the first this many windows' worth of tokens
    /// (`max-windows x seq-len`; 0 = all)
    #[arg(long, default_value_t = 0)]
    pub max_windows: usize,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    /// Also score with the checkpoint's memory, when it has one
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub memory: Switch,
    #[command(flatten)]
    pub adapt: AdaptArgs,
}

/// An on/off flag's value (`--memory on|off`, `--brackets on|off`).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

pub fn run(args: EvalArgs) -> Result<(), String> {
    let ck = checkpoint::load(&args.model).map_err(|e| error_text(&e))?;
    let adapt = args
        .adapt
        .resolve(ck.train_config.evaluation.adapt)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let tokenizer = Tokenizer::from_json(&ck.tokenizer_json)
        .map_err(|e| format!("{}: tokenizer: {e}", args.model.display()))?;
    let mut cfg = ck.train_config.clone();
    let own_split = args.data.is_empty();
    if !own_split {
        cfg.corpus.data = args.data.clone();
        cfg.corpus.files.clear();
    }
    let cancel = AtomicBool::new(false);
    let (data, file_count) = if own_split {
        // Exactly the trainer's validation split: the same text split,
        // encoded with the checkpoint's tokenizer.
        let prepared = prepare(&cfg, Some(tokenizer.clone()), &cancel, &mut |_| {})
            .map_err(|e| error_text(&e))?;
        if let Some(saved) = &ck.state.data
            && let Some(what) = saved.difference(&prepared.fingerprint)
        {
            eprintln!(
                "warning: the data is not what {} was trained on ({what}): this is not its \
                 validation split as it was",
                args.model.display()
            );
        }
        (prepared.val, prepared.files)
    } else {
        let files = gather_files(&cfg, &cancel, &mut |_| {})?;
        let texts = read_texts(&files)?;
        (TokenDataset::from_texts(&tokenizer, &texts), files.len())
    };
    let seq_len = args.seq_len.unwrap_or(cfg.batch.seq_len);
    let stride = args.stride.unwrap_or_else(|| default_stride(seq_len));
    if stride == 0 || stride > seq_len {
        return Err(format!(
            "--stride {stride} must be between 1 and the window of {seq_len} tokens"
        ));
    }
    let windows = EvalWindows::new(&data, seq_len, stride, args.max_windows);
    let threads = if args.threads == 0 {
        cfg.threads = 0;
        cfg.resolved_threads()
    } else {
        args.threads
    };
    let memory = match args.memory {
        Switch::On => ck.repository_memory(&args.model)?,
        Switch::Off => None,
    };
    let model = Gpt::from_params(ck.model, ck.params)?;
    let started = std::time::Instant::now();
    let (stats, with_memory) =
        evaluate_model_with_memory(&model, &data, &windows, threads, memory.as_ref(), adapt)?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens_per_sec = windows.scored() as f64 / seconds.max(1e-9);
    if args.json {
        let mut value = serde_json::to_value(&stats).map_err(|e| e.to_string())?;
        if let Some(map) = value.as_object_mut() {
            super::inspect::insert_infill(map, tokenizer.fim_tokens().as_ref());
            map.insert("seq_len".into(), serde_json::json!(seq_len));
            map.insert("stride".into(), serde_json::json!(stride));
            map.insert("positions".into(), serde_json::json!(windows.scored()));
            map.insert("adapt".into(), serde_json::json!(adapt));
            map.insert("seconds".into(), serde_json::json!(seconds));
            map.insert("tokens_per_sec".into(), serde_json::json!(tokens_per_sec));
        }
        if let (Some(map), Some(with)) = (value.as_object_mut(), with_memory) {
            map.insert(
                "bits_per_byte_with_memory".into(),
                serde_json::json!(with.bits_per_byte),
            );
            map.insert("loss_with_memory".into(), serde_json::json!(with.loss));
        }
        println!(
            "{}",
            serde_json::to_string(&value).map_err(|e| e.to_string())?
        );
    } else {
        let what = if own_split {
            "its validation split".to_string()
        } else {
            format!("{file_count} files")
        };
        println!(
            "{} on {what} ({} tokens, windows of {seq_len} every {stride}: each token scored \
             once, with at least {} tokens of context after the first window):",
            args.model.display(),
            data.tokens.len(),
            seq_len - stride
        );
        if let Some(a) = adapt {
            println!(
                "  adapting while reading: one step per segment, lr {}, decay {}",
                a.lr, a.decay
            );
        }
        println!(
            "  loss {:.4} nats/token, perplexity {:.2}, {:.3} bits/byte",
            stats.loss, stats.perplexity, stats.bits_per_byte
        );
        println!(
            "  top-1 accuracy {:.3}, macro precision {:.3}, recall {:.3}, F1 {:.3}",
            stats.accuracy, stats.precision, stats.recall, stats.f1
        );
        if let (Some(with), Some(memory)) = (with_memory, &memory) {
            println!(
                "  with its memory ({} training tokens): loss {:.4} nats/token, {:.3} bits/byte",
                memory.tokens().len(),
                with.loss,
                with.bits_per_byte
            );
        }
        println!("  scored in {seconds:.1} s ({tokens_per_sec:.0} tokens/s)");
        println!(
            "  infill: {}",
            super::inspect::infill_text(tokenizer.fim_tokens().as_ref())
        );
    }
    Ok(())
}

/// The adaptation flags shared by `eval` and `generate`.
#[derive(Args, Debug, Clone, Default)]
pub struct AdaptArgs {
    /// Learn from the text while reading it: after each segment is scored
    /// (or each prompt segment read), one gradient step on it, decayed
    /// toward the trained weights; each document starts from the trained
    /// weights [default: the model's own setting]
    #[arg(long, value_enum)]
    pub adapt: Option<Switch>,
    /// Step size of each adaptation step (>= 0) [default: the model's own]
    #[arg(long, value_name = "LR", allow_negative_numbers = true)]
    pub adapt_lr: Option<f32>,
    /// Share of the way back to the trained weights after each step, 0 to
    /// 1 [default: the model's own]
    #[arg(long, value_name = "D", allow_negative_numbers = true)]
    pub adapt_decay: Option<f32>,
}

impl AdaptArgs {
    /// The flags over the model's `saved` settings; out-of-range values are
    /// refused.
    pub fn over(&self, saved: AdaptSettings) -> Result<AdaptSettings, String> {
        let settings = AdaptSettings {
            enabled: self.adapt.map_or(saved.enabled, |s| s == Switch::On),
            lr: self.adapt_lr.unwrap_or(saved.lr),
            decay: self.adapt_decay.unwrap_or(saved.decay),
        };
        settings.check()?;
        Ok(settings)
    }

    /// The settings to adapt with (`None`: do not adapt), from
    /// [`over`](Self::over).
    pub fn resolve(&self, saved: AdaptSettings) -> Result<Option<AdaptSettings>, String> {
        let settings = self.over(saved)?;
        Ok(settings.enabled.then_some(settings))
    }
}
