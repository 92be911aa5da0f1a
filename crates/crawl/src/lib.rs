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
//!
//! The modules, from the front end down:
//!
//! - [`options`]: what to crawl and how politely ([`CrawlOptions`]).
//! - [`crawler`]: a crawl started, on its own thread or inline.
//! - [`event`]: what it tells its front end ([`CrawlEvent`], [`Summary`]).
//! - `round`: one round under way: the loop, politeness, redirects, pages.
//! - [`frontier`]: the state saved between runs (queue, pages, totals).
//! - [`scope`]: which URLs may be followed; seeds parsed; the trap guard.
//! - [`robots`]: robots.txt rules. [`fetch`]: one HTTP GET.
//! - [`extract`]: text and links out of a response.
//! - [`output`]: the page files. [`log`]: `crawl.jsonl`.
//! - [`error`]: what stops a crawl ([`CrawlError`]).

pub mod crawler;
pub mod error;
pub mod event;
pub mod extract;
pub mod fetch;
pub mod frontier;
pub mod log;
pub mod options;
pub mod output;
pub mod robots;
mod round;
pub mod scope;

pub use crawler::{Crawler, run};
pub use error::CrawlError;
pub use event::{CrawlEvent, Summary, human_bytes, mostly_empty, problem, summary_line};
pub use options::{CrawlOptions, DEFAULT_OUTPUT};
