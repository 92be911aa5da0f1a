//! The saved state of a crawl (`DIR/crawl.state`, JSON), written to a
//! temporary file and renamed over the old one, so an interrupted write
//! never leaves half a state behind.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::error::CrawlError;
use crate::fetch::Validators;
use crate::log::Reason;
use crate::robots::RobotsText;
use crate::scope::TrapGuard;

/// The state file's name inside the output folder. Its extension is not
/// one the data scanner reads, so it is never trained on.
pub const STATE_FILE: &str = "crawl.state";

const VERSION: u32 = 1;

/// A URL waiting in the frontier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedUrl {
    pub url: String,
    /// Links followed from a seed (seeds are depth 0).
    pub depth: u32,
}

/// What is known about a page from the last time it was fetched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageRecord {
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    /// The file written for it, relative to the output folder.
    #[serde(default)]
    pub file: Option<String>,
    /// Content hash of its text.
    #[serde(default)]
    pub hash: Option<String>,
    /// Its links (absolute), followed again when it has not changed.
    #[serde(default)]
    pub links: Vec<String>,
}

impl PageRecord {
    pub fn validators(&self) -> Validators {
        Validators {
            etag: self.etag.clone(),
            last_modified: self.last_modified.clone(),
        }
    }
}

/// Counts of one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Page requests made (a redirect chain counts once; robots.txt not).
    pub fetched: usize,
    /// Pages written (new or changed).
    pub kept: usize,
    /// Pages the server said had not changed (304).
    pub unchanged: usize,
    /// URLs skipped, for any reason.
    pub skipped: usize,
    /// Pages fetched that gave no text (of `skipped`).
    #[serde(default)]
    pub empty: usize,
    /// Body bytes downloaded.
    pub bytes: u64,
    /// URLs waiting in the frontier.
    pub queued: usize,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CrawlState {
    pub version: u32,
    /// Rounds started in this folder; a round ends when its frontier is
    /// empty or a limit is reached, and the next run starts a new one.
    pub round: u32,
    /// Whether the current round ended (false: a rerun continues it).
    pub finished: bool,
    pub frontier: VecDeque<QueuedUrl>,
    /// URLs met this round (queued, fetched or refused), each logged once.
    pub seen: HashSet<String>,
    /// URLs requested this round, redirect hops included.
    pub fetched: HashSet<String>,
    /// robots.txt of each origin, fetched this round.
    pub robots: HashMap<String, RobotsText>,
    pub traps: TrapGuard,
    pub totals: Totals,
    /// Skipped URLs of this round by reason.
    #[serde(default)]
    pub reasons: BTreeMap<Reason, usize>,
    /// Pages kept or unchanged in any round, by URL.
    pub pages: HashMap<String, PageRecord>,
    /// Content hash -> the URL whose page has that content.
    pub hashes: HashMap<String, String>,
}

impl CrawlState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// The saved state of `dir`, or None when there is none.
    pub fn load(dir: &Path) -> Result<Option<CrawlState>, CrawlError> {
        let path = CrawlState::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CrawlError::ReadState { path, source }),
        };
        // Bytes that are not UTF-8 are damage too, said as such.
        let state: CrawlState = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(source) => return Err(CrawlError::DamagedState { path, source }),
        };
        if state.version != VERSION {
            return Err(CrawlError::StateVersion {
                path,
                found: state.version,
                expected: VERSION,
            });
        }
        Ok(Some(state))
    }

    /// Starts a new round: everything of the last round is forgotten but
    /// what is known about pages (for conditional requests and dedup).
    pub fn new_round(&mut self) {
        self.version = VERSION;
        self.round += 1;
        self.finished = false;
        self.frontier.clear();
        self.seen.clear();
        self.fetched.clear();
        self.robots.clear();
        self.traps = TrapGuard::default();
        self.totals = Totals::default();
        self.reasons.clear();
    }

    /// Writes the state: a temporary file, then a rename.
    pub fn save(&mut self, dir: &Path) -> Result<(), CrawlError> {
        self.totals.queued = self.frontier.len();
        let path = CrawlState::path(dir);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_vec(self).map_err(CrawlError::EncodeState)?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| CrawlError::SaveState { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_a_new_round_keeps_pages() {
        let dir = tempfile::tempdir().unwrap();
        assert!(CrawlState::load(dir.path()).unwrap().is_none());
        let mut s = CrawlState::default();
        s.new_round();
        s.frontier.push_back(QueuedUrl {
            url: "http://a.test/".into(),
            depth: 0,
        });
        s.seen.insert("http://a.test/".into());
        s.pages
            .insert("http://a.test/x".into(), PageRecord::default());
        s.save(dir.path()).unwrap();
        let mut back = CrawlState::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.frontier, s.frontier);
        assert_eq!(back.totals.queued, 1);
        back.new_round();
        assert!(back.frontier.is_empty() && back.seen.is_empty());
        assert_eq!(back.round, 2);
        assert_eq!(back.pages.len(), 1);
        std::fs::write(CrawlState::path(dir.path()), "{").unwrap();
        let e = CrawlState::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(e.to_string().contains(STATE_FILE), "names the file: {e}");
        assert!(e.to_string().contains("--restart"), "says what to do: {e}");
        // Bytes that are not UTF-8 are damage, not a read error.
        std::fs::write(CrawlState::path(dir.path()), b"{\"round\":\xff}").unwrap();
        let e = CrawlState::load(dir.path()).unwrap_err();
        assert!(matches!(e, CrawlError::DamagedState { .. }), "{e}");
    }
}
