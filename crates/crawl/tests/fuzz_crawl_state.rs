//! Damaged crawl state files (`crawl.state`) and crawl logs
//! (`crawl.jsonl`). A state is made by crawling a small site on loopback
//! (stopped mid-round, and finished), then damaged (bytes changed, cut,
//! fields edited, other files in its place); a crawl is started on each
//! folder as `cllm crawl` would continue it. Every state is refused with a
//! message naming the file, or crawled on without a panic and without
//! writing outside the output folder. Seeded (`fuzz_support`).

#[path = "../../train/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use cllm_crawl::frontier::state::{CrawlState, STATE_FILE};
use cllm_crawl::log::{LOG_FILE, read_log};
use cllm_crawl::{CrawlEvent, CrawlOptions};
use fuzz_support::{FuzzRng, Tally, mutate_json};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SEED: u64 = 0xc4a5_7a7e;

/// The site: three pages with links and ETags (a rerun gets 304s), a page
/// robots.txt disallows, and a link out of scope.
fn answer(target: &str, if_none_match: Option<&str>) -> (u16, &'static str, String) {
    let page = |title: &str, links: &str| {
        format!(
            "<html><body><main><h1>{title}</h1><p>About {title}, at some length so that it \
             counts as text.</p><pre><code>int {title}(void) {{ return 1; }}</code></pre>\
             {links}</main></body></html>"
        )
    };
    let etag = format!("\"{}\"", target.len());
    if if_none_match == Some(etag.as_str()) {
        return (304, "text/html", String::new());
    }
    match target {
        "/robots.txt" => (
            200,
            "text/plain",
            "User-agent: *\nDisallow: /private\n".into(),
        ),
        "/" => (
            200,
            "text/html",
            page(
                "home",
                "<a href=\"/a.html\">a</a> <a href=\"b.html#x\">b</a> \
                 <a href=\"http://elsewhere.test/\">out</a>",
            ),
        ),
        "/a.html" => (
            200,
            "text/html",
            page(
                "alpha",
                "<a href=\"/b.html\">b</a> <a href=\"/private/x\">p</a>",
            ),
        ),
        "/b.html" => (200, "text/html", page("beta", "<a href=\"/?page=2\">2</a>")),
        _ => (404, "text/plain", "not found".into()),
    }
}

/// Serves [`answer`] on 127.0.0.1 until the process ends; its address.
fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || respond(stream));
        }
    });
    address
}

fn respond(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut etag = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("if-none-match")
        {
            etag = Some(value.trim().to_string());
        }
    }
    let target = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, kind, body) = answer(&target, etag.as_deref());
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nETag: \"{}\"\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        target.len(),
        body.len()
    );
}

fn options(site: &str, output: &Path) -> CrawlOptions {
    CrawlOptions {
        seeds: vec![site.to_string()],
        output: output.to_path_buf(),
        max_pages: 4,
        delay: Duration::ZERO,
        timeout: Duration::from_secs(5),
        ..CrawlOptions::default()
    }
}

/// A state file of the site: crawled whole, or stopped after one page.
fn state_text(site: &str, stopped: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    cllm_crawl::run(options(site, dir.path()), &stop, &mut |e| {
        if stopped && matches!(e, CrawlEvent::Logged { path: Some(_), .. }) {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
    let state = CrawlState::load(dir.path()).unwrap().unwrap();
    assert_eq!(state.finished, !stopped, "{text}");
    text
}

/// What `cllm crawl` does in a folder holding `state`: loads it (a refusal
/// must name the file), then crawls on. Nothing may be written outside the
/// output folder.
fn crawl_on(root: &Path, site: &str, state: &[u8]) -> Result<(), String> {
    let out = root.join("out");
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join(STATE_FILE), state).unwrap();
    CrawlState::load(&out).map_err(|e| e.to_string())?;
    let stop = AtomicBool::new(false);
    let _ = cllm_crawl::run(options(site, &out), &stop, &mut |_| {});
    let outside: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "out")
        .collect();
    assert!(
        outside.is_empty(),
        "written outside the output: {outside:?}"
    );
    Ok(())
}

#[test]
fn damaged_crawl_states_are_refused_or_crawled_on() {
    let site = serve();
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut rng = FuzzRng::new(SEED);
    let mut tally = Tally::new(STATE_FILE);
    for (how, text) in [
        ("stopped", state_text(&site, true)),
        ("finished", state_text(&site, false)),
    ] {
        crawl_on(root, &site, text.as_bytes()).expect("the undamaged state is crawled on");
        let bytes = text.as_bytes();
        for case in 0..400 {
            let mut damaged = bytes.to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.index(damaged.len());
                damaged[at] = if rng.below(2) == 0 {
                    rng.byte()
                } else {
                    let set = b"{}[]\":,0123456789-.ae/";
                    set[rng.index(set.len())]
                };
            }
            let kind = format!("{how}: bytes changed");
            tally.refused_or_used(&kind, case, || crawl_on(root, &site, &damaged));
        }
        for case in 0..300 {
            let cut = &bytes[..rng.index(bytes.len())];
            tally.refused(&format!("{how}: truncated"), case, || {
                crawl_on(root, &site, cut)
            });
        }
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        for case in 0..400 {
            let mut edited = json.clone();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut edited, &mut rng);
            }
            let damaged = edited.to_string();
            let kind = format!("{how}: fields edited");
            tally.refused_or_used(&kind, case, || crawl_on(root, &site, damaged.as_bytes()));
        }
    }
    // Other things where the state should be.
    let others: [&[u8]; 6] = [
        b"",
        b"null",
        b"[]",
        b"\xff\xfe\x00binary",
        b"{}",
        b"{\"version\":2}",
    ];
    for (case, other) in others.iter().enumerate() {
        tally.refused("another file", case as u64, || crawl_on(root, &site, other));
    }
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join(STATE_FILE)).unwrap();
    tally.refused("a folder", 0, || {
        CrawlState::load(folder.path())
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    tally.finish(2_000);
}

/// The crawl log, read back as tools read it: damaged lines are refused
/// with the file and the line's number.
#[test]
fn damaged_crawl_logs_are_refused_with_the_line() {
    let site = serve();
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    cllm_crawl::run(options(&site, dir.path()), &stop, &mut |_| {}).unwrap();
    let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    assert!(read_log(dir.path()).unwrap().len() >= 4);
    let mut rng = FuzzRng::new(SEED + 1);
    let mut tally = Tally::new(LOG_FILE);
    let scratch = tempfile::tempdir().unwrap();
    let read = |damaged: &[u8]| {
        std::fs::write(scratch.path().join(LOG_FILE), damaged).unwrap();
        read_log(scratch.path())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for case in 0..600 {
        let mut damaged = text.as_bytes().to_vec();
        let at = rng.index(damaged.len());
        damaged[at] = rng.byte();
        tally.refused_or_used("bytes changed", case, || read(&damaged));
    }
    for case in 0..300 {
        let mut lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let i = rng.index(lines.len());
        mutate_json(&mut lines[i], &mut rng);
        let damaged: String = lines.iter().map(|l| format!("{l}\n")).collect();
        tally.refused_or_used("fields edited", case, || read(damaged.as_bytes()));
    }
    for case in 0..100 {
        // Lines run together, as when a write was cut short.
        let mut damaged = text.clone().into_bytes();
        let newlines: Vec<usize> = (0..damaged.len())
            .filter(|&i| damaged[i] == b'\n')
            .collect();
        damaged.remove(newlines[rng.index(newlines.len())]);
        tally.refused_or_used("lines run together", case, || read(&damaged));
    }
    tally.finish(1_000);
}
