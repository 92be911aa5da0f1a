//! A run as read back from its folder: config, header, steps, evaluations,
//! sphere work and how it ended, plus what the Runs table shows (status
//! inferred for a run still being written, tokens seen, best evaluation).

use super::error::RunsError;
use super::follow::LogFollower;
use super::record::{End, Eval, Header, Info, Parsed, Record, Resume, Spheres, Step, parse_line};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A run without an end line is taken as running while its log changed
/// this recently (or within three of its longest gaps between steps).
pub const STALE_AFTER_SECS: f64 = 300.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Running,
    Finished,
    Stopped,
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RunData {
    pub name: String,
    pub dir: PathBuf,
    /// `config.json`: `{"train": TrainConfig, "model": ModelConfig, ...}`.
    pub config: Option<serde_json::Value>,
    pub header: Option<Header>,
    pub info: Option<Info>,
    pub resumes: Vec<Resume>,
    pub steps: Vec<Step>,
    pub evals: Vec<Eval>,
    pub spheres: Option<Spheres>,
    pub end: Option<End>,
    /// Lines that were not log lines (truncated, overwritten, not JSON).
    pub damaged_lines: usize,
    /// The first of them: its number in the log and what is wrong.
    pub first_damage: Option<(usize, String)>,
    /// Lines of the log read so far.
    pub lines_read: usize,
    /// Bytes of an unfinished last line.
    pub pending_bytes: usize,
    /// When the log last changed.
    pub modified: Option<SystemTime>,
    /// [`RunData::best_checkpoint`] and [`RunData::best_resume_point`] as
    /// of the last poll, so a front end never lists folders itself.
    pub found_best: Option<PathBuf>,
    pub found_resume: Option<PathBuf>,
    /// When `config.json` was written: the start of a version 1 run.
    pub config_written_unix: Option<f64>,
    /// Why `config.json` is there but could not be read (the run's
    /// settings are then unknown).
    pub config_damage: Option<String>,
}

/// Seconds since the Unix epoch of a system time.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl RunData {
    pub fn new(dir: &Path) -> RunData {
        RunData {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_path_buf(),
            ..RunData::default()
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// One line of the log, in order.
    pub fn apply_line(&mut self, line: &str) {
        self.lines_read += 1;
        match parse_line(line) {
            Parsed::Record(r) => self.apply(*r),
            Parsed::Unknown => {}
            Parsed::Damaged(why) => {
                self.damaged_lines += 1;
                self.first_damage.get_or_insert((self.lines_read, why));
            }
        }
    }

    fn apply(&mut self, r: Record) {
        match r {
            Record::Header(h) => self.header = Some(h),
            Record::Info(i) => self.info = Some(i),
            Record::Resume(r) => {
                // The resumed session rewrites what the earlier one logged
                // past its checkpoint; its old end no longer holds.
                self.steps.retain(|s| s.step <= r.step);
                self.evals.retain(|e| e.step <= r.step);
                self.end = None;
                self.resumes.push(r);
            }
            Record::Step(s) => self.steps.push(s),
            Record::Eval(e) => self.evals.push(e),
            Record::Spheres(s) => self.spheres = Some(s),
            Record::End(e) => self.end = Some(e),
        }
    }

    /// The log's format version (1: before the header line existed).
    pub fn version(&self) -> u32 {
        self.header.as_ref().map_or(1, |h| h.version)
    }

    fn train(&self, key: &str) -> Option<&serde_json::Value> {
        self.config.as_ref()?.get("train")?.get(key)
    }

    /// Tokens one optimizer step trains (batch × accumulation × sequence).
    pub fn tokens_per_step(&self) -> Option<u64> {
        let n = |k| self.train(k).and_then(|v| v.as_u64());
        Some(n("batch_size")? * n("accum_steps").unwrap_or(1) * n("seq_len")?)
    }

    /// Tokens seen by a step: logged (version 2) or from the config.
    pub fn tokens_at(&self, s: &Step) -> Option<u64> {
        s.tokens
            .or_else(|| self.tokens_per_step().map(|t| t * s.step))
    }

    pub fn tokens_seen(&self) -> Option<u64> {
        self.steps.last().and_then(|s| self.tokens_at(s))
    }

    pub fn last_step(&self) -> u64 {
        self.steps.last().map_or(0, |s| s.step)
    }

    pub fn total_steps(&self) -> u64 {
        self.steps
            .last()
            .map(|s| s.total_steps)
            .or(self.info.as_ref().map(|i| i.total_steps))
            .unwrap_or(0)
    }

    /// The evaluation with the lowest validation loss.
    pub fn best_eval(&self) -> Option<&Eval> {
        self.evals
            .iter()
            .filter(|e| e.loss.is_finite())
            .min_by(|a, b| a.loss.total_cmp(&b.loss))
    }

    /// Seconds since the Unix epoch the run started: the header, or (older
    /// logs) the config's modification time.
    pub fn started_unix(&self) -> Option<f64> {
        match &self.header {
            Some(h) => Some(h.started_unix),
            None => self.config_written_unix,
        }
    }

    /// Training time, all sessions together (the last step's clock).
    pub fn duration_secs(&self) -> f64 {
        let summary = self.end.as_ref().and_then(|e| e.summary.as_ref());
        let steps = self.steps.last().map_or(0.0, |s| s.elapsed_secs);
        summary.map_or(steps, |s| s.total_secs.max(steps))
    }

    pub fn preset(&self) -> String {
        self.header
            .as_ref()
            .map(|h| h.preset.clone())
            .filter(|p| !p.is_empty())
            .or_else(|| self.train("preset")?.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn params(&self) -> Option<usize> {
        self.info.as_ref().map(|i| i.params).filter(|&p| p > 0)
    }

    /// The data folders or files, joined.
    pub fn data(&self) -> String {
        let from_header = self.header.as_ref().map(|h| h.data.join(", "));
        from_header
            .filter(|d| !d.is_empty())
            .or_else(|| {
                let v = self.train("data")?.as_array()?;
                Some(
                    v.iter()
                        .filter_map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
            .unwrap_or_default()
    }

    /// MPI ranks the run trained on (1: one machine).
    pub fn ranks(&self) -> usize {
        self.header.as_ref().map_or(1, |h| h.ranks.max(1))
    }

    /// Threads of the latest session.
    pub fn threads(&self) -> Option<usize> {
        self.resumes
            .iter()
            .rev()
            .find_map(|r| r.threads)
            .or(self.info.as_ref().map(|i| i.threads))
            .or(self.header.as_ref().map(|h| h.threads))
            .filter(|&t| t > 0)
    }

    /// Training tokens per second (the run's summary, else the last step's
    /// session average).
    pub fn tokens_per_sec(&self) -> Option<f64> {
        let summary = self.end.as_ref().and_then(|e| e.summary.as_ref());
        summary
            .map(|s| s.tokens_per_sec)
            .filter(|t| *t > 0.0)
            .or(self.steps.last().map(|s| s.tokens_per_sec))
    }

    /// The status and why: the end line's, else inferred. A log without
    /// one that still changes is a live run; one that stopped changing was
    /// killed (version 2) or predates end lines (version 1).
    pub fn status(&self, now: SystemTime) -> (Status, String) {
        if let Some(end) = &self.end {
            let status = match end.status.as_str() {
                "finished" => Status::Finished,
                "stopped" => Status::Stopped,
                _ => Status::Failed,
            };
            return (status, end.reason.clone());
        }
        let age = self
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .map_or(f64::INFINITY, |d| d.as_secs_f64());
        if age < self.stale_after_secs() {
            return (Status::Running, "the log is growing".into());
        }
        if self.version() >= 2 {
            return (
                Status::Failed,
                "the log ends without an end line: the process was killed or crashed".into(),
            );
        }
        let total = self.total_steps();
        if total > 0 && self.last_step() >= total {
            (Status::Finished, "version 1 log: last step reached".into())
        } else {
            (
                Status::Stopped,
                "version 1 log: ended before its last step".into(),
            )
        }
    }

    fn stale_after_secs(&self) -> f64 {
        let times: Vec<f64> = self.steps.iter().filter_map(|s| s.time).collect();
        let longest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
        STALE_AFTER_SECS.max(3.0 * longest)
    }

    /// Damaged lines, counting an unfinished last line once the run is over.
    pub fn damaged(&self, now: SystemTime) -> usize {
        let truncated = self.pending_bytes > 0 && self.status(now).0 != Status::Running;
        self.damaged_lines + usize::from(truncated)
    }

    /// What the front ends say of the damaged lines skipped, naming the
    /// log and the first one; `None` when there are none.
    /// A damaged `config.json` is said too, on a line of its own.
    pub fn damage_note(&self, now: SystemTime) -> Option<String> {
        let n = self.damaged(now);
        let log = (n > 0).then(|| {
            let what = match &self.first_damage {
                Some((line, why)) => format!("line {line}: {why}"),
                None => "its last line is cut short".into(),
            };
            let s = if n == 1 { "" } else { "s" };
            format!(
                "{}: {n} damaged line{s} skipped; {what}",
                self.log_path().display()
            )
        });
        let notes: Vec<String> = log.into_iter().chain(self.config_damage.clone()).collect();
        (!notes.is_empty()).then(|| notes.join("\n"))
    }

    /// The run's checkpoints folder, from its config (`checkpoint_dir/<run>`).
    pub fn checkpoint_dir(&self) -> Option<PathBuf> {
        let base = self.train("checkpoint_dir")?.as_str()?;
        Some(Path::new(base).join(&self.name))
    }

    /// The checkpoint to open: the best, else the run's final model, else
    /// the newest file in its checkpoint folder.
    pub fn best_checkpoint(&self) -> Option<PathBuf> {
        let dir = self.checkpoint_dir()?;
        let best = cllm_train::checkpoint::best_path(&dir);
        if best.exists() {
            return Some(best);
        }
        let last = dir.join(cllm_train::saving::RUN_FINAL_NAME);
        if last.exists() {
            return Some(last);
        }
        self.checkpoints().into_iter().last()
    }

    /// The checkpoint a resume continues from: the newest the run wrote
    /// (after a stop, its final one holds the last step).
    pub fn best_resume_point(&self) -> Option<PathBuf> {
        self.checkpoints().into_iter().last()
    }

    /// The run's `.cllm` files, oldest first.
    pub fn checkpoints(&self) -> Vec<PathBuf> {
        let Some(dir) = self.checkpoint_dir() else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "cllm"))
            .map(|p| {
                let t = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (t, p)
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }
}

/// A run's folder read once and then followed: each [`RunReader::poll`]
/// reads only what was appended.
#[derive(Debug)]
pub struct RunReader {
    follower: LogFollower,
    pub data: RunData,
}

impl RunReader {
    pub fn new(dir: &Path) -> RunReader {
        let data = RunData::new(dir);
        RunReader {
            follower: LogFollower::new(&data.log_path()),
            data,
        }
    }

    /// Reads what was appended since the last poll; true when anything
    /// changed.
    pub fn poll(&mut self) -> Result<bool, RunsError> {
        let path = self.data.log_path();
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut changed = modified != self.data.modified;
        self.data.modified = modified;
        if self.data.config.is_none() || changed {
            let config = self.read_config();
            if config.is_some() {
                self.data.config = config;
                self.data.config_written_unix =
                    std::fs::metadata(self.data.dir.join("config.json"))
                        .and_then(|m| m.modified())
                        .ok()
                        .map(unix_secs);
            }
        }
        let polled = self.follower.poll()?;
        if polled.restarted {
            let kept = (
                self.data.config.take(),
                self.data.modified,
                self.data.config_written_unix,
            );
            self.data = RunData::new(&self.data.dir.clone());
            (
                self.data.config,
                self.data.modified,
                self.data.config_written_unix,
            ) = kept;
            changed = true;
        }
        changed |= !polled.lines.is_empty();
        for line in &polled.lines {
            self.data.apply_line(line);
        }
        self.data.pending_bytes = self.follower.pending_bytes();
        let found = (self.data.best_checkpoint(), self.data.best_resume_point());
        changed |= found != (self.data.found_best.clone(), self.data.found_resume.clone());
        (self.data.found_best, self.data.found_resume) = found;
        Ok(changed)
    }
}

impl RunReader {
    /// `config.json`, when there is one that reads; why not, in the data.
    fn read_config(&mut self) -> Option<serde_json::Value> {
        let path = self.data.dir.join("config.json");
        let text = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&text) {
            Ok(config) => {
                self.data.config_damage = None;
                Some(config)
            }
            Err(e) => {
                self.data.config_damage = Some(format!(
                    "{}: not read ({e}): the run's settings are unknown",
                    path.display()
                ));
                None
            }
        }
    }
}

/// Reads a run's folder once.
pub fn load_run(dir: &Path) -> Result<RunData, RunsError> {
    let mut r = RunReader::new(dir);
    r.poll()?;
    Ok(r.data)
}
