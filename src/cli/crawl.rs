//! `cllm crawl`: collect training text from web pages into the data folder
//! the trainer scans, with a progress bar (pages, bytes, queue, current
//! URL) or `--json` event lines, a summary at the end, and Ctrl-C that
//! stops after the current request and saves the state (run the same
//! command again to continue).

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use cllm_crawl::event::EMPTY_NOTICE_AFTER;
use cllm_crawl::log::Outcome;
use cllm_crawl::scope::ScopeKind;
use cllm_crawl::{CrawlEvent, CrawlOptions, Crawler, DEFAULT_OUTPUT, Summary, human_bytes};

use super::Failure;
use super::choice::choice;
use super::interrupt::{Interrupts, shell_quote};

#[derive(clap::Args, Debug, Clone)]
pub struct CrawlArgs {
    /// Where to start (http or https); several seeds share one crawl.
    #[arg(required = true, num_args = 1..)]
    pub urls: Vec<String>,
    /// Links followed from a seed at most (0: the seeds only).
    #[arg(long, default_value_t = 3)]
    pub depth: u32,
    /// Page requests at most.
    #[arg(long, default_value_t = 500)]
    pub max_pages: usize,
    /// Bytes downloaded in all at most (e.g. 200M, 1G, 500K).
    #[arg(long, default_value = "200M", value_parser = parse_size)]
    pub max_bytes: u64,
    /// Bytes of one page at most; larger pages are skipped.
    #[arg(long, default_value = "2M", value_parser = parse_size)]
    pub max_page_bytes: u64,
    /// host: any page on the seeds' hosts; prefix: only URLs under the
    /// seeds' folders.
    #[arg(long, default_value = "host", value_parser = choice::<ScopeKind>())]
    pub scope: ScopeKind,
    /// Seconds between two requests to a host (robots.txt's Crawl-delay
    /// wins when longer).
    #[arg(long, default_value_t = 1.0)]
    pub delay: f64,
    /// Seconds a request may take, body included.
    #[arg(long, default_value_t = 20.0)]
    pub timeout: f64,
    /// URLs with a query or a number in their path, per path pattern, at
    /// most (`?page=1`, `?page=2`… count as one pattern).
    #[arg(long, default_value_t = 20)]
    pub max_per_pattern: usize,
    /// Pages go to DIR/<host>/<path>.md, with DIR/crawl.jsonl (the log)
    /// and DIR/crawl.state (to continue).
    #[arg(long, default_value = DEFAULT_OUTPUT)]
    pub output: PathBuf,
    /// Forget the saved state of DIR and start afresh.
    #[arg(long)]
    pub restart: bool,
    /// List every skipped URL with its reason.
    #[arg(long)]
    pub verbose: bool,
    /// Print events as JSON lines instead of a progress bar.
    #[arg(long)]
    pub json: bool,
}

/// `500K`, `2M`, `1G`, `1024` -> bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], t[i..].to_ascii_uppercase()),
        None => (t, String::new()),
    };
    let scale: u64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: use a number of bytes, e.g. 500K, 2M, 1G"
            ));
        }
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: use a number of bytes, e.g. 500K, 2M, 1G"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(format!("{text:?}: must be zero or more"));
    }
    Ok((n * scale as f64) as u64)
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} {value}: must be a number of seconds, zero or more"))
}

pub fn options(args: &CrawlArgs) -> Result<CrawlOptions, String> {
    let timeout = seconds("timeout", args.timeout)?;
    if timeout.is_zero() {
        return Err("--timeout must be more than 0 seconds".into());
    }
    Ok(CrawlOptions {
        seeds: args.urls.clone(),
        output: args.output.clone(),
        depth: args.depth,
        max_pages: args.max_pages,
        max_bytes: args.max_bytes,
        max_page_bytes: args.max_page_bytes,
        scope: args.scope,
        delay: seconds("delay", args.delay)?,
        timeout,
        max_per_pattern: args.max_per_pattern,
        max_redirects: CrawlOptions::default().max_redirects,
        restart: args.restart,
    })
}

pub fn run(args: CrawlArgs) -> Result<(), Failure> {
    let opts = options(&args)?;
    let interrupts = Interrupts::watch("quitting now; the state saved a moment ago is kept")?;
    let crawler = Crawler::start(opts, None).map_err(|e| e.to_string())?;
    let mut view = if args.json {
        None
    } else {
        Some(Terminal::new(args.verbose, args.max_pages))
    };
    let mut signal = None;
    let summary = loop {
        crossbeam_channel::select! {
            recv(crawler.events) -> event => {
                let Ok(event) = event else {
                    return Err("the crawler stopped without reporting".into());
                };
                if args.json {
                    println!("{}", serde_json::to_string(&event).map_err(|e| e.to_string())?);
                }
                if let Some(v) = view.as_mut() {
                    v.show(&event);
                }
                if let CrawlEvent::Finished { summary } = event {
                    break summary;
                }
            }
            recv(interrupts.first) -> s => {
                if let Ok(s) = s {
                    signal = Some(s);
                    crawler.stop();
                    let line = format!("{}: stopping after the current request and saving (again to quit now)", s.name());
                    match &view {
                        Some(v) => v.notice(&line),
                        None => eprintln!("{line}"),
                    }
                }
            }
        }
    };
    crawler.join();
    if let Some(v) = &view {
        v.bar.finish_and_clear();
    }
    if let Some(e) = &summary.error {
        return Err(Failure::from(format!("crawl failed: {e}")));
    }
    if !args.json {
        print_summary(&summary);
    }
    if let Some(problem) = &summary.problem {
        return Err(Failure::from(format!(
            "crawl failed: {problem}; every URL and why it was skipped is in {}",
            summary.output.join(cllm_crawl::log::LOG_FILE).display()
        )));
    }
    if let Some(s) = signal {
        let again: Vec<String> = std::env::args().map(|a| shell_quote(&a)).collect();
        eprintln!(
            "stopped by {}; the state is saved: run the same command to continue:\n  {}",
            s.name(),
            again.join(" ")
        );
        return Err(Failure::stopped_by(
            s.exit_code(),
            format!("crawl stopped by {}", s.name()),
        ));
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    let how = if s.problem.is_some() {
        "crawl failed".to_string()
    } else if s.stopped {
        "crawl stopped".to_string()
    } else if let Some(limit) = s.limit {
        format!("crawl ended at the {limit} limit")
    } else {
        "crawl done".to_string()
    };
    println!("{how}: {}", cllm_crawl::summary_line(s));
    println!(
        "pages in {}/, every URL in {}",
        s.output.display(),
        s.output.join(cllm_crawl::log::LOG_FILE).display()
    );
}

struct Terminal {
    bar: ProgressBar,
    verbose: bool,
    /// Pages kept and skipped, queue, bytes.
    stats: String,
    /// The URL being fetched.
    current: String,
    /// Most pages coming out empty has been said.
    warned_empty: bool,
}

impl Terminal {
    fn new(verbose: bool, max_pages: usize) -> Terminal {
        let bar =
            ProgressBar::with_draw_target(Some(max_pages as u64), super::progress::stdout_target());
        bar.set_style(
            ProgressStyle::with_template("{bar:20.cyan/blue} {pos}/{len} pages | {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Terminal {
            bar,
            verbose,
            stats: "starting".into(),
            current: String::new(),
            warned_empty: false,
        }
    }

    fn say(&self, line: &str) {
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.suspend(|| println!("{line}"));
        }
    }

    fn notice(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.suspend(|| println!("{line}"));
        }
    }

    fn redraw(&self) {
        self.bar
            .set_message(format!("{} | {}", self.stats, self.current));
    }

    fn show(&mut self, event: &CrawlEvent) {
        match event {
            CrawlEvent::Started {
                resumed,
                round,
                queued,
                output,
            } => {
                let what = if *resumed {
                    format!("continuing the stopped crawl ({queued} URLs queued)")
                } else if *round > 1 {
                    format!("crawl round {round}: refetching only what changed")
                } else {
                    "crawling".to_string()
                };
                self.say(&format!("{what}; pages go to {}/", output.display()));
            }
            CrawlEvent::Fetching { url } => {
                self.current = url.clone();
                self.redraw();
            }
            CrawlEvent::Logged { entry, totals, .. } => {
                self.bar.set_position(totals.fetched as u64);
                let empty = if totals.empty > 0 {
                    format!(" ({} empty)", totals.empty)
                } else {
                    String::new()
                };
                self.stats = format!(
                    "{} kept, {} skipped{empty}, {} queued, {}",
                    totals.kept + totals.unchanged,
                    totals.skipped,
                    totals.queued,
                    human_bytes(totals.bytes)
                );
                if !self.warned_empty
                    && totals.fetched >= EMPTY_NOTICE_AFTER
                    && cllm_crawl::mostly_empty(totals)
                {
                    self.warned_empty = true;
                    self.say(&format!(
                        "warning: {} of {} pages fetched so far came out empty (no text found in their main content)",
                        totals.empty, totals.fetched
                    ));
                }
                self.redraw();
                match entry.outcome {
                    Outcome::Kept if self.verbose => {
                        self.say(&format!("kept {}", entry.url));
                    }
                    // A seed skipped is always said: it may be all there was.
                    Outcome::Skipped if self.verbose || entry.depth == 0 => {
                        let reason = entry.reason.map_or("skipped", |r| r.label());
                        let detail = entry
                            .detail
                            .as_ref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default();
                        self.say(&format!("skipped {}: {reason}{detail}", entry.url));
                    }
                    _ => {}
                }
            }
            CrawlEvent::Finished { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("500k").unwrap(), 500 << 10);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert!(parse_size("lots").is_err());
    }
}
