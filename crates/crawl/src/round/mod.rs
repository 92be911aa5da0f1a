//! One round of a crawl under way: the loop over the frontier, each URL
//! dealt with and logged, the state saved as it goes. Its parts:
//!
//! - [`polite`]: one request at a time per host, after its delay; robots.txt.
//! - [`redirects`]: a request and its redirects, each hop checked.
//! - [`page`]: what a fetched page gives: its file, its links queued.

mod page;
mod polite;
mod redirects;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use url::Url;

use crate::error::CrawlError;
use crate::event::{CrawlEvent, Summary, problem};
use crate::fetch::Fetcher;
use crate::frontier::CrawlState;
use crate::log::{CrawlLog, Entry, Outcome, Reason};
use crate::options::CrawlOptions;
use crate::robots::Rules;
use crate::scope::Scope;

/// How often the state is saved while crawling, at most (and always when
/// the crawl stops or ends).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// One round under way.
pub(crate) struct Round<'a> {
    opts: CrawlOptions,
    scope: Scope,
    fetcher: Fetcher,
    state: CrawlState,
    log: CrawlLog,
    rules: HashMap<String, Rules>,
    last_request: HashMap<String, Instant>,
    last_save: Instant,
    save_every: Duration,
    /// No request to an origin before this (a 429 or 503 asked to wait).
    not_before: HashMap<String, Instant>,
    stop: &'a AtomicBool,
    send: &'a mut dyn FnMut(CrawlEvent),
}

impl<'a> Round<'a> {
    pub(crate) fn new(
        opts: CrawlOptions,
        seeds: &[Url],
        state: CrawlState,
        log: CrawlLog,
        stop: &'a AtomicBool,
        send: &'a mut dyn FnMut(CrawlEvent),
    ) -> Round<'a> {
        Round {
            scope: Scope::new(opts.scope, seeds),
            fetcher: Fetcher::new(opts.timeout),
            opts,
            state,
            log,
            rules: HashMap::new(),
            last_request: HashMap::new(),
            last_save: Instant::now(),
            save_every: SAVE_EVERY,
            not_before: HashMap::new(),
            stop,
            send,
        }
    }

    /// Crawls until the frontier is empty, a limit is reached, the crawl
    /// is stopped or an error ends it; saves the state and sends
    /// `Finished`.
    pub(crate) fn run(mut self) {
        let (stopped, limit, error) = match self.crawl() {
            Ok((stopped, limit)) => (stopped, limit, None),
            Err(e) => (true, None, Some(e.to_string())),
        };
        self.state.finished = !stopped;
        let save_error = self.state.save(&self.opts.output).err();
        let mut summary = Summary {
            totals: self.state.totals,
            reasons: self.state.reasons.clone(),
            stopped,
            limit,
            output: self.opts.output.clone(),
            error: error.or(save_error.map(|e| e.to_string())),
            problem: None,
        };
        summary.problem = problem(&summary);
        (self.send)(CrawlEvent::Finished { summary });
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The loop: returns (stopped, the limit that ended it).
    fn crawl(&mut self) -> Result<(bool, Option<&'static str>), CrawlError> {
        loop {
            if self.stopping() {
                return Ok((true, None));
            }
            if self.state.totals.fetched >= self.opts.max_pages {
                return Ok((false, Some("max pages")));
            }
            if self.state.totals.bytes >= self.opts.max_bytes {
                return Ok((false, Some("max bytes")));
            }
            let Some(next) = self.state.frontier.front().cloned() else {
                return Ok((false, None));
            };
            if self.state.fetched.contains(&next.url) {
                // Reached earlier as a redirect's target: already logged.
                self.state.frontier.pop_front();
                continue;
            }
            let done = self.visit(&next)?;
            if !done {
                // Stopped while waiting: the URL stays queued.
                return Ok((true, None));
            }
            self.state.frontier.pop_front();
            // Saved at most every SAVE_EVERY (the state of a big crawl is
            // megabytes), and always when the crawl stops or ends.
            if self.last_save.elapsed() >= self.save_every {
                let began = Instant::now();
                self.state.save(&self.opts.output)?;
                self.last_save = Instant::now();
                // A big state is saved less often: at most 5% of the time.
                self.save_every = SAVE_EVERY.max(began.elapsed() * 20);
            }
        }
    }

    fn record(&mut self, entry: Entry, path: Option<PathBuf>) -> Result<(), CrawlError> {
        match entry.outcome {
            Outcome::Kept => self.state.totals.kept += 1,
            Outcome::Unchanged => self.state.totals.unchanged += 1,
            Outcome::Skipped => {
                self.state.totals.skipped += 1;
                if let Some(r) = entry.reason {
                    *self.state.reasons.entry(r).or_default() += 1;
                }
                if entry.reason == Some(Reason::Empty) {
                    self.state.totals.empty += 1;
                }
            }
        }
        self.state.totals.queued = self.state.frontier.len();
        self.log.write(&entry)?;
        (self.send)(CrawlEvent::Logged {
            entry,
            path,
            totals: self.state.totals,
        });
        Ok(())
    }

    fn skip(
        &mut self,
        url: &str,
        reason: Reason,
        detail: Option<String>,
        depth: u32,
    ) -> Result<(), CrawlError> {
        let entry = Entry::skipped(url, reason, detail, depth, self.state.round);
        self.record(entry, None)
    }
}
