//! The crawler as a library against the test site: scope, robots.txt and
//! delays, what is kept and skipped, resuming, re-crawls, redirects and
//! Retry-After.

use super::*;

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
