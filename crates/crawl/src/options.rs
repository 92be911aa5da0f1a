//! What to crawl and how politely: the seeds, the output folder, the
//! limits and the delays.

use std::path::PathBuf;
use std::time::Duration;

use crate::scope::ScopeKind;

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
