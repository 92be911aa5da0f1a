//! Reading a growing log by offset: each poll reads only the bytes written
//! since the last one, hands over the complete lines, and keeps a partial
//! last line (a writer mid-line) for the next poll. So a run being written
//! by this app, a `cllm train` in a terminal or another machine into a
//! shared folder is followed without re-reading the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::RunsError;

#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    offset: u64,
    /// Bytes after the last newline: a line still being written.
    pending: Vec<u8>,
}

/// What a poll found.
#[derive(Debug, Default)]
pub struct Polled {
    /// Complete lines, in order.
    pub lines: Vec<String>,
    /// The file is shorter than what was read: it was replaced, and the
    /// caller must start over (the follower already has).
    pub restarted: bool,
}

impl LogFollower {
    pub fn new(path: &Path) -> LogFollower {
        LogFollower {
            path: path.to_path_buf(),
            offset: 0,
            pending: Vec::new(),
        }
    }

    /// Bytes of a line not yet ended by a newline (a truncated last line
    /// once the writer is gone).
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Reads what was appended since the last poll.
    pub fn poll(&mut self) -> Result<Polled, RunsError> {
        let read_error = |source| RunsError::ReadLog {
            path: self.path.clone(),
            source,
        };
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RunsError::NoLog {
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(read_error(e)),
        };
        let mut polled = Polled::default();
        let len = file.metadata().map_err(read_error)?.len();
        if len < self.offset {
            self.offset = 0;
            self.pending.clear();
            polled.restarted = true;
        }
        if len == self.offset {
            return Ok(polled);
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(read_error)?;
        let mut buf = Vec::with_capacity((len - self.offset) as usize);
        file.take(len - self.offset)
            .read_to_end(&mut buf)
            .map_err(read_error)?;
        self.offset += buf.len() as u64;
        self.pending.extend_from_slice(&buf);
        if let Some(last_nl) = self.pending.iter().rposition(|&b| b == b'\n') {
            let rest = self.pending.split_off(last_nl + 1);
            let complete = std::mem::replace(&mut self.pending, rest);
            // Invalid UTF-8 becomes replacement characters: the line then
            // fails to parse and is counted as damaged.
            let text = String::from_utf8_lossy(&complete);
            polled.lines = text.lines().map(str::to_string).collect();
        }
        Ok(polled)
    }

    /// The partial last line, given up on (the run is over): returned so it
    /// can be counted.
    pub fn take_pending(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let p = std::mem::take(&mut self.pending);
        Some(String::from_utf8_lossy(&p).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut f = File::create(&path).unwrap();
        let mut follower = LogFollower::new(&path);
        write!(f, "a\nb").unwrap();
        f.flush().unwrap();
        assert_eq!(follower.poll().unwrap().lines, ["a"]);
        write!(f, "c\nd\n").unwrap();
        f.flush().unwrap();
        assert_eq!(follower.poll().unwrap().lines, ["bc", "d"]);
        assert!(follower.poll().unwrap().lines.is_empty());
        std::fs::write(&path, "x\n").unwrap();
        let p = follower.poll().unwrap();
        assert!(p.restarted);
        assert_eq!(p.lines, ["x"]);
        std::fs::remove_file(&path).unwrap();
        let e = follower.poll().unwrap_err();
        assert!(matches!(e, RunsError::NoLog { .. }), "{e}");
        assert!(e.to_string().contains("m.jsonl"), "names the file: {e}");
    }
}
