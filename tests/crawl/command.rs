//! `cllm crawl`: its JSON lines and refusals, Ctrl-C and continuing, and a
//! `cllm train` run on what was crawled.

use super::*;

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

/// A crawl whose pages all come out empty fails, saying so and why, in
/// the terminal and in `--json`; one where most pages do warns as it goes
/// and fails too.
#[test]
fn a_crawl_of_empty_pages_fails_and_says_why() {
    // Pages of chrome only: a menu, a script, a button.
    let chrome = |links: &str| {
        Response::html(&format!(
            "<!doctype html><html><body><nav>{links}</nav><script>render()</script>\
             <button>Menu</button></body></html>"
        ))
    };
    let server = Server::start(Arc::new(move |req: &Request| match req.target.as_str() {
        "/bad/" => chrome("<a href=\"/bad/two.html\">Two</a>"),
        "/bad/two.html" => chrome(""),
        "/mostly/" => Response::html(&format!(
            "<main><h1>Home</h1><p>The only page with text.</p>{}</main>",
            (1..=6)
                .map(|i| format!("<a href=\"e{i}.html\">Page {i}</a>"))
                .collect::<String>()
        )),
        t if t.starts_with("/mostly/e") => chrome(""),
        _ => Response::not_found(),
    }));
    let dir = tempfile::tempdir().unwrap();
    let crawl = |seed: &str, out: &str, json: bool| {
        let out = dir.path().join(out);
        let seed = server.url(seed);
        let mut args = vec![
            "crawl",
            &seed,
            "--delay",
            "0",
            "--scope",
            "prefix",
            "--output",
            out.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        cllm(dir.path(), &args)
    };

    let bad = crawl("/bad/", "bad", false);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing kept: 2 pages fetched; skipped: 2 empty"),
        "{stderr}"
    );
    // The seed's skip is said with where no text was found.
    assert!(stdout.contains("empty (no text in body)"), "{stdout}");
    assert!(stdout.contains("crawl failed: 0 kept"), "{stdout}");

    let json = crawl("/bad/", "bad-json", true);
    assert_eq!(json.status.code(), Some(1), "{json:?}");
    let stdout = String::from_utf8(json.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["summary"]["totals"]["empty"], 2, "{last}");
    assert_eq!(last["summary"]["reasons"]["empty"], 2, "{last}");
    let problem = last["summary"]["problem"].as_str().unwrap_or_default();
    assert!(problem.starts_with("nothing kept"), "{last}");

    let mostly = crawl("/mostly/", "mostly", false);
    let stdout = String::from_utf8_lossy(&mostly.stdout);
    let stderr = String::from_utf8_lossy(&mostly.stderr);
    assert_eq!(mostly.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("warning: 4 of 5 pages fetched so far came out empty"),
        "{stdout}"
    );
    assert!(
        stderr.contains("most pages came out empty: 6 of 7 fetched"),
        "{stderr}"
    );
    assert!(stdout.contains("1 kept"), "{stdout}");
}
