//! What a crawl tells its front end: the events as it goes, the summary
//! at its end, and that summary as one line for people.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::frontier::Totals;
use crate::log::{Entry, Reason};

/// What the crawler tells its front end (`cllm crawl --json` prints each
/// as a line: `{"event":"logged",...}`).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CrawlEvent {
    Started {
        /// A stopped round is being continued.
        resumed: bool,
        round: u32,
        queued: usize,
        output: PathBuf,
    },
    /// A request is about to go out.
    Fetching {
        url: String,
    },
    /// A URL was dealt with (the same entry as in `crawl.jsonl`);
    /// `path` is the kept page's file.
    Logged {
        entry: Entry,
        path: Option<PathBuf>,
        totals: Totals,
    },
    Finished {
        summary: Summary,
    },
}

/// How a crawl ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub totals: Totals,
    /// Skipped URLs by reason.
    pub reasons: BTreeMap<Reason, usize>,
    /// Stopped before the round ended (a rerun continues it).
    pub stopped: bool,
    /// The limit that ended the round, if one did.
    pub limit: Option<&'static str>,
    pub output: PathBuf,
    /// The error that ended the crawl, if one did.
    pub error: Option<String>,
}

/// A one-line summary for people.
pub fn summary_line(s: &Summary) -> String {
    let t = &s.totals;
    let mut line = format!(
        "{} kept, {} unchanged, {} skipped, {} requests, {} downloaded",
        t.kept,
        t.unchanged,
        t.skipped,
        t.fetched,
        human_bytes(t.bytes)
    );
    if !s.reasons.is_empty() {
        let parts: Vec<String> = s
            .reasons
            .iter()
            .map(|(r, n)| format!("{n} {}", r.label()))
            .collect();
        line.push_str(&format!(" (skipped: {})", parts.join(", ")));
    }
    line
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
