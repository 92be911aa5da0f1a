//! Starting a crawl: the seeds checked, the output folder made, the saved
//! state loaded (or a new round begun), then the round run on its own
//! thread ([`Crawler`]) or on this one ([`run`]).

use crossbeam_channel::{Receiver, unbounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use url::Url;

use crate::error::CrawlError;
use crate::event::{CrawlEvent, Summary};
use crate::frontier::{CrawlState, QueuedUrl};
use crate::log::CrawlLog;
use crate::options::CrawlOptions;
use crate::round::Round;
use crate::scope;

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
    ) -> Result<Crawler, CrawlError> {
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
                                error: Some(e.to_string()),
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
            .map_err(CrawlError::Thread)?;
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
fn check_seeds(seeds: &[String]) -> Result<Vec<Url>, CrawlError> {
    if seeds.is_empty() {
        return Err(CrawlError::NoSeeds);
    }
    seeds.iter().map(|s| scope::parse_seed(s)).collect()
}

/// Runs a crawl on this thread, calling `on_event` for every event;
/// returns its summary (an error before the crawl starts is `Err`).
pub fn run(
    opts: CrawlOptions,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(CrawlEvent),
) -> Result<Summary, CrawlError> {
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
    fn new(opts: CrawlOptions) -> Result<Prepared, CrawlError> {
        let seeds = check_seeds(&opts.seeds)?;
        let dir = &opts.output;
        if dir.exists() && !dir.is_dir() {
            return Err(CrawlError::OutputNotAFolder { path: dir.clone() });
        }
        std::fs::create_dir_all(dir).map_err(|source| CrawlError::CreateOutput {
            path: dir.clone(),
            source,
        })?;
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
        Round::new(opts, &seeds, state, log, stop, send).run();
    }
}
