//! A built site crawled and checked: served on loopback, crawled with
//! the real crawler from its start page, then every content page must be
//! kept (and nothing else), every code block of the sources must be in
//! the kept text byte for byte (fenced, with its language where the
//! generator marks it), the expected text must be there, and no chrome
//! text the generator put on its pages may be.

use cllm_crawl::log::{Entry, Outcome, Reason, read_log};
use cllm_crawl::{CrawlOptions, run};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::server::StaticServer;
use super::sources::Block;

/// What a generator's site must give.
pub struct Expect<'a> {
    /// Where the crawl starts (a URL path on the site).
    pub start: &'a str,
    /// Every page that must be kept, and the only ones that may be (URL
    /// paths), with the file under the site that was served for it.
    pub kept: &'a [(&'a str, &'a str)],
    /// Pages skipped as the same text as a kept one: (page, kept page).
    pub duplicates: &'a [(&'a str, &'a str)],
    /// The code blocks of the sources.
    pub code: Vec<Block>,
    /// At least this many code blocks (a guard on the source readers).
    pub min_code: usize,
    /// Whether the generator marks a block's language in its HTML.
    pub languages: bool,
    /// Text that must be in the kept pages: headings, list items, table
    /// rows, footnotes.
    pub text: &'a [&'a str],
    /// Chrome text: each is on the served pages, and on no kept one.
    pub chrome: &'a [&'a str],
}

/// A page as the crawler kept it.
struct Kept {
    path: String,
    text: String,
}

/// Serves `root`, crawls it and checks what was kept against `expect`.
pub fn crawl_and_check(root: &Path, expect: &Expect) {
    let server = StaticServer::start(root);
    let out = tempfile::tempdir().unwrap();
    let opts = CrawlOptions {
        seeds: vec![server.url(expect.start)],
        output: out.path().join("crawl"),
        depth: 6,
        max_pages: 300,
        delay: Duration::ZERO,
        timeout: Duration::from_secs(10),
        ..CrawlOptions::default()
    };
    let summary = run(opts.clone(), &AtomicBool::new(false), &mut |_| {}).unwrap();
    assert!(summary.error.is_none(), "{summary:?}");
    assert!(
        summary.limit.is_none(),
        "the crawl stopped at a limit: {summary:?}"
    );

    let prefix = server.url("");
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for e in read_log(&opts.output).unwrap() {
        if let Some(path) = e.url.strip_prefix(&prefix) {
            entries.insert(path.to_string(), e);
        }
    }
    let listing = || {
        entries
            .iter()
            .map(|(p, e)| format!("{p}: {:?} {:?} {:?}", e.outcome, e.reason, e.detail))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let kept: Vec<Kept> = entries
        .iter()
        .filter(|(_, e)| e.outcome == Outcome::Kept)
        .map(|(path, e)| {
            let file = opts
                .output
                .join(e.file.as_deref().expect("a kept page has a file"));
            let text = std::fs::read_to_string(&file).unwrap();
            // The first line names the source.
            let text = text.split_once('\n').map_or("", |(_, t)| t).to_string();
            Kept {
                path: path.clone(),
                text,
            }
        })
        .collect();

    // Every content page kept, and nothing else.
    let mut wanted: Vec<&str> = expect.kept.iter().map(|(p, _)| *p).collect();
    wanted.sort_unstable();
    let got: Vec<&str> = kept.iter().map(|k| k.path.as_str()).collect();
    assert_eq!(got, wanted, "kept pages; the log:\n{}", listing());
    for (page, same_as) in expect.duplicates {
        let e = entries
            .get(*page)
            .unwrap_or_else(|| panic!("{page} was never met; the log:\n{}", listing()));
        assert_eq!(e.reason, Some(Reason::Duplicate), "{page}: {e:?}");
        assert!(
            e.detail
                .as_deref()
                .unwrap_or("")
                .ends_with(&server.url(same_as)),
            "{page} should be the same text as {same_as}: {e:?}"
        );
    }

    let all_text: String = kept
        .iter()
        .map(|k| format!("<<{}>>\n{}\n", k.path, k.text))
        .collect();
    // Every code block, byte for byte.
    assert!(
        expect.code.len() >= expect.min_code,
        "the sources gave {} code blocks, fewer than {}: {:?}",
        expect.code.len(),
        expect.min_code,
        expect.code
    );
    let fenced: Vec<(Option<String>, String)> =
        kept.iter().flat_map(|k| fenced_blocks(&k.text)).collect();
    for block in &expect.code {
        let found = fenced.iter().find(|(_, code)| *code == block.code);
        let Some((lang, _)) = found else {
            panic!(
                "code block not kept exactly:\n{}\n\nthe kept text:\n{all_text}",
                block.code
            );
        };
        if expect.languages && block.lang.is_some() {
            assert_eq!(lang, &block.lang, "the language of:\n{}", block.code);
        }
    }
    for t in expect.text {
        assert!(
            all_text.contains(t),
            "{t:?} is not in the kept text:\n{all_text}"
        );
    }
    // No chrome: each string is on a served page (so that its absence
    // means something), and in no kept text.
    let served: String = expect
        .kept
        .iter()
        .map(|(_, file)| {
            let html = std::fs::read_to_string(root.join(file)).unwrap();
            // The markup and its text, entities decoded ("&para;").
            let text: String = scraper::Html::parse_document(&html)
                .root_element()
                .text()
                .collect();
            html + &text
        })
        .collect();
    for c in expect.chrome {
        assert!(
            served.contains(c),
            "chrome {c:?} is on none of the served pages"
        );
        for k in &kept {
            assert!(
                !k.text.contains(c),
                "chrome {c:?} is in {}:\n{}",
                k.path,
                k.text
            );
        }
    }
}

/// The fenced code blocks of a kept text: (language, code).
fn fenced_blocks(text: &str) -> Vec<(Option<String>, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(fence) = ["~~~~", "```"].into_iter().find(|f| line.starts_with(f)) else {
            continue;
        };
        let lang = Some(line[fence.len()..].to_string()).filter(|l| !l.is_empty());
        let mut code = Vec::new();
        for line in lines.by_ref() {
            if line == fence {
                break;
            }
            code.push(line);
        }
        blocks.push((lang, code.join("\n")));
    }
    blocks
}
