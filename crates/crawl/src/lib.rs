//! The crawler: collects training text from web pages and documentation
//! sites into the data folder the trainer scans.
//!
//! One URL at a time, breadth first from the seeds: in scope (the seeds'
//! hosts, or their URL prefixes), allowed by robots.txt, at most one
//! request per `delay` (or the site's Crawl-delay, if longer) to a host,
//! redirects followed within scope up to a limit, slow servers timed out,
//! page size and total bytes capped, query-string traps limited per path
//! pattern. Every URL met goes to `crawl.jsonl` with what happened to it;
//! kept pages go to `DIR/<host>/<path>.md`; the state is saved every
//! second and whenever the crawl stops, so a stopped crawl continues where
//! it was, and a finished one, run again, asks again with If-None-Match /
//! If-Modified-Since and rewrites only the pages that changed.
//!
//! [`Crawler::start`] runs it on its own thread and sends [`CrawlEvent`]s
//! over a channel, like the trainer; [`run`] is the same loop inline.

pub mod extract;
pub mod fetch;
pub mod frontier;
pub mod log;
pub mod output;
pub mod robots;
pub mod scope;

use crossbeam_channel::{Receiver, unbounded};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use url::Url;

use extract::Kind;
use fetch::{FetchError, Fetcher, Validators};
use frontier::{CrawlState, PageRecord, QueuedUrl, Totals};
use log::{CrawlLog, Entry, Outcome, Reason};
use robots::{RobotsText, Rules};
use scope::{Scope, ScopeKind};

/// How often the state is saved while crawling, at most (and always when
/// the crawl stops or ends).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The longest pause a Retry-After can ask for, in seconds.
const MAX_PAUSE_S: u64 = 60;

/// The default output folder: inside the folder the trainer and the app
/// scan by default, so crawled pages are trained on.
pub const DEFAULT_OUTPUT: &str = "training_data/crawl";

/// What to crawl and how politely.
#[derive(Clone, Debug)]
pub struct CrawlOptions {
    pub seeds: Vec<String>,
    pub output: PathBuf,
    /// Links followed from a seed at most.
    pub depth: u32,
    /// Page requests per round at most.
    pub max_pages: usize,
    /// Body bytes per round at most.
    pub max_bytes: u64,
    /// Bytes of one page at most.
    pub max_page_bytes: u64,
    pub scope: ScopeKind,
    /// Between two requests to a host (robots.txt's Crawl-delay wins when
    /// longer).
    pub delay: Duration,
    /// For a whole request, body included.
    pub timeout: Duration,
    /// URLs with a query or a number per path pattern at most.
    pub max_per_pattern: usize,
    pub max_redirects: usize,
    /// Forget the saved state and start afresh.
    pub restart: bool,
}

impl Default for CrawlOptions {
    fn default() -> CrawlOptions {
        CrawlOptions {
            seeds: Vec::new(),
            output: PathBuf::from(DEFAULT_OUTPUT),
            depth: 3,
            max_pages: 500,
            max_bytes: 200 << 20,
            max_page_bytes: 2 << 20,
            scope: ScopeKind::Host,
            delay: Duration::from_secs(1),
            timeout: Duration::from_secs(20),
            max_per_pattern: 20,
            max_redirects: 5,
            restart: false,
        }
    }
}

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

/// A crawl running on its own thread.
pub struct Crawler {
    pub events: Receiver<CrawlEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Crawler {
    /// Checks the seeds and starts the crawl on a new thread, which makes
    /// the output folder and loads the saved state (a problem there ends
    /// the crawl at once: `Finished` with the error); `on_event` runs after
    /// each event is sent (the app asks for a repaint there).
    pub fn start(
        opts: CrawlOptions,
        on_event: Option<Box<dyn Fn() + Send>>,
    ) -> Result<Crawler, String> {
        check_seeds(&opts.seeds)?;
        let (tx, rx) = unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cllm-crawl".into())
            .spawn(move || {
                let mut send = |e: CrawlEvent| {
                    let _ = tx.send(e);
                    if let Some(f) = &on_event {
                        f();
                    }
                };
                let output = opts.output.clone();
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match Prepared::new(
                        opts,
                    ) {
                        Ok(prepared) => prepared.run(&flag, &mut send),
                        Err(e) => send(CrawlEvent::Finished {
                            summary: Summary {
                                error: Some(e),
                                stopped: true,
                                output: output.clone(),
                                ..Summary::default()
                            },
                        }),
                    }));
                if let Err(panic) = outcome {
                    let text = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    send(CrawlEvent::Finished {
                        summary: Summary {
                            error: Some(format!("the crawler crashed: {text}")),
                            stopped: true,
                            ..Summary::default()
                        },
                    });
                }
            })
            .map_err(|e| format!("cannot start the crawler thread: {e}"))?;
        Ok(Crawler {
            events: rx,
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the crawl to stop after the current request; it saves its
    /// state and sends `Finished`.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The stop flag, for front ends that stop from elsewhere.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
}

impl Crawler {
    /// Waits for the crawl's thread to end (after `Finished`, at once).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Crawler {
    /// Asks the crawl to stop and does not wait: a request in flight may
    /// take up to the timeout, and the app's window must not wait for it.
    /// The state is written to a temporary file and renamed, so a process
    /// that ends meanwhile leaves the last saved state intact.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The seeds, checked: something to crawl, and each an http(s) URL.
fn check_seeds(seeds: &[String]) -> Result<Vec<Url>, String> {
    if seeds.is_empty() {
        return Err("no URL to crawl".into());
    }
    seeds.iter().map(|s| scope::parse_seed(s)).collect()
}

/// Runs a crawl on this thread, calling `on_event` for every event;
/// returns its summary (an error before the crawl starts is `Err`).
pub fn run(
    opts: CrawlOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(CrawlEvent),
) -> Result<Summary, String> {
    let prepared = Prepared::new(opts)?;
    let mut last = None;
    prepared.run(stop, &mut |e| {
        if let CrawlEvent::Finished { summary: s } = &e {
            last = Some(s.clone());
        }
        on_event(e);
    });
    Ok(last.unwrap_or_default())
}

/// Options checked, the folder made, the state loaded.
struct Prepared {
    opts: CrawlOptions,
    seeds: Vec<Url>,
    state: CrawlState,
    resumed: bool,
    log: CrawlLog,
}

impl Prepared {
    fn new(opts: CrawlOptions) -> Result<Prepared, String> {
        let seeds = check_seeds(&opts.seeds)?;
        let dir = &opts.output;
        if dir.exists() && !dir.is_dir() {
            return Err(format!("{}: the output is not a folder", dir.display()));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create the output folder: {e}", dir.display()))?;
        let saved = if opts.restart {
            None
        } else {
            CrawlState::load(dir)?
        };
        let (mut state, resumed) = match saved {
            Some(s) if !s.finished => (s, true),
            Some(mut s) => {
                s.new_round();
                (s, false)
            }
            None => {
                let mut s = CrawlState::default();
                s.new_round();
                (s, false)
            }
        };
        // Seeds not met yet in this round (all of them in a new round).
        for seed in &seeds {
            if state.seen.insert(seed.to_string()) {
                state.frontier.push_back(QueuedUrl {
                    url: seed.to_string(),
                    depth: 0,
                });
            }
        }
        // Writable? Saving now says so before any request.
        state.save(dir)?;
        let log = CrawlLog::open(dir)?;
        Ok(Prepared {
            opts,
            seeds,
            state,
            resumed,
            log,
        })
    }

    fn run(self, stop: &AtomicBool, send: &mut dyn FnMut(CrawlEvent)) {
        let Prepared {
            opts,
            seeds,
            state,
            resumed,
            log,
        } = self;
        send(CrawlEvent::Started {
            resumed,
            round: state.round,
            queued: state.frontier.len(),
            output: opts.output.clone(),
        });
        let mut c = Crawl {
            scope: Scope::new(opts.scope, &seeds),
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
        };
        let (stopped, limit, error) = match c.crawl() {
            Ok((stopped, limit)) => (stopped, limit, None),
            Err(e) => (true, None, Some(e)),
        };
        c.state.finished = !stopped;
        let save_error = c.state.save(&c.opts.output).err();
        let summary = Summary {
            totals: c.state.totals,
            reasons: c.state.reasons.clone(),
            stopped,
            limit,
            output: c.opts.output.clone(),
            error: error.or(save_error),
        };
        (c.send)(CrawlEvent::Finished { summary });
    }
}

/// The crawl under way.
struct Crawl<'a> {
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

/// What came back for a URL after its redirects.
enum Fetched {
    Page {
        url: Url,
        response: Box<fetch::Response>,
    },
    Skipped(Reason, Option<String>, Option<u16>),
}

impl Crawl<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The loop: returns (stopped, the limit that ended it).
    fn crawl(&mut self) -> Result<(bool, Option<&'static str>), String> {
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

    fn record(&mut self, entry: Entry, path: Option<PathBuf>) -> Result<(), String> {
        match entry.outcome {
            Outcome::Kept => self.state.totals.kept += 1,
            Outcome::Unchanged => self.state.totals.unchanged += 1,
            Outcome::Skipped => {
                self.state.totals.skipped += 1;
                if let Some(r) = entry.reason {
                    *self.state.reasons.entry(r).or_default() += 1;
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
    ) -> Result<(), String> {
        let entry = Entry::skipped(url, reason, detail, depth, self.state.round);
        self.record(entry, None)
    }

    /// Waits until a request to `origin` is polite; false when stopped.
    fn wait_turn(&mut self, origin: &str) -> bool {
        let crawl_delay = self
            .rules
            .get(origin)
            .and_then(Rules::delay)
            .map(Duration::from_secs_f64)
            .unwrap_or_default();
        let delay = self.opts.delay.max(crawl_delay);
        if let Some(last) = self.last_request.get(origin) {
            let mut due = *last + delay;
            if let Some(until) = self.not_before.get(origin) {
                due = due.max(*until);
            }
            while Instant::now() < due {
                if self.stopping() {
                    return false;
                }
                let left = due.saturating_duration_since(Instant::now());
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
        }
        !self.stopping()
    }

    fn mark_request(&mut self, origin: &str) {
        self.last_request.insert(origin.to_string(), Instant::now());
    }

    /// The robots rules of `url`'s origin, fetching robots.txt once per
    /// round; None when stopped while waiting.
    fn robots(&mut self, url: &Url) -> Option<&Rules> {
        let origin = scope::origin(url);
        if !self.rules.contains_key(&origin) {
            let text = match self.state.robots.get(&origin) {
                Some(t) => t.clone(),
                None => {
                    if !self.wait_turn(&origin) {
                        return None;
                    }
                    let text = self.fetch_robots(url);
                    self.mark_request(&origin);
                    self.state.robots.insert(origin.clone(), text.clone());
                    text
                }
            };
            self.rules.insert(origin.clone(), Rules::new(&text));
        }
        self.rules.get(&origin)
    }

    fn fetch_robots(&mut self, url: &Url) -> RobotsText {
        let Ok(robots_url) = url.join("/robots.txt") else {
            return RobotsText::Missing;
        };
        let response = self.fetcher.get(
            robots_url.as_str(),
            &Validators::default(),
            512 << 10,
            &|_| true,
        );
        match response {
            Ok(r) if r.status == 200 => {
                RobotsText::Text(String::from_utf8_lossy(&r.body).into_owned())
            }
            // Redirects of robots.txt are treated as missing (a site
            // moving its robots.txt elsewhere is rare).
            Ok(r) if (300..500).contains(&r.status) => RobotsText::Missing,
            Ok(r) => RobotsText::Unreachable(format!("HTTP {}", r.status)),
            Err(e) => RobotsText::Unreachable(e.to_string()),
        }
    }

    /// Deals with one queued URL; false when stopped before its request.
    fn visit(&mut self, q: &QueuedUrl) -> Result<bool, String> {
        let Ok(url) = Url::parse(&q.url) else {
            self.skip(&q.url, Reason::NotHttp, Some("not a URL".into()), q.depth)?;
            return Ok(true);
        };
        let fetched = match self.fetch_following(&url)? {
            None => return Ok(false),
            Some(f) => f,
        };
        let (final_url, response) = match fetched {
            Fetched::Skipped(reason, detail, status) => {
                let mut entry = Entry::skipped(&q.url, reason, detail, q.depth, self.state.round);
                entry.status = status;
                self.record(entry, None)?;
                return Ok(true);
            }
            Fetched::Page { url, response } => (url, response),
        };
        self.state.totals.fetched += 1;
        self.state.totals.bytes += response.body.len() as u64;
        let mut entry = Entry::new(&q.url, Outcome::Skipped, q.depth, self.state.round);
        entry.status = Some(response.status);
        entry.bytes = Some(response.body.len() as u64);
        if final_url.as_str() != q.url {
            entry.final_url = Some(final_url.to_string());
        }
        let key = final_url.to_string();
        if response.status == 304 {
            let record = self.state.pages.get(&key).cloned().unwrap_or_default();
            entry.outcome = Outcome::Unchanged;
            entry.file = record.file.clone();
            let path = record.file.as_ref().map(|f| self.opts.output.join(f));
            self.record(entry, path)?;
            let links = record.links.clone();
            self.follow(&final_url, &links, q.depth)?;
            return Ok(true);
        }
        if response.status != 200 {
            entry.reason = Some(Reason::HttpStatus);
            entry.detail = Some(format!("HTTP {}", response.status));
            self.record(entry, None)?;
            return Ok(true);
        }
        let kind = extract::kind_of(response.media_type.as_deref(), &response.body);
        if kind == Kind::NotText || extract::looks_binary(&response.body) {
            entry.reason = Some(Reason::NotText);
            entry.detail = response.media_type.clone();
            self.record(entry, None)?;
            return Ok(true);
        }
        let decoded = extract::decode(
            &response.body,
            response.charset.as_deref(),
            kind == Kind::Html,
        );
        let page = if kind == Kind::Html {
            extract::html_to_text(&decoded)
        } else {
            extract::Extracted {
                text: decoded,
                ..Default::default()
            }
        };
        let base = page
            .base
            .as_deref()
            .and_then(|b| final_url.join(b).ok())
            .unwrap_or_else(|| final_url.clone());
        let links: Vec<String> = if page.nofollow {
            Vec::new()
        } else {
            page.links
                .iter()
                .filter_map(|l| base.join(l.trim()).ok())
                .map(|mut u| {
                    u.set_fragment(None);
                    u.to_string()
                })
                .collect()
        };
        let mut record = PageRecord {
            etag: response.validators.etag.clone(),
            last_modified: response.validators.last_modified.clone(),
            file: None,
            hash: None,
            // Kept for a later round that finds the page unchanged: only
            // the links it may follow (the others are logged this round).
            links: links
                .iter()
                .filter(|l| Url::parse(l).is_ok_and(|u| self.scope.contains(&u)))
                .cloned()
                .collect(),
        };
        let mut path = None;
        if page.noindex {
            entry.reason = Some(Reason::Robots);
            entry.detail = Some("noindex".into());
        } else if page.text.trim().is_empty() {
            entry.reason = Some(Reason::Empty);
        } else {
            let hash = output::content_hash(&page.text);
            match self.state.hashes.get(&hash) {
                Some(owner) if *owner != key => {
                    entry.reason = Some(Reason::Duplicate);
                    entry.detail = Some(format!("same text as {owner}"));
                }
                _ => {
                    let relative = output::page_path(&final_url);
                    match output::write_page(&self.opts.output, &relative, &key, &page.text) {
                        Ok(_) => {
                            let file = relative.to_string_lossy().replace('\\', "/");
                            self.state.hashes.retain(|_, u| *u != key);
                            self.state.hashes.insert(hash.clone(), key.clone());
                            entry.outcome = Outcome::Kept;
                            entry.file = Some(file.clone());
                            record.file = Some(file);
                            record.hash = Some(hash);
                            path = Some(self.opts.output.join(&relative));
                        }
                        Err(e) => {
                            entry.reason = Some(Reason::WriteFailed);
                            entry.detail = Some(e);
                        }
                    }
                }
            }
        }
        self.state.pages.insert(key, record);
        self.record(entry, path)?;
        self.follow(&final_url, &links, q.depth)?;
        Ok(true)
    }

    /// Queues the links of a page at `depth`, logging those refused.
    fn follow(&mut self, page: &Url, links: &[String], depth: u32) -> Result<(), String> {
        for href in links {
            let url = match scope::normalize(page, href) {
                Ok(u) => u,
                Err(scope::LinkRefusal::NotHttp(_) | scope::LinkRefusal::Unparsable(_)) => {
                    if self.state.seen.insert(href.clone()) {
                        self.skip(href, Reason::NotHttp, None, depth + 1)?;
                    }
                    continue;
                }
            };
            let key = url.to_string();
            if !self.state.seen.insert(key.clone()) {
                continue;
            }
            if !self.scope.contains(&url) {
                self.skip(&key, Reason::OutOfScope, None, depth + 1)?;
            } else if depth + 1 > self.opts.depth {
                self.skip(&key, Reason::TooDeep, None, depth + 1)?;
            } else if !self.state.traps.admit(&url, self.opts.max_per_pattern) {
                self.skip(
                    &key,
                    Reason::Trap,
                    Some(scope::path_pattern(&url)),
                    depth + 1,
                )?;
            } else {
                self.state.frontier.push_back(QueuedUrl {
                    url: key,
                    depth: depth + 1,
                });
            }
        }
        self.state.totals.queued = self.state.frontier.len();
        Ok(())
    }

    /// Stopped in the middle of a redirect chain: its hops are forgotten,
    /// so the URL still queued is followed again from its start when the
    /// crawl continues (rather than passed over as already fetched).
    fn forget_chain(&mut self, chain: &[Url]) {
        for hop in chain {
            self.state.fetched.remove(hop.as_str());
        }
    }

    /// Requests `start`, following redirects within scope; None when
    /// stopped before a request.
    fn fetch_following(&mut self, start: &Url) -> Result<Option<Fetched>, String> {
        let mut chain: Vec<Url> = Vec::new();
        let mut url = start.clone();
        loop {
            let Some(rules) = self.robots(&url) else {
                self.forget_chain(&chain);
                return Ok(None);
            };
            if !rules.allowed(url.as_str()) {
                let detail = match rules.unreachable() {
                    Some(why) => Some(format!("robots.txt unreachable: {why}")),
                    None => (!chain.is_empty()).then(|| format!("redirect to {url}")),
                };
                return Ok(Some(Fetched::Skipped(Reason::Robots, detail, None)));
            }
            let origin = scope::origin(&url);
            if !self.wait_turn(&origin) {
                self.forget_chain(&chain);
                return Ok(None);
            }
            let validators = self
                .state
                .pages
                .get(url.as_str())
                .filter(|r| {
                    r.file
                        .as_ref()
                        .is_some_and(|f| Path::new(&self.opts.output).join(f).is_file())
                })
                .map(PageRecord::validators)
                .unwrap_or_default();
            (self.send)(CrawlEvent::Fetching {
                url: url.to_string(),
            });
            let result = self.fetcher.get(
                url.as_str(),
                &validators,
                self.opts.max_page_bytes,
                &extract::wants_body,
            );
            self.mark_request(&origin);
            self.state.fetched.insert(url.to_string());
            chain.push(url.clone());
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    self.state.totals.fetched += 1;
                    let reason = match e {
                        FetchError::Timeout => Reason::Timeout,
                        FetchError::TooLarge { .. } => Reason::TooLarge,
                        FetchError::Network(_) => Reason::Network,
                    };
                    return Ok(Some(Fetched::Skipped(reason, Some(e.to_string()), None)));
                }
            };
            if matches!(response.status, 429 | 503) {
                // The server asks for a pause: Retry-After seconds (at most
                // a minute; an HTTP date or nothing: 5 s) before the next
                // request to it. The page itself is skipped.
                let pause = response
                    .retry_after
                    .as_deref()
                    .and_then(|r| r.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(5), |s| {
                        Duration::from_secs(s.min(MAX_PAUSE_S))
                    });
                self.not_before
                    .insert(origin.clone(), Instant::now() + pause);
            }
            let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
            if !redirect {
                return Ok(Some(Fetched::Page {
                    url,
                    response: Box::new(response),
                }));
            }
            let status = Some(response.status);
            let Some(target) = response
                .location
                .as_deref()
                .and_then(|l| scope::normalize(&url, l).ok())
            else {
                self.state.totals.fetched += 1;
                return Ok(Some(Fetched::Skipped(
                    Reason::HttpStatus,
                    Some(format!(
                        "HTTP {} without a usable Location",
                        response.status
                    )),
                    status,
                )));
            };
            if chain.contains(&target) {
                self.state.totals.fetched += 1;
                let path: Vec<String> = chain.iter().map(|u| u.path().to_string()).collect();
                return Ok(Some(Fetched::Skipped(
                    Reason::RedirectLoop,
                    Some(format!("{} -> {}", path.join(" -> "), target.path())),
                    status,
                )));
            }
            if chain.len() > self.opts.max_redirects {
                self.state.totals.fetched += 1;
                return Ok(Some(Fetched::Skipped(
                    Reason::TooManyRedirects,
                    Some(format!("more than {}", self.opts.max_redirects)),
                    status,
                )));
            }
            if !self.scope.contains(&target) {
                self.state.totals.fetched += 1;
                self.state.seen.insert(target.to_string());
                return Ok(Some(Fetched::Skipped(
                    Reason::OutOfScope,
                    Some(format!("redirect to {target}")),
                    status,
                )));
            }
            if self.state.fetched.contains(target.as_str()) {
                self.state.totals.fetched += 1;
                return Ok(Some(Fetched::Skipped(
                    Reason::Duplicate,
                    Some(format!("redirects to {target}, already crawled")),
                    status,
                )));
            }
            self.state.seen.insert(target.to_string());
            url = target;
        }
    }
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
