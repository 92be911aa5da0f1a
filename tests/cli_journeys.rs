//! Every command of the README's table, run as a person runs it: the built
//! `cllm` in a pseudo-terminal (its screen read through a terminal
//! emulator) and again with its output piped, on tiny data written to a
//! temporary folder that is also each command's working directory. The
//! assertions are about what a person sees: exit status, key phrases, the
//! files the given paths name.

mod cli_support;

use cli_support::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

/// A tiny model trained (piped) in `dir` on a small source tree.
fn trained_model(dir: &Path, name: &str, steps: u64) -> std::path::PathBuf {
    let src = write_sources(dir);
    let args = tiny_train_args(dir, &src, name, steps);
    let out = piped(dir, &strs(&args), SHORT);
    assert!(out.success(), "training the test model failed: {out:?}");
    let model = dir.join(format!("{name}.cllm"));
    assert!(model.is_file(), "no model at {}: {out:?}", model.display());
    model
}

fn step_of(info: &serde_json::Value) -> u64 {
    info["state"]["step"]
        .as_u64()
        .unwrap_or_else(|| panic!("no state.step in {info}"))
}

/// The bar's line, as the template draws it: "... 12/300 steps  4% | ...".
fn shows_progress_bar(screen: &str) -> bool {
    screen
        .lines()
        .any(|l| l.contains(" steps ") && l.contains('%') && l.contains(" | "))
}

#[test]
fn train_in_a_terminal_draws_the_bar_then_the_summary_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    let args = tiny_train_args(dir, &src, "first", 300);
    let mut term = Terminal::start(dir, &strs(&args));
    // Live: the bar is drawn while the run goes on.
    term.wait_for("the progress bar", SHORT, shows_progress_bar);
    let end = term.wait_exit(SHORT);
    assert!(end.success(), "train failed:\n{}", end.screen);
    for phrase in ["done: 300 steps", "tokens/s", "first.cllm"] {
        assert!(
            end.screen.contains(phrase),
            "'{phrase}' missing from the final screen:\n{}",
            end.screen
        );
    }
    assert!(
        !shows_progress_bar(&end.screen),
        "the bar is left on the screen after the summary:\n{}",
        end.screen
    );
    let model = dir.join("first.cllm");
    assert_eq!(step_of(&assert_verifies(dir, &model)), 300);

    // Resume from the final model and go on to step 340.
    let mut resume = tiny_train_args(dir, &src, "first", 340);
    resume.extend(["--resume".to_string(), model.to_str().unwrap().to_string()]);
    let end = in_terminal(dir, &strs(&resume), SHORT);
    assert!(end.success(), "train --resume failed:\n{}", end.screen);
    assert!(end.screen.contains("done: 340 steps"), "{}", end.screen);
    assert_eq!(step_of(&assert_verifies(dir, &model)), 340);
}

#[test]
fn train_piped_prints_plain_lines_and_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    let args = tiny_train_args(dir, &src, "plain", 30);
    let out = piped(dir, &strs(&args), SHORT);
    assert!(out.success(), "{out:?}");
    assert!(
        !out.stdout.contains('\u{1b}'),
        "escape codes in piped output: {out:?}"
    );
    for phrase in [
        "step 30/30",
        "eval @ step 10",
        "done: 30 steps",
        "plain.cllm",
    ] {
        assert!(out.stdout.contains(phrase), "'{phrase}' missing: {out:?}");
    }
    assert_verifies(dir, &dir.join("plain.cllm"));

    // The same run as JSON lines: every line parses, the last is Finished.
    let mut json = tiny_train_args(dir, &src, "json", 5);
    json.push("--json".into());
    let out = piped(dir, &strs(&json), SHORT);
    assert!(out.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.last().unwrap().get("Finished").is_some(), "{out:?}");
}

#[test]
fn ctrl_c_in_a_terminal_stops_after_the_step_saves_and_says_how_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    // Far more steps than the test waits for: only Ctrl-C ends it in time.
    let args = tiny_train_args(dir, &src, "stopped", 10_000_000);
    let mut term = Terminal::start(dir, &strs(&args));
    term.wait_for("the first steps", SHORT, shows_progress_bar);
    term.type_keys(b"\x03");
    term.wait_for_text("stopping after the current step", SHORT);
    let end = term.wait_exit(SHORT);
    assert_eq!(
        (end.code, end.signal.as_deref()),
        (130, None),
        "exit status after Ctrl-C:\n{}",
        end.screen
    );
    let model = dir.join("stopped.cllm");
    for phrase in ["stopped by Ctrl-C", "final checkpoint", "--resume"] {
        assert!(end.screen.contains(phrase), "'{phrase}':\n{}", end.screen);
    }
    let info = assert_verifies(dir, &model);
    let step = step_of(&info);
    assert!(step > 0 && step < 10_000_000, "saved at step {step}");
    assert!(
        end.screen.contains(&format!("at step {step}")),
        "the message names another step than the file's {step}:\n{}",
        end.screen
    );
}

#[test]
fn ctrl_c_with_output_piped_saves_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    let args = tiny_train_args(dir, &src, "piped_stop", 10_000_000);
    let mut run = Piped::start(dir, &strs(&args));
    run.wait_for_stdout("the first step line", SHORT, |s| s.contains("step 1/"));
    run.interrupt();
    let out = run.wait_exit(SHORT);
    assert_eq!(out.code, Some(130), "{out:?}");
    let model = dir.join("piped_stop.cllm");
    assert!(
        out.stderr.contains("stopping after the current step"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("--resume {}", model.to_str().unwrap())),
        "{out:?}"
    );
    assert_verifies(dir, &model);
    // The printed command resumes the run.
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("resume with: "))
        .unwrap_or_else(|| panic!("no resume command: {out:?}"));
    // Resuming needs no flag repeated: the run's settings come from the
    // checkpoint.
    assert!(
        line.ends_with(&format!("train --resume {}", model.to_str().unwrap())),
        "{line}"
    );
    // Run it, giving only a new stopping point three steps on.
    let step = step_of(&assert_verifies(dir, &model));
    let again = piped(
        dir,
        &[
            "train",
            "--resume",
            model.to_str().unwrap(),
            "--max-steps",
            &(step + 3).to_string(),
            "--output",
            "resumed.cllm",
        ],
        SHORT,
    );
    assert!(again.success(), "{again:?}");
    assert_eq!(
        step_of(&assert_verifies(dir, &dir.join("resumed.cllm"))),
        step + 3
    );
}

/// SIGTERM (`kill`, or a scheduler ending a job) stops like Ctrl-C: after
/// the current step, with the final checkpoint saved, exit 143.
#[test]
fn sigterm_stops_after_the_step_and_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    let args = tiny_train_args(dir, &src, "terminated", 10_000_000);
    let mut run = Piped::start(dir, &strs(&args));
    run.wait_for_stdout("the first step line", SHORT, |s| s.contains("step 1/"));
    run.terminate();
    let out = run.wait_exit(SHORT);
    assert_eq!(out.code, Some(143), "{out:?}");
    assert!(
        out.stderr
            .contains("SIGTERM: stopping after the current step"),
        "{out:?}"
    );
    assert!(out.stderr.contains("stopped by SIGTERM at step"), "{out:?}");
    let model = dir.join("terminated.cllm");
    let step = step_of(&assert_verifies(dir, &model));
    assert!(step > 0 && step < 10_000_000, "saved at step {step}");
}

#[test]
fn prepare_and_tokenize_in_a_terminal_and_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = write_sources(dir);
    let src = src.to_str().unwrap();
    for (how, corpus, tokens) in [
        ("terminal", "corpus_t/code.txt", "tok_t"),
        ("piped", "corpus_p/code.txt", "tok_p"),
    ] {
        let prepare = [
            "prepare", "--input", src, "--ext", "c", "h", "--output", corpus,
        ];
        let tokenize = [
            "tokenize",
            "--input",
            corpus,
            "--output",
            tokens,
            "--vocab-size",
            "300",
        ];
        let (code, shown) = run_both_ways(how, dir, &prepare);
        assert_eq!(code, 0, "{how} prepare:\n{shown}");
        assert!(shown.contains("kept 3 files"), "{how} prepare:\n{shown}");
        let text = std::fs::read_to_string(dir.join(corpus)).unwrap();
        for name in ["main.c", "util/math.h", "util/prime.c", "nth_prime"] {
            assert!(text.contains(name), "{how}: {name} not in the corpus");
        }
        assert!(!text.contains("notes.bin"), "{how}: kept a binary file");

        let (code, shown) = run_both_ways(how, dir, &tokenize);
        assert_eq!(code, 0, "{how} tokenize:\n{shown}");
        let json = dir.join(tokens).join("tokenizer.json");
        let tok = std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("{how}: {}: {e}\n{shown}", json.display()));
        assert!(tok.contains("\"model\""), "{how}: {tok:.200}");
    }
}

/// Runs a command in a terminal or piped; returns its exit status and
/// everything it showed (screen, or stdout then stderr).
fn run_both_ways(how: &str, dir: &Path, args: &[&str]) -> (u32, String) {
    if how == "terminal" {
        let end = in_terminal(dir, args, SHORT);
        (end.code, end.screen)
    } else {
        let out = piped(dir, args, SHORT);
        let code = out.code.map(|c| c as u32).unwrap_or(u32::MAX);
        (code, format!("{}{}", out.stdout, out.stderr))
    }
}

#[test]
fn model_commands_take_model_in_a_terminal_and_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = trained_model(dir, "m", 20);
    let m = model.to_str().unwrap();
    let corpus = dir.join("src/main.c");
    let corpus = corpus.to_str().unwrap();
    for how in ["terminal", "piped"] {
        // inspect, the documented form and the old positional one.
        for args in [&["inspect", "--model", m][..], &["inspect", m][..]] {
            let (code, shown) = run_both_ways(how, dir, args);
            assert_eq!(code, 0, "{how} {args:?}:\n{shown}");
            assert!(
                shown.contains("checksum") && shown.contains("OK"),
                "{shown}"
            );
        }

        // export: by default beside the model, in <stem>-hf/.
        let hf = dir.join("m-hf");
        let _ = std::fs::remove_dir_all(&hf);
        let (code, shown) = run_both_ways(how, dir, &["export", "--model", m]);
        assert_eq!(code, 0, "{how} export:\n{shown}");
        for f in ["model.safetensors", "config.json", "tokenizer.json"] {
            assert!(hf.join(f).is_file(), "{how}: no {f} in {}", hf.display());
        }
        let old = dir.join(format!("old-{how}"));
        let (code, shown) =
            run_both_ways(how, dir, &["export", m, "--output", old.to_str().unwrap()]);
        assert_eq!(code, 0, "{how} export (old form):\n{shown}");
        assert!(old.join("config.json").is_file(), "{how}:\n{shown}");

        // eval: on the model's own validation split, and on other data.
        for args in [
            &["eval", "--model", m, "--threads", "0"][..],
            &["eval", "--model", m, "--data", corpus, "--threads", "1"][..],
        ] {
            let (code, shown) = run_both_ways(how, dir, args);
            assert_eq!(code, 0, "{how} {args:?}:\n{shown}");
            assert!(shown.contains("perplexity"), "{how} {args:?}:\n{shown}");
        }

        // generate: the prompt, a completion, then the speed.
        let (code, shown) = run_both_ways(
            how,
            dir,
            &[
                "generate",
                "--model",
                m,
                "--prompt",
                "int main() {",
                "--max-tokens",
                "40",
            ],
        );
        assert_eq!(code, 0, "{how} generate:\n{shown}");
        assert!(shown.contains("int main() {"), "{how}:\n{shown}");
        assert!(
            shown.contains("40 tokens") && shown.contains("tokens/s"),
            "{shown}"
        );

        // eval-gen: samples by default beside the model.
        let samples = dir.join("m-eval-gen.jsonl");
        let _ = std::fs::remove_file(&samples);
        let (code, shown) = run_both_ways(
            how,
            dir,
            &[
                "eval-gen",
                "--model",
                m,
                "--samples",
                "1",
                "--max-tokens",
                "8",
            ],
        );
        assert_eq!(code, 0, "{how} eval-gen:\n{shown}");
        assert!(shown.contains("syntax accuracy"), "{how}:\n{shown}");
        // Prompts from its own validation split, whose functions' openings
        // are all longer than half this model's context of 16 bytes.
        assert!(
            shown.contains("C functions in its validation split has an opening short enough"),
            "{how}:\n{shown}"
        );
        let lines = std::fs::read_to_string(&samples)
            .unwrap_or_else(|e| panic!("{how}: {}: {e}\n{shown}", samples.display()));
        assert_eq!(
            lines.lines().count(),
            4,
            "{how}: one sample per seed prompt, no function opening fits"
        );
    }

    // A damaged model is refused by every command, which names the file.
    let bad = dir.join("bad.cllm");
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&bad, bytes).unwrap();
    let b = bad.to_str().unwrap();
    for args in [
        &["inspect", "--model", b][..],
        &["export", "--model", b][..],
        &["eval", "--model", b][..],
        &["generate", "--model", b, "--prompt", "x"][..],
        &["eval-gen", "--model", b][..],
    ] {
        let out = piped(dir, args, SHORT);
        assert!(!out.success(), "{args:?} accepted a damaged file: {out:?}");
        assert!(out.stderr.contains("bad.cllm"), "{args:?}: {out:?}");
    }
    assert!(!dir.join("bad-hf").exists(), "export wrote from a bad file");

    // Every model command documents --model FILE.
    for cmd in ["inspect", "export", "eval", "generate", "eval-gen"] {
        let out = piped(dir, &[cmd, "--help"], SHORT);
        assert!(out.success(), "{cmd} --help: {out:?}");
        assert!(
            out.stdout.contains("--model <FILE>"),
            "{cmd}: {}",
            out.stdout
        );
    }
}

#[test]
fn generate_streams_text_before_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = trained_model(dir, "g", 10);
    let m = model.to_str().unwrap();
    let prompt = "int main() {";
    let long = [
        "generate",
        "--model",
        m,
        "--prompt",
        prompt,
        "--max-tokens",
        "1000000",
    ];

    // Piped: read the first bytes, then stop reading. The rest (about a
    // megabyte over the byte tokenizer) cannot fit in the pipe, so the
    // process is certainly still running when those bytes have arrived.
    let mut child = Command::new(cllm_bin())
        .args(long)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < prompt.len() + 16 {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        tx.send(got).unwrap();
        stdout // kept open, unread, until the test is done
    });
    let first = rx
        .recv_timeout(SHORT)
        .expect("no output from generate within the deadline");
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with(prompt), "{first:?}");
    assert!(first.len() > prompt.len(), "no completion yet: {first:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "generate had ended: its text did not stream"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(reader.join().unwrap());

    // In a terminal: the completion grows on the screen while it runs;
    // Ctrl-C ends it.
    let mut term = Terminal::start(dir, &long);
    term.wait_for("a completion after the prompt", SHORT, |s| {
        s.trim_end().len() > prompt.len() + 100
    });
    assert!(term.running(), "generate ended before 1,000,000 tokens");
    term.type_keys(b"\x03");
    let end = term.wait_exit(SHORT);
    assert!(!end.success(), "Ctrl-C did not end generate");
}

/// Whether this CPU multiply-adds in vectors (every x86-64 CI machine does).
fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn bench_runs_one_short_step_in_a_terminal_and_piped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cores = std::thread::available_parallelism().unwrap().get();
    // One short step of the tiny preset on `threads` threads.
    let bench = |threads| {
        [
            "bench",
            "--preset",
            "tiny",
            "--batch",
            "2",
            "--seq",
            "16",
            "--steps",
            "1",
            "--threads",
            threads,
        ]
    };
    for (how, threads) in [("terminal", "1"), ("piped", "0")] {
        let (code, shown) = run_both_ways(how, dir, &bench(threads));
        assert_eq!(code, 0, "{how} bench:\n{shown}");
        for phrase in ["tokens/s", "MFU", "thread scaling", "every op at its floor"] {
            assert!(shown.contains(phrase), "{how}: '{phrase}':\n{shown}");
        }
        // The machine's ceiling, where the kernels multiply-add in vectors.
        if has_fma() {
            for phrase in ["from registers alone", "about the most this machine allows"] {
                assert!(shown.contains(phrase), "{how}: '{phrase}':\n{shown}");
            }
        }
        let want = if threads == "0" { cores } else { 1 };
        let rows: Vec<&str> = shown
            .lines()
            .skip_while(|l| !l.contains("thread scaling"))
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            rows.len(),
            1,
            "{how}: one row for --threads {threads}:\n{shown}"
        );
        assert_eq!(
            rows[0].split_whitespace().next(),
            Some(want.to_string().as_str()),
            "{how}: --threads {threads} should time {want} threads:\n{shown}"
        );
    }
    // The JSON line of the one-thread step carries the step at every op's
    // floor: 2 x 16 tokens in that time.
    let out = piped(dir, &[&bench("1")[..], &["--json"]].concat(), SHORT);
    assert!(out.success(), "{out:?}");
    let step: serde_json::Value = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["measurement"] == "train_step")
        .unwrap_or_else(|| panic!("no train_step line: {out:?}"));
    let secs = step["limits"]["floor_step_secs"].as_f64().unwrap();
    let rate = step["limits"]["floor_tokens_per_sec"].as_f64().unwrap();
    assert!(secs > 0.0 && (secs * rate - 32.0).abs() < 1e-6, "{step}");
    // And the ceiling: the same floors at the instructions' own peaks.
    let ceiling = &step["limits"]["ceiling"];
    if has_fma() {
        let secs = ceiling["step_secs"].as_f64().unwrap();
        let rate = ceiling["tokens_per_sec"].as_f64().unwrap();
        assert!(secs > 0.0 && (secs * rate - 32.0).abs() < 1e-6, "{step}");
        for op in ["products", "f32_ops"] {
            assert!(ceiling[op]["gflops"].as_f64().unwrap() > 0.0, "{step}");
            assert!(ceiling[op]["instruction"].is_string(), "{step}");
        }
    } else {
        assert!(ceiling.is_null(), "{step}");
    }
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "bench wrote files"
    );
}

#[test]
fn cllm_without_a_display_points_to_cllm_train() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let no_display = ["DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET"];
    let mut term = Terminal::start_env(dir, &[], &no_display);
    let end = term.wait_exit(SHORT);
    assert!(!end.success(), "{}", end.screen);
    assert!(end.screen.contains("cllm train"), "{}", end.screen);
    let out = Piped::start_env(dir, &[], &no_display).wait_exit(SHORT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("no display") && out.stderr.contains("cllm train"),
        "{out:?}"
    );
}

/// Short runs of a command whose failure must name the file and the problem.
#[test]
fn errors_name_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = piped(dir, &["inspect", "--model", "missing.cllm"], SHORT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("missing.cllm"), "{out:?}");
    let out = piped(dir, &["inspect"], SHORT);
    assert!(!out.success() && out.stderr.contains("--model"), "{out:?}");
    let out = piped(dir, &["export", "a.cllm", "--model", "b.cllm"], SHORT);
    assert!(!out.success(), "both model forms accepted: {out:?}");
    let out = piped(
        dir,
        &["train", "--data", "nowhere", "--preset", "tiny"],
        SHORT,
    );
    assert!(!out.success() && out.stderr.contains("nowhere"), "{out:?}");
}
