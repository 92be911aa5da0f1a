//! How much memory a training run or an evaluation needs, computed before
//! anything is allocated, and whether this machine has it.
//!
//! Training holds, for P parameters of 4 bytes:
//! - the weights (P floats) and the AdamW moments m and v (2 P floats);
//! - one gradient buffer per sphere (P floats each);
//! - one [`Workspace`] per sphere, sized for one micro-batch: a sphere runs
//!   its share of a step as micro-batches of `batch_size.div_ceil(threads)`
//!   sequences, so accumulation adds steps, not activations;
//! - the step's token ids: inputs and targets, 4 bytes each per token of
//!   `batch_size x accum_steps` sequences.
//!
//! The workspace figure is exact: [`Workspace::bytes_for`] reads the same
//! size table [`Workspace::new`] allocates from. Everything is computed in
//! saturating `u64` arithmetic, so absurd settings (a sequence of a million
//! tokens, a batch of 100,000) give a huge number, never an overflow or a
//! panic. The tokenized data set is not counted here (its size is only
//! known once the files are read).

use super::TrainConfig;
use cllm_core::{ModelConfig, Workspace};

const F32: u64 = std::mem::size_of::<f32>() as u64;
const U32: u64 = std::mem::size_of::<u32>() as u64;

/// Above this a run is refused even when the free memory is unknown.
pub const ABSURD_BYTES: u64 = 1 << 40;

/// The memory a run needs, by what holds it. `total_bytes` is the sum;
/// any part that does not fit in `u64` is `u64::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Parameter count (`usize::MAX` when the model's size overflows).
    pub params: usize,
    /// The parameters: 4 bytes each.
    pub weights_bytes: u64,
    /// AdamW's two moments: 8 bytes per parameter (0 for evaluation).
    pub optimizer_bytes: u64,
    /// One full gradient buffer per sphere.
    pub gradient_bytes: u64,
    /// Activations and their gradients: one workspace per sphere.
    pub workspace_bytes: u64,
    /// Input and target token ids of one step (or one evaluation round).
    pub tokens_bytes: u64,
    pub total_bytes: u64,
}

impl MemoryNeed {
    /// Whether some part of the need overflowed (the settings are absurd).
    pub fn overflowed(&self) -> bool {
        self.total_bytes == u64::MAX
    }
}

/// Parameters of `model`, or `None` for a config that does not build.
fn params_of(model: &ModelConfig) -> Option<usize> {
    model.validate().ok().map(|()| model.num_params())
}

fn need(
    params: Option<usize>,
    moments: u64,
    gradient_buffers: u64,
    spheres: usize,
    workspace_each: u64,
    token_count: u64,
) -> MemoryNeed {
    let p = params.map_or(u64::MAX, |p| p as u64);
    let spheres = spheres as u64;
    let weights_bytes = p.saturating_mul(F32);
    let optimizer_bytes = p.saturating_mul(F32).saturating_mul(moments);
    let gradient_bytes = p.saturating_mul(F32).saturating_mul(gradient_buffers);
    let workspace_bytes = workspace_each.saturating_mul(spheres);
    let tokens_bytes = token_count.saturating_mul(2 * U32);
    let total_bytes = [
        weights_bytes,
        optimizer_bytes,
        gradient_bytes,
        workspace_bytes,
        tokens_bytes,
    ]
    .iter()
    .fold(0u64, |acc, &b| acc.saturating_add(b));
    MemoryNeed {
        params: params.unwrap_or(usize::MAX),
        weights_bytes,
        optimizer_bytes,
        gradient_bytes,
        workspace_bytes,
        tokens_bytes,
        total_bytes,
    }
}

/// Sequences one sphere holds activations for at a time: its micro-batch.
pub fn micro_batch(config: &TrainConfig, threads: usize) -> usize {
    config.batch.batch_size.div_ceil(threads.max(1)).max(1)
}

/// What training `model` with `config` on `threads` spheres (already
/// resolved, not 0) needs: weights, AdamW moments, a gradient buffer and a
/// micro-batch workspace per sphere, and the step's token ids.
pub fn training_memory(config: &TrainConfig, model: &ModelConfig, threads: usize) -> MemoryNeed {
    let spheres = threads.max(1);
    let workspace = Workspace::bytes_for(model, micro_batch(config, spheres), config.batch.seq_len);
    let step_tokens = (config.batch.batch_size as u64)
        .saturating_mul(config.batch.accum_steps.max(1) as u64)
        .saturating_mul(config.batch.seq_len as u64);
    need(
        params_of(model),
        2,
        spheres as u64,
        spheres,
        workspace,
        step_tokens,
    )
}

/// What evaluating `model` on `threads` spheres needs when each holds
/// `seqs_per_sphere` sequences of `seq_len` tokens: the weights and a
/// workspace per sphere (activations only: no gradients, no optimizer),
/// plus one round's token ids.
pub fn evaluation_memory(
    model: &ModelConfig,
    threads: usize,
    seqs_per_sphere: usize,
    seq_len: usize,
) -> MemoryNeed {
    let spheres = threads.max(1);
    let seqs = seqs_per_sphere.max(1);
    let workspace = Workspace::bytes_for(model, seqs, seq_len);
    let tokens = (seqs as u64)
        .saturating_mul(spheres as u64)
        .saturating_mul(seq_len as u64);
    // Evaluation spheres hold activations only: no gradient buffers.
    need(params_of(model), 0, 0, spheres, workspace, tokens)
}

/// Memory the system can still give without swapping: `MemAvailable` from
/// `/proc/meminfo`, lowered to what the process's cgroup (v2) still allows
/// when that is less. `None` where neither can be read (not Linux).
pub fn available_memory_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let meminfo = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo_available(&t));
        let cgroup = cgroup_room();
        match (meminfo, cgroup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
pub fn parse_meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") | Some("KB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// Room left under this process's cgroup v2 memory limit, if it has one.
#[cfg(target_os = "linux")]
fn cgroup_room() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // cgroup v2: a single line "0::/path".
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let max = std::fs::read_to_string(dir.join("memory.max")).ok()?;
    let max: u64 = max.trim().parse().ok()?; // "max" = no limit
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(max.saturating_sub(current))
}

/// Bytes as "812.3 GiB" (binary units, one decimal).
pub fn format_gib(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Why a run or an evaluation does not fit in this machine's memory: the
/// settings (`what`) and the sizes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryShortfall {
    #[error("{what} needs more memory than can be counted (over 16 EiB); use smaller settings")]
    Uncountable { what: String },
    #[error(
        "{what} needs about {} of memory; this machine has {} available",
        format_gib(*need),
        format_gib(*available)
    )]
    MoreThanAvailable {
        what: String,
        need: u64,
        available: u64,
    },
    #[error(
        "{what} needs about {} of memory, more than this tool will try to allocate",
        format_gib(*need)
    )]
    Absurd { what: String, need: u64 },
}

/// For callers whose own errors are still messages: `?` keeps the text.
impl From<MemoryShortfall> for String {
    fn from(e: MemoryShortfall) -> String {
        e.to_string()
    }
}

/// Refuses a need this machine cannot hold. `what` names the settings,
/// e.g. "batch size 16 x sequence length 128 on 2 spheres"; the message
/// reads "`<what>` needs about 812.3 GiB of memory; this machine has 21.4 GiB
/// available". Where the free memory is unknown only absurd needs (over
/// [`ABSURD_BYTES`], or overflowing) are refused.
pub fn check_fits(need: &MemoryNeed, what: &str) -> Result<(), MemoryShortfall> {
    check_fits_in(need, what, available_memory_bytes())
}

/// [`check_fits`] against a given amount of free memory (`None`: unknown).
pub fn check_fits_in(
    need: &MemoryNeed,
    what: &str,
    available: Option<u64>,
) -> Result<(), MemoryShortfall> {
    let what = what.to_string();
    if need.overflowed() {
        return Err(MemoryShortfall::Uncountable { what });
    }
    match available {
        Some(available) if need.total_bytes > available => {
            Err(MemoryShortfall::MoreThanAvailable {
                what,
                need: need.total_bytes,
                available,
            })
        }
        None if need.total_bytes > ABSURD_BYTES => Err(MemoryShortfall::Absurd {
            what,
            need: need.total_bytes,
        }),
        _ => Ok(()),
    }
}

/// The settings that decide a training run's memory, in words:
/// "batch size 16 x sequence length 128 on 2 spheres".
pub fn describe_training(config: &TrainConfig, threads: usize) -> String {
    let spheres = threads.max(1);
    format!(
        "batch size {} x sequence length {} on {spheres} sphere{}",
        config.batch.batch_size,
        config.batch.seq_len,
        if spheres == 1 { "" } else { "s" }
    )
}

/// [`training_memory`] and [`check_fits`] together, with the settings
/// named as [`describe_training`] does: what the trainer and the app refuse.
pub fn check_training_fits(
    config: &TrainConfig,
    model: &ModelConfig,
    threads: usize,
) -> Result<MemoryNeed, MemoryShortfall> {
    let need = training_memory(config, model, threads);
    check_fits(&need, &describe_training(config, threads)).map(|()| need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AdamW;
    use cllm_core::{Gpt, PRESET_NAMES};

    fn model(preset: &str, vocab: usize, seq: usize) -> ModelConfig {
        let mut m = ModelConfig::preset(preset).unwrap();
        m.vocab_size = vocab;
        m.n_ctx = m.n_ctx.max(seq);
        m
    }

    /// The size table and the allocation agree for every preset, with and
    /// without dropout masks, for batches below and above the head chunk.
    #[test]
    fn bytes_for_is_what_a_workspace_allocates() {
        for preset in PRESET_NAMES {
            for (batch, seq) in [(1, 1), (1, 7), (3, 16), (2, 64), (5, 100)] {
                for dropout in [0.0, 0.1] {
                    let mut m = model(preset, 300, seq);
                    m.dropout = dropout;
                    let ws = Workspace::new(&m, batch, seq);
                    assert_eq!(
                        Workspace::bytes_for(&m, batch, seq),
                        ws.allocated_bytes(),
                        "{preset} {batch}x{seq} dropout {dropout}"
                    );
                    assert_eq!(ws.allocated_bytes() as usize, ws.bytes());
                }
            }
        }
        // A sequence longer than the context is clamped the same way.
        let m = ModelConfig::preset("tiny").unwrap();
        let ws = Workspace::new(&m, 2, 1000);
        assert_eq!(Workspace::bytes_for(&m, 2, 1000), ws.allocated_bytes());
        assert_eq!(ws.max_seq, m.n_ctx);
    }

    /// Each part equals what the trainer's own allocations hold.
    #[test]
    fn training_need_matches_real_buffers() {
        let mut config = TrainConfig::default();
        config.model.preset = "baby".into();
        config.batch.batch_size = 5;
        config.batch.seq_len = 32;
        config.batch.accum_steps = 3;
        let m = model("baby", 300, 32);
        let threads = 2;
        let need = training_memory(&config, &m, threads);
        let gpt = Gpt::new(m.clone(), 1).unwrap();
        let opt = AdamW::new(
            config.optimizer.adamw.clone(),
            gpt.layout.total,
            gpt.layout.decay_ranges(),
        );
        let floats = |n: usize| n as u64 * 4;
        assert_eq!(need.params, gpt.params.len());
        assert_eq!(need.weights_bytes, floats(gpt.params.len()));
        assert_eq!(need.optimizer_bytes, floats(opt.m.len() + opt.v.len()));
        assert_eq!(
            need.gradient_bytes,
            threads as u64 * floats(gpt.layout.total)
        );
        // Micro-batches of ceil(5 / 2) = 3 sequences, whatever accumulation.
        let ws = Workspace::new(&m, 3, 32);
        assert_eq!(need.workspace_bytes, threads as u64 * ws.allocated_bytes());
        assert_eq!(need.tokens_bytes, 5 * 3 * 32 * 8);
        assert_eq!(
            need.total_bytes,
            need.weights_bytes
                + need.optimizer_bytes
                + need.gradient_bytes
                + need.workspace_bytes
                + need.tokens_bytes
        );
        let mut more_accum = config.clone();
        more_accum.batch.accum_steps = 30;
        assert_eq!(
            training_memory(&more_accum, &m, threads).workspace_bytes,
            need.workspace_bytes
        );
    }

    #[test]
    fn evaluation_need_has_no_optimizer() {
        let m = model("tiny", 37, 16);
        let need = evaluation_memory(&m, 3, 4, 16);
        assert_eq!(need.optimizer_bytes, 0);
        assert_eq!(need.weights_bytes, m.num_params() as u64 * 4);
        assert_eq!(need.gradient_bytes, 0, "evaluation allocates no gradients");
        assert_eq!(
            need.workspace_bytes,
            3 * Workspace::new(&m, 4, 16).allocated_bytes()
        );
        assert_eq!(need.tokens_bytes, 3 * 4 * 16 * 8);
    }

    /// Absurd settings give a number (or a saturated one), never a panic.
    #[test]
    fn absurd_sizes_never_overflow() {
        let mut config = TrainConfig::default();
        config.batch.batch_size = 100_000;
        config.batch.seq_len = 1_000_000;
        config.batch.accum_steps = 1024;
        let m = model("seed", 50_000, 1_000_000);
        let need = training_memory(&config, &m, 2);
        assert!(need.total_bytes > ABSURD_BYTES);
        let err = check_fits_in(&need, "this", None).unwrap_err().to_string();
        assert!(err.starts_with("this needs "), "{err}");

        let mut huge = TrainConfig::default();
        huge.batch.batch_size = usize::MAX;
        huge.batch.seq_len = usize::MAX;
        huge.batch.accum_steps = usize::MAX;
        let mut wide = m.clone();
        wide.n_ctx = usize::MAX;
        let need = training_memory(&huge, &wide, usize::MAX);
        assert!(need.overflowed());
        assert!(
            check_fits_in(&need, "x", Some(u64::MAX))
                .unwrap_err()
                .to_string()
                .contains("more memory than can be counted")
        );
        assert_eq!(
            Workspace::bytes_for(&wide, usize::MAX, usize::MAX),
            u64::MAX
        );
        let _ = evaluation_memory(&wide, usize::MAX, usize::MAX, usize::MAX);
    }

    #[test]
    fn refusal_names_need_and_availability() {
        let mut config = TrainConfig::default();
        config.batch.batch_size = 100_000;
        config.batch.seq_len = 128;
        let m = model("small", 2048, 128);
        let need = training_memory(&config, &m, 2);
        let what = describe_training(&config, 2);
        assert_eq!(what, "batch size 100000 x sequence length 128 on 2 spheres");
        let err = check_fits_in(&need, &what, Some(21 * (1 << 30) + (1 << 29)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("batch size 100000 x sequence length 128 on 2 spheres needs about "),
            "{err}"
        );
        assert!(
            err.ends_with("of memory; this machine has 21.5 GiB available"),
            "{err}"
        );
        // The same need fits a machine that has it, and unknown memory
        // refuses only beyond the absurd line.
        assert!(check_fits_in(&need, &what, Some(need.total_bytes)).is_ok());
        let small = training_memory(&TrainConfig::default(), &m, 2);
        assert!(check_fits_in(&small, &what, None).is_ok());
        assert!(check_fits_in(&small, &what, Some(small.total_bytes - 1)).is_err());
        assert_eq!(
            describe_training(&config, 1),
            "batch size 100000 x sequence length 128 on 1 sphere"
        );
    }

    #[test]
    fn meminfo_and_units() {
        let text = "MemTotal:       32768000 kB\nMemFree:  100 kB\nMemAvailable:   22439936 kB\n";
        assert_eq!(parse_meminfo_available(text), Some(22_439_936 * 1024));
        assert_eq!(parse_meminfo_available("MemFree: 1 kB\n"), None);
        assert_eq!(parse_meminfo_available("MemAvailable: lots kB\n"), None);
        assert_eq!(format_gib(512), "512 B");
        assert_eq!(format_gib(1536), "1.5 KiB");
        assert_eq!(format_gib(21 * (1 << 30) + (1 << 29)), "21.5 GiB");
        assert_eq!(format_gib(u64::MAX), "16384.0 PiB");
        #[cfg(target_os = "linux")]
        assert!(available_memory_bytes().is_some_and(|b| b > 0));
    }
}
