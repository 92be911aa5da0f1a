//! The crawler against web servers started by the tests on 127.0.0.1 (no
//! test reaches beyond the loopback address): scope, robots.txt and
//! Crawl-delay, redirects, binary and oversized pages, timeouts, charsets,
//! code blocks, duplicates, query traps, resuming, conditional re-crawls,
//! the `cllm crawl` command, and training on what was crawled.

mod crawl_support;

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

#[test]
fn crawls_a_site_in_scope_and_politely() {
    let f = fixture();
    let (summary, _) = crawl(f.options());
    assert!(summary.error.is_none(), "{summary:?}");
    assert!(!summary.stopped && summary.limit.is_none(), "{summary:?}");
    let log = read_log(&f.out()).unwrap();
    let u = |p: &str| f.main.url(p);

    // Nested pages, each with its source on the first line.
    for (url, file) in [
        ("/", "index.md"),
        ("/docs/", "docs/index.md"),
        ("/docs/intro.html", "docs/intro.html.md"),
        ("/docs/guide/", "docs/guide/index.md"),
        ("/docs/guide/deep.html", "docs/guide/deep.html.md"),
    ] {
        assert_eq!(entry(&log, &u(url)).outcome, Outcome::Kept, "{url}");
        let text = read(&page_file(&f, file));
        assert_eq!(
            text.lines().next().unwrap(),
            format!("<!-- source: {} -->", u(url))
        );
        assert!(
            !text.contains("footer text") && !text.contains("Site menu"),
            "{text}"
        );
    }
    let home = read(&page_file(&f, "index.md"));
    assert!(
        home.contains("# Home\n\nWelcome to the docs.\n\n- Docs"),
        "{home}"
    );
    assert_eq!(
        reason(&log, &u("/docs/guide/deeper.html")),
        Some(Reason::TooDeep)
    );
    assert_eq!(f.main.count("/docs/guide/deeper.html"), 0);

    // robots.txt: asked once, the private folder never requested.
    assert_eq!(f.main.count("/robots.txt"), 1);
    assert_eq!(
        reason(&log, &u("/private/secret.html")),
        Some(Reason::Robots)
    );
    assert_eq!(f.main.count("/private/secret.html"), 0);
    // Crawl-delay: no two requests closer than it.
    let times = f.main.requests();
    for w in times.windows(2) {
        let gap = w[1].1.duration_since(w[0].1);
        assert!(
            gap >= Duration::from_secs_f64(CRAWL_DELAY * 0.9),
            "{} then {} after {gap:?}",
            w[0].0,
            w[1].0
        );
    }

    // Another host: logged, never asked (not even for its robots.txt).
    let elsewhere = format!("http://{}/elsewhere.html", f.other.addr);
    assert_eq!(reason(&log, &elsewhere), Some(Reason::OutOfScope));
    assert!(f.other.requests().is_empty(), "{:?}", f.other.requests());

    // Redirects: a loop is caught, a redirect in scope is followed.
    let lp = entry(&log, &u("/loop-a"));
    assert_eq!(lp.reason, Some(Reason::RedirectLoop), "{lp:?}");
    assert_eq!(f.main.count("/loop-a"), 1);
    assert_eq!(f.main.count("/loop-b"), 1);
    let moved = entry(&log, &u("/moved"));
    assert_eq!(moved.outcome, Outcome::Kept, "{moved:?}");
    assert_eq!(
        moved.final_url.as_deref(),
        Some(u("/docs/new-home.html").as_str()),
        "{moved:?}"
    );
    assert!(
        read(&page_file(&f, "docs/new-home.html.md"))
            .starts_with(&format!("<!-- source: {} -->", u("/docs/new-home.html")))
    );
    // A redirect to a page already fetched does not fetch it again.
    let old = entry(&log, &u("/old-intro"));
    assert_eq!(old.reason, Some(Reason::Duplicate), "{old:?}");

    // Binary, too large, too slow, missing.
    assert_eq!(reason(&log, &u("/data.bin")), Some(Reason::NotText));
    assert_eq!(reason(&log, &u("/big.html")), Some(Reason::TooLarge));
    assert_eq!(reason(&log, &u("/slow.html")), Some(Reason::Timeout));
    assert_eq!(entry(&log, &u("/missing.html")).status, Some(404));
    assert_eq!(reason(&log, &u("/missing.html")), Some(Reason::HttpStatus));
    for p in [
        "data.bin.md",
        "big.html.md",
        "slow.html.md",
        "missing.html.md",
    ] {
        assert!(!page_file(&f, p).exists(), "{p}");
    }

    // Latin-1 decoded; code indentation kept verbatim; plain text as is.
    let latin = read(&page_file(&f, "latin1.html.md"));
    assert!(
        latin.contains("# Café") && latin.contains("Naïve résumé © 2024"),
        "{latin}"
    );
    let code = read(&page_file(&f, "code.html.md"));
    assert!(code.contains(&format!("```c\n{CODE}\n```")), "{code}");
    let notes = read(&page_file(&f, "notes.txt.md"));
    assert!(
        notes.ends_with("\n  indented plain text\n\tkept as is\n"),
        "{notes:?}"
    );

    // Duplicates: one kept, the other skipped as a duplicate of it.
    let (d1, d2) = (entry(&log, &u("/dup1.html")), entry(&log, &u("/dup2.html")));
    assert_eq!(d1.outcome, Outcome::Kept);
    assert_eq!(d2.reason, Some(Reason::Duplicate));
    assert!(d2.detail.as_deref().unwrap().contains("/dup1.html"));
    assert!(!page_file(&f, "dup2.html.md").exists());

    // The ?page= trap: three pages of the pattern, the fourth refused.
    let list: usize = (1..10)
        .map(|n| f.main.count(&format!("/list?page={n}")))
        .sum();
    assert_eq!(list, 3);
    assert_eq!(reason(&log, &u("/list?page=4")), Some(Reason::Trap));

    // Links no crawler follows.
    assert_eq!(reason(&log, "mailto:me@example.com"), Some(Reason::NotHttp));
    assert_eq!(reason(&log, "javascript:void(0)"), Some(Reason::NotHttp));

    // Nothing was asked twice; every URL is logged once.
    for (path, n) in f.main.counts() {
        assert_eq!(n, 1, "{path} requested {n} times");
    }
    let mut urls: Vec<&str> = log.iter().map(|e| e.url.as_str()).collect();
    let all = urls.len();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), all, "a URL logged twice");
    assert_eq!(
        summary.totals.kept,
        log.iter().filter(|e| e.outcome == Outcome::Kept).count()
    );
}

/// A crawl stopped after a few pages and run again fetches the rest and
/// nothing twice, and ends with the same pages as an uninterrupted one.
#[test]
fn resume_after_interruption_fetches_nothing_twice() {
    let f = fixture();
    let stop = AtomicBool::new(false);
    let mut kept = 0;
    let first = run(f.options(), &stop, &mut |e| {
        if let CrawlEvent::Logged { entry, .. } = &e
            && entry.outcome == Outcome::Kept
        {
            kept += 1;
            if kept == 3 {
                stop.store(true, Ordering::SeqCst);
            }
        }
    })
    .unwrap();
    assert!(first.stopped, "{first:?}");
    assert_eq!(first.totals.kept, 3);
    let before = f.main.requests().len();

    let mut resumed = None;
    let stop = AtomicBool::new(false);
    let second = run(f.options(), &stop, &mut |e| {
        if let CrawlEvent::Started { resumed: r, .. } = e {
            resumed = Some(r);
        }
    })
    .unwrap();
    assert_eq!(resumed, Some(true));
    assert!(!second.stopped && second.error.is_none(), "{second:?}");
    assert!(
        f.main.requests().len() > before,
        "the second run fetched the rest"
    );
    for (path, n) in f.main.counts() {
        assert_eq!(n, 1, "{path} requested {n} times across the two runs");
    }

    // The same pages as one uninterrupted crawl of a fresh server.
    let g = fixture();
    crawl(g.options());
    let files = |f: &Fixture| {
        let mut v: Vec<String> = read_log(&f.out())
            .unwrap()
            .iter()
            .filter_map(|e| e.file.clone())
            .map(|p| p.split_once('/').unwrap().1.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(&f), files(&g));
}

/// A finished crawl run again asks with If-None-Match: unchanged pages
/// stay as they are, a changed page is written again.
#[test]
fn a_recrawl_refetches_only_changed_pages() {
    let f = fixture();
    crawl(f.options());
    let intro = page_file(&f, "docs/intro.html.md");
    let code = page_file(&f, "code.html.md");
    assert!(read(&intro).contains("version 1"));
    let code_time = std::fs::metadata(&code).unwrap().modified().unwrap();
    f.version.store(2, Ordering::SeqCst);

    let (summary, events) = crawl(f.options());
    assert!(
        matches!(
            events[0],
            CrawlEvent::Started {
                resumed: false,
                round: 2,
                ..
            }
        ),
        "{:?}",
        events[0]
    );
    assert_eq!(summary.totals.kept, 1, "{summary:?}");
    assert!(summary.totals.unchanged >= 6, "{summary:?}");
    assert!(read(&intro).contains("version 2"));
    assert_eq!(
        std::fs::metadata(&code).unwrap().modified().unwrap(),
        code_time
    );
    let log = read_log(&f.out()).unwrap();
    let round2: HashMap<&str, &Entry> = log
        .iter()
        .filter(|e| e.round == 2)
        .map(|e| (e.url.as_str(), e))
        .collect();
    assert_eq!(
        round2[f.main.url("/docs/intro.html").as_str()].outcome,
        Outcome::Kept
    );
    assert_eq!(
        round2[f.main.url("/code.html").as_str()].outcome,
        Outcome::Unchanged
    );
    // Links of unchanged pages are still followed.
    assert_eq!(
        round2[f.main.url("/docs/guide/deep.html").as_str()].outcome,
        Outcome::Unchanged
    );
}

fn cllm(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `cllm crawl --json` prints one event per line and a summary; bad input
/// is named, not a panic.
#[test]
fn the_crawl_command() {
    let f = fixture();
    let out = f.out();
    let port = f.main.addr.port();
    let out_arg = out.to_str().unwrap();
    let run = cllm(
        f.dir.path(),
        &[
            "crawl",
            &f.main.url("/docs/"),
            "--json",
            "--delay",
            "0",
            "--timeout",
            "0.3",
            "--depth",
            "1",
            "--scope",
            "prefix",
            "--output",
            out_arg,
        ],
    );
    assert!(run.status.success(), "{run:?}");
    let stdout = String::from_utf8(run.stdout).unwrap();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events[0]["event"], "started");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["summary"]["totals"]["kept"], 2, "{last}");
    assert!(
        out.join(format!("127.0.0.1_{port}/docs/guide/index.md"))
            .is_file()
    );

    // Terminal-less plain output: the summary line.
    let again = cllm(
        f.dir.path(),
        &[
            "crawl",
            &f.main.url("/docs/"),
            "--delay",
            "0",
            "--depth",
            "1",
            "--scope",
            "prefix",
            "--output",
            out_arg,
        ],
    );
    assert!(again.status.success(), "{again:?}");
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(text.contains("crawl done: 0 kept, 2 unchanged"), "{text}");

    for (args, wanted) in [
        (vec!["crawl", "not a url"], "not a URL"),
        (vec!["crawl", "ftp://127.0.0.1/"], "only http and https"),
        (
            vec![
                "crawl",
                "http://127.0.0.1:9/",
                "--output",
                "/proc/no/such/dir",
            ],
            "/proc/no/such/dir",
        ),
        (
            vec!["crawl", "http://127.0.0.1:9/", "--max-bytes", "lots"],
            "lots",
        ),
    ] {
        let bad = cllm(f.dir.path(), &args);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(
            bad.status.code(),
            Some(if args.len() == 4 && args[2] == "--max-bytes" {
                2
            } else {
                1
            }),
            "{args:?}: {err}"
        );
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// What was crawled is scanned as training data (pages kept, the log and
/// the state not) and a short `cllm train` run trains on it.
#[test]
fn crawled_pages_are_trained_on() {
    let f = fixture();
    crawl(f.options());
    let stop = AtomicBool::new(false);
    let mut kept = Vec::new();
    let mut other = Vec::new();
    cllm_data::scan::scan(
        &cllm_data::scan::ScanOptions {
            roots: vec![f.out()],
            ..Default::default()
        },
        &stop,
        &mut |file| {
            if file.status == cllm_data::scan::FileStatus::Kept {
                kept.push(file.relative.clone());
            } else {
                other.push(file);
            }
        },
    )
    .unwrap();
    let log = read_log(&f.out()).unwrap();
    let pages = log.iter().filter(|e| e.outcome == Outcome::Kept).count();
    assert_eq!(kept.len(), pages, "{kept:?} {other:?}");
    assert!(
        kept.iter().all(|p| p.extension().unwrap() == "md"),
        "{kept:?}"
    );

    let dir = f.dir.path();
    let data = f.out();
    let train = cllm(
        dir,
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--preset",
            "tiny",
            "--tokenizer",
            "bytes",
            "--threads",
            "1",
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--epochs",
            "0",
            "--max-steps",
            "3",
            "--eval-every",
            "10",
            "--eval-batches",
            "2",
            "--memory",
            "off",
            "--output",
            dir.join("web.cllm").to_str().unwrap(),
            "--checkpoint-dir",
            dir.join("checkpoints").to_str().unwrap(),
            "--run-name",
            "web",
        ],
    );
    let stdout = String::from_utf8_lossy(&train.stdout);
    let stderr = String::from_utf8_lossy(&train.stderr);
    assert!(train.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{pages} files")) || stderr.contains(&format!("{pages} files")),
        "{stdout}\n{stderr}"
    );
    assert!(dir.join("web.cllm").is_file());
}

/// The app's Crawl section, driven headlessly with egui_kittest against the
/// test server: typed URL, depth and delay, Start; the crawl runs on its
/// own thread while frames go on; kept pages join the file list checked,
/// skipped URLs are listed with their reasons.
#[test]
fn the_crawl_panel_adds_pages_to_the_file_list() {
    use cllm_app::WorkbenchApp;
    use cllm_app::settings::Settings;
    use eframe::egui;
    use egui::accesskit::Role;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use std::time::Instant;

    let f = fixture();
    let data_dir = f.dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let settings = Settings {
        data_dir: data_dir.display().to_string(),
        ..Settings::default()
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(
            |ui, app: &mut WorkbenchApp| app.show(ui),
            WorkbenchApp::new_for_test(settings),
        );
    let step_until =
        |h: &mut Harness<'_, WorkbenchApp>, what: &str, done: &dyn Fn(&WorkbenchApp) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done(h.state()) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                h.step();
                std::thread::yield_now();
            }
        };
    step_until(&mut h, "the scan", &|a| !a.data.is_scanning());
    h.get_by_label("Crawl a website").click();
    h.run();
    h.get_by_role_and_label(Role::TextInput, "URL").focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "URL")
        .type_text(&f.main.url("/docs/"));
    h.run_steps(1);
    h.get_by_label("Depth").set_value_accesskit(1.0);
    h.get_by_label("Delay (s)").set_value_accesskit(0.0);
    h.run();
    assert_eq!(h.state().data.crawl.url, f.main.url("/docs/"));
    assert_eq!(h.state().data.crawl.depth, 1);
    h.get_by_label("Start crawl").click();
    h.step();
    assert!(
        h.state().data.crawl.is_crawling(),
        "{:?}",
        h.state().data.crawl.message
    );
    step_until(&mut h, "the crawl", &|a| !a.data.crawl.is_crawling());
    h.run();

    let app = h.state();
    let message = app.data.crawl.message.clone().unwrap();
    assert!(message.0.starts_with("Crawl done: 3 kept"), "{message:?}");
    let out = data_dir
        .join("crawl")
        .join(format!("127.0.0.1_{}", f.main.addr.port()));
    for file in ["docs/index.md", "docs/guide/index.md", "index.md"] {
        let path = out.join(file);
        let row = app
            .data
            .rows
            .iter()
            .find(|r| r.file.path == path)
            .unwrap_or_else(|| panic!("{file} not in the list"));
        assert!(row.checked, "{file}");
        assert!(app.data.sources.contains_key(&path), "{file}");
    }
    assert_eq!(
        app.data.sources[&out.join("docs/index.md")],
        f.main.url("/docs/")
    );
    assert!(app.run_config().is_ok(), "{:?}", app.run_config().err());
    h.get_by_label_contains("Selected: 3 files");
    h.get_by_label_contains("docs/guide/index.md");
    h.get_by_label_contains("Skipped URLs (").click();
    h.run();
    for reason in [
        "skipped: too deep",
        "skipped: not http",
        "skipped: out of scope",
    ] {
        assert!(
            h.query_all_by_label_contains(reason).next().is_some(),
            "no {reason:?} in the skipped list"
        );
    }
}

/// Ctrl-C (SIGINT) in `cllm crawl`: it stops after the current request,
/// saves, says how to continue and exits 130; the same command continues
/// and nothing is requested twice.
#[test]
fn ctrl_c_stops_the_command_and_the_same_command_continues() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let f = fixture();
    let out = f.out();
    let args = [
        "crawl",
        &f.main.url("/"),
        "--json",
        "--delay",
        "0.1",
        "--timeout",
        "0.3",
        "--max-per-pattern",
        "3",
        "--max-page-bytes",
        "100K",
        "--output",
        out.to_str().unwrap(),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_cllm"))
        .current_dir(f.dir.path())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut kept = 0;
    while kept < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("three pages kept in time");
        if line.contains("\"event\":\"logged\"") && line.contains("\"outcome\":\"kept\"") {
            kept += 1;
        }
    }
    // SAFETY: kill(2) with the pid of a child this test started.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("run the same command to continue"),
        "{stderr}"
    );
    let last: Vec<String> = rx.try_iter().collect();
    let finished = last.last().expect("a finished event");
    assert!(finished.contains("\"stopped\":true"), "{finished}");
    let before = f.main.requests().len();

    let again = cllm(f.dir.path(), &args);
    assert!(again.status.success(), "{again:?}");
    let text = String::from_utf8(again.stdout).unwrap();
    assert!(
        text.lines().next().unwrap().contains("\"resumed\":true"),
        "{text}"
    );
    assert!(f.main.requests().len() > before);
    for (path, n) in f.main.counts() {
        assert_eq!(n, 1, "{path} requested {n} times across the two runs");
    }
}

/// Stopped between the hops of a redirect, the crawl continues by
/// following the redirect again from its start (the page is not lost).
#[test]
fn a_crawl_stopped_inside_a_redirect_follows_it_again() {
    let server = Server::start(Arc::new(|req: &Request| match req.target.as_str() {
        "/" => Response::html("<p>Start page.</p><a href=\"/r\">r</a>"),
        "/r" => Response::redirect("/target"),
        "/target" => Response::html("<p>Where the redirect leads.</p>"),
        _ => Response::not_found(),
    }));
    let dir = tempfile::tempdir().unwrap();
    let opts = CrawlOptions {
        seeds: vec![server.url("/")],
        output: dir.path().to_path_buf(),
        delay: Duration::ZERO,
        timeout: Duration::from_secs(5),
        ..CrawlOptions::default()
    };
    let stop = AtomicBool::new(false);
    let first = run(opts.clone(), &stop, &mut |e| {
        if let CrawlEvent::Fetching { url } = &e
            && url.ends_with("/r")
        {
            stop.store(true, Ordering::SeqCst);
        }
    })
    .unwrap();
    assert!(first.stopped, "{first:?}");
    assert_eq!(server.count("/r"), 1);
    assert_eq!(server.count("/target"), 0, "stopped before the second hop");

    let (second, _) = crawl(opts);
    assert!(!second.stopped, "{second:?}");
    let log = read_log(dir.path()).unwrap();
    let r = entry(&log, &server.url("/r"));
    assert_eq!(r.outcome, Outcome::Kept, "{r:?}");
    assert_eq!(r.final_url.as_deref(), Some(server.url("/target").as_str()));
    assert_eq!(server.count("/target"), 1);
}

/// A server that answers 429 Too Many Requests with Retry-After gets the
/// pause it asks for before the next request.
#[test]
fn retry_after_pauses_the_next_request() {
    let server = Server::start(Arc::new(|req: &Request| match req.target.as_str() {
        "/" => {
            Response::html("<p>Start.</p><a href=\"/busy\">busy</a><a href=\"/after\">after</a>")
        }
        "/busy" => Response::new(429, "text/plain", "slow down").with_header("Retry-After", "1"),
        "/after" => Response::html("<p>After the pause.</p>"),
        _ => Response::not_found(),
    }));
    let dir = tempfile::tempdir().unwrap();
    let (summary, _) = crawl(CrawlOptions {
        seeds: vec![server.url("/")],
        output: dir.path().to_path_buf(),
        delay: Duration::ZERO,
        timeout: Duration::from_secs(5),
        ..CrawlOptions::default()
    });
    assert_eq!(summary.totals.kept, 2, "{summary:?}");
    let log = read_log(dir.path()).unwrap();
    assert_eq!(entry(&log, &server.url("/busy")).status, Some(429));
    let times: HashMap<String, std::time::Instant> = server.requests().into_iter().collect();
    let gap = times["/after"].duration_since(times["/busy"]);
    assert!(
        gap >= Duration::from_millis(950),
        "only {gap:?} after the 429"
    );
}
