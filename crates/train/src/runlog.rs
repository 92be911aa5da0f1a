//! The per-run metrics log: `runs/<run-name>/config.json` (the training and
//! model config) and `runs/<run-name>/metrics.jsonl` (one JSON object per
//! line), so runs can be listed, followed live, plotted and compared later
//! (`cllm_runs` reads it back).
//!
//! Format version 2 (docs/file-formats.md, "Files and folders"): a `header` line first (format
//! version, start time, threads, preset, data), an `info` line once data and
//! model are ready, a `step` line per optimizer step (with tokens seen and
//! the wall clock), an `eval` line per evaluation, a `spheres` line every few
//! seconds (per-sphere work), `resume` when a run is continued, and an `end`
//! line (finished / stopped / failed, with the summary) when the run ends;
//! a run given time adds a `plan` line for each plan it makes.
//! Version 1 logs (step / eval / resume lines only) still load.

use super::TrainConfig;
use super::checkpoint::BaseModel;
use super::error::TrainError;
use super::events::{EvalStats, RunInfo, SphereStats, StepStats, Summary};
use super::plan::Plan;
use cllm_core::ModelConfig;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The metrics log's format version, in its `header` (and `resume`) line.
pub const LOG_VERSION: u32 = 2;

/// How often a `spheres` line is written: enough for the report's bars and
/// a live view, without one line per sphere per step.
const SPHERES_EVERY: Duration = Duration::from_secs(5);

pub struct RunLog {
    dir: PathBuf,
    metrics: BufWriter<File>,
    /// Tokens one optimizer step trains, for the `tokens` field.
    tokens_per_step: u64,
    /// Per-sphere busy share summed over this session's steps, and how many
    /// steps: the run's mean utilisation (the live figure is an average of
    /// recent steps only).
    busy_sum: Vec<f64>,
    busy_steps: u64,
    last_spheres: Vec<SphereStats>,
    spheres_written: Option<Instant>,
    last_step: u64,
    /// Set once the `end` line is written; without it, dropping the log
    /// (an error or a panic unwinding the trainer) writes a `failed` end.
    ended: bool,
}

#[derive(Serialize)]
struct RunConfig<'a> {
    train: &'a TrainConfig,
    model: &'a ModelConfig,
    program_version: &'static str,
}

/// The first line of a new log.
#[derive(Serialize)]
struct Header<'a> {
    kind: &'static str,
    version: u32,
    run: &'a str,
    /// Seconds since the Unix epoch (UTC).
    started_unix: f64,
    program_version: &'static str,
    preset: &'a str,
    threads: usize,
    /// MPI ranks, each with `threads` spheres (1 on one machine).
    ranks: usize,
    data: &'a [PathBuf],
    /// The model the run started from (`--init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<&'a BaseModel>,
}

#[derive(Serialize)]
struct StepLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    stats: &'a StepStats,
    /// Training tokens seen up to and including this step.
    tokens: u64,
    /// Wall clock, seconds since the Unix epoch.
    time: f64,
}

#[derive(Serialize)]
struct EvalLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    stats: &'a EvalStats,
    time: f64,
}

/// A plan of a run given time: the one fixed after its warm-up, or a
/// change as it trains.
#[derive(Serialize)]
struct PlanLine<'a> {
    kind: &'static str,
    /// Made after this step.
    step: u64,
    /// The step the run now stops at, and the schedule's end.
    total_steps: u64,
    horizon: u64,
    /// The step time it was made from.
    secs_per_step: f64,
    message: &'a str,
    time: f64,
}

#[derive(Serialize)]
struct InfoLine<'a> {
    kind: &'static str,
    #[serde(flatten)]
    info: &'a RunInfo,
    time: f64,
}

/// One sphere's work as the log keeps it.
#[derive(Serialize)]
struct SphereLine {
    id: usize,
    sequences: u64,
    /// Mean busy share over this session's steps, 0..1.
    busy: f64,
    avg_loss: f32,
    grad_norm: f32,
}

#[derive(Serialize)]
struct SpheresLine {
    kind: &'static str,
    step: u64,
    time: f64,
    spheres: Vec<SphereLine>,
}

#[derive(Serialize)]
struct EndLine<'a> {
    kind: &'static str,
    /// `finished`, `stopped` or `failed`.
    status: &'a str,
    reason: &'a str,
    step: u64,
    time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a Summary>,
    spheres: Vec<SphereLine>,
}

/// The wall clock in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A run name from the clock and the preset: `YYYYMMDD-HHMMSS-<preset>` (UTC).
pub fn default_run_name(preset: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = UtcTime::from_unix(secs as i64);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}-{preset}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A moment in UTC, from seconds since the Unix epoch (run names, the runs
/// table and reports).
pub struct UtcTime {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

impl UtcTime {
    pub fn from_unix(secs: i64) -> UtcTime {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        UtcTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }
}

/// The name a new run gets: the one asked for (or the clock and preset),
/// with `-2`, `-3`, ... added while a run of that name already has a log or
/// a checkpoint folder, so no run ever writes into another's files.
pub fn unique_run_name(config: &TrainConfig) -> String {
    let base = if config.outputs.run_name.is_empty() {
        default_run_name(&config.model.preset)
    } else {
        config.outputs.run_name.clone()
    };
    let taken = |name: &str| {
        config
            .outputs
            .runs_dir
            .join(name)
            .join("metrics.jsonl")
            .exists()
            || config.outputs.checkpoint_dir.join(name).exists()
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// How a log is opened: for a new run (from a base model or not), or
/// continued by a resumed one at its step.
enum Opening<'a> {
    New { base: Option<&'a BaseModel> },
    Resumed { step: u64 },
}

#[derive(Serialize)]
struct ResumeLine {
    kind: &'static str,
    /// Steps logged after this one by the earlier session are superseded.
    step: u64,
    version: u32,
    started_unix: f64,
    threads: usize,
}

impl RunLog {
    /// Starts the log of a new run in `runs_dir/<run_name>` (the name must
    /// already be unique: [`unique_run_name`]); its header names the `base`
    /// model it starts from.
    pub fn create(
        config: &TrainConfig,
        model: &ModelConfig,
        base: Option<&BaseModel>,
    ) -> Result<RunLog, TrainError> {
        Self::open(config, model, Opening::New { base })
    }

    /// Continues the log of a resumed run at `step`: appends a
    /// `{"kind":"resume","step":N}` line, after which the run's lines from
    /// step N on replace any the earlier session wrote past its checkpoint.
    pub fn resume(
        config: &TrainConfig,
        model: &ModelConfig,
        step: u64,
    ) -> Result<RunLog, TrainError> {
        Self::open(config, model, Opening::Resumed { step })
    }

    fn open(
        config: &TrainConfig,
        model: &ModelConfig,
        opening: Opening<'_>,
    ) -> Result<RunLog, TrainError> {
        let resumed_at = match opening {
            Opening::Resumed { step } => Some(step),
            Opening::New { .. } => None,
        };
        let dir = config.outputs.runs_dir.join(&config.outputs.run_name);
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io("create run folder", &dir, e))?;
        let cfg = RunConfig {
            train: config,
            model,
            program_version: env!("CARGO_PKG_VERSION"),
        };
        let json = serde_json::to_string_pretty(&cfg).map_err(|source| TrainError::Json {
            what: "the run's config",
            source,
        })?;
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, json).map_err(|e| TrainError::io("write", &cfg_path, e))?;
        let metrics_path = dir.join("metrics.jsonl");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed_at.is_some())
            .truncate(resumed_at.is_none())
            .open(&metrics_path)
            .map_err(|e| TrainError::io("open", &metrics_path, e))?;
        let mut log = RunLog {
            dir,
            metrics: BufWriter::new(file),
            tokens_per_step: (config.batch.batch_size
                * config.batch.accum_steps
                * config.batch.seq_len) as u64,
            busy_sum: Vec::new(),
            busy_steps: 0,
            last_spheres: Vec::new(),
            spheres_written: None,
            last_step: resumed_at.unwrap_or(0),
            ended: false,
        };
        let threads = config.resolved_threads();
        match opening {
            Opening::Resumed { step } => log.write_json(&ResumeLine {
                kind: "resume",
                step,
                version: LOG_VERSION,
                started_unix: unix_now(),
                threads,
            })?,
            Opening::New { base } => log.write_json(&Header {
                kind: "header",
                version: LOG_VERSION,
                run: &config.outputs.run_name,
                started_unix: unix_now(),
                program_version: env!("CARGO_PKG_VERSION"),
                preset: &config.model.preset,
                threads,
                ranks: config.ranks.max(1),
                data: &config.corpus.data,
                base,
            })?,
        }
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the run trains (files, tokens, parameters, workspace), once
    /// data and model are ready.
    pub fn ready(&mut self, info: &RunInfo) -> Result<(), TrainError> {
        self.write_json(&InfoLine {
            kind: "info",
            info,
            time: unix_now(),
        })
    }

    /// A step, and the spheres' work after it (a `spheres` line every few
    /// seconds).
    pub fn step(&mut self, s: &StepStats, spheres: &[SphereStats]) -> Result<(), TrainError> {
        self.last_step = s.step;
        self.write_json(&StepLine {
            kind: "step",
            stats: s,
            tokens: s.step * self.tokens_per_step,
            time: unix_now(),
        })?;
        if self.busy_sum.len() != spheres.len() {
            self.busy_sum = vec![0.0; spheres.len()];
            self.busy_steps = 0;
        }
        for (sum, sphere) in self.busy_sum.iter_mut().zip(spheres) {
            *sum += f64::from(sphere.busy);
        }
        self.busy_steps += 1;
        self.last_spheres = spheres.to_vec();
        if self
            .spheres_written
            .is_none_or(|t| t.elapsed() >= SPHERES_EVERY)
        {
            self.spheres_written = Some(Instant::now());
            let line = SpheresLine {
                kind: "spheres",
                step: s.step,
                time: unix_now(),
                spheres: self.sphere_lines(&self.last_spheres),
            };
            self.write_json(&line)?;
        }
        Ok(())
    }

    /// A plan of a run given time (`message` says it as the front ends do).
    pub fn plan(
        &mut self,
        step: u64,
        plan: &Plan,
        step_ns: u64,
        message: &str,
    ) -> Result<(), TrainError> {
        self.write_json(&PlanLine {
            kind: "plan",
            step,
            total_steps: plan.last_step,
            horizon: plan.horizon,
            secs_per_step: crate::clock::secs(step_ns),
            message,
            time: unix_now(),
        })
    }

    pub fn eval(&mut self, e: &EvalStats) -> Result<(), TrainError> {
        self.write_json(&EvalLine {
            kind: "eval",
            stats: e,
            time: unix_now(),
        })
    }

    /// The run's last line: `stopped` when it ended before its last step
    /// (a Stop, Ctrl-C), otherwise `finished` (early stopping included).
    pub fn end(
        &mut self,
        summary: &Summary,
        stopped: bool,
        spheres: &[SphereStats],
    ) -> Result<(), TrainError> {
        let (status, reason) = if stopped {
            ("stopped", format!("stopped at step {}", summary.steps))
        } else if summary.stopped_early {
            ("finished", "early stop: no validation gain".to_string())
        } else {
            ("finished", format!("reached step {}", summary.steps))
        };
        let spheres = if spheres.is_empty() {
            &self.last_spheres.clone()
        } else {
            spheres
        };
        let line = EndLine {
            kind: "end",
            status,
            reason: &reason,
            step: summary.steps,
            time: unix_now(),
            summary: Some(summary),
            spheres: self.sphere_lines(spheres),
        };
        self.write_json(&line)?;
        self.ended = true;
        Ok(())
    }

    fn sphere_lines(&self, spheres: &[SphereStats]) -> Vec<SphereLine> {
        spheres
            .iter()
            .enumerate()
            .map(|(i, s)| SphereLine {
                id: s.id,
                sequences: s.sequences,
                busy: match self.busy_sum.get(i) {
                    Some(sum) if self.busy_steps > 0 => sum / self.busy_steps as f64,
                    _ => f64::from(s.busy),
                },
                avg_loss: s.avg_loss,
                grad_norm: s.grad_norm,
            })
            .collect()
    }

    fn write_json(&mut self, value: &impl Serialize) -> Result<(), TrainError> {
        let json = serde_json::to_string(value).map_err(|source| TrainError::Json {
            what: "a metrics line",
            source,
        })?;
        // Flushed per line: a crash loses at most the line being written.
        writeln!(self.metrics, "{json}")
            .and_then(|_| self.metrics.flush())
            .map_err(|e| TrainError::io("write", self.dir.join("metrics.jsonl"), e))
    }
}

impl RunLog {
    /// The end line of a run stopped by an error, with the error's message.
    pub fn fail(&mut self, message: &str) {
        if self.ended {
            return;
        }
        let line = EndLine {
            kind: "end",
            status: "failed",
            reason: message,
            step: self.last_step,
            time: unix_now(),
            summary: None,
            spheres: self.sphere_lines(&self.last_spheres.clone()),
        };
        let _ = self.write_json(&line);
        self.ended = true;
    }
}

impl Drop for RunLog {
    /// A run that ends without [`RunLog::end`] ended on an error or a panic
    /// (its message went to the front end): the log says so, so a reader
    /// never takes it for a live run. A killed process writes nothing; the
    /// reader infers that from a log that stopped growing.
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let reason = if std::thread::panicking() {
            "the trainer panicked (internal error)"
        } else {
            "the run ended with an error (the trainer's message was shown where it ran)"
        };
        let line = EndLine {
            kind: "end",
            status: "failed",
            reason,
            step: self.last_step,
            time: unix_now(),
            summary: None,
            spheres: self.sphere_lines(&self.last_spheres.clone()),
        };
        let _ = self.write_json(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_agrees_with_pythons_datetime() {
        // Expected values from Python's datetime.utcfromtimestamp.
        let cases = [
            (1_795_972_561, (2026, 11, 29, 17, 16, 1)),
            (951_782_400, (2000, 2, 29, 0, 0, 0)),
            (0, (1970, 1, 1, 0, 0, 0)),
            (4_102_444_799, (2099, 12, 31, 23, 59, 59)),
        ];
        for (secs, want) in cases {
            let t = UtcTime::from_unix(secs);
            assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), want);
        }
    }

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
        let mut config = TrainConfig::default();
        config.outputs.runs_dir = dir.path().to_path_buf();
        config.outputs.run_name = "t".into();
        let model = ModelConfig::preset("tiny").unwrap();
        let mut log = RunLog::create(&config, &model, None).unwrap();
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
        log.step(&step, &[]).unwrap();
        log.step(&step, &[]).unwrap();
        drop(log);
        let text = std::fs::read_to_string(dir.path().join("t/metrics.jsonl")).unwrap();
        let kinds = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        // Dropped without `end`: the log says the run failed.
        assert_eq!(kinds(&text), ["header", "step", "spheres", "step", "end"]);
        let v: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(v["loss"], 3.5);
        assert_eq!(v["tokens"], config.batch.batch_size * config.batch.seq_len);
        let head: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(head["version"], LOG_VERSION);
        let end: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(end["status"], "failed");
        assert!(dir.path().join("t/config.json").exists());
        // A second run asking for the same name gets its own folder.
        assert_eq!(unique_run_name(&config), "t-2");
        // A resumed run appends, after a marker line, and ends cleanly.
        let mut log3 = RunLog::resume(&config, &model, 1).unwrap();
        log3.step(&step, &[]).unwrap();
        let mut summary = Summary::empty(1.0);
        summary.steps = 1;
        log3.end(&summary, true, &[]).unwrap();
        drop(log3);
        let text = std::fs::read_to_string(dir.path().join("t/metrics.jsonl")).unwrap();
        assert_eq!(kinds(&text)[5..], ["resume", "step", "spheres", "end"]);
        let end: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(end["status"], "stopped");
    }
}
