//! Ctrl-C for long commands: the first one is delivered to the command as a
//! message (so it can stop cleanly, e.g. the trainer finishes its step and
//! saves), the second one quits the process at once with status 130.

use super::EXIT_INTERRUPTED;
use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::SIGINT;
use signal_hook::iterator::{Handle, Signals};
use std::thread::JoinHandle;

/// Watches for SIGINT while it lives.
pub struct Interrupts {
    /// Receives one message, on the first Ctrl-C.
    pub first: Receiver<()>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Interrupts {
    /// Starts watching. `on_second` is printed (on stderr) when a second
    /// Ctrl-C quits the process.
    pub fn watch(on_second: &'static str) -> Result<Interrupts, String> {
        let mut signals =
            Signals::new([SIGINT]).map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
        let handle = signals.handle();
        let (tx, first) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("cllm-ctrl-c".into())
            .spawn(move || {
                let mut seen = 0usize;
                for _ in signals.forever() {
                    seen += 1;
                    if seen == 1 {
                        let _ = tx.try_send(());
                    } else {
                        eprintln!("\n{on_second}");
                        std::process::exit(i32::from(EXIT_INTERRUPTED));
                    }
                }
            })
            .map_err(|e| format!("cannot start the Ctrl-C watcher: {e}"))?;
        Ok(Interrupts {
            first,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This process's command line with `flag VALUE` set to `value` (an earlier
/// `flag X` or `flag=X` is dropped), quoted for a POSIX shell: what to type
/// to run the same command again, e.g. to resume a stopped run.
pub fn command_line_with(flag: &str, value: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    rewrite_command_line(&args, flag, value)
}

fn rewrite_command_line(args: &[String], flag: &str, value: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut rest = args.iter();
    if let Some(program) = rest.next() {
        out.push(program.clone());
    }
    let with_equals = format!("{flag}=");
    while let Some(arg) = rest.next() {
        if arg == flag {
            rest.next();
        } else if !arg.starts_with(&with_equals) {
            out.push(arg.clone());
        }
    }
    out.push(flag.to_string());
    out.push(value.to_string());
    out.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `arg` as one word for a POSIX shell.
pub fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./,:=@%+-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn the_resume_command_replaces_an_earlier_resume_and_quotes() {
        let args = words("cllm train --resume old.cllm --max-steps 30 --resume=x");
        assert_eq!(
            rewrite_command_line(&args, "--resume", "runs/a b.cllm"),
            "cllm train --max-steps 30 --resume 'runs/a b.cllm'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("--preset"), "--preset");
    }
}
