//! A URL requested and its redirects followed, each hop checked against
//! robots.txt and the scope, loops and long chains refused; a 429 or 503
//! pauses requests to its host.

use std::path::Path;
use std::time::{Duration, Instant};
use url::Url;

use super::Round;
use crate::error::CrawlError;
use crate::event::CrawlEvent;
use crate::extract;
use crate::fetch::{self, FetchError};
use crate::frontier::PageRecord;
use crate::log::Reason;
use crate::scope;

/// The longest pause a Retry-After can ask for, in seconds.
const MAX_PAUSE_S: u64 = 60;

/// What came back for a URL after its redirects.
pub(super) enum Fetched {
    Page {
        url: Url,
        response: Box<fetch::Response>,
    },
    Skipped(Reason, Option<String>, Option<u16>),
}

impl Round<'_> {
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
    pub(super) fn fetch_following(&mut self, start: &Url) -> Result<Option<Fetched>, CrawlError> {
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
