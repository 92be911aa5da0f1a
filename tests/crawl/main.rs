//! The crawler against web servers started by the tests on 127.0.0.1 (no
//! test reaches beyond the loopback address): scope, robots.txt and
//! Crawl-delay, redirects, binary and oversized pages, timeouts, charsets,
//! code blocks, duplicates, query traps, resuming, conditional re-crawls,
//! the `cllm crawl` command, and training on what was crawled.

mod app_panel;
mod command;
mod crawl_support;
mod library;

use cllm_crawl::log::{Entry, Outcome, Reason, read_log};
use cllm_crawl::{CrawlEvent, CrawlOptions, Summary, run};
use crawl_support::{Request, Response, Server};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CRAWL_DELAY: f64 = 0.05;

const CODE: &str = "int main(void) {\n    for (int i = 0; i < 3; i++) {\n\tif (i) {\n            puts(\"x\");\n\t}\n    }\n    return 0;\n}";

/// The test site: nested docs, a private folder robots.txt disallows, a
/// redirect loop, a link to another host, a binary file, a page over the
/// size cap, a slow page, a Latin-1 page, a code page, two identical
/// pages, a `?page=` trap, a 404, and links no crawler should follow.
/// Every response has an ETag and honours If-None-Match; `version`
/// changes the text of /docs/intro.html.
fn site(other: String, version: Arc<AtomicUsize>) -> Arc<crawl_support::Site> {
    Arc::new(move |req: &Request| {
        let t = req.target.as_str();
        let page = |title: &str, body: &str| {
            Response::html(&format!(
                "<!doctype html><html><head><title>{title}</title></head><body>\
                 <nav><a href=\"/\">Site menu</a></nav><h1>{title}</h1>{body}\
                 <footer>footer text</footer></body></html>"
            ))
        };
        let response = match t {
            "/robots.txt" => Response::new(
                200,
                "text/plain",
                format!("User-agent: *\nDisallow: /private/\nCrawl-delay: {CRAWL_DELAY}\n"),
            ),
            "/" => page(
                "Home",
                &format!(
                    "<p>Welcome to the docs.</p><ul>\
                     <li><a href=\"/docs/\">Docs</a></li>\
                     <li><a href=\"docs/intro.html#start\">Intro</a></li>\
                     <li><a href=\"/private/secret.html\">Secret</a></li>\
                     <li><a href=\"{other}/elsewhere.html\">Elsewhere</a></li>\
                     <li><a href=\"/loop-a\">Loop</a></li>\
                     <li><a href=\"/data.bin\">Data</a></li>\
                     <li><a href=\"/big.html\">Big</a></li>\
                     <li><a href=\"/slow.html\">Slow</a></li>\
                     <li><a href=\"/latin1.html\">Latin-1</a></li>\
                     <li><a href=\"/code.html\">Code</a></li>\
                     <li><a href=\"/dup1.html\">Dup 1</a></li>\
                     <li><a href=\"/dup2.html\">Dup 2</a></li>\
                     <li><a href=\"/list?page=1\">List</a></li>\
                     <li><a href=\"/notes.txt\">Notes</a></li>\
                     <li><a href=\"/missing.html\">Missing</a></li>\
                     <li><a href=\"/moved\">Moved</a></li>\
                     <li><a href=\"/old-intro\">Old intro</a></li>\
                     <li><a href=\"mailto:me@example.com\">Mail</a></li>\
                     <li><a href=\"javascript:void(0)\">JS</a></li>\
                     <li><a href=\"#top\">Top</a></li></ul>"
                ),
            ),
            "/docs/" => page(
                "Docs",
                "<p>The documentation index.</p><a href=\"guide/\">Guide</a>",
            ),
            "/docs/guide/" => page(
                "Guide",
                "<p>A guide in a nested folder.</p><a href=\"deep.html\">Deep</a>",
            ),
            "/docs/guide/deep.html" => page(
                "Deep",
                "<p>Three links from the seed.</p><a href=\"deeper.html\">Deeper</a>",
            ),
            "/docs/guide/deeper.html" => page("Deeper", "<p>Too deep to reach.</p>"),
            "/docs/intro.html" => page(
                "Intro",
                &format!(
                    "<p>Introduction, version {}.</p>",
                    version.load(Ordering::SeqCst)
                ),
            ),
            "/private/secret.html" => page("Secret", "<p>robots.txt says no.</p>"),
            "/loop-a" => Response::redirect("/loop-b"),
            "/loop-b" => Response::redirect("/loop-a"),
            "/moved" => Response::redirect("/docs/new-home.html"),
            "/docs/new-home.html" => page(
                "Moved",
                "<p>Reached through a redirect.</p><a href=\"/docs/intro.html\">Intro</a>",
            ),
            "/old-intro" => Response::redirect("/docs/intro.html"),
            "/data.bin" => {
                Response::new(200, "application/octet-stream", vec![0u8, 1, 2, 255, 0, 7])
            }
            "/big.html" => page("Big", &"<p>lots of words here</p>".repeat(20_000)),
            "/slow.html" => Response {
                slow: true,
                ..page("Slow", "<p>never arrives in time</p>")
            },
            "/latin1.html" => {
                let mut body = b"<html><body><h1>Caf\xe9</h1><p>Na\xefve r\xe9sum\xe9 \xa9 2024</p></body></html>".to_vec();
                body.extend_from_slice(b"\n");
                Response::new(200, "text/html; charset=ISO-8859-1", body)
            }
            "/code.html" => page(
                "Code",
                &format!(
                    "<p>An example:</p><pre><code class=\"language-c\">{}</code></pre>",
                    CODE.replace('<', "&lt;")
                ),
            ),
            "/dup1.html" | "/dup2.html" => page("Same", "<p>Exactly the same text twice.</p>"),
            "/notes.txt" => {
                Response::new(200, "text/plain", "  indented plain text\n\tkept as is\n")
            }
            _ if t.starts_with("/list?page=") => {
                let n: usize = t["/list?page=".len()..].parse().unwrap_or(0);
                page(
                    &format!("List page {n}"),
                    &(1..=5)
                        .map(|k| format!("<a href=\"/list?page={}\">page {}</a>", n + k, n + k))
                        .collect::<String>(),
                )
            }
            _ => Response::not_found(),
        };
        with_etag(req, response)
    })
}

/// Adds an ETag from the body; answers 304 when the client has it.
fn with_etag(req: &Request, r: Response) -> Response {
    if r.status != 200 {
        return r;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    r.body.hash(&mut h);
    let etag = format!("\"{:x}\"", h.finish());
    if req.headers.get("if-none-match") == Some(&etag) {
        return Response {
            status: 304,
            headers: vec![("ETag".into(), etag)],
            ..Response::default()
        };
    }
    r.with_header("ETag", &etag)
}

struct Fixture {
    main: Server,
    other: Server,
    version: Arc<AtomicUsize>,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let other = Server::start(Arc::new(|_: &Request| Response::html("<p>other host</p>")));
    let version = Arc::new(AtomicUsize::new(1));
    let main = Server::start(site(format!("http://{}", other.addr), version.clone()));
    Fixture {
        main,
        other,
        version,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    fn out(&self) -> PathBuf {
        self.dir.path().join("crawl")
    }

    fn options(&self) -> CrawlOptions {
        CrawlOptions {
            seeds: vec![self.main.url("/")],
            output: self.out(),
            depth: 3,
            max_pages: 100,
            max_page_bytes: 100 << 10,
            delay: Duration::ZERO,
            timeout: Duration::from_millis(300),
            max_per_pattern: 3,
            ..CrawlOptions::default()
        }
    }
}

fn crawl(opts: CrawlOptions) -> (Summary, Vec<CrawlEvent>) {
    let mut events = Vec::new();
    let stop = AtomicBool::new(false);
    let summary = run(opts, &stop, &mut |e| events.push(e)).expect("the crawl starts");
    (summary, events)
}

/// The log's entry for a URL (the one of the latest round).
fn entry<'a>(log: &'a [Entry], url: &str) -> &'a Entry {
    log.iter()
        .rev()
        .find(|e| e.url == url)
        .unwrap_or_else(|| panic!("{url} is not in the log: {log:#?}"))
}

fn reason(log: &[Entry], url: &str) -> Option<Reason> {
    entry(log, url).reason
}

fn page_file(f: &Fixture, path: &str) -> PathBuf {
    f.out()
        .join(format!("127.0.0.1_{}", f.main.addr.port()))
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
