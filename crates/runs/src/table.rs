//! The Runs table, one row per run, as `cllm runs` prints it (and `--json`
//! writes it) and the app's Runs tab shows it.

use super::run::{RunData, Status};
use serde::Serialize;
use std::time::SystemTime;

#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub name: String,
    /// Seconds since the Unix epoch.
    pub started_unix: Option<f64>,
    pub started: String,
    pub duration_secs: f64,
    pub status: &'static str,
    pub reason: String,
    pub preset: String,
    pub params: Option<usize>,
    pub data: String,
    pub steps: u64,
    pub total_steps: u64,
    pub tokens_seen: Option<u64>,
    pub best_val_loss: Option<f64>,
    pub best_bits_per_byte: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    pub threads: Option<usize>,
    /// MPI ranks, each with `threads` spheres.
    pub ranks: usize,
    pub log_version: u32,
    pub damaged_lines: usize,
    /// [`RunData::damage_note`](crate::RunData::damage_note).
    pub damage_note: Option<String>,
}

impl RunRow {
    pub fn of(run: &RunData, now: SystemTime) -> RunRow {
        let (status, reason) = run.status(now);
        let best = run.best_eval();
        let started_unix = run.started_unix();
        RunRow {
            name: run.name.clone(),
            started_unix,
            started: started_unix.map(format_utc).unwrap_or_default(),
            duration_secs: run.duration_secs(),
            status: status.name(),
            reason,
            preset: run.preset(),
            params: run.params(),
            data: run.data(),
            steps: run.last_step(),
            total_steps: run.total_steps(),
            tokens_seen: run.tokens_seen(),
            best_val_loss: best.map(|e| e.loss),
            best_bits_per_byte: best.map(|e| e.bits_per_byte),
            tokens_per_sec: run.tokens_per_sec(),
            threads: run.threads(),
            ranks: run.ranks(),
            log_version: run.version(),
            damaged_lines: run.damaged(now),
            damage_note: run.damage_note(now),
        }
    }

    pub fn status(&self) -> Status {
        match self.status {
            "running" => Status::Running,
            "finished" => Status::Finished,
            "stopped" => Status::Stopped,
            _ => Status::Failed,
        }
    }
}

/// `YYYY-MM-DD HH:MM` UTC.
pub fn format_utc(unix: f64) -> String {
    let t = cllm_train::runlog::UtcTime::from_unix(unix.max(0.0) as i64);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// `1h 02m`, `3m 05s`, `12s`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `1.2M`, `34.5k`, `999`.
pub fn format_count(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The data's file or folder names without their folders (the full paths
/// are in `--json` and the app's tooltip).
pub fn short_data(data: &str) -> String {
    data.split(", ")
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map_or(p.to_string(), |n| n.to_string_lossy().into_owned())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The columns of the table, as text (the terminal and the app share them).
pub const COLUMNS: [&str; 12] = [
    "name",
    "started (UTC)",
    "duration",
    "status",
    "preset",
    "params",
    "data",
    "tokens",
    "best val",
    "bits/byte",
    "tok/s",
    "threads",
];

pub fn cells(r: &RunRow) -> [String; 12] {
    [
        r.name.clone(),
        r.started.clone(),
        format_duration(r.duration_secs),
        r.status.to_string(),
        r.preset.clone(),
        opt(r.params, |p| format_count(p as f64)),
        short_data(&r.data),
        opt(r.tokens_seen, |t| format_count(t as f64)),
        opt(r.best_val_loss, |l| format!("{l:.4}")),
        opt(r.best_bits_per_byte, |b| format!("{b:.3}")),
        opt(r.tokens_per_sec, |t| format!("{t:.0}")),
        // A cluster run: ranks x threads per rank.
        opt(r.threads, |t| match r.ranks {
            1 => t.to_string(),
            k => format!("{k}x{t}"),
        }),
    ]
}

/// The table as aligned text, newest run first; damaged lines noted below.
pub fn format_table(rows: &[RunRow]) -> String {
    let body: Vec<[String; 12]> = rows.iter().map(cells).collect();
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.chars().count()).collect();
    for row in &body {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(&format!("{c:<w$}"));
        }
        s.trim_end().to_string() + "\n"
    };
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut out = line(&header);
    for row in &body {
        out.push_str(&line(row));
    }
    for note in rows.iter().filter_map(|r| r.damage_note.as_ref()) {
        out.push_str(note);
        out.push('\n');
    }
    out
}

/// Rows of the runs, newest first.
pub fn rows(runs: &[RunData], now: SystemTime) -> Vec<RunRow> {
    let mut rows: Vec<RunRow> = runs.iter().map(|r| RunRow::of(r, now)).collect();
    rows.sort_by(|a, b| {
        b.started_unix
            .unwrap_or(0.0)
            .total_cmp(&a.started_unix.unwrap_or(0.0))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}
