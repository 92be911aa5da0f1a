//! What a resumed run is configured with: the checkpoint's settings, with
//! only the settings the user gave explicitly taken from the user.
//!
//! A checkpoint stores the whole `TrainConfig` it was trained with. Resuming
//! must continue that run, so a setting the user did not give comes from the
//! checkpoint, never from a front end's default. A setting the user did give
//! is either applied (run control: threads, epochs, steps, evaluation,
//! checkpoints, where files go) and said so when it changes the run, or
//! refused with a message naming it (anything that defines the data, the
//! model or the optimisation). Nothing is silently ignored.

use super::TrainConfig;
use super::error::TrainError;
use serde_json::{Map, Value};

/// A setting's config field name and the name a person knows it by.
struct Setting {
    field: &'static str,
    label: &'static str,
}

const fn s(field: &'static str, label: &'static str) -> Setting {
    Setting { field, label }
}

/// Settings that define the run: they cannot change on resume.
const LOCKED: &[Setting] = &[
    s("data", "training data (--data)"),
    s("extensions", "extensions (--ext)"),
    s("files", "file selection"),
    s("preset", "model preset (--preset)"),
    s("tokenizer", "tokenizer (--tokenizer)"),
    s("vocab_size", "vocabulary size (--vocab-size)"),
    s("batch_size", "batch size (--batch-size)"),
    s("seq_len", "sequence length (--seq-len)"),
    s("lr", "learning rate (--lr)"),
    s("min_lr", "minimum learning rate (--min-lr)"),
    s("warmup_steps", "warmup (--warmup)"),
    s("schedule", "schedule (--schedule)"),
    s("adamw", "optimizer settings (--weight-decay)"),
    s("grad_clip", "gradient clipping (--grad-clip)"),
    s("accum_steps", "gradient accumulation (--accum)"),
    s("dropout", "dropout (--dropout)"),
    s("val_fraction", "validation fraction (--val-fraction)"),
    s("seed", "seed (--seed)"),
];

/// Settings that say where files go and which checkpoint to read: always
/// the front end's (they are not part of the run's definition).
const PLACES: &[&str] = &["resume", "output", "checkpoint_dir", "runs_dir"];

/// The label of a config field, for messages.
pub fn label(field: &str) -> String {
    LOCKED
        .iter()
        .find(|s| s.field == field)
        .map(|s| s.label.to_string())
        .unwrap_or_else(|| format!("--{}", field.replace('_', "-")))
}

/// The config a resumed run uses, and notes for the user about what the
/// given settings change. `given` lists the settings the user set
/// explicitly, by their names in the serialised config (the parts' field
/// names). A given locked setting that differs from the
/// checkpoint's is an error naming it.
pub fn resumed_config(
    saved: &TrainConfig,
    user: &TrainConfig,
    given: &[String],
) -> Result<(TrainConfig, Vec<String>), TrainError> {
    let to_map = |c: &TrainConfig| -> Result<Map<String, Value>, TrainError> {
        match serde_json::to_value(c).map_err(TrainError::MergedSettings)? {
            Value::Object(m) => Ok(m),
            _ => Err(TrainError::MergedSettings(serde::de::Error::custom(
                "a training config is not a JSON object",
            ))),
        }
    };
    let saved_map = to_map(saved)?;
    let user_map = to_map(user)?;
    let mut merged = saved_map.clone();
    let mut refused = Vec::new();
    let mut notes = Vec::new();
    for (field, user_value) in &user_map {
        let saved_value = saved_map.get(field).unwrap_or(&Value::Null);
        if PLACES.contains(&field.as_str()) {
            merged.insert(field.clone(), user_value.clone());
            continue;
        }
        if !given.iter().any(|g| g == field) || user_value == saved_value {
            continue;
        }
        if LOCKED.iter().any(|s| s.field == field) {
            refused.push(format!(
                "{} is {} in the checkpoint, {} was given",
                label(field),
                show(saved_value),
                show(user_value)
            ));
            continue;
        }
        merged.insert(field.clone(), user_value.clone());
        match field.as_str() {
            "threads" => notes.push(format!(
                "threads changed from {} to {}: the run differs from an uninterrupted one by \
                 float summation order (same seed, same data)",
                show(saved_value),
                show(user_value)
            )),
            "precision" => notes.push(format!(
                "matmul precision changed from {} to {}: the run goes on from the same f32 \
                 weights, and differs from an uninterrupted one by the rounding of its products",
                show(saved_value),
                show(user_value)
            )),
            "run_name" => {}
            _ => notes.push(format!(
                "{} changed from {} to {}",
                label(field),
                show(saved_value),
                show(user_value)
            )),
        }
    }
    if !refused.is_empty() {
        return Err(TrainError::ChangedSettings(refused));
    }
    let config: TrainConfig =
        serde_json::from_value(Value::Object(merged)).map_err(TrainError::MergedSettings)?;
    Ok((
        TrainConfig {
            given: user.given.clone(),
            allow_data_change: user.allow_data_change,
            ..config
        },
        notes,
    ))
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "unset".into(),
        // Settings are f32: show them as typed, not as their f64 expansion.
        Value::Number(n) if n.is_f64() => n
            .as_f64()
            .map(|x| (x as f32).to_string())
            .unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BudgetSettings, OptimizerSettings, OutputSettings};
    use std::path::PathBuf;

    fn saved() -> TrainConfig {
        TrainConfig {
            threads: 2,
            optimizer: OptimizerSettings {
                lr: 1e-3,
                ..Default::default()
            },
            budget: BudgetSettings {
                epochs: 3,
                ..Default::default()
            },
            outputs: OutputSettings {
                run_name: "first".into(),
                ..Default::default()
            },
            ..TrainConfig::default()
        }
    }

    #[test]
    fn settings_not_given_come_from_the_checkpoint() {
        // The user's config holds a front end's defaults: none was given.
        let mut user = TrainConfig::default();
        user.outputs.output = PathBuf::from("elsewhere.cllm");
        user.resume = Some(PathBuf::from("x.cllm"));
        let (c, notes) = resumed_config(&saved(), &user, &[]).unwrap();
        assert_eq!(c.budget.epochs, 3);
        assert_eq!(c.optimizer.lr, 1e-3);
        assert_eq!(c.threads, 2);
        assert_eq!(c.outputs.run_name, "first");
        assert_eq!(c.outputs.output, PathBuf::from("elsewhere.cllm"));
        assert_eq!(c.resume, Some(PathBuf::from("x.cllm")));
        assert!(notes.is_empty());
    }

    #[test]
    fn given_run_control_is_applied_and_said() {
        let mut user = TrainConfig::default();
        user.budget.epochs = 5;
        user.threads = 3;
        let given = vec!["epochs".to_string(), "threads".to_string()];
        let (c, notes) = resumed_config(&saved(), &user, &given).unwrap();
        assert_eq!((c.budget.epochs, c.threads), (5, 3));
        assert!(notes.iter().any(|n| n.contains("summation order")));
        assert!(
            notes
                .iter()
                .any(|n| n.contains("--epochs") && n.contains('5'))
        );
    }

    #[test]
    fn given_locked_settings_are_refused_by_name() {
        let mut user = TrainConfig::default();
        user.optimizer.lr = 0.01;
        user.batch.batch_size = 3;
        let given = vec!["lr".to_string(), "batch_size".to_string()];
        let err = resumed_config(&saved(), &user, &given)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("learning rate (--lr) is 0.001 in the checkpoint, 0.01 was given"),
            "{err}"
        );
        assert!(err.contains("batch size (--batch-size)"), "{err}");
        // Giving the same value as the checkpoint is fine.
        let mut same = TrainConfig::default();
        same.optimizer.lr = 1e-3;
        assert!(resumed_config(&saved(), &same, &["lr".to_string()]).is_ok());
    }
}
