//! `cllm train --config FILE`: a run's settings from a TOML or JSON file.
//!
//! The keys are `TrainConfig`'s, as serde writes them into a run's
//! `runs/<run>/config.json`: flat, the fields of its parts (`lr`, not
//! `optimizer.lr`); that file itself is accepted, and repeats its
//! run as a new one. The file's settings go over the defaults through serde
//! (a JSON merge, then one deserialisation), so a field added to
//! `TrainConfig` is a key here with nothing to list. Paths in the file are
//! taken as they are written, from the folder `cllm` runs in, as in the
//! saved `config.json`.

use cllm_train::TrainConfig;
use serde_json::{Map, Value};
use std::path::Path;

/// The keys of a run's saved config that name that run rather than how it
/// trains: a repeat is a new run of its own, started from scratch.
const RUN_OWN_KEYS: &[&str] = &["run_name", "resume"];

/// The top-level keys of a run's `config.json`.
const RUN_FILE_KEYS: &[&str] = &["train", "model", "program_version"];

/// Flags whose config key has another name, for the message about an
/// unknown key (a test checks every key named here exists).
const FLAG_KEYS: &[(&str, &str)] = &[
    ("ext", "extensions"),
    ("time", "time_budget_secs"),
    ("warmup", "warmup_steps"),
    ("accum", "accum_steps"),
    ("patience", "early_stop_patience"),
    ("weight_decay", "adamw.weight_decay"),
];

/// The config the file describes and the keys it gives (the settings a
/// resumed run takes from it, as from flags).
pub fn load(path: &Path) -> Result<(TrainConfig, Vec<String>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let settings = parse(path, &text)?;
    let given = settings.keys().cloned().collect();
    Ok((apply(path, settings)?, given))
}

/// The file's settings as a JSON object: JSON by its extension or when it
/// starts with `{`, TOML otherwise; a run's `config.json` gives its
/// `train` part, less the keys that name that run.
fn parse(path: &Path, text: &str) -> Result<Map<String, Value>, String> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let is_json = if extension.eq_ignore_ascii_case("json") {
        true
    } else if extension.eq_ignore_ascii_case("toml") {
        false
    } else {
        text.trim_start().starts_with('{')
    };
    let value: Value = if is_json {
        serde_json::from_str(text)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?
    } else {
        toml::from_str(text).map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?
    };
    let Value::Object(mut settings) = value else {
        return Err(format!(
            "{} holds no settings: expected `key = value` lines (TOML) or a JSON object",
            path.display()
        ));
    };
    let is_run_file = matches!(settings.get("train"), Some(Value::Object(_)))
        && settings.keys().all(|k| RUN_FILE_KEYS.contains(&k.as_str()));
    if is_run_file && let Some(Value::Object(mut train)) = settings.remove("train") {
        for key in RUN_OWN_KEYS {
            train.remove(*key);
        }
        return Ok(train);
    }
    Ok(settings)
}

/// The defaults with `settings` over them. A key the config does not have,
/// or a value of the wrong kind, is an error naming the key and the file.
fn apply(path: &Path, settings: Map<String, Value>) -> Result<TrainConfig, String> {
    let defaults = serde_json::to_value(TrainConfig::default())
        .map_err(|e| format!("the default training config does not serialise: {e}"))?;
    let Value::Object(known) = &defaults else {
        return Err("the default training config is not a JSON object".into());
    };
    check_keys(path, &settings, known, "")?;
    let with = |settings: Map<String, Value>| {
        let mut merged = defaults.clone();
        merge(&mut merged, Value::Object(settings));
        serde_json::from_value::<TrainConfig>(merged)
    };
    with(settings.clone()).map_err(|whole| {
        // serde names the kind it wanted, not the key: find the key by
        // trying each setting alone.
        let culprit = settings.iter().find_map(|(key, value)| {
            let alone = Map::from_iter([(key.clone(), value.clone())]);
            with(alone).err().map(|e| (key, e))
        });
        match culprit {
            Some((key, e)) => format!("{}: `{key}`: {e}", path.display()),
            None => format!("{}: {whole}", path.display()),
        }
    })
}

/// Every key of `settings` (and of its tables, for keys whose default is a
/// table) must be one of `known`'s.
fn check_keys(
    path: &Path,
    settings: &Map<String, Value>,
    known: &Map<String, Value>,
    prefix: &str,
) -> Result<(), String> {
    for (key, value) in settings {
        match (known.get(key), value) {
            (Some(Value::Object(inner_known)), Value::Object(inner)) => {
                check_keys(path, inner, inner_known, &format!("{prefix}{key}."))?;
            }
            (Some(_), _) => {}
            (None, _) => return Err(unknown_key(path, &format!("{prefix}{key}"), known, prefix)),
        }
    }
    Ok(())
}

/// The message for an unknown key: the key, the file, and the key meant
/// when it looks like one (or is a flag's name), else the keys there are.
fn unknown_key(path: &Path, key: &str, known: &Map<String, Value>, prefix: &str) -> String {
    let names: Vec<String> = known.keys().map(|k| format!("{prefix}{k}")).collect();
    let plain = key.replace('-', "_");
    let meant = FLAG_KEYS
        .iter()
        .find(|(flag, _)| *flag == plain)
        .map(|(_, k)| k.to_string())
        .or_else(|| {
            names
                .iter()
                .map(|n| (edit_distance(&plain, n), n))
                .filter(|(d, n)| *d <= 2.max(n.len() / 4))
                .min_by_key(|(d, _)| *d)
                .map(|(_, n)| n.clone())
        });
    match meant {
        Some(meant) => format!(
            "unknown setting `{key}` in {} (did you mean `{meant}`?)",
            path.display()
        ),
        None => format!(
            "unknown setting `{key}` in {}; the settings are: {}",
            path.display(),
            names.join(", ")
        ),
    }
}

/// Puts `over` onto `base`; tables merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Levenshtein distance, for the key a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_train::ScheduleKind;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn toml_settings_go_over_the_defaults_and_are_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "run.toml",
            "preset = \"tiny\"\nlr = 0.01\ndata = [\"src\", \"lib\"]\nschedule = \"linear\"\n\
             [adamw]\nweight_decay = 0.2\n",
        );
        let (c, given) = load(&path).unwrap();
        let defaults = TrainConfig::default();
        assert_eq!(c.model.preset, "tiny");
        assert_eq!(c.optimizer.lr, 0.01);
        assert_eq!(c.corpus.data, vec![Path::new("src"), Path::new("lib")]);
        assert_eq!(c.optimizer.schedule, ScheduleKind::Linear);
        assert_eq!(c.optimizer.adamw.weight_decay, 0.2);
        assert_eq!(
            c.optimizer.adamw.beta2, defaults.optimizer.adamw.beta2,
            "a table merges"
        );
        assert_eq!(c.batch.seq_len, defaults.batch.seq_len);
        let mut given = given;
        given.sort();
        assert_eq!(given, ["adamw", "data", "lr", "preset", "schedule"]);
    }

    #[test]
    fn json_is_read_by_extension_or_content() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.json", "a.cfg"] {
            let path = write(dir.path(), name, "{\"epochs\": 3, \"seed\": 7}");
            let (c, _) = load(&path).unwrap();
            assert_eq!((c.budget.epochs, c.seed), (3, 7), "{name}");
        }
    }

    #[test]
    fn a_runs_config_json_gives_its_settings_less_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut train = TrainConfig::default();
        train.optimizer.lr = 0.02;
        train.batch.seq_len = 64;
        train.outputs.run_name = "first".into();
        train.resume = Some("checkpoints/first/checkpoint_best.cllm".into());
        let json = serde_json::json!({"train": train, "model": {"n_layer": 2}, "program_version": "0.1.0"});
        let path = write(dir.path(), "config.json", &json.to_string());
        let (c, given) = load(&path).unwrap();
        assert_eq!((c.optimizer.lr, c.batch.seq_len), (0.02, 64));
        assert_eq!(c.outputs.run_name, "", "a repeat is a new run");
        assert_eq!(c.resume, None);
        assert!(given.iter().any(|g| g == "seq_len"));
        assert!(!given.iter().any(|g| g == "run_name" || g == "resume"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bad.toml", "lr = 0.01\nlearning_rat = 3\n");
        let err = load(&path).unwrap_err();
        assert!(
            err.contains("`learning_rat`") && err.contains("bad.toml"),
            "{err}"
        );
        let path = write(dir.path(), "typo.toml", "batch-size = 8\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("did you mean `batch_size`?"), "{err}");
        let path = write(dir.path(), "flag.toml", "warmup = 8\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("did you mean `warmup_steps`?"), "{err}");
        let path = write(dir.path(), "nested.toml", "[adamw]\nbeta3 = 0.5\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("`adamw.beta3`"), "{err}");
        // The config's parts are not keys: their fields are, at the top.
        let path = write(dir.path(), "part.toml", "[optimizer]\nlr = 0.01\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("unknown setting `optimizer`"), "{err}");
        let path = write(dir.path(), "kind.toml", "seed = 1\nlr = \"fast\"\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("`lr`") && err.contains("kind.toml"), "{err}");
        let path = write(dir.path(), "broken.toml", "lr = = 1\n");
        let err = load(&path).unwrap_err();
        assert!(err.contains("not valid TOML"), "{err}");
        let err = load(&dir.path().join("missing.toml")).unwrap_err();
        assert!(err.contains("missing.toml"), "{err}");
    }

    #[test]
    fn every_key_a_flag_hint_names_exists() {
        let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
        for (flag, key) in FLAG_KEYS {
            let found = key.split('.').try_fold(&defaults, |v, part| v.get(part));
            assert!(found.is_some(), "--{flag}: no config key {key}");
        }
    }
}
