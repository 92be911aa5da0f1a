//! The settings that differ between runs: each run's `config.json`
//! flattened to `train.lr`, `model.n_layer`, ... and the keys whose values
//! are not all the same. What changed is what explains a curve.

use super::run::RunData;
use std::collections::BTreeMap;

/// Keys that differ by nature (names, paths of the run's own files) and
/// say nothing about the training.
const IGNORED: [&str; 5] = [
    "train.run_name",
    "train.output",
    "train.resume",
    "train.given",
    "train.files",
];

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// A run's settings as `key -> value` text.
pub fn settings(run: &RunData) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(c) = &run.config {
        flatten("", c, &mut out);
    }
    out.retain(|k, _| !IGNORED.contains(&k.as_str()));
    out
}

/// `(key, value per run)` for the keys whose values differ (a key a run
/// lacks shows as `-`).
pub fn differing(runs: &[&RunData]) -> Vec<(String, Vec<String>)> {
    let all: Vec<BTreeMap<String, String>> = runs.iter().map(|r| settings(r)).collect();
    let mut keys: Vec<&String> = all.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let values: Vec<String> = all
                .iter()
                .map(|m| m.get(k).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            let differ = values.iter().any(|v| v != &values[0]);
            differ.then(|| (k.clone(), values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_differing_keys_remain() {
        let run = |lr: f64, name: &str| RunData {
            config: Some(serde_json::json!({"train": {"lr": lr, "seed": 1, "run_name": name}})),
            ..RunData::default()
        };
        let (a, b) = (run(0.001, "a"), run(0.002, "b"));
        let d = differing(&[&a, &b]);
        assert_eq!(
            d,
            vec![("train.lr".to_string(), vec!["0.001".into(), "0.002".into()])]
        );
    }
}
