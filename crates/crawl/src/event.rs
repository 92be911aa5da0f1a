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
    /// A crawl that ended normally but failed its purpose: nothing kept,
    /// or most pages empty ([`problem`]). Front ends fail with it.
    pub problem: Option<String>,
}

/// Pages fetched before a crawl says, as it goes, that most came out
/// empty (fewer say too little).
pub const EMPTY_NOTICE_AFTER: usize = 5;

/// Whether most pages fetched gave no text.
pub fn mostly_empty(t: &Totals) -> bool {
    t.empty > 0 && t.empty * 2 > t.fetched
}

/// What failed in a crawl that ended without an error and was not
/// stopped: nothing kept (and nothing unchanged), or most pages fetched
/// came out empty; with the reasons URLs were skipped.
pub fn problem(s: &Summary) -> Option<String> {
    if s.error.is_some() || s.stopped {
        return None;
    }
    let t = &s.totals;
    let reasons = if s.reasons.is_empty() {
        String::new()
    } else {
        format!("; skipped: {}", reason_counts(&s.reasons))
    };
    if t.kept + t.unchanged == 0 {
        let fetched = match t.fetched {
            1 => "1 page".to_string(),
            n => format!("{n} pages"),
        };
        let hint = if t.empty > 0 {
            " (\"empty\": no text found in the page's main content)"
        } else {
            ""
        };
        Some(format!("nothing kept: {fetched} fetched{reasons}{hint}"))
    } else if mostly_empty(t) {
        Some(format!(
            "most pages came out empty: {} of {} fetched had no text in their main content{reasons}",
            t.empty, t.fetched
        ))
    } else {
        None
    }
}

/// "3 empty, 1 out of scope".
fn reason_counts(reasons: &BTreeMap<Reason, usize>) -> String {
    let parts: Vec<String> = reasons
        .iter()
        .map(|(r, n)| format!("{n} {}", r.label()))
        .collect();
    parts.join(", ")
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
        line.push_str(&format!(" (skipped: {})", reason_counts(&s.reasons)));
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
