//! The crawl's memory: the queue of URLs still to visit, what was seen and
//! fetched this round, and what is known about each page from earlier
//! rounds (validators, file, hash, links) — saved every second and when the
//! crawl stops, so a stopped crawl continues where it was.

pub mod state;

pub use state::{CrawlState, PageRecord, QueuedUrl, Totals};
