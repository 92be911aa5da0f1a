//! Phase 2: building a run: model and optimizer (new, from the checkpoint
//! with its data checked, or from a base model: `start.rs`), the plan, the
//! evaluators, the run's folder and log, the sphere tree.

use super::model_config_for;
use super::start::{Start, budget_clock, restore, schedule, start_fresh, start_from_base};
use super::{Batches, Learner, Measures, Origin, Outputs, Progress, Run, Validation};
use crate::TrainConfig;
use crate::auto;
use crate::checkpoint::BaseModel;
use crate::clock::WallClock;
use crate::cluster::Cluster;
use crate::config::AUTO;
use crate::error::TrainError;
use crate::evaluate::EvalWindows;
use crate::events::{Event, Phase, RunInfo, Summary};
use crate::memory;
use crate::prepare::Prepared;
use crate::runlog::{RunLog, unique_run_name};
use crate::saving::Saver;
use crate::spheres::Spheres;
use cllm_core::Gpt;
use cllm_core::ops::bf16::{Kernel, Precision};
use cllm_data::batches::Batcher;
use cllm_data::dataset::TokenDataset;
use cllm_data::fim::FimTraining;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::code_eval::PeriodicCodeCheck;
use cllm_memory::Memory;
use cllm_memory::overlap::{REPEAT_SAMPLES, REPEAT_WINDOW, repeated_share};
use std::path::Path;
use std::time::Instant;

impl Run {
    /// Phase 2: the model and optimizer, new or from the checkpoint; the
    /// plan, the evaluators, the run's folder and log, the sphere tree.
    pub fn build(
        mut config: TrainConfig,
        prepared: Prepared,
        origin: Origin,
        started: Instant,
        cluster: Cluster,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Run, TrainError> {
        let Prepared {
            tokenizer,
            train,
            val,
            files,
            fingerprint,
        } = prepared;
        let threads = config.resolved_threads();
        super::replicas::check_same_data(
            &cluster,
            &tokenizer.to_json(),
            &train.tokens,
            &val.tokens,
        )?;
        let resumed = match &origin {
            Origin::Resumed(ck) => Some(&ck.train_config),
            _ => None,
        };
        let ranks_before = resumed.map(|c| c.ranks.max(1));
        // A resumed run continues in its own folders unless given a new name.
        let saved_run_name = resumed.map(|c| c.outputs.run_name.clone());
        config.ranks = cluster.size();
        if matches!(origin, Origin::New) && config.model.preset == AUTO {
            config = choose_size(config, &cluster, &train, tokenizer.vocab_size(), emit)?;
        }
        announce_cluster(&config, &cluster, ranks_before, emit);
        let batcher = Batcher::new(&train, config.batch.seq_len, config.seed)
            .map_err(|e| TrainError::TrainingData(e.to_string()))?
            .with_fim(fim_training(&config, &tokenizer, emit));
        let windows = batcher.windows_per_epoch();
        let mut notes = Vec::new();
        let Start {
            mut model,
            opt,
            state,
            plan,
            saved_memory,
        } = match origin {
            Origin::Resumed(ck) => {
                restore(&config, *ck, fingerprint, windows, threads, &mut notes)?
            }
            Origin::Base(base) => start_from_base(&config, *base, fingerprint, windows)?,
            Origin::New => start_fresh(&config, tokenizer.vocab_size(), fingerprint, windows)?,
        };
        for note in notes {
            emit(Event::Warning(note));
        }
        set_precision(&mut model, &config, emit);
        check_model_fits_data(&model, &tokenizer, config.batch.seq_len)?;

        // Rank 0 alone evaluates and saves: the others need no memory and
        // no code check.
        let writer = cluster.is_writer();
        let repo_memory = (config.model.memory && writer).then(|| {
            repository_memory(
                saved_memory.as_deref(),
                &train.tokens,
                model.config.vocab_size,
                emit,
            )
        });
        if let Some(memory) = &repo_memory {
            report_repeated_validation(memory, &val.tokens, emit);
        }
        let code_check = if config.evaluation.eval_gen > 0 && writer {
            code_check(&config, &val, &tokenizer, model.config.n_ctx, emit)?
        } else {
            None
        };

        config.outputs.run_name = run_name(&config, saved_run_name.as_deref(), writer, emit);
        config.outputs.run_name = cluster.agree(config.outputs.run_name)?;
        let run_dir = config.outputs.checkpoint_dir.join(&config.outputs.run_name);
        let log = if writer {
            Some(open_log(
                &config,
                &model,
                &run_dir,
                state.step,
                state.base.as_ref(),
            )?)
        } else {
            None
        };

        // Each sphere runs its share of a step as micro-batches of its share
        // of `batch_size`: memory does not grow with accumulation.
        // A rank's spheres hold its share of a micro-batch group.
        let mut spheres = Spheres::new(
            &model,
            threads,
            config.batch.batch_size.div_ceil(cluster.size()),
            config.batch.seq_len,
        );
        spheres.join_cluster(cluster.clone());
        spheres.share_packs(&mut model);
        let validation = Validation {
            windows: validation_windows(&config, &val, emit),
            bytes_per_token: bytes_per_token(&train, &val),
            val,
            memory: repo_memory,
            code_check,
        };
        let mut outputs = Outputs {
            run_dir,
            saver: Saver {
                config: config.clone(),
                tokenizer_json: tokenizer.to_json(),
                started,
                last_saved: None,
            },
            log,
        };
        let info = RunInfo {
            files,
            train_tokens: train.tokens.len(),
            val_tokens: validation.val.tokens.len(),
            vocab_size: model.config.vocab_size,
            params: model.layout.total,
            threads,
            total_steps: if plan.is_pending() { 0 } else { plan.last_step },
            first_step: state.step,
            run_name: config.outputs.run_name.clone(),
            run_dir: outputs.run_dir.clone(),
            workspace_bytes: spheres.workspace_bytes(),
        };
        if let Some(log) = outputs.log.as_mut() {
            log.ready(&info)?; // the log's `info` line (runlog)
        }
        emit(Event::Ready(info));
        emit(Event::Phase(Phase::Training));
        emit(Event::Spheres(spheres.stats()));

        let seqs_per_step = config.batch.batch_size * config.batch.accum_steps;
        let mut summary = Summary::empty(0.0);
        summary.best_val_loss = state.best_val_loss;
        Ok(Run {
            progress: Progress {
                schedule: schedule(&config, &state, &plan),
                budget: budget_clock(&config, &state, &plan),
                first_step: state.step,
                state,
                plan,
            },
            batches: Batches {
                tokenizer,
                batcher,
                inputs: vec![0u32; seqs_per_step * config.batch.seq_len],
                targets: vec![0u32; seqs_per_step * config.batch.seq_len],
            },
            learner: Learner { model, opt },
            validation,
            outputs,
            measures: Measures::new(summary, Box::new(WallClock::since(started))),
            spheres,
            cluster,
            config,
            #[cfg(feature = "test-faults")]
            faults: Default::default(),
        })
    }
}

/// `--preset auto` resolved for the data read: rank 0 measures this
/// machine's speed (for a run given time) and chooses; the others take its
/// choice. The choice is checked against the memory.
fn choose_size(
    mut config: TrainConfig,
    cluster: &Cluster,
    train: &TokenDataset,
    vocab: usize,
    emit: &mut dyn FnMut(Event),
) -> Result<TrainConfig, TrainError> {
    let threads = config.resolved_threads();
    let speed = (config.budget.time_budget_secs > 0.0 && cluster.is_writer())
        .then(|| auto::measure_flops_per_sec(&config, vocab, threads));
    let choice = auto::choose(&config, train.tokens.len(), vocab, speed);
    config.model.preset = choice.preset;
    if !config.given.iter().any(|g| g == "seq_len") {
        config.batch.seq_len = choice.seq_len;
    }
    emit(Event::Info(choice.reason));
    let config = cluster.agree(config)?;
    memory::check_training_fits(&config, &model_config_for(&config, vocab)?, threads)?;
    Ok(config)
}

/// What a distributed run is made of, a step too small for its ranks, and
/// a resumed run on another number of ranks than its checkpoint's.
fn announce_cluster(
    config: &TrainConfig,
    cluster: &Cluster,
    ranks_before: Option<usize>,
    emit: &mut dyn FnMut(Event),
) {
    let threads = config.resolved_threads();
    let seqs_per_step = config.batch.batch_size * config.batch.accum_steps;
    if cluster.is_distributed() {
        emit(Event::Info(format!(
            "cluster: {}; {threads} sphere thread{} per rank; each step's {seqs_per_step} \
             sequences shared by rank, then by sphere; rank 0 writes checkpoints and the log",
            cluster.describe(),
            if threads == 1 { "" } else { "s" },
        )));
        if seqs_per_step < cluster.size() {
            emit(Event::Warning(format!(
                "a step has fewer sequences ({seqs_per_step}) than there are ranks ({}): some \
                 ranks idle; raise --batch-size",
                cluster.size()
            )));
        }
    }
    if let Some(before) = ranks_before
        && before != cluster.size()
    {
        emit(Event::Warning(format!(
            "resumed on {} rank{} (the checkpoint was trained on {before}): each step sees \
             the same sequences, so the run differs from an uninterrupted one only by the \
             order gradients are summed in",
            cluster.size(),
            if cluster.size() == 1 { "" } else { "s" }
        )));
    }
}

/// The run's matmul precision, said when it is bf16 (and when a capped
/// instruction set slows the f32 maths).
fn set_precision(model: &mut Gpt, config: &TrainConfig, emit: &mut dyn FnMut(Event)) {
    if let Some(note) = cllm_core::ops::fast_math::cap_note() {
        emit(Event::Info(note));
    }
    let precision = config.model.precision.resolve();
    model.set_precision(precision);
    if precision == Precision::Bf16 {
        let kernel = Kernel::detect();
        emit(Event::Info(format!(
            "matmuls in bf16 with f32 accumulation ({}){}",
            kernel.name(),
            if kernel == Kernel::Model {
                ": this CPU lacks AVX512_BF16, so every product runs on the scalar model, slowly"
            } else {
                ""
            }
        )));
    }
}

/// The model must know every token and hold a whole sequence.
fn check_model_fits_data(
    model: &Gpt,
    tokenizer: &Tokenizer,
    seq_len: usize,
) -> Result<(), TrainError> {
    if model.config.vocab_size < tokenizer.vocab_size() {
        return Err(TrainError::VocabularyTooSmall {
            model: model.config.vocab_size,
            tokenizer: tokenizer.vocab_size(),
        });
    }
    if seq_len > model.config.n_ctx {
        return Err(TrainError::LongerThanContext {
            seq_len,
            n_ctx: model.config.n_ctx,
        });
    }
    Ok(())
}

/// The code check of `--eval-gen`; none (said) when the validation split
/// has no function opening to complete.
fn code_check(
    config: &TrainConfig,
    val: &TokenDataset,
    tokenizer: &Tokenizer,
    n_ctx: usize,
    emit: &mut dyn FnMut(Event),
) -> Result<Option<PeriodicCodeCheck>, TrainError> {
    let check = PeriodicCodeCheck::new(
        val,
        tokenizer,
        n_ctx,
        config.evaluation.eval_gen,
        config.seed,
    )
    .map_err(|e| TrainError::CodeCheck(e.to_string()))?;
    if check.prompts.is_empty() {
        emit(Event::Warning(format!(
            "--eval-gen: the validation split has no usable C function openings \
             ({} functions found): no code check in this run",
            check.openings_found
        )));
        return Ok(None);
    }
    Ok(Some(check))
}

/// The run's name: its checkpoint's when it continues its own run, else
/// one no other run has (rank 0 chooses; `Cluster::agree` tells the rest).
fn run_name(
    config: &TrainConfig,
    saved: Option<&str>,
    writer: bool,
    emit: &mut dyn FnMut(Event),
) -> String {
    let continues_its_run =
        saved == Some(config.outputs.run_name.as_str()) && !config.outputs.run_name.is_empty();
    if continues_its_run || !writer {
        return config.outputs.run_name.clone();
    }
    let name = unique_run_name(config);
    if !config.outputs.run_name.is_empty() && name != config.outputs.run_name {
        emit(Event::Warning(format!(
            "a run named '{}' already exists: this run is '{name}'",
            config.outputs.run_name
        )));
    }
    name
}

/// The run's checkpoint folder, and its metrics log (new, naming the `base`
/// it starts from, or continued at `step` by a resumed run).
fn open_log(
    config: &TrainConfig,
    model: &Gpt,
    run_dir: &Path,
    step: u64,
    base: Option<&BaseModel>,
) -> Result<RunLog, TrainError> {
    std::fs::create_dir_all(run_dir)
        .map_err(|e| TrainError::io("create the run's checkpoint folder", run_dir, e))?;
    if step > 0 {
        RunLog::resume(config, &model.config, step)
    } else {
        RunLog::create(config, &model.config, base)
    }
}

/// The validation windows an evaluation reads; a split too small for one
/// is said, with what to do.
fn validation_windows(
    config: &TrainConfig,
    val: &TokenDataset,
    emit: &mut dyn FnMut(Event),
) -> EvalWindows {
    let seq_len = config.batch.seq_len;
    let windows = EvalWindows::overlapping(
        val,
        seq_len,
        config.evaluation.eval_batches * config.batch.batch_size,
    );
    if windows.is_empty() {
        emit(Event::Warning(format!(
            "the validation split ({} tokens) is too small to evaluate at sequence length \
             {seq_len}: no validation loss, no best checkpoint and no early stopping in \
             this run{}",
            val.tokens.len(),
            if config.corpus.val_fraction > 0.0 {
                "; raise --val-fraction or add data"
            } else {
                " (validation fraction is 0)"
            }
        )));
    }
    windows
}

/// Bytes of text per token, for bits per byte: the validation split's, or
/// the training split's when there is no validation.
fn bytes_per_token(train: &TokenDataset, val: &TokenDataset) -> f64 {
    if val.tokens.is_empty() {
        train.bytes as f64 / train.tokens.len().max(1) as f64
    } else {
        val.bytes as f64 / val.tokens.len() as f64
    }
}

/// The run's repository memory: the resumed checkpoint's (its fitted mix),
/// when it holds one over these same training tokens, else a new one.
fn repository_memory(
    saved: Option<&[u8]>,
    train_tokens: &[u32],
    vocab_size: usize,
    emit: &mut dyn FnMut(Event),
) -> Memory {
    if let Some(bytes) = saved {
        match Memory::from_bytes(bytes) {
            Ok(m) if m.tokens() == train_tokens && m.vocab_size() == vocab_size => return m,
            Ok(_) => emit(Event::Warning(
                "the checkpoint's memory is over other tokens: a new one is built".into(),
            )),
            Err(e) => emit(Event::Warning(format!(
                "the checkpoint's memory is unreadable ({e}): a new one is built"
            ))),
        }
    }
    let started = Instant::now();
    let memory = Memory::build(train_tokens.to_vec(), vocab_size);
    emit(Event::Info(format!(
        "repository memory: {} training tokens indexed in {:.1} s",
        train_tokens.len(),
        started.elapsed().as_secs_f64()
    )));
    memory
}

/// Validation shares above this repeat too much of the training part for
/// in-run figures to mean what they seem: a warning instead of a note.
const REPEATED_VALIDATION_WARNING: f64 = 0.25;

/// Says how much of the validation split repeats the training part
/// verbatim (its index is the memory's), warning when most of it does.
fn report_repeated_validation(memory: &Memory, val: &[u32], emit: &mut dyn FnMut(Event)) {
    let Some(share) = repeated_share(memory.index(), val, REPEAT_WINDOW, REPEAT_SAMPLES) else {
        return;
    };
    let measured = format!(
        "{:.0}% of the validation split's {REPEAT_WINDOW}-token passages also occur in the \
         training part",
        100.0 * share
    );
    if share > REPEATED_VALIDATION_WARNING {
        emit(Event::Warning(format!(
            "{measured}: validation losses in this run will flatter the model. For an honest \
             figure, keep a held-out file out of --data and score it with `cllm eval --data FILE`"
        )));
    } else {
        emit(Event::Info(format!("validation: {measured}")));
    }
}

/// The fill-in-the-middle arrangement of the training windows, said in the
/// log: on at the config's rate, or off and why.
fn fim_training(
    config: &TrainConfig,
    tokenizer: &Tokenizer,
    emit: &mut dyn FnMut(Event),
) -> Option<FimTraining> {
    let rate = config.batch.fim_rate;
    if rate <= 0.0 {
        return None;
    }
    let fim = FimTraining::new(tokenizer, rate);
    emit(Event::Info(match (&fim, tokenizer) {
        (Some(_), _) => format!(
            "fill-in-the-middle: {:.0}% of the training windows are rearranged (half prefix-suffix-middle, half suffix-prefix-middle), so the model can infill",
            rate * 100.0
        ),
        (None, Tokenizer::Bytes) => {
            "fill-in-the-middle is off: the byte tokenizer has no FIM tokens (train with the BPE tokenizer to infill)".into()
        }
        (None, Tokenizer::Bpe(_)) => {
            "fill-in-the-middle is off: this tokenizer was made before FIM and has no FIM tokens (a new tokenizer has them)".into()
        }
    }));
    fim
}
