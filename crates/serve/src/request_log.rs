//! `--log-requests FILE`: one JSON line per answered request (time,
//! endpoint, status, prompt / cached / predicted tokens, milliseconds, why
//! generation stopped). Nothing of the request's body or headers is
//! written: no prompt, no API key.

use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What the request log says of a request besides its status.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub prompt_tokens: usize,
    /// Prompt tokens whose rows came from the prompt cache.
    pub cached_tokens: usize,
    pub predicted_tokens: usize,
    /// Why generation ended.
    pub stop: Option<String>,
}

/// The log file, appended to.
pub struct RequestLog {
    file: Mutex<File>,
    path: PathBuf,
    /// A failed write is reported once on stderr.
    failed: AtomicBool,
}

/// One request's line.
pub struct Entry {
    line: String,
}

impl Entry {
    pub fn new(
        endpoint: &str,
        status: u16,
        counts: &Counts,
        started: Instant,
        cancelled: bool,
    ) -> Entry {
        let line = json!({
            "time": utc_timestamp(SystemTime::now()),
            "endpoint": endpoint,
            "status": status,
            "prompt_tokens": counts.prompt_tokens,
            "cached_tokens": counts.cached_tokens,
            "predicted_tokens": counts.predicted_tokens,
            "ms": (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            "stop": counts.stop,
            "cancelled": cancelled,
        })
        .to_string();
        Entry { line }
    }
}

impl RequestLog {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> io::Result<RequestLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(RequestLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            failed: AtomicBool::new(false),
        })
    }

    pub fn write(&self, entry: &Entry) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{}\n", entry.line);
        if let Err(e) = file.write_all(line.as_bytes())
            && !self.failed.swap(true, Ordering::SeqCst)
        {
            crate::log_line!(
                "cannot write the request log {}: {e} (further failures are not reported)",
                self.path.display()
            );
        }
    }
}

/// `2026-12-07T09:41:05.123Z` (UTC, milliseconds).
pub fn utc_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_dates() {
        let at = |s: u64| utc_timestamp(UNIX_EPOCH + Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_798_761_599_999), "2026-12-31T23:59:59.999Z");
    }
}
