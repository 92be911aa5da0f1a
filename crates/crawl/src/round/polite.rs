//! Politeness: one request to a host at a time, after its delay (ours, or
//! robots.txt's Crawl-delay when longer, or the pause a 429 or 503 asked
//! for), and robots.txt fetched once per origin and round.

use std::time::{Duration, Instant};
use url::Url;

use super::Round;
use crate::fetch::Validators;
use crate::robots::{RobotsText, Rules};
use crate::scope;

impl Round<'_> {
    /// Waits until a request to `origin` is polite; false when stopped.
    pub(super) fn wait_turn(&mut self, origin: &str) -> bool {
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

    pub(super) fn mark_request(&mut self, origin: &str) {
        self.last_request.insert(origin.to_string(), Instant::now());
    }

    /// The robots rules of `url`'s origin, fetching robots.txt once per
    /// round; None when stopped while waiting.
    pub(super) fn robots(&mut self, url: &Url) -> Option<&Rules> {
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
}
