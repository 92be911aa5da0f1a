//! `cllm inspect --model FILE [--json]`: verify a checkpoint and describe it
//! (`cllm inspect FILE`, the old form, still works).
//!
//! Exit status 0 only for a file that passes every check, checksum included;
//! otherwise `run` returns the reason and the caller exits non-zero.

use super::error_text;
use cllm_data::fim::FimTokens;
use cllm_train::checkpoint::special_tokens::fim_named;
use cllm_train::checkpoint::{CheckpointInfo, verify};
use std::path::PathBuf;

/// `cllm inspect` as typed on the command line.
#[derive(clap::Args, Debug, Clone)]
#[command(
    override_usage = "cllm inspect --model <FILE> [--json]",
    after_help = "Exit status 0 only when every check passes, checksum included."
)]
pub struct InspectCommand {
    /// The `.cllm` checkpoint or model to verify
    #[arg(long, value_name = "FILE", required_unless_present = "file")]
    pub model: Option<PathBuf>,
    /// The old positional form, `cllm inspect FILE` (hidden; still accepted)
    #[arg(hide = true, value_name = "FILE", conflicts_with = "model")]
    pub file: Option<PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

impl InspectCommand {
    pub fn resolve(self) -> Result<InspectArgs, String> {
        Ok(InspectArgs {
            file: super::model_path(self.model, self.file)?,
            json: self.json,
        })
    }
}

/// What `cllm inspect` does.
#[derive(Debug, Clone)]
pub struct InspectArgs {
    /// The `.cllm` checkpoint to verify.
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<(), String> {
    let info = verify(&args.file).map_err(|e| error_text(&e))?;
    if args.json {
        let mut value = serde_json::to_value(&info).map_err(|e| e.to_string())?;
        if let Some(map) = value.as_object_mut() {
            map.insert("checksum_ok".into(), serde_json::Value::Bool(true));
            insert_infill(map, info.fim_tokens.as_ref());
        }
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", describe(&info));
    }
    Ok(())
}

/// The human-readable report, one fact per line.
pub fn describe(info: &CheckpointInfo) -> String {
    let m = &info.model;
    let s = &info.state;
    let t = &info.train_config;
    let mut lines = vec![
        format!("file        {}", info.path.display()),
        format!("size        {}", human_bytes(info.file_bytes)),
        format!("checksum    OK (sha256 {})", info.checksum_sha256),
        format!(
            "format      cllm-checkpoint version {}, written by cllm {} at unix time {}",
            info.format_version, info.program_version, info.created_unix
        ),
        format!(
            "model       {} layers, {} heads, width {}, MLP {}, context {}, vocabulary {}, dropout {}",
            m.n_layer, m.n_head, m.n_embd, m.n_inner, m.n_ctx, m.vocab_size, m.dropout
        ),
        format!("parameters  {}", info.num_params),
    ];
    lines.push(match (&info.optimizer_config, info.optimizer_step) {
        (Some(c), Some(step)) => format!(
            "optimizer   AdamW moments stored (step {step}, beta1 {}, beta2 {}, eps {}, weight decay {}): can resume",
            c.beta1, c.beta2, c.eps, c.weight_decay
        ),
        _ => "optimizer   weights only: can generate, cannot resume training".to_string(),
    });
    lines.push(format!(
        "progress    epoch {}, step {}, learning rate {}, tokens seen {}, trained {:.1} s",
        s.epoch, s.step, s.lr, s.tokens_seen, s.elapsed_secs
    ));
    lines.push(match s.best_val_loss {
        Some(l) => format!("best loss   {l:.4} (validation)"),
        None => "best loss   none yet".to_string(),
    });
    lines.push(format!(
        "data        next position: epoch {}, index {}",
        s.data_epoch, s.data_index
    ));
    lines.push(format!(
        "training    preset {}, lr {}, batch {} x {} tokens, accumulation {}, threads {}, seed {}, epochs {}",
        t.model.preset, t.optimizer.lr, t.batch.batch_size, t.batch.seq_len, t.batch.accum_steps, t.threads, t.seed, t.budget.epochs
    ));
    if let Some(b) = &s.base {
        lines.push(format!(
            "base        started from {} (run '{}', step {}, sha256 {})",
            b.path.display(),
            b.run,
            b.step,
            b.checksum_sha256
        ));
    }
    if let Some(b) = &s.budget {
        lines.push(format!(
            "time        {} of a {} budget spent, {} plan{}",
            cllm_train::budget::format_duration(cllm_train::clock::secs(b.spent_ns)),
            cllm_train::budget::format_duration(t.budget.time_budget_secs),
            b.plans.len(),
            if b.plans.len() == 1 { "" } else { "s" }
        ));
    }
    lines.push(format!(
        "tokenizer   embedded tokenizer.json, {}",
        human_bytes(info.tokenizer_bytes as u64)
    ));
    lines.push(match &info.memory {
        Some(mem) => format!(
            "memory      {} training tokens indexed (vocabulary {}), {}",
            mem.tokens,
            mem.vocab_size,
            human_bytes(mem.bytes)
        ),
        None => "memory      none".to_string(),
    });
    lines.push(format!(
        "infill      {}",
        infill_text(info.fim_tokens.as_ref())
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Whether a model can fill in a middle, and with which tokens:
/// `yes (FIM tokens <fim_prefix>=1 ...)` or `no: ...`.
pub fn infill_text(fim: Option<&FimTokens>) -> String {
    match fim {
        Some(fim) => {
            let ids: Vec<String> = fim_named(fim)
                .iter()
                .map(|(text, id)| format!("{text}={id}"))
                .collect();
            format!("yes (FIM tokens {})", ids.join(" "))
        }
        None => "no: tokenizer has no FIM tokens (it only continues a prefix)".to_string(),
    }
}

/// The same for `--json`: `"infill"` (true or false) and `"fim_tokens"`
/// (`{"<fim_prefix>": 1, ...}`, or null).
pub fn insert_infill(
    map: &mut serde_json::Map<String, serde_json::Value>,
    fim: Option<&FimTokens>,
) {
    let tokens = fim.map(|fim| {
        fim_named(fim)
            .iter()
            .map(|&(text, id)| (text.to_string(), serde_json::Value::from(id)))
            .collect::<serde_json::Map<_, _>>()
    });
    map.insert("infill".into(), fim.is_some().into());
    map.insert(
        "fim_tokens".into(),
        tokens.map_or(serde_json::Value::Null, serde_json::Value::Object),
    );
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {} ({n} bytes)", UNITS[unit])
    }
}
