//! The trainer: prepares the data, builds or resumes the model, runs the
//! optimizer steps on the sphere tree, evaluates, checkpoints, logs, and
//! streams events. It runs on its own thread (`spawn`); front ends talk to it
//! only through the command and event channels.

use super::TrainConfig;
use super::events::{Command, EvalStats, Event, Phase, RunInfo, SaveReason, StepStats, Summary};
use super::metrics::{ClassCounts, bits_per_byte};
use super::optimizer::AdamW;
use super::prepare::{Prepared, prepare};
use super::runlog::RunLog;
use super::schedule::Schedule;
use super::spheres::{Spheres, StepInput};
use crate::checkpoint::{self, Checkpoint, CheckpointRef, OptimizerRef, TrainingState};
use crate::data::batches::{BatchPosition, Batcher};
use crate::data::dataset::TokenDataset;
use crate::data::tokenizer::Tokenizer;
use crate::model::{Gpt, ModelConfig};
use crossbeam_channel::{Receiver, Sender};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running training job: send it commands, drain its events.
pub struct TrainerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: Option<JoinHandle<()>>,
}

impl TrainerHandle {
    /// Asks the trainer to stop (it finishes the current step and saves).
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    /// True once the trainer thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

/// Starts training on a new thread. Everything, including data preparation
/// and errors, is reported through the event channel; the run ends with
/// `Event::Finished` or `Event::Error`.
pub fn spawn(config: TrainConfig) -> TrainerHandle {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("cllm-trainer".into())
        .spawn(move || {
            let mut emit = |e: Event| {
                let _ = ev_tx.send(e);
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(config, &cmd_rx, &mut emit)
            }));
            match outcome {
                Ok(Ok(summary)) => emit(Event::Finished(summary)),
                Ok(Err(message)) => emit(Event::Error(message)),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    emit(Event::Error(format!(
                        "internal error in the trainer: {what}"
                    )))
                }
            }
        })
        .expect("spawning the trainer thread");
    TrainerHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread: Some(thread),
    }
}

/// How often sphere stats are sent while a step runs.
const TICK: Duration = Duration::from_millis(100);
/// Consecutive non-finite steps after which the run stops.
const MAX_BAD_STEPS: u32 = 5;

/// Fields taken from the checkpoint when resuming: everything that defines
/// the data, the model and the optimisation, so the run continues exactly.
fn merge_resumed(saved: &TrainConfig, user: &TrainConfig) -> TrainConfig {
    TrainConfig {
        // Run control stays the user's.
        threads: user.threads,
        epochs: user.epochs,
        max_steps: user.max_steps,
        eval_every: user.eval_every,
        eval_batches: user.eval_batches,
        checkpoint_every: user.checkpoint_every,
        keep_checkpoints: user.keep_checkpoints,
        early_stop_patience: user.early_stop_patience,
        sample_every: user.sample_every,
        sample_prompt: user.sample_prompt.clone(),
        resume: user.resume.clone(),
        output: user.output.clone(),
        checkpoint_dir: user.checkpoint_dir.clone(),
        runs_dir: user.runs_dir.clone(),
        run_name: user.run_name.clone(),
        inject_nan_at_step: user.inject_nan_at_step,
        ..saved.clone()
    }
}

/// The model config a run uses: the preset, sized for the tokenizer and the
/// sequence length, with the dropout override.
pub fn model_config_for(config: &TrainConfig, vocab_size: usize) -> Result<ModelConfig, String> {
    let mut mc = ModelConfig::preset(&config.preset)
        .ok_or_else(|| format!("unknown model preset '{}'", config.preset))?;
    mc.vocab_size = vocab_size;
    mc.n_ctx = mc.n_ctx.max(config.seq_len);
    if let Some(d) = config.dropout {
        mc.dropout = d;
    }
    mc.validate()?;
    Ok(mc)
}

/// Steps per epoch and the schedule's horizon.
fn plan(config: &TrainConfig, windows: usize) -> (u64, u64) {
    let per_step = (config.batch_size * config.accum_steps) as u64;
    let steps_per_epoch = (windows as u64 / per_step).max(1);
    let horizon = if config.epochs > 0 {
        steps_per_epoch * config.epochs as u64
    } else {
        config.max_steps
    };
    (steps_per_epoch, horizon)
}

/// Runs one training job to the end on the calling thread.
pub fn run(
    user_config: TrainConfig,
    commands: &Receiver<Command>,
    emit: &mut dyn FnMut(Event),
) -> Result<Summary, String> {
    user_config.validate()?;
    let started = Instant::now();

    // Resume: the checkpoint decides data, model and optimisation.
    let resumed: Option<Checkpoint> = match &user_config.resume {
        Some(path) => Some(checkpoint::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let config = match &resumed {
        Some(ck) => merge_resumed(&ck.train_config, &user_config),
        None => user_config.clone(),
    };
    config.validate()?;

    // Data, with a watcher so Stop also cancels scanning and tokenizing.
    let cancel = Arc::new(AtomicBool::new(false));
    let prep_done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cancel, done, commands) = (cancel.clone(), prep_done.clone(), commands.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(Command::Stop) = commands.recv_timeout(Duration::from_millis(50)) {
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        })
    };
    let saved_tokenizer = match &resumed {
        Some(ck) => Some(Tokenizer::from_json(&ck.tokenizer_json)?),
        None => None,
    };
    let prepared = prepare(&config, saved_tokenizer, &cancel, emit);
    prep_done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    if cancel.load(Ordering::Relaxed) {
        return Err("stopped before training began".into());
    }
    let Prepared {
        tokenizer,
        train,
        val,
        files,
        ..
    } = prepared.map_err(|e| e.to_string())?;
    let tokenizer_json = tokenizer.to_json();

    // Model and optimizer.
    let (mut model, mut opt, mut state) = match resumed {
        Some(ck) => {
            let model = Gpt::from_params(ck.model, ck.params)?;
            let opt = match ck.optimizer {
                Some(o) => o.into_adamw(&model.layout),
                None => {
                    emit(Event::Warning(
                        "the checkpoint holds weights only: optimizer moments restart from zero"
                            .into(),
                    ));
                    AdamW::new(
                        config.adamw.clone(),
                        model.layout.total,
                        model.layout.decay_ranges(),
                    )
                }
            };
            (model, opt, ck.state)
        }
        None => {
            let mc = model_config_for(&config, tokenizer.vocab_size())?;
            let model = Gpt::new(mc, config.seed)?;
            let opt = AdamW::new(
                config.adamw.clone(),
                model.layout.total,
                model.layout.decay_ranges(),
            );
            (model, opt, TrainingState::start(config.seed))
        }
    };
    if model.config.vocab_size < tokenizer.vocab_size() {
        return Err(format!(
            "the model's vocabulary ({}) is smaller than the tokenizer's ({})",
            model.config.vocab_size,
            tokenizer.vocab_size()
        ));
    }
    if config.seq_len > model.config.n_ctx {
        return Err(format!(
            "sequence length {} is longer than the model's context {}",
            config.seq_len, model.config.n_ctx
        ));
    }

    let seq_len = config.seq_len;
    let mut batcher =
        Batcher::new(&train, seq_len, config.seed).map_err(|e| format!("training data: {e}"))?;
    let (steps_per_epoch, horizon) = plan(&config, batcher.windows_per_epoch());
    let last_step = if config.max_steps > 0 {
        horizon.min(config.max_steps)
    } else {
        horizon
    };
    let schedule = Schedule {
        kind: config.schedule,
        base_lr: config.lr,
        min_lr: config.min_lr,
        warmup_steps: config.warmup_steps,
        total_steps: horizon,
    };
    let threads = config.resolved_threads();
    let seqs_per_step = config.batch_size * config.accum_steps;
    let mut spheres = Spheres::new(&model, threads, seqs_per_step, seq_len);
    let val_windows = eval_windows(&val, seq_len, config.eval_batches * config.batch_size);
    let bytes_per_token = if val.tokens.is_empty() {
        train.bytes as f64 / train.tokens.len().max(1) as f64
    } else {
        val.bytes as f64 / val.tokens.len() as f64
    };

    let mut log = RunLog::create(&config, &model.config)?;
    emit(Event::Ready(RunInfo {
        files,
        train_tokens: train.tokens.len(),
        val_tokens: val.tokens.len(),
        vocab_size: model.config.vocab_size,
        params: model.layout.total,
        threads,
        total_steps: last_step,
    }));
    emit(Event::Phase(Phase::Training));
    emit(Event::Spheres(spheres.stats()));

    let mut saver = Saver {
        config: &config,
        tokenizer_json: &tokenizer_json,
        started,
        last_saved: None,
    };
    let mut inputs = vec![0u32; seqs_per_step * seq_len];
    let mut targets = vec![0u32; seqs_per_step * seq_len];
    let mut summary = Summary {
        steps: 0,
        epochs_done: 0,
        total_secs: 0.0,
        epoch_secs: Vec::new(),
        secs_per_batch: 0.0,
        tokens_per_sec: 0.0,
        initial_loss: f32::NAN,
        final_loss: f32::NAN,
        best_val_loss: state.best_val_loss,
        best_bits_per_byte: None,
        sphere_batches: Vec::new(),
        load_imbalance: 0.0,
        peak_memory_bytes: 0,
        skipped_updates: 0,
        stopped_early: false,
        final_model: None,
    };
    let mut bad_in_a_row = 0u32;
    let mut norm_watch = NormWatch::default();
    let mut evals_without_gain = 0usize;
    let mut stop = false;
    let train_started = Instant::now();
    let mut epoch_started = Instant::now();
    let first_step = state.step;
    let mut tokens_done = 0u64;

    while state.step < last_step && !stop {
        let step = state.step;
        let epoch = (step / steps_per_epoch) as usize;
        let index_in_epoch = step % steps_per_epoch;
        batcher.set_position(BatchPosition {
            epoch: epoch as u64,
            index: index_in_epoch * seqs_per_step as u64,
        });
        for s in 0..seqs_per_step {
            let r = s * seq_len..(s + 1) * seq_len;
            batcher.next_into(&mut inputs[r.clone()], &mut targets[r]);
        }

        let input = StepInput {
            inputs: &inputs,
            targets: &targets,
            n_seqs: seqs_per_step,
            seq_len,
            step,
            seed: config.seed,
            dropout: model.config.dropout > 0.0,
        };
        let mut tick = |stats| emit(Event::Spheres(stats));
        let mut outcome = spheres.compute_gradients(&model, &input, TICK, &mut tick);
        if config.inject_nan_at_step == Some(step) {
            spheres.gradient_mut()[0] = f32::NAN;
            outcome.grad_norm = f32::NAN;
        }
        let lr = schedule.lr_at(step);
        let finite = outcome.loss.is_finite() && outcome.grad_norm.is_finite();
        let mut clipped = false;
        if finite {
            bad_in_a_row = 0;
            let mut scale = 1.0;
            if config.grad_clip > 0.0 && outcome.grad_norm > config.grad_clip {
                scale = config.grad_clip / (outcome.grad_norm + 1e-6);
                clipped = true;
            }
            spheres.apply_update(&mut model.params, &mut opt, lr, scale);
            if let Some(w) = norm_watch.observe(outcome.grad_norm, step) {
                emit(Event::Warning(w));
            }
        } else {
            bad_in_a_row += 1;
            summary.skipped_updates += 1;
            emit(Event::Warning(format!(
                "step {}: loss {} / gradient norm {} is not finite; update skipped ({} skipped so far)",
                step + 1,
                outcome.loss,
                outcome.grad_norm,
                summary.skipped_updates
            )));
            if bad_in_a_row >= MAX_BAD_STEPS {
                return Err(format!(
                    "training diverged: {MAX_BAD_STEPS} steps in a row had non-finite loss or gradients; \
                     the last good checkpoint{} is intact",
                    saver
                        .last_saved
                        .as_ref()
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_default()
                ));
            }
        }
        state.step += 1;
        state.lr = lr;
        tokens_done += (seqs_per_step * seq_len) as u64;
        state.tokens_seen += (seqs_per_step * seq_len) as u64;
        if summary.initial_loss.is_nan() && finite {
            summary.initial_loss = outcome.loss;
        }
        if finite {
            summary.final_loss = outcome.loss;
        }

        let elapsed = train_started.elapsed().as_secs_f64();
        let done_here = state.step - first_step;
        let tokens_per_sec = tokens_done as f64 / elapsed.max(1e-9);
        let eta = elapsed / done_here as f64 * (last_step - state.step) as f64;
        let stats = StepStats {
            epoch,
            epochs: config.epochs,
            step: state.step,
            total_steps: last_step,
            loss: outcome.loss,
            lr,
            grad_norm: outcome.grad_norm,
            clipped,
            tokens_per_sec,
            elapsed_secs: state.elapsed_secs + elapsed,
            eta_secs: eta,
        };
        log.step(&stats)?;
        emit(Event::Step(stats));
        emit(Event::Spheres(spheres.stats()));

        // Commands arrive between steps: stop within one step.
        let mut save_now = false;
        for cmd in commands.try_iter() {
            match cmd {
                Command::Stop => stop = true,
                Command::SaveNow => save_now = true,
            }
        }

        let epoch_end = state.step % steps_per_epoch == 0;
        let eval_due = (config.eval_every > 0 && state.step % config.eval_every == 0) || epoch_end;
        state.data_epoch = state.step / steps_per_epoch;
        state.data_index = (state.step % steps_per_epoch) * seqs_per_step as u64;
        state.epoch = state.data_epoch;
        if eval_due && !val_windows.is_empty() {
            let ev = evaluate(
                &mut spheres,
                &model,
                &val,
                &val_windows,
                seq_len,
                bytes_per_token,
                epoch,
                state.step,
            );
            log.eval(&ev)?;
            emit(Event::Eval(ev.clone()));
            let better = state.best_val_loss.is_none_or(|b| ev.loss < b);
            if better && ev.loss.is_finite() {
                state.best_val_loss = Some(ev.loss);
                summary.best_val_loss = Some(ev.loss);
                summary.best_bits_per_byte = Some(ev.bits_per_byte);
                evals_without_gain = 0;
                let path = checkpoint::best_path(&config.checkpoint_dir);
                saver.save(&path, SaveReason::Best, &model, &opt, &state, emit)?;
            } else {
                evals_without_gain += 1;
                if config.early_stop_patience > 0
                    && evals_without_gain >= config.early_stop_patience
                {
                    emit(Event::Warning(format!(
                        "early stop: no validation gain in {evals_without_gain} evaluations"
                    )));
                    summary.stopped_early = true;
                    stop = true;
                }
            }
        }
        if config.sample_every > 0 && state.step.is_multiple_of(config.sample_every) {
            let text = crate::generate::sample_text(
                &model,
                &tokenizer,
                &config.sample_prompt,
                64,
                config.seed ^ state.step,
            );
            emit(Event::Sample {
                step: state.step,
                text: format!("{}{text}", config.sample_prompt),
            });
        }
        if epoch_end {
            summary
                .epoch_secs
                .push(epoch_started.elapsed().as_secs_f64());
            epoch_started = Instant::now();
            summary.epochs_done += 1;
            let n_epoch = state.step / steps_per_epoch;
            if config.checkpoint_every > 0 && n_epoch % config.checkpoint_every as u64 == 0 {
                let loss = state.best_val_loss.unwrap_or(outcome.loss);
                let path = checkpoint::periodic_path(&config.checkpoint_dir, n_epoch, loss);
                saver.save(&path, SaveReason::Periodic, &model, &opt, &state, emit)?;
                if let Err(e) = checkpoint::prune_periodic(
                    &config.checkpoint_dir,
                    config.keep_checkpoints.max(1),
                ) {
                    emit(Event::Warning(format!("old checkpoints not pruned: {e}")));
                }
            }
        }
        if save_now {
            let path = config
                .checkpoint_dir
                .join(format!("checkpoint_manual_step_{}.cllm", state.step));
            saver.save(&path, SaveReason::Manual, &model, &opt, &state, emit)?;
        }
    }

    // The final model (also after a stop: the last step's weights).
    let final_path = config.output.clone();
    saver.save(&final_path, SaveReason::Final, &model, &opt, &state, emit)?;
    let total = started.elapsed().as_secs_f64();
    let steps_here = state.step - first_step;
    summary.steps = state.step;
    summary.total_secs = total;
    let batches_here = steps_here * seqs_per_step as u64;
    summary.secs_per_batch = train_started.elapsed().as_secs_f64() / batches_here.max(1) as f64;
    summary.tokens_per_sec = tokens_done as f64 / train_started.elapsed().as_secs_f64().max(1e-9);
    summary.sphere_batches = spheres.batches();
    summary.load_imbalance = imbalance(&summary.sphere_batches);
    summary.peak_memory_bytes = peak_memory_bytes();
    summary.final_model = Some(final_path);
    if state.step < last_step && !summary.stopped_early {
        emit(Event::Warning(format!(
            "stopped at step {} of {last_step}",
            state.step
        )));
    }
    Ok(summary)
}

/// Writes checkpoints and remembers the last good one.
struct Saver<'a> {
    config: &'a TrainConfig,
    tokenizer_json: &'a str,
    /// When the run began (saved states add the time spent so far).
    started: Instant,
    last_saved: Option<PathBuf>,
}

impl Saver<'_> {
    fn save(
        &mut self,
        path: &Path,
        reason: SaveReason,
        model: &Gpt,
        opt: &AdamW,
        state: &TrainingState,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
        let mut state = state.clone();
        state.elapsed_secs += self.started.elapsed().as_secs_f64();
        let ck = CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: Some(OptimizerRef {
                config: &opt.config,
                step: opt.step,
                m: &opt.m,
                v: &opt.v,
            }),
            tokenizer_json: self.tokenizer_json,
            train_config: self.config,
            state: &state,
        };
        match checkpoint::save(path, &ck) {
            Ok(_) => {
                self.last_saved = Some(path.to_path_buf());
                emit(Event::Checkpoint {
                    path: path.to_path_buf(),
                    reason,
                });
                Ok(())
            }
            // A failed periodic or best save must not end hours of training:
            // warn and go on; the previous file is intact.
            Err(e) if reason != SaveReason::Final => {
                emit(Event::Warning(format!("checkpoint not written: {e}")));
                Ok(())
            }
            Err(e) => Err(format!("final model not written: {e}")),
        }
    }
}

/// Evaluates `model` on consecutive windows of `data` (at most
/// `max_windows`, 0 = all) shared across `threads` spheres: loss,
/// perplexity, bits per byte, accuracy and macro P/R/F1.
pub fn evaluate_model(
    model: &Gpt,
    data: &TokenDataset,
    seq_len: usize,
    threads: usize,
    max_windows: usize,
) -> Result<EvalStats, String> {
    if seq_len == 0 || seq_len > model.config.n_ctx {
        return Err(format!(
            "sequence length {seq_len} must be between 1 and the model's context {}",
            model.config.n_ctx
        ));
    }
    let windows = eval_windows(data, seq_len, max_windows);
    if windows.is_empty() {
        return Err(format!(
            "not enough tokens to evaluate: {} tokens, windows of {seq_len}",
            data.tokens.len()
        ));
    }
    let threads = threads.max(1);
    let per_sphere = windows.len().div_ceil(threads).min(16);
    let mut spheres = Spheres::new(model, threads, per_sphere * threads, seq_len);
    let bytes_per_token = data.bytes as f64 / data.tokens.len().max(1) as f64;
    Ok(evaluate(
        &mut spheres,
        model,
        data,
        &windows,
        seq_len,
        bytes_per_token,
        0,
        0,
    ))
}

/// Start offsets of the validation windows (at most `limit`, 0 = all).
fn eval_windows(val: &TokenDataset, seq_len: usize, limit: usize) -> Vec<usize> {
    let n = val.tokens.len().saturating_sub(1) / seq_len;
    let n = if limit > 0 { n.min(limit) } else { n };
    (0..n).map(|i| i * seq_len).collect()
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
) -> EvalStats {
    let mut inputs = Vec::with_capacity(windows.len() * seq_len);
    let mut targets = Vec::with_capacity(windows.len() * seq_len);
    for &w in windows {
        inputs.extend_from_slice(&val.tokens[w..w + seq_len]);
        targets.extend_from_slice(&val.tokens[w + 1..w + seq_len + 1]);
    }
    let (loss_sum, counts): (f64, ClassCounts) =
        spheres.evaluate(model, &inputs, &targets, windows.len(), seq_len);
    let loss = (loss_sum / (windows.len() * seq_len) as f64) as f32;
    let (precision, recall, f1) = counts.macro_prf();
    EvalStats {
        epoch,
        step,
        loss,
        perplexity: loss.exp(),
        bits_per_byte: bits_per_byte(loss, bytes_per_token),
        accuracy: counts.accuracy(),
        precision,
        recall,
        f1,
    }
}

/// (max - min) / mean of the per-sphere batch counts.
fn imbalance(batches: &[u64]) -> f64 {
    if batches.is_empty() {
        return 0.0;
    }
    let max = *batches.iter().max().unwrap() as f64;
    let min = *batches.iter().min().unwrap() as f64;
    let mean = batches.iter().sum::<u64>() as f64 / batches.len() as f64;
    if mean > 0.0 { (max - min) / mean } else { 0.0 }
}

/// Peak resident memory of this process (Linux; 0 elsewhere).
pub fn peak_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Warns when the gradient norm leaves its running range (explosion or
/// vanishing), at most once every 50 steps.
#[derive(Default)]
struct NormWatch {
    log_mean: f64,
    seen: u64,
    last_warning: Option<u64>,
}

impl NormWatch {
    fn observe(&mut self, norm: f32, step: u64) -> Option<String> {
        let x = (norm as f64).max(1e-30).ln();
        self.seen += 1;
        if self.seen == 1 {
            self.log_mean = x;
            return None;
        }
        let typical = self.log_mean.exp();
        self.log_mean = 0.95 * self.log_mean + 0.05 * x;
        if self.seen < 20 || self.last_warning.is_some_and(|w| step < w + 50) {
            return None;
        }
        let msg = if norm as f64 > 10.0 * typical {
            format!(
                "step {}: gradient norm {norm:.3e} is over 10x its running level {typical:.3e} (explosion?)",
                step + 1
            )
        } else if (norm as f64) < typical / 100.0 {
            format!(
                "step {}: gradient norm {norm:.3e} is under 1/100 of its running level {typical:.3e} (vanishing?)",
                step + 1
            )
        } else {
            return None;
        };
        self.last_warning = Some(step);
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imbalance_and_plan() {
        assert_eq!(imbalance(&[4, 4, 4]), 0.0);
        assert!((imbalance(&[2, 1, 0]) - 2.0).abs() < 1e-12);
        let cfg = TrainConfig {
            batch_size: 4,
            accum_steps: 2,
            epochs: 3,
            ..TrainConfig::default()
        };
        assert_eq!(plan(&cfg, 100), (12, 36));
        assert_eq!(plan(&cfg, 3), (1, 3));
        let cfg = TrainConfig {
            epochs: 0,
            max_steps: 7,
            ..cfg
        };
        assert_eq!(plan(&cfg, 100).1, 7);
    }

    #[test]
    fn norm_watch_flags_a_spike_once() {
        let mut w = NormWatch::default();
        for s in 0..30 {
            assert!(w.observe(1.0, s).is_none());
        }
        assert!(w.observe(100.0, 30).unwrap().contains("explosion"));
        assert!(w.observe(100.0, 31).is_none(), "rate limited");
        for s in 32..90 {
            w.observe(1.0, s);
        }
        assert!(w.observe(1e-4, 90).unwrap().contains("vanishing"));
    }
}
