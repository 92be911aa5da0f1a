//! A training run between its phases. [`Run::settle_config`] (a resumed run
//! takes its checkpoint's settings), [`Run::prepare_data`], [`Run::build`]
//! (model, optimizer, plan, spheres, the run's folder), [`Run::step`],
//! [`Run::after_step`] (evaluation, samples, epoch ends, saves) and
//! [`Run::finish`]; the loop that calls them is `trainer::run`.

use super::TrainConfig;
use super::evaluate::{eval_windows, evaluate};
use super::events::{Command, Event, Phase, RunInfo, SaveReason, StepStats, Summary};
use super::faults::Faults;
use super::memory;
use super::metrics::{imbalance, peak_memory_bytes};
use super::optimizer::AdamW;
use super::plan::{Plan, plan, resumed_plan};
use super::prepare::{PrepareError, Prepared, prepare};
use super::resume;
use super::runlog::{RunLog, unique_run_name};
use super::saving::{RUN_FINAL_NAME, Saver, copy_atomically, keep_previous_output};
use super::schedule::Schedule;
use super::spheres::{Spheres, StepInput};
use super::watch::NormWatch;
use crate::checkpoint::{self, Checkpoint, TrainingState};
use crate::data::batches::{BatchPosition, Batcher};
use crate::data::dataset::TokenDataset;
use crate::data::tokenizer::Tokenizer;
use crate::model::{Gpt, ModelConfig};
use crossbeam_channel::Receiver;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often sphere stats are sent while a step runs.
const TICK: Duration = Duration::from_millis(100);
/// Consecutive non-finite steps after which the run stops.
const MAX_BAD_STEPS: u32 = 5;

/// The model config a run uses: the preset, sized for the tokenizer, with
/// the dropout override. Its context is the sequence length it is trained
/// at, so generation never runs over positions the model never learned.
pub fn model_config_for(config: &TrainConfig, vocab_size: usize) -> Result<ModelConfig, String> {
    let mut mc = ModelConfig::preset(&config.preset)
        .ok_or_else(|| format!("unknown model preset '{}'", config.preset))?;
    mc.vocab_size = vocab_size;
    mc.n_ctx = config.seq_len;
    if let Some(d) = config.dropout {
        mc.dropout = d;
    }
    mc.validate()?;
    Ok(mc)
}

/// One optimizer step's results.
pub struct StepOutcome {
    loss: f32,
    epoch: usize,
}

/// A training run between its phases: data, model, optimizer, where it
/// stands, and what it has measured so far.
pub struct Run {
    faults: Faults,
    config: TrainConfig,
    tokenizer: Tokenizer,
    val: TokenDataset,
    model: Gpt,
    opt: AdamW,
    state: TrainingState,
    plan: Plan,
    schedule: Schedule,
    spheres: Spheres,
    batcher: Batcher,
    val_windows: Vec<usize>,
    bytes_per_token: f64,
    log: RunLog,
    saver: Saver,
    run_dir: PathBuf,
    summary: Summary,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    bad_in_a_row: u32,
    norm_watch: NormWatch,
    first_step: u64,
    tokens_done: u64,
    train_started: Instant,
    epoch_started: Instant,
}

impl Run {
    /// True once the run has reached the step it stops at.
    pub fn is_done(&self) -> bool {
        self.state.step >= self.plan.last_step
    }

    /// True once early stopping has ended the run.
    pub fn stopped_early(&self) -> bool {
        self.summary.stopped_early
    }

    /// Phase 0: the config the run uses. A resumed run takes the
    /// checkpoint's settings except those the user gave (`train::resume`).
    pub fn settle_config(
        user: TrainConfig,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(TrainConfig, Option<Checkpoint>), String> {
        let Some(path) = user.resume.clone() else {
            return Ok((user, None));
        };
        let ck = checkpoint::load(&path).map_err(|e| e.to_string())?;
        let (config, notes) = resume::resumed_config(&ck.train_config, &user, &user.given)?;
        for note in notes {
            emit(Event::Warning(note));
        }
        config.validate()?;
        Ok((config, Some(ck)))
    }

    /// Phase 1: scan, read, tokenize and split the data. `None` when the
    /// user stopped it (a stop, not an error).
    pub fn prepare_data(
        config: &TrainConfig,
        resumed: Option<&Checkpoint>,
        commands: &Receiver<Command>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Option<Prepared>, String> {
        // A watcher turns Stop into the cancel flag the data phases poll.
        let cancel = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (cancel, done, commands) = (cancel.clone(), done.clone(), commands.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(Command::Stop) = commands.recv_timeout(Duration::from_millis(50)) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            })
        };
        let saved_tokenizer = match resumed {
            Some(ck) => Some(Tokenizer::from_json(&ck.tokenizer_json)?),
            None => None,
        };
        let prepared = prepare(config, saved_tokenizer, &cancel, emit);
        done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        match prepared {
            Err(PrepareError::Stopped) => Ok(None),
            Err(PrepareError::Failed(message)) => Err(message),
            // A Stop that came as preparation ended still stops the run.
            Ok(_) if cancel.load(Ordering::Relaxed) => Ok(None),
            Ok(p) => Ok(Some(p)),
        }
    }

    /// Phase 2: the model and optimizer, new or from the checkpoint; the
    /// plan, the sphere tree, the run's folder and log.
    pub fn build(
        mut config: TrainConfig,
        faults: Faults,
        prepared: Prepared,
        resumed: Option<Checkpoint>,
        started: Instant,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Run, String> {
        let Prepared {
            tokenizer,
            train,
            val,
            files,
            fingerprint,
        } = prepared;
        let seq_len = config.seq_len;
        let batcher = Batcher::new(&train, seq_len, config.seed)
            .map_err(|e| format!("training data: {e}"))?;
        let windows = batcher.windows_per_epoch();
        let threads = config.resolved_threads();
        let mut notes = Vec::new();
        // A resumed run continues in its own folders unless given a new name.
        let saved_run_name = resumed.as_ref().map(|ck| ck.train_config.run_name.clone());
        let (model, opt, state, plan) = match resumed {
            Some(ck) => {
                let mut state = ck.state;
                let plan = resumed_plan(&config, &ck.train_config, &state, windows, &mut notes);
                let changed = state
                    .data
                    .as_ref()
                    .and_then(|saved| saved.difference(&fingerprint));
                if let Some(what) = &changed {
                    if !config.allow_data_change {
                        return Err(format!(
                            "the training data is not what the checkpoint was trained on: {what}. \
                             Resume on this data anyway with --allow-data-change, or start a new run"
                        ));
                    }
                    notes.push(format!(
                        "the training data changed since the checkpoint ({what}); continuing on the \
                         new data as asked"
                    ));
                }
                state.data = Some(fingerprint);
                let implied = (
                    state.step / plan.steps_per_epoch,
                    (state.step % plan.steps_per_epoch)
                        * (config.batch_size * config.accum_steps) as u64,
                );
                if changed.is_none() && (state.data_epoch, state.data_index) != implied {
                    return Err(format!(
                        "the checkpoint's data position (epoch {}, sequence {}) does not match \
                         its step {} on this data (epoch {}, sequence {}): the data is not the \
                         data it was trained on",
                        state.data_epoch, state.data_index, state.step, implied.0, implied.1
                    ));
                }
                memory::check_training_fits(&config, &ck.model, threads)?;
                let model = Gpt::from_params(ck.model, ck.params)?;
                let opt = match ck.optimizer {
                    Some(o) => o.into_adamw(&model.layout),
                    None => {
                        notes.push(
                            "the checkpoint holds weights only: optimizer moments restart from zero"
                                .into(),
                        );
                        AdamW::new(
                            config.adamw.clone(),
                            model.layout.total,
                            model.layout.decay_ranges(),
                        )
                    }
                };
                if state.step >= plan.last_step {
                    return Err(format!(
                        "the run in {} already reached its last step ({}); give --epochs or \
                         --max-steps to train further",
                        config
                            .resume
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        plan.last_step
                    ));
                }
                (model, opt, state, plan)
            }
            None => {
                let mc = model_config_for(&config, tokenizer.vocab_size())?;
                // Settings the machine cannot hold are refused before
                // anything is allocated for them.
                memory::check_training_fits(&config, &mc, threads)?;
                let model = Gpt::new(mc, config.seed)?;
                let opt = AdamW::new(
                    config.adamw.clone(),
                    model.layout.total,
                    model.layout.decay_ranges(),
                );
                let state = TrainingState {
                    data: Some(fingerprint),
                    ..TrainingState::start()
                };
                (model, opt, state, plan(&config, windows))
            }
        };
        for note in notes {
            emit(Event::Warning(note));
        }
        if model.config.vocab_size < tokenizer.vocab_size() {
            return Err(format!(
                "the model's vocabulary ({}) is smaller than the tokenizer's ({})",
                model.config.vocab_size,
                tokenizer.vocab_size()
            ));
        }
        if seq_len > model.config.n_ctx {
            return Err(format!(
                "sequence length {seq_len} is longer than the model's context {}",
                model.config.n_ctx
            ));
        }

        // The run's own folder, under a name no other run has.
        let continues_its_run = saved_run_name.as_deref() == Some(config.run_name.as_str())
            && !config.run_name.is_empty();
        if !continues_its_run {
            let name = unique_run_name(&config);
            if !config.run_name.is_empty() && name != config.run_name {
                emit(Event::Warning(format!(
                    "a run named '{}' already exists: this run is '{name}'",
                    config.run_name
                )));
            }
            config.run_name = name;
        }
        let run_dir = config.checkpoint_dir.join(&config.run_name);
        std::fs::create_dir_all(&run_dir).map_err(|e| {
            format!(
                "cannot create the run's checkpoint folder {}: {e}",
                run_dir.display()
            )
        })?;
        let log = if state.step > 0 {
            RunLog::resume(&config, &model.config, state.step)?
        } else {
            RunLog::create(&config, &model.config)?
        };

        // Each sphere runs its share of a step as micro-batches of its share
        // of `batch_size`: memory does not grow with accumulation.
        let spheres = Spheres::new(&model, threads, config.batch_size, seq_len);
        let val_windows = eval_windows(&val, seq_len, config.eval_batches * config.batch_size);
        if val_windows.is_empty() {
            emit(Event::Warning(format!(
                "the validation split ({} tokens) is too small to evaluate at sequence length \
                 {seq_len}: no validation loss, no best checkpoint and no early stopping in \
                 this run{}",
                val.tokens.len(),
                if config.val_fraction > 0.0 {
                    "; raise --val-fraction or add data"
                } else {
                    " (validation fraction is 0)"
                }
            )));
        }
        let bytes_per_token = if val.tokens.is_empty() {
            train.bytes as f64 / train.tokens.len().max(1) as f64
        } else {
            val.bytes as f64 / val.tokens.len() as f64
        };
        emit(Event::Ready(RunInfo {
            files,
            train_tokens: train.tokens.len(),
            val_tokens: val.tokens.len(),
            vocab_size: model.config.vocab_size,
            params: model.layout.total,
            threads,
            total_steps: plan.last_step,
            first_step: state.step,
            run_name: config.run_name.clone(),
            run_dir: run_dir.clone(),
            workspace_bytes: spheres.workspace_bytes(),
        }));
        emit(Event::Phase(Phase::Training));
        emit(Event::Spheres(spheres.stats()));

        let seqs_per_step = config.batch_size * config.accum_steps;
        let schedule = Schedule {
            kind: config.schedule,
            base_lr: config.lr,
            min_lr: config.min_lr,
            warmup_steps: config.warmup_steps,
            total_steps: plan.horizon,
        };
        let mut summary = Summary::empty(0.0);
        summary.best_val_loss = state.best_val_loss;
        Ok(Run {
            faults,
            saver: Saver {
                config: config.clone(),
                tokenizer_json: tokenizer.to_json(),
                started,
                last_saved: None,
            },
            tokenizer,
            val,
            model,
            opt,
            first_step: state.step,
            state,
            plan,
            schedule,
            spheres,
            batcher,
            val_windows,
            bytes_per_token,
            log,
            run_dir,
            summary,
            inputs: vec![0u32; seqs_per_step * seq_len],
            targets: vec![0u32; seqs_per_step * seq_len],
            bad_in_a_row: 0,
            norm_watch: NormWatch::default(),
            tokens_done: 0,
            train_started: Instant::now(),
            epoch_started: Instant::now(),
            config,
        })
    }

    /// Phase 3: one optimizer step: the step's sequences, forward and
    /// backward on the spheres, the reduction, clipping and AdamW.
    pub fn step(&mut self, emit: &mut dyn FnMut(Event)) -> Result<StepOutcome, String> {
        let config = &self.config;
        let seq_len = config.seq_len;
        let seqs_per_step = config.batch_size * config.accum_steps;
        let step = self.state.step;
        let epoch = (step / self.plan.steps_per_epoch) as usize;
        self.batcher.set_position(BatchPosition {
            epoch: epoch as u64,
            index: (step % self.plan.steps_per_epoch) * seqs_per_step as u64,
        });
        for s in 0..seqs_per_step {
            let r = s * seq_len..(s + 1) * seq_len;
            self.batcher
                .next_into(&mut self.inputs[r.clone()], &mut self.targets[r]);
        }
        let input = StepInput {
            inputs: &self.inputs,
            targets: &self.targets,
            n_seqs: seqs_per_step,
            seq_len,
            step,
            seed: config.seed,
            dropout: self.model.config.dropout > 0.0,
        };
        let mut tick = |stats| emit(Event::Spheres(stats));
        let mut outcome = self
            .spheres
            .compute_gradients(&self.model, &input, TICK, &mut tick);
        if self.faults.nan_at_step == Some(step) {
            self.spheres.gradient_mut()[0] = f32::NAN;
            outcome.grad_norm = f32::NAN;
        }
        let lr = self.schedule.lr_at(step);
        let finite = outcome.loss.is_finite() && outcome.grad_norm.is_finite();
        let mut clipped = false;
        if finite {
            self.bad_in_a_row = 0;
            let mut scale = 1.0;
            if config.grad_clip > 0.0 && outcome.grad_norm > config.grad_clip {
                scale = config.grad_clip / (outcome.grad_norm + 1e-6);
                clipped = true;
            }
            self.spheres
                .apply_update(&mut self.model.params, &mut self.opt, lr, scale);
            if let Some(w) = self.norm_watch.observe(outcome.grad_norm, step) {
                emit(Event::Warning(w));
            }
        } else {
            self.bad_in_a_row += 1;
            self.summary.skipped_updates += 1;
            emit(Event::Warning(format!(
                "step {}: loss {} / gradient norm {} is not finite; update skipped ({} skipped so far)",
                step + 1,
                outcome.loss,
                outcome.grad_norm,
                self.summary.skipped_updates
            )));
            if self.bad_in_a_row >= MAX_BAD_STEPS {
                return Err(format!(
                    "training diverged: {MAX_BAD_STEPS} steps in a row had non-finite loss or gradients; \
                     the last good checkpoint{} is intact",
                    self.saver
                        .last_saved
                        .as_ref()
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_default()
                ));
            }
        }
        let tokens = (seqs_per_step * seq_len) as u64;
        self.state.step += 1;
        self.state.lr = lr;
        self.state.tokens_seen += tokens;
        self.state.epoch = self.state.step / self.plan.steps_per_epoch;
        self.state.data_epoch = self.state.epoch;
        self.state.data_index =
            (self.state.step % self.plan.steps_per_epoch) * seqs_per_step as u64;
        self.tokens_done += tokens;
        if self.summary.initial_loss.is_nan() && finite {
            self.summary.initial_loss = outcome.loss;
        }
        if finite {
            self.summary.final_loss = outcome.loss;
        }

        let elapsed = self.train_started.elapsed().as_secs_f64();
        let done_here = self.state.step - self.first_step;
        let stats = StepStats {
            epoch,
            epochs: config.epochs,
            step: self.state.step,
            total_steps: self.plan.last_step,
            loss: outcome.loss,
            lr,
            grad_norm: outcome.grad_norm,
            clipped,
            tokens_per_sec: self.tokens_done as f64 / elapsed.max(1e-9),
            elapsed_secs: self.state.elapsed_secs + elapsed,
            eta_secs: elapsed / done_here as f64 * (self.plan.last_step - self.state.step) as f64,
        };
        self.log.step(&stats)?;
        emit(Event::Step(stats));
        emit(Event::Spheres(self.spheres.stats()));
        Ok(StepOutcome {
            loss: outcome.loss,
            epoch,
        })
    }

    /// What follows a step: evaluation when due (best checkpoint, early
    /// stopping), a sample, the epoch's end (periodic checkpoint), and a
    /// save the user asked for.
    pub fn after_step(
        &mut self,
        outcome: &StepOutcome,
        save_now: bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
        let step = self.state.step;
        let epoch_end = step.is_multiple_of(self.plan.steps_per_epoch);
        let eval_due = (self.config.eval_every > 0 && step.is_multiple_of(self.config.eval_every))
            || epoch_end;
        if eval_due && !self.val_windows.is_empty() {
            self.evaluate(outcome.epoch, emit)?;
        }
        if self.config.sample_every > 0 && step.is_multiple_of(self.config.sample_every) {
            let text = crate::generate::sample_text(
                &self.model,
                &self.tokenizer,
                &self.config.sample_prompt,
                64,
                self.config.seed ^ step,
            );
            emit(Event::Sample {
                step,
                text: format!("{}{text}", self.config.sample_prompt),
            });
        }
        if epoch_end {
            self.end_epoch(outcome.loss, emit)?;
        }
        if save_now {
            let path = self
                .run_dir
                .join(format!("checkpoint_manual_step_{step}.cllm"));
            self.save(&path, SaveReason::Manual, emit)?;
        }
        Ok(())
    }

    /// Phase 4: the validation loss; a new best is saved, and early
    /// stopping counts evaluations without one.
    pub fn evaluate(&mut self, epoch: usize, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        let ev = evaluate(
            &mut self.spheres,
            &self.model,
            &self.val,
            &self.val_windows,
            self.config.seq_len,
            self.bytes_per_token,
            epoch,
            self.state.step,
        );
        self.log.eval(&ev)?;
        emit(Event::Eval(ev.clone()));
        let better = self.state.best_val_loss.is_none_or(|b| ev.loss < b);
        if better && ev.loss.is_finite() {
            self.state.best_val_loss = Some(ev.loss);
            self.state.evals_without_gain = 0;
            self.summary.best_val_loss = Some(ev.loss);
            self.summary.best_bits_per_byte = Some(ev.bits_per_byte);
            let path = checkpoint::best_path(&self.run_dir);
            self.save(&path, SaveReason::Best, emit)?;
        } else {
            self.state.evals_without_gain += 1;
            let patience = self.config.early_stop_patience as u64;
            if patience > 0 && self.state.evals_without_gain >= patience {
                emit(Event::Warning(format!(
                    "early stop: no validation gain in {} evaluations",
                    self.state.evals_without_gain
                )));
                self.summary.stopped_early = true;
            }
        }
        Ok(())
    }

    /// The end of an epoch: its time, and the periodic checkpoint (older
    /// ones of this run pruned).
    pub fn end_epoch(&mut self, last_loss: f32, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        self.summary
            .epoch_secs
            .push(self.epoch_started.elapsed().as_secs_f64());
        self.epoch_started = Instant::now();
        self.summary.epochs_done += 1;
        let n_epoch = self.state.step / self.plan.steps_per_epoch;
        let every = self.config.checkpoint_every as u64;
        if every > 0 && n_epoch.is_multiple_of(every) {
            let loss = self.state.best_val_loss.unwrap_or(last_loss);
            let path = checkpoint::periodic_path(&self.run_dir, n_epoch, loss);
            self.save(&path, SaveReason::Periodic, emit)?;
            if let Err(e) =
                checkpoint::prune_periodic(&self.run_dir, self.config.keep_checkpoints.max(1))
            {
                emit(Event::Warning(format!("old checkpoints not pruned: {e}")));
            }
        }
        Ok(())
    }

    /// Phase 5: a checkpoint of where the run stands.
    pub fn save(
        &mut self,
        path: &Path,
        reason: SaveReason,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
        self.state.horizon = self.plan.horizon;
        self.state.last_step = self.plan.last_step;
        self.saver
            .save(path, reason, &self.model, &self.opt, &self.state, emit)
    }

    /// Phase 6: the final model (also after a stop: the last step's
    /// weights) in the run's folder and at the output path, and the summary.
    pub fn finish(mut self, emit: &mut dyn FnMut(Event)) -> Result<Summary, String> {
        self.spheres.rest();
        emit(Event::Spheres(self.spheres.stats()));
        let run_final = self.run_dir.join(RUN_FINAL_NAME);
        let output = self.config.output.clone();
        let publish = output != run_final;
        if publish
            && let Some(kept) =
                keep_previous_output(&output, &self.config.checkpoint_dir, &self.config.run_name)?
        {
            emit(Event::Warning(format!(
                "the previous {} is from no run folder (or differs from its run's copy): \
                 kept as {}",
                output.display(),
                kept.display()
            )));
        }
        self.save(&run_final, SaveReason::Final, emit)?;
        if publish {
            copy_atomically(&run_final, &output)?;
            emit(Event::Checkpoint {
                path: output.clone(),
                reason: SaveReason::Final,
            });
        }
        let train_secs = self.train_started.elapsed().as_secs_f64();
        let steps_here = self.state.step - self.first_step;
        let seqs_per_step = (self.config.batch_size * self.config.accum_steps) as u64;
        let s = &mut self.summary;
        s.steps = self.state.step;
        s.total_secs = self.saver.started.elapsed().as_secs_f64();
        s.secs_per_sequence = train_secs / (steps_here * seqs_per_step).max(1) as f64;
        s.tokens_per_sec = self.tokens_done as f64 / train_secs.max(1e-9);
        s.sphere_sequences = self.spheres.sequences();
        s.load_imbalance = imbalance(&s.sphere_sequences);
        s.peak_memory_bytes = peak_memory_bytes();
        s.final_model = Some(output);
        if self.state.step < self.plan.last_step && !s.stopped_early {
            emit(Event::Warning(format!(
                "stopped at step {} of {}",
                self.state.step, self.plan.last_step
            )));
        }
        Ok(self.summary)
    }
}
