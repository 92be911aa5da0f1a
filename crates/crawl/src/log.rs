//! `crawl.jsonl`: one JSON object per line for every URL the crawler met
//! and what happened to it, appended as it goes (docs/data.md, "The log",
//! lists the fields).

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CrawlError;

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
    pub fn open(dir: &Path) -> Result<CrawlLog, CrawlError> {
        let path = dir.join(LOG_FILE);
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(file) => Ok(CrawlLog { file, path }),
            Err(source) => Err(CrawlError::OpenLog { path, source }),
        }
    }

    pub fn write(&mut self, entry: &Entry) -> Result<(), CrawlError> {
        let mut line = serde_json::to_string(entry).map_err(CrawlError::EncodeEntry)?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|source| CrawlError::WriteLog {
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads a crawl log back (for tests and tools); a line that is not an
/// entry is an error naming its number.
pub fn read_log(dir: &Path) -> Result<Vec<Entry>, CrawlError> {
    let path = dir.join(LOG_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(source) => return Err(CrawlError::ReadLog { path, source }),
    };
    // Line by line as bytes: a line that is not UTF-8 is a damaged line.
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.trim_ascii().is_empty())
        .map(|(i, l)| {
            serde_json::from_slice(l).map_err(|source| CrawlError::DamagedLogLine {
                path: path.clone(),
                line: i + 1,
                source,
                text: shown(l),
            })
        })
        .collect()
}

/// A damaged line as a message shows it: its start, when it is long.
fn shown(line: &[u8]) -> String {
    const MAX: usize = 160;
    let text = String::from_utf8_lossy(line);
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_line_is_named_by_file_and_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = CrawlLog::open(dir.path()).unwrap();
        log.write(&Entry::new("http://a.test/", Outcome::Kept, 0, 1))
            .unwrap();
        let mut text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        text.push_str("\n{\"url\": 3}\n");
        std::fs::write(dir.path().join(LOG_FILE), text).unwrap();
        let e = read_log(dir.path()).unwrap_err();
        assert!(
            matches!(e, CrawlError::DamagedLogLine { line: 3, .. }),
            "{e}"
        );
        let message = e.to_string();
        assert!(
            message.contains(LOG_FILE) && message.contains("line 3"),
            "{message}"
        );
        // A line that is not UTF-8 is a damaged line too, shown cut short.
        let mut bytes = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let mut long = b"{\"url\": \"".to_vec();
        long.extend(std::iter::repeat_n(b'a', 500));
        long.extend_from_slice(b"\xff\"}\n");
        bytes.splice(0..0, long);
        std::fs::write(dir.path().join(LOG_FILE), bytes).unwrap();
        let e = read_log(dir.path()).unwrap_err();
        assert!(
            matches!(e, CrawlError::DamagedLogLine { line: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().chars().count() < 400, "{e}");
    }
}
