//! The per-run metrics log: `runs/<run-name>/config.json` (the training and
//! model config) and `runs/<run-name>/metrics.jsonl` (one JSON object per
//! step and per evaluation), so runs can be plotted and compared later.

use super::TrainConfig;
use super::events::{EvalStats, StepStats};
use crate::model::ModelConfig;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct RunLog {
    dir: PathBuf,
    metrics: BufWriter<File>,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    train: &'a TrainConfig,
    model: &'a ModelConfig,
    program_version: &'static str,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line<'a> {
    Step(&'a StepStats),
    Eval(&'a EvalStats),
}

/// A run name from the clock and the preset: `YYYYMMDD-HHMMSS-<preset>` (UTC).
pub fn default_run_name(preset: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{preset}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The name a new run gets: the one asked for (or the clock and preset),
/// with `-2`, `-3`, ... added while a run of that name already has a log or
/// a checkpoint folder, so no run ever writes into another's files.
pub fn unique_run_name(config: &TrainConfig) -> String {
    let base = if config.run_name.is_empty() {
        default_run_name(&config.preset)
    } else {
        config.run_name.clone()
    };
    let taken = |name: &str| {
        config.runs_dir.join(name).join("metrics.jsonl").exists()
            || config.checkpoint_dir.join(name).exists()
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[derive(Serialize)]
struct ResumeLine {
    kind: &'static str,
    /// Steps logged after this one by the earlier session are superseded.
    step: u64,
}

impl RunLog {
    /// Starts the log of a new run in `runs_dir/<run_name>` (the name must
    /// already be unique: [`unique_run_name`]).
    pub fn create(config: &TrainConfig, model: &ModelConfig) -> Result<RunLog, String> {
        Self::open(config, model, None)
    }

    /// Continues the log of a resumed run at `step`: appends a
    /// `{"kind":"resume","step":N}` line, after which the run's lines from
    /// step N on replace any the earlier session wrote past its checkpoint.
    pub fn resume(config: &TrainConfig, model: &ModelConfig, step: u64) -> Result<RunLog, String> {
        Self::open(config, model, Some(step))
    }

    fn open(
        config: &TrainConfig,
        model: &ModelConfig,
        resumed_at: Option<u64>,
    ) -> Result<RunLog, String> {
        let dir = config.runs_dir.join(&config.run_name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create run folder {}: {e}", dir.display()))?;
        let cfg = RunConfig {
            train: config,
            model,
            program_version: env!("CARGO_PKG_VERSION"),
        };
        let json = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, json)
            .map_err(|e| format!("cannot write {}: {e}", cfg_path.display()))?;
        let metrics_path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed_at.is_some())
            .truncate(resumed_at.is_none())
            .open(&metrics_path)
            .map_err(|e| format!("cannot open {}: {e}", metrics_path.display()))?;
        let mut log = RunLog {
            dir,
            metrics: BufWriter::new(file),
        };
        if let Some(step) = resumed_at {
            log.write_json(&ResumeLine {
                kind: "resume",
                step,
            })?;
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn step(&mut self, s: &StepStats) -> Result<(), String> {
        self.line(&Line::Step(s))
    }

    pub fn eval(&mut self, e: &EvalStats) -> Result<(), String> {
        self.line(&Line::Eval(e))
    }

    fn line(&mut self, line: &Line) -> Result<(), String> {
        self.write_json(line)
    }

    fn write_json(&mut self, value: &impl Serialize) -> Result<(), String> {
        let json = serde_json::to_string(value).map_err(|e| e.to_string())?;
        // Flushed per line: a crash loses at most the line being written.
        writeln!(self.metrics, "{json}")
            .and_then(|_| self.metrics.flush())
            .map_err(|e| {
                format!(
                    "cannot write {}: {e}",
                    self.dir.join("metrics.jsonl").display()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_name_is_a_clock_reading() {
        let n = default_run_name("small");
        assert!(
            n.starts_with("20")
                && n.len() == "20261121-071300-small".len()
                && n.ends_with("-small"),
            "{n}"
        );
    }

    #[test]
    fn writes_config_and_one_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig {
            runs_dir: dir.path().to_path_buf(),
            run_name: "t".into(),
            ..TrainConfig::default()
        };
        let model = ModelConfig::preset("tiny").unwrap();
        let mut log = RunLog::create(&config, &model).unwrap();
        let step = StepStats {
            epoch: 0,
            epochs: 1,
            step: 1,
            total_steps: 2,
            loss: 3.5,
            lr: 1e-3,
            grad_norm: 0.5,
            clipped: false,
            tokens_per_sec: 10.0,
            elapsed_secs: 1.0,
            eta_secs: 1.0,
        };
        log.step(&step).unwrap();
        log.step(&step).unwrap();
        let text = std::fs::read_to_string(dir.path().join("t/metrics.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["kind"], "step");
        assert_eq!(v["loss"], 3.5);
        assert!(dir.path().join("t/config.json").exists());
        // A second run asking for the same name gets its own folder.
        assert_eq!(unique_run_name(&config), "t-2");
        // A resumed run appends, after a marker line.
        let mut log3 = RunLog::resume(&config, &model, 1).unwrap();
        log3.step(&step).unwrap();
        let text = std::fs::read_to_string(dir.path().join("t/metrics.jsonl")).unwrap();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(kinds, ["\"step\"", "\"step\"", "\"resume\"", "\"step\""]);
    }
}
