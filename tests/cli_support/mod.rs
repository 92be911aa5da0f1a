//! Runs the built `cllm` the way a person does: inside a pseudo-terminal
//! whose screen is read through a vt100 parser, or with its output piped.
//! Every wait has a deadline and says what it waited for, with the screen
//! (or the output) so far, when it gives up.

#![allow(dead_code)]

use portable_pty::{Child as PtyChild, CommandBuilder, MasterPty, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The terminal's size (rows, columns).
pub const ROWS: u16 = 50;
pub const COLS: u16 = 150;

/// The slowest a short command may be on a loaded 2-core machine.
pub const SHORT: Duration = Duration::from_secs(60);

pub fn cllm_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cllm")
}

fn nonzero(n: u16) -> std::num::NonZeroU16 {
    std::num::NonZeroU16::new(n).expect("a terminal dimension is not zero")
}

/// What the terminal has shown so far.
struct Screen {
    parser: vt100::Parser,
    /// The screen's text before every carriage return and after every
    /// chunk the program wrote, so that something drawn and then cleared
    /// can still be asserted on.
    history: Vec<String>,
    /// Everything the program wrote, escape sequences included.
    raw: Vec<u8>,
    /// The program's side of the terminal is closed (it has exited).
    closed: bool,
}

type Shared<T> = Arc<(Mutex<T>, Condvar)>;

/// Waits on `shared` until `ready` returns `Some`, or panics at the
/// deadline with `what` and `show(state)`.
fn wait_until<T, R>(
    shared: &Shared<T>,
    timeout: Duration,
    what: &str,
    show: impl Fn(&T) -> String,
    mut ready: impl FnMut(&T) -> Option<R>,
) -> R {
    let deadline = Instant::now() + timeout;
    let (lock, cv) = &**shared;
    let mut state: MutexGuard<T> = lock.lock().unwrap();
    loop {
        if let Some(r) = ready(&state) {
            return r;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("waited {timeout:?} for {what}; so far:\n{}", show(&state));
        }
        state = cv.wait_timeout(state, deadline - now).unwrap().0;
    }
}

/// How a program ended, and what it showed.
#[derive(Debug)]
pub struct Ended {
    /// Exit status (1 when killed by a signal, see `signal`).
    pub code: u32,
    pub signal: Option<String>,
    /// The last screen.
    pub screen: String,
    /// Every screen it showed, oldest first, joined.
    pub all_screens: String,
}

impl Ended {
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }
}

/// `cllm` running in a pseudo-terminal of [`ROWS`] x [`COLS`].
pub struct Terminal {
    what: String,
    child: Box<dyn PtyChild + Send + Sync>,
    writer: Box<dyn Write + Send>,
    screen: Shared<Screen>,
    reader: Option<JoinHandle<()>>,
    _master: Box<dyn MasterPty + Send>,
}

impl Terminal {
    /// Starts `cllm ARGS` in `dir`, in a fresh terminal.
    pub fn start(dir: &Path, args: &[&str]) -> Terminal {
        Terminal::start_env(dir, args, &[])
    }

    /// Same, with these environment variables removed.
    pub fn start_env(dir: &Path, args: &[&str], remove: &[&str]) -> Terminal {
        let what = format!("cllm {}", args.join(" "));
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap_or_else(|e| panic!("{what}: cannot open a pseudo-terminal: {e}"));
        let mut cmd = CommandBuilder::new(cllm_bin());
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("NO_COLOR");
        for var in remove {
            cmd.env_remove(var);
        }
        let child = pair
            .slave
            .spawn_command(cmd)
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        // Only the child holds the terminal's far side now, so reading it
        // ends when the child exits.
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen: Shared<Screen> = Arc::new((
            Mutex::new(Screen {
                parser: vt100::Parser::new(nonzero(ROWS), nonzero(COLS), 0),
                history: Vec::new(),
                raw: Vec::new(),
                closed: false,
            }),
            Condvar::new(),
        ));
        let shared = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => 0,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO: the child has gone and closed its side.
                    Err(_) => 0,
                };
                let (lock, cv) = &*shared;
                let mut s = lock.lock().unwrap();
                if n == 0 {
                    s.closed = true;
                    cv.notify_all();
                    return;
                }
                // A redraw starts with a carriage return: keep the screen as
                // it was before each one, so a bar drawn and cleared within
                // one read is still seen.
                let chunk = &buf[..n];
                let mut start = 0;
                for (i, _) in chunk.iter().enumerate().filter(|(_, b)| **b == b'\r') {
                    if i > start {
                        s.parser.process(&chunk[start..i]);
                        let text = s.parser.screen().contents();
                        s.history.push(text);
                        start = i;
                    }
                }
                s.parser.process(&chunk[start..]);
                s.raw.extend_from_slice(chunk);
                let text = s.parser.screen().contents();
                s.history.push(text);
                cv.notify_all();
            }
        });
        Terminal {
            what,
            child,
            writer,
            screen,
            reader: Some(reader),
            _master: pair.master,
        }
    }

    /// The text on the screen now.
    pub fn screen(&self) -> String {
        self.screen.0.lock().unwrap().parser.screen().contents()
    }

    /// Waits until the screen shows (or has shown, since the program
    /// started: a frame may be drawn and cleared between two looks)
    /// something `seen` accepts; returns that screen.
    pub fn wait_for(&self, what: &str, timeout: Duration, seen: impl Fn(&str) -> bool) -> String {
        let label = format!("{}: {what}", self.what);
        let mut checked = 0;
        wait_until(
            &self.screen,
            timeout,
            &label,
            |s| s.parser.screen().contents(),
            |s| {
                let text = s.parser.screen().contents();
                let earlier = s.history[checked..].iter().find(|h| seen(h)).cloned();
                checked = s.history.len();
                if let Some(shown) = earlier {
                    Some(shown)
                } else if seen(&text) {
                    Some(text)
                } else if s.closed {
                    panic!("{label}: the program ended first; its screen:\n{text}");
                } else {
                    None
                }
            },
        )
    }

    /// Waits until the screen shows `needle`.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for(&format!("'{needle}' on the screen"), timeout, |s| {
            s.contains(needle)
        })
    }

    /// True while the program has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Types `bytes` at the keyboard (`b"\x03"` is Ctrl-C).
    pub fn type_keys(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits for the program to exit; returns its status and screens.
    pub fn wait_exit(&mut self, timeout: Duration) -> Ended {
        let label = format!("{} to exit", self.what);
        wait_until(
            &self.screen,
            timeout,
            &label,
            |s| s.parser.screen().contents(),
            |s| s.closed.then_some(()),
        );
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let s = self.screen.0.lock().unwrap();
        Ended {
            code: status.exit_code(),
            signal: status.signal().map(String::from),
            screen: s.parser.screen().contents(),
            all_screens: s.history.join("\n"),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cllm ARGS` in `dir` in a terminal to the end.
pub fn in_terminal(dir: &Path, args: &[&str], timeout: Duration) -> Ended {
    Terminal::start(dir, args).wait_exit(timeout)
}

/// What a piped run has written so far.
#[derive(Default)]
struct Streams {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    open: usize,
}

/// `cllm` with stdin empty and stdout and stderr piped.
pub struct Piped {
    what: String,
    child: std::process::Child,
    streams: Shared<Streams>,
}

/// How a piped run ended.
#[derive(Debug)]
pub struct Output {
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl Piped {
    pub fn start(dir: &Path, args: &[&str]) -> Piped {
        Piped::start_env(dir, args, &[])
    }

    /// Same, with these environment variables removed.
    pub fn start_env(dir: &Path, args: &[&str], remove: &[&str]) -> Piped {
        let what = format!("cllm {} (piped)", args.join(" "));
        let mut cmd = Command::new(cllm_bin());
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in remove {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        let streams: Shared<Streams> = Arc::new((
            Mutex::new(Streams {
                open: 2,
                ..Streams::default()
            }),
            Condvar::new(),
        ));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (mut pipe, is_out) in [
            (Box::new(out) as Box<dyn Read + Send>, true),
            (Box::new(err) as Box<dyn Read + Send>, false),
        ] {
            let shared = streams.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    let n = pipe.read(&mut buf).unwrap_or(0);
                    let (lock, cv) = &*shared;
                    let mut s = lock.lock().unwrap();
                    if n == 0 {
                        s.open -= 1;
                        cv.notify_all();
                        return;
                    }
                    if is_out {
                        s.stdout.extend_from_slice(&buf[..n]);
                    } else {
                        s.stderr.extend_from_slice(&buf[..n]);
                    }
                    cv.notify_all();
                }
            });
        }
        Piped {
            what,
            child,
            streams,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until stdout so far satisfies `seen`.
    pub fn wait_for_stdout(&self, what: &str, timeout: Duration, seen: impl Fn(&str) -> bool) {
        let label = format!("{}: {what}", self.what);
        wait_until(&self.streams, timeout, &label, show_streams, |s| {
            if seen(&String::from_utf8_lossy(&s.stdout)) {
                Some(())
            } else if s.open == 0 {
                panic!("{label}: the program ended first:\n{}", show_streams(s));
            } else {
                None
            }
        })
    }

    /// Sends SIGINT, what Ctrl-C sends.
    pub fn interrupt(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we started and have not waited for.
        let rc = unsafe { libc::kill(pid, libc::SIGINT) };
        assert_eq!(rc, 0, "{}: cannot send SIGINT", self.what);
    }

    /// Sends SIGTERM, as `kill` or a cluster scheduler does.
    pub fn terminate(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we started and have not waited for.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "{}: cannot send SIGTERM", self.what);
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Output {
        let label = format!("{} to exit", self.what);
        wait_until(&self.streams, timeout, &label, show_streams, |s| {
            (s.open == 0).then_some(())
        });
        let status = self.child.wait().unwrap();
        let s = self.streams.0.lock().unwrap();
        Output {
            code: status.code(),
            stdout: String::from_utf8_lossy(&s.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&s.stderr).into_owned(),
        }
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn show_streams(s: &Streams) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&s.stdout),
        String::from_utf8_lossy(&s.stderr)
    )
}

/// Runs `cllm ARGS` in `dir` with output piped, to the end.
pub fn piped(dir: &Path, args: &[&str], timeout: Duration) -> Output {
    Piped::start(dir, args).wait_exit(timeout)
}

/// A small source tree: a few C files and a header, about 9 KB, the same
/// on every run.
pub fn write_sources(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("util")).unwrap();
    let mut main = String::from("#include <stdio.h>\n#include \"util/math.h\"\n\n");
    for i in 0..40 {
        main.push_str(&format!(
            "int add_{i}(int a, int b) {{\n    return a + b * {i};\n}}\n\n"
        ));
    }
    main.push_str("int main(void) {\n    printf(\"%d\\n\", add_1(2, 3));\n    return 0;\n}\n");
    std::fs::write(src.join("main.c"), main).unwrap();
    let mut header = String::from("#ifndef MATH_H\n#define MATH_H\n");
    for i in 0..40 {
        header.push_str(&format!("int add_{i}(int a, int b);\n"));
    }
    header.push_str("#endif\n");
    std::fs::write(src.join("util/math.h"), header).unwrap();
    let mut prime = String::from("// Calculate the nth prime number\n");
    prime.push_str(
        "int nth_prime(int n) {\n    int count = 0;\n    for (int k = 2;; k++) {\n        \
         int is_prime = 1;\n        for (int d = 2; d * d <= k; d++) {\n            \
         if (k % d == 0) { is_prime = 0; break; }\n        }\n        \
         if (is_prime && ++count == n) return k;\n    }\n}\n",
    );
    std::fs::write(src.join("util/prime.c"), prime).unwrap();
    std::fs::write(src.join("notes.bin"), b"\x00\x01\x02\x03").unwrap();
    src
}

/// `cllm train` flags for a short tiny run on `data` that writes only under
/// `dir`: the final model at `dir/<name>.cllm`, checkpoints in
/// `dir/checkpoints`.
pub fn tiny_train_args(dir: &Path, data: &Path, name: &str, max_steps: u64) -> Vec<String> {
    let p = |x: &Path| x.to_str().unwrap().to_string();
    [
        "train",
        "--data",
        &p(data),
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
        &max_steps.to_string(),
        "--eval-every",
        "10",
        "--eval-batches",
        "2",
        "--output",
        &p(&dir.join(format!("{name}.cllm"))),
        "--checkpoint-dir",
        &p(&dir.join("checkpoints")),
        "--run-name",
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Panics unless `cllm inspect --model FILE --json` passes (checksum
/// included); returns what it says about the file.
pub fn assert_verifies(dir: &Path, model: &Path) -> serde_json::Value {
    let out = piped(
        dir,
        &["inspect", "--model", model.to_str().unwrap(), "--json"],
        SHORT,
    );
    assert!(
        out.success(),
        "{} does not verify: {out:?}",
        model.display()
    );
    let info: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json printed no JSON ({e}): {out:?}"));
    assert_eq!(info["checksum_ok"], true, "{out:?}");
    info
}

/// True when running as root, where permission checks do not bite.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
