//! What can stop a crawl, or keep it from starting: a seed that is not an
//! http(s) URL, an output folder that cannot be written, a damaged state or
//! log file. Each message names the URL or the file and, where there is
//! one, what to do. A page that fails is not an error: it is logged with
//! its reason and the crawl goes on.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("no URL to crawl")]
    NoSeeds,
    #[error("no URL given")]
    EmptySeed,
    #[error("{text:?} is not a URL: give it as https://host/path")]
    NotAUrl { text: String },
    #[error("{text:?} is not a URL: {source}")]
    UnparsableSeed {
        text: String,
        source: url::ParseError,
    },
    #[error("{text:?}: only http and https URLs can be crawled, not {scheme}:")]
    NotHttp { text: String, scheme: String },
    #[error("{text:?} has no host")]
    NoHost { text: String },
    #[error("unknown scope {0:?}: use host or prefix")]
    UnknownScope(String),
    #[error("{}: the output is not a folder", path.display())]
    OutputNotAFolder { path: PathBuf },
    #[error("{}: cannot create the output folder: {source}", path.display())]
    CreateOutput {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot read the crawl state: {source}", path.display())]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the crawl state is damaged ({source}); delete it or pass --restart", path.display())]
    DamagedState {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{}: crawl state version {found} is not {expected}; delete it or pass --restart",
        path.display()
    )]
    StateVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("crawl state: {0}")]
    EncodeState(serde_json::Error),
    #[error("{}: cannot save the crawl state: {source}", path.display())]
    SaveState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot open the crawl log: {source}", path.display())]
    OpenLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("crawl log entry: {0}")]
    EncodeEntry(serde_json::Error),
    #[error("{}: cannot write the crawl log: {source}", path.display())]
    WriteLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot read the crawl log: {source}", path.display())]
    ReadLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}, line {line}: not a crawl log entry ({source}): {text}", path.display())]
    DamagedLogLine {
        path: PathBuf,
        /// Counted from 1.
        line: usize,
        source: serde_json::Error,
        text: String,
    },
    #[error("{}: cannot create the folder: {source}", path.display())]
    CreatePageFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot write the page: {source}", path.display())]
    WritePage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the crawler thread: {0}")]
    Thread(std::io::Error),
}
