//! The smallest complete trainer: one thread, fp32, the `baby` preset on one
//! text file, written as a newcomer reads it. It uses the same model, ops,
//! data loader, optimizer and checkpoint format as `cllm train`, without
//! the sphere tree, time budgets, evaluation schedule, resume or the live
//! view; at one thread `cllm train` computes the same losses bit for bit
//! (`tests/train_minimal.rs` checks it).
//!
//!     cargo run --release --example train_minimal -- [TEXT_FILE] [--steps N] [--out FILE.cllm]
//!
//! Without a file it trains on the shipped `training_data/repo_code.txt`.
//! The saved model opens in the app and in `cllm generate --model FILE`.

use cllm_core::{Backward, Batch, Gpt, Loss, ModelConfig, Workspace};
use cllm_data::batches::{BatchPosition, Batcher};
use cllm_data::dataset::{Split, TokenDataset, split_texts};
use cllm_data::tokenizer::Tokenizer;
use cllm_train::checkpoint::{self, CheckpointRef, TrainingState};
use cllm_train::{AdamW, AdamWConfig, Schedule, ScheduleKind, TokenizerKind, TrainConfig};
use std::error::Error;
use std::path::{Path, PathBuf};

/// What a run is given. The defaults are `cllm train`'s, except the model
/// (always `baby`), the tokenizer (bytes: nothing to learn first) and the
/// length (a fixed number of steps instead of epochs).
#[derive(Clone, Debug)]
pub struct Settings {
    pub text: PathBuf,
    pub steps: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    pub grad_clip: f32,
    /// The share of the text, from its end, held out for validation.
    pub val_fraction: f32,
    pub seed: u64,
    /// Where the trained model is saved (`None`: not saved).
    pub output: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        let defaults = TrainConfig::default();
        Settings {
            text: PathBuf::from("training_data/repo_code.txt"),
            steps: 200,
            batch_size: defaults.batch.batch_size,
            seq_len: 64,
            lr: defaults.optimizer.lr,
            min_lr: defaults.optimizer.min_lr,
            warmup_steps: defaults.optimizer.warmup_steps,
            grad_clip: defaults.optimizer.grad_clip,
            val_fraction: defaults.corpus.val_fraction,
            seed: defaults.seed,
            output: Some(PathBuf::from("models/train_minimal.cllm")),
        }
    }
}

/// What a run produced: the loss of every step, and the loss on the
/// held-out text at the end.
pub struct Trained {
    pub losses: Vec<f32>,
    pub val_loss: f32,
}

/// The text read and split: the training tokens, the validation tokens,
/// and the tokenizer that made them.
fn load_data(s: &Settings) -> Result<(TokenDataset, TokenDataset, Tokenizer), Box<dyn Error>> {
    // Read as `cllm train` reads a file: UTF-8 checked, line ends and
    // stray control characters cleaned.
    let text = cllm_data::read_clean(&s.text)?;
    let name = s.text.display().to_string();
    // The validation text is the end of the file, cut at a line start,
    // before any tokenizer sees it.
    let (train_texts, val_texts) =
        split_texts(&[(name, text)], Split::Fraction(s.val_fraction), s.seed);
    // One token per byte: a vocabulary of 256, nothing to train.
    let tokenizer = Tokenizer::bytes();
    let train = TokenDataset::from_texts(&tokenizer, &train_texts);
    let val = TokenDataset::from_texts(&tokenizer, &val_texts);
    Ok((train, val, tokenizer))
}

/// The global L2 norm of the gradient, summed in f64 in four lanes (the
/// order the trainer's reduction uses, so clipping decides the same).
fn grad_norm(grads: &[f32]) -> f32 {
    let mut lanes = [0.0f64; 4];
    let chunks = grads.chunks_exact(4);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|&g| (g as f64) * (g as f64))
        .sum();
    for c in chunks {
        for k in 0..4 {
            lanes[k] += (c[k] as f64) * (c[k] as f64);
        }
    }
    (lanes[0] + lanes[1] + lanes[2] + lanes[3] + tail).sqrt() as f32
}

/// Mean loss per token over the validation windows (forward only).
fn validation_loss(model: &Gpt, ws: &mut Workspace, val: &TokenDataset, s: &Settings) -> f32 {
    let t = s.seq_len;
    let windows = val.tokens.len().saturating_sub(1) / t;
    let mut sum = 0.0f64;
    for w in 0..windows {
        let tokens = &val.tokens[w * t..w * t + t + 1];
        let batch = Batch {
            inputs: &tokens[..t],
            targets: &tokens[1..],
            batch: 1,
            seq: t,
        };
        sum += model.forward(ws, Loss::of(&batch)) as f64;
    }
    (sum / windows.max(1) as f64) as f32
}

/// Trains for `s.steps` steps and returns every step's loss.
pub fn train(s: &Settings) -> Result<Trained, Box<dyn Error>> {
    let (train, val, tokenizer) = load_data(s)?;
    let (b, t) = (s.batch_size, s.seq_len);

    // The model: the preset's shape, the tokenizer's vocabulary, a context
    // as long as the sequences it trains on. Weights drawn from the seed.
    let mut config = ModelConfig::preset("baby")?;
    config.vocab_size = tokenizer.vocab_size();
    config.n_ctx = t;
    let mut model = Gpt::new(config, s.seed)?;
    // Activations for one batch, kept for the backward pass.
    let mut ws = Workspace::new(&model.config, b, t);
    let mut grads = vec![0.0f32; model.params.len()];

    // AdamW with weight decay on the matrices only, and the learning rate:
    // a linear warm-up, then a cosine down to `min_lr` at the last step.
    let mut opt = AdamW::new(
        AdamWConfig::default(),
        model.layout.total,
        model.layout.decay_ranges(),
    );
    let schedule = Schedule::new(
        ScheduleKind::Cosine,
        s.lr,
        s.min_lr,
        s.warmup_steps,
        s.steps,
    );

    // The data loader cuts the training tokens into windows of `t + 1`
    // (inputs and the targets one token on) and visits them in an order
    // shuffled per epoch. An epoch is a whole number of steps: windows left
    // over at its end wait for the next epoch's order.
    let mut batcher = Batcher::new(&train, t, s.seed)?;
    let steps_per_epoch = (batcher.windows_per_epoch() / b).max(1) as u64;
    let (mut inputs, mut targets) = (vec![0u32; b * t], vec![0u32; b * t]);

    let mut losses = Vec::with_capacity(s.steps as usize);
    for step in 0..s.steps {
        // 1. The next batch: `b` windows, back to back.
        batcher.set_position(BatchPosition {
            epoch: step / steps_per_epoch,
            index: (step % steps_per_epoch) * b as u64,
        });
        for (i, o) in inputs.chunks_mut(t).zip(targets.chunks_mut(t)) {
            batcher.next_into(i, o);
        }
        let batch = Batch {
            inputs: &inputs,
            targets: &targets,
            batch: b,
            seq: t,
        };

        // 2. Forward and backward: the mean cross-entropy over the batch's
        // tokens, and its gradient (hence the scale 1 / tokens).
        grads.fill(0.0);
        let loss = model.forward_backward(
            &mut ws,
            &batch,
            &mut grads,
            Backward::scaled(1.0 / (b * t) as f32),
        );

        // 3. Clip: a gradient longer than `grad_clip` is scaled down to it.
        let norm = grad_norm(&grads);
        let lr = schedule.lr_at(step);
        if !(loss.is_finite() && norm.is_finite()) {
            // A step that went wrong changes no weight.
            eprintln!(
                "step {}: loss {loss}, gradient norm {norm}: skipped",
                step + 1
            );
            losses.push(loss);
            continue;
        }
        let scale = if s.grad_clip > 0.0 && norm > s.grad_clip {
            s.grad_clip / (norm + 1e-6)
        } else {
            1.0
        };

        // 4. Update: one AdamW step over the whole parameter buffer, the
        // clipping folded into the gradient's scale.
        let update = opt.begin_step(lr, scale);
        update.apply(0, &mut model.params, &grads, &mut opt.m, &mut opt.v);

        // 5. Record.
        losses.push(loss);
        if (step + 1) % 10 == 0 || step + 1 == s.steps {
            println!(
                "step {:>5}/{}  loss {loss:.4}  lr {lr:.2e}  grad norm {norm:.3}",
                step + 1,
                s.steps
            );
        }
    }

    let val_loss = validation_loss(&model, &mut ws, &val, s);
    if let Some(path) = &s.output {
        // Where the run stands, as `cllm inspect` shows it.
        let state = TrainingState {
            epoch: s.steps / steps_per_epoch,
            step: s.steps,
            data_epoch: s.steps / steps_per_epoch,
            data_index: (s.steps % steps_per_epoch) * b as u64,
            best_val_loss: Some(val_loss),
            lr: schedule.lr_at(s.steps.saturating_sub(1)),
            tokens_seen: s.steps * (b * t) as u64,
            horizon: s.steps,
            last_step: s.steps,
            ..TrainingState::start()
        };
        save(path, &model, &opt, &tokenizer, s, &state)?;
        println!("saved {}", path.display());
    }
    Ok(Trained { losses, val_loss })
}

/// Writes the model, its optimizer and its tokenizer as a `.cllm`
/// checkpoint, the file format of every other front end.
fn save(
    path: &Path,
    model: &Gpt,
    opt: &AdamW,
    tokenizer: &Tokenizer,
    s: &Settings,
    state: &TrainingState,
) -> Result<(), Box<dyn Error>> {
    // The settings, recorded as `cllm train` records its own.
    let mut config = TrainConfig::default();
    config.corpus.files = vec![s.text.clone()];
    config.model.preset = "baby".into();
    config.corpus.tokenizer = TokenizerKind::Bytes;
    config.batch.batch_size = s.batch_size;
    config.batch.seq_len = s.seq_len;
    config.budget.epochs = 0;
    config.budget.max_steps = s.steps;
    config.optimizer.lr = s.lr;
    config.optimizer.min_lr = s.min_lr;
    config.optimizer.warmup_steps = s.warmup_steps;
    config.optimizer.grad_clip = s.grad_clip;
    config.corpus.val_fraction = s.val_fraction;
    config.model.memory = false;
    config.outputs.output = path.to_path_buf();
    config.threads = 1;
    config.seed = s.seed;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tokenizer_json = tokenizer.to_json();
    checkpoint::save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: Some(opt.into()),
            tokenizer_json: &tokenizer_json,
            train_config: &config,
            state,
            memory: None,
        },
    )?;
    Ok(())
}

/// `[TEXT_FILE] [--steps N] [--out FILE.cllm]`.
fn parse_args() -> Result<Settings, String> {
    let mut s = Settings::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--steps" => {
                let v = value("--steps")?;
                s.steps = v
                    .parse()
                    .map_err(|_| format!("--steps: '{v}' is not a whole number"))?;
            }
            "--out" => s.output = Some(PathBuf::from(value("--out")?)),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            file => s.text = PathBuf::from(file),
        }
    }
    Ok(s)
}

fn main() {
    let outcome = parse_args().map_err(|e| e.into()).and_then(|s| train(&s));
    match outcome {
        Ok(trained) => println!("validation loss {:.4}", trained.val_loss),
        Err(e) => {
            eprintln!("train_minimal: {e}");
            std::process::exit(1);
        }
    }
}
