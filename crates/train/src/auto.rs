//! `--preset auto`: the model size for the data, this machine and the time.
//!
//! The rule: the tokens a run will train on (its epochs over the corpus, or
//! the tokens/s this machine reaches with a size times the time budget)
//! should be at least [`TOKENS_PER_PARAM`] times the size's parameters.
//! The largest size of the ladder that meets it is chosen, the smallest
//! when none does. Tokens/s come from timing two steps of one probe model
//! on this machine's spheres and scaling by each size's FLOPs per token.
//! The probe counts the CPU time its threads got when that is less than the
//! wall clock: a size is chosen for the machine, not for a load that
//! happens to share it for the first seconds (the run's plan, timed by the
//! wall clock, follows the load as long as it lasts).
//! The constant was fitted by a sweep on the shared corpora at fixed
//! budgets: `tools/size_sweep.sh`, table in `docs/model-size-sweep.md`.

use super::TrainConfig;
use super::budget::max_epochs;
use super::spheres::{Spheres, StepInput};
use cllm_core::profile::process_cpu_seconds;
use cllm_core::{Gpt, ModelConfig};
use std::time::{Duration, Instant};

/// Sizes `auto` chooses from, smallest first.
pub const LADDER: [&str; 3] = ["small", "medium", "large"];

/// Training tokens per parameter below which a larger model loses to a
/// smaller one trained on more tokens in the same time: the sweep put the
/// crossing between 4.4 and 7.0 (`docs/model-size-sweep.md`).
pub const TOKENS_PER_PARAM: f64 = 6.0;

/// Share of a time budget spent in steps (the rest: data preparation,
/// evaluations, checkpoints).
const STEP_SHARE: f64 = 0.85;

/// The choice and the figures it was made from, for the run's notes.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoChoice {
    pub preset: String,
    /// The size's context: the sequence length, unless the user gave one.
    pub seq_len: usize,
    pub reason: String,
}

/// The model `preset` gives for a run of `config` at `vocab_size`: at the
/// preset's context unless the user gave a sequence length.
fn shape(preset: &str, config: &TrainConfig, vocab_size: usize) -> Option<ModelConfig> {
    let mut mc = ModelConfig::preset(preset).ok()?;
    mc.vocab_size = vocab_size;
    if config.given.iter().any(|g| g == "seq_len") {
        mc.n_ctx = config.batch.seq_len;
    }
    Some(mc)
}

/// Chooses a size by the rule above. `flops_per_sec` is this machine's
/// measured training speed (needed only for a run given time).
pub fn choose(
    config: &TrainConfig,
    train_tokens: usize,
    vocab_size: usize,
    flops_per_sec: Option<f64>,
) -> AutoChoice {
    let mut chosen = LADDER[0];
    let mut seq_len = config.batch.seq_len;
    let mut why = String::new();
    for name in LADDER {
        let Some(mc) = shape(name, config, vocab_size) else {
            continue;
        };
        let params = mc.num_params() as f64;
        let tokens = if config.budget.time_budget_secs > 0.0 {
            let per_token = mc.train_flops_per_token(mc.n_ctx);
            let in_time = flops_per_sec.unwrap_or(0.0) / per_token
                * config.budget.time_budget_secs
                * STEP_SHARE;
            // A run given time makes no more than its cap of epochs.
            in_time.min(train_tokens as f64 * max_epochs(config) as f64)
        } else if config.budget.epochs > 0 {
            train_tokens as f64 * config.budget.epochs as f64
        } else {
            (config.budget.max_steps
                * (config.batch.batch_size * config.batch.accum_steps * mc.n_ctx) as u64)
                as f64
        };
        let ratio = tokens / params;
        if name == LADDER[0] || ratio >= TOKENS_PER_PARAM {
            chosen = name;
            seq_len = mc.n_ctx;
            why = format!(
                "{name}: {:.2}M parameters, about {:.1}M training tokens ({ratio:.0} per parameter)",
                params / 1e6,
                tokens / 1e6
            );
        }
    }
    let basis = if config.budget.time_budget_secs > 0.0 {
        format!(
            "in {:.0} s at this machine's measured speed",
            config.budget.time_budget_secs
        )
    } else {
        "over the run's epochs".to_string()
    };
    AutoChoice {
        preset: chosen.to_string(),
        seq_len,
        reason: format!(
            "preset auto chose {why} {basis}; the next size up would get fewer than \
             {TOKENS_PER_PARAM:.0} tokens per parameter"
        ),
    }
}

/// A step's time without other programs on the machine: the CPU time each
/// of its threads got (`cpu_per_thread`), when another program sharing the
/// cores made the `wall` time longer; the wall time otherwise (a platform
/// without a process clock gives no less than it).
fn unshared_secs(wall: f64, cpu_per_thread: f64) -> f64 {
    if cpu_per_thread > 0.0 {
        wall.min(cpu_per_thread)
    } else {
        wall
    }
}

/// This machine's training speed in model FLOPs per second: two steps of
/// a probe model (the middle size, in the run's precision) on `threads`
/// spheres, the second timed.
pub fn measure_flops_per_sec(config: &TrainConfig, vocab_size: usize, threads: usize) -> f64 {
    let Some(mc) = shape(LADDER[1], config, vocab_size) else {
        return 0.0;
    };
    let Ok(mut model) = Gpt::new(mc.clone(), config.seed) else {
        return 0.0;
    };
    // At the precision the run will train in: bf16 steps are faster, and a
    // probe in f32 would count too few tokens for a bf16 run.
    model.set_precision(config.model.precision.resolve());
    let seq_len = mc.n_ctx;
    let n_seqs = config.batch.batch_size.max(threads);
    let tokens: Vec<u32> = (0..n_seqs * seq_len)
        .map(|i| (i * 7919 % vocab_size.max(1)) as u32)
        .collect();
    let mut spheres = Spheres::new(&model, threads, config.batch.batch_size, seq_len);
    let mut secs = f64::INFINITY;
    for step in 0..2 {
        let input = StepInput {
            inputs: &tokens,
            targets: &tokens,
            n_seqs,
            seq_len,
            step,
            seed: config.seed,
            dropout: false,
        };
        let (t, cpu) = (Instant::now(), process_cpu_seconds());
        spheres.compute_gradients(&model, &input, Duration::from_secs(3600), &mut |_| {});
        let wall = t.elapsed().as_secs_f64();
        secs = unshared_secs(wall, (process_cpu_seconds() - cpu) / threads.max(1) as f64);
    }
    spheres.rest();
    let flops = mc.train_flops_per_token(seq_len) * (n_seqs * seq_len) as f64;
    flops / secs.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::MAX_EPOCHS;

    fn params(name: &str, cfg: &TrainConfig) -> f64 {
        shape(name, cfg, 2048).unwrap().num_params() as f64
    }

    #[test]
    fn epochs_over_a_small_corpus_keep_the_smallest_size() {
        let cfg = TrainConfig::default();
        // 160k tokens x 10 epochs: 1.6M, under 10 per parameter of any size.
        let c = choose(&cfg, 160_000, 2048, None);
        assert_eq!(c.preset, "small");
        assert!(c.reason.contains("small"), "{}", c.reason);
    }

    #[test]
    fn more_tokens_choose_a_larger_size_at_the_boundary() {
        let mut cfg = TrainConfig::default();
        cfg.budget.epochs = 1;
        let medium = params("medium", &cfg);
        let just = (medium * TOKENS_PER_PARAM).ceil() as usize;
        assert_eq!(choose(&cfg, just, 2048, None).preset, "medium");
        assert_eq!(choose(&cfg, just - 1, 2048, None).preset, "small");
        let large = params("large", &cfg);
        let plenty = (large * TOKENS_PER_PARAM).ceil() as usize;
        let c = choose(&cfg, plenty, 2048, None);
        assert_eq!(c.preset, "large");
        // At the size's own context, since no sequence length was given.
        assert_eq!(c.seq_len, ModelConfig::preset("large").unwrap().n_ctx);
    }

    #[test]
    fn a_time_budget_scales_with_the_measured_speed() {
        let mut cfg = TrainConfig::default();
        cfg.budget.time_budget_secs = 600.0;
        cfg.budget.epochs = 0;
        let mc = shape("medium", &cfg, 2048).unwrap();
        // The speed at which medium gets exactly TOKENS_PER_PARAM per parameter.
        let tokens_needed = mc.num_params() as f64 * TOKENS_PER_PARAM;
        let speed = tokens_needed / (600.0 * STEP_SHARE) * mc.train_flops_per_token(mc.n_ctx);
        let corpus = 1 << 40; // too large for the epoch cap to count
        assert_eq!(
            choose(&cfg, corpus, 2048, Some(speed * 1.01)).preset,
            "medium"
        );
        assert_eq!(
            choose(&cfg, corpus, 2048, Some(speed * 0.99)).preset,
            "small"
        );
        // No measurement: the smallest.
        assert_eq!(choose(&cfg, corpus, 2048, None).preset, "small");
        // A corpus whose capped epochs fall short of the tokens medium
        // needs keeps the smaller size however fast the machine.
        let short = (tokens_needed / MAX_EPOCHS as f64 * 0.99) as usize;
        assert_eq!(
            choose(&cfg, short, 2048, Some(speed * 10.0)).preset,
            "small"
        );
        let enough = (tokens_needed / MAX_EPOCHS as f64 * 1.01) as usize;
        assert_eq!(
            choose(&cfg, enough, 2048, Some(speed * 10.0)).preset,
            "medium"
        );
        // Epochs given with the time are the cap.
        let mut four = cfg.clone();
        four.budget.epochs = 4;
        assert_eq!(
            choose(&four, enough, 2048, Some(speed * 10.0)).preset,
            "small"
        );
    }

    #[test]
    fn a_probe_slowed_by_another_program_counts_the_cpu_time_it_got() {
        // Two threads at half their cores for 2 s of wall time: 1 s each.
        assert_eq!(unshared_secs(2.0, 1.0), 1.0);
        // Waiting on each other counts: never less than the CPU time.
        assert_eq!(unshared_secs(1.0, 1.5), 1.0);
        assert_eq!(unshared_secs(1.0, 0.0), 1.0);
    }

    #[test]
    fn the_probe_measures_a_positive_speed() {
        let mut cfg = TrainConfig::default();
        cfg.batch.batch_size = 2;
        cfg.batch.seq_len = 16;
        let cfg = TrainConfig {
            given: vec!["seq_len".into()],
            ..cfg
        };
        let f = measure_flops_per_sec(&cfg, 300, 1);
        assert!(f.is_finite() && f > 1e6, "{f}");
    }
}
