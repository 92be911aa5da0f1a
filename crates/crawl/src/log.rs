//! `crawl.jsonl`: one JSON object per line for every URL the crawler met
//! and what happened to it, appended as it goes (see the README for the
//! fields).

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log's name inside the output folder (not a kind the scanner reads).
pub const LOG_FILE: &str = "crawl.jsonl";

/// What happened to a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its text was written to a file.
    Kept,
    /// The server said it had not changed since the last round (304).
    Unchanged,
    Skipped,
}

/// Why a URL was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// robots.txt disallows it (or a `noindex` robots meta tag).
    Robots,
    OutOfScope,
    /// `mailto:`, `javascript:` and other non-http links.
    NotHttp,
    NotText,
    TooLarge,
    HttpStatus,
    Timeout,
    /// Same content as a page already kept (or the same page reached
    /// through a redirect).
    Duplicate,
    RedirectLoop,
    TooManyRedirects,
    /// Past the page limit of its path pattern (`?page=` and the like).
    Trap,
    /// Further from the seeds than `--depth`.
    TooDeep,
    /// No text left after extraction.
    Empty,
    /// Connection refused, DNS, TLS…
    Network,
    /// The page could not be written.
    WriteFailed,
}

impl Reason {
    /// How a person reads it.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Robots => "robots",
            Reason::OutOfScope => "out of scope",
            Reason::NotHttp => "not http",
            Reason::NotText => "not text",
            Reason::TooLarge => "too large",
            Reason::HttpStatus => "HTTP status",
            Reason::Timeout => "timeout",
            Reason::Duplicate => "duplicate",
            Reason::RedirectLoop => "redirect loop",
            Reason::TooManyRedirects => "too many redirects",
            Reason::Trap => "trap",
            Reason::TooDeep => "too deep",
            Reason::Empty => "empty",
            Reason::Network => "network",
            Reason::WriteFailed => "write failed",
        }
    }
}

/// One line of `crawl.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub url: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// More about the reason (the status line, the duplicate's URL…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Body bytes downloaded for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The page file, relative to the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Where redirects led, when they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    pub depth: u32,
    pub round: u32,
}

impl Entry {
    pub fn new(url: &str, outcome: Outcome, depth: u32, round: u32) -> Entry {
        Entry {
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            url: url.to_string(),
            outcome,
            reason: None,
            detail: None,
            status: None,
            bytes: None,
            file: None,
            final_url: None,
            depth,
            round,
        }
    }

    pub fn skipped(
        url: &str,
        reason: Reason,
        detail: Option<String>,
        depth: u32,
        round: u32,
    ) -> Entry {
        Entry {
            reason: Some(reason),
            detail,
            ..Entry::new(url, Outcome::Skipped, depth, round)
        }
    }
}

/// The log file, appended to.
pub struct CrawlLog {
    file: File,
    path: PathBuf,
}

impl CrawlLog {
    pub fn open(dir: &Path) -> Result<CrawlLog, String> {
        let path = dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("{}: cannot open the crawl log: {e}", path.display()))?;
        Ok(CrawlLog { file, path })
    }

    pub fn write(&mut self, entry: &Entry) -> Result<(), String> {
        let mut line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
    }
}

/// Reads a crawl log back (for tests and tools).
pub fn read_log(dir: &Path) -> Result<Vec<Entry>, String> {
    let path = dir.join(LOG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}: {l}", path.display())))
        .collect()
}
