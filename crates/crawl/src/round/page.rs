//! A fetched page dealt with: unchanged (304), refused (status, not text,
//! noindex, empty, a duplicate) or kept as a file; its links checked
//! against the scope, the depth and the trap guard, and queued or logged.

use url::Url;

use super::Round;
use super::redirects::Fetched;
use crate::error::CrawlError;
use crate::extract::{self, Kind};
use crate::frontier::{PageRecord, QueuedUrl};
use crate::log::{Entry, Outcome, Reason};
use crate::output;
use crate::scope;

impl Round<'_> {
    /// Deals with one queued URL; false when stopped before its request.
    pub(super) fn visit(&mut self, q: &QueuedUrl) -> Result<bool, CrawlError> {
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
            entry.detail = Some(match kind {
                Kind::Html => format!("no text in {}", page.region),
                _ => "no text".into(),
            });
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
                            entry.detail = Some(e.to_string());
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
    fn follow(&mut self, page: &Url, links: &[String], depth: u32) -> Result<(), CrawlError> {
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
}
