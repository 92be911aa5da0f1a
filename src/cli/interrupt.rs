//! Ctrl-C (SIGINT) and SIGTERM (`kill`, a cluster scheduler's warning before
//! it kills a job) for long commands: the first one is delivered to the
//! command as a message (so it can stop cleanly, e.g. the trainer finishes
//! its step and saves), a second one quits the process at once with the
//! status shells report for that signal (130, 143).

use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::thread::JoinHandle;

/// The signal that asked a command to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    CtrlC,
    Term,
}

impl StopSignal {
    fn from_raw(signal: i32) -> StopSignal {
        if signal == SIGTERM {
            StopSignal::Term
        } else {
            StopSignal::CtrlC
        }
    }

    /// How a person would name it.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::CtrlC => "Ctrl-C",
            StopSignal::Term => "SIGTERM",
        }
    }

    /// 128 + the signal's number, as shells report it.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::CtrlC => super::EXIT_INTERRUPTED,
            StopSignal::Term => super::EXIT_TERMINATED,
        }
    }
}

/// What runs on the watching thread at the first signal.
pub type OnFirst = Box<dyn FnOnce(StopSignal) + Send>;

/// Watches for SIGINT and SIGTERM while it lives.
pub struct Interrupts {
    /// Receives one message, on the first signal.
    pub first: Receiver<StopSignal>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Interrupts {
    /// Starts watching. `on_second` is printed (on stderr) when a second
    /// signal quits the process.
    pub fn watch(on_second: &'static str) -> Result<Interrupts, String> {
        Self::watch_then(on_second, None)
    }

    /// [`watch`](Self::watch), and `on_first` runs on the watching thread
    /// when the first signal comes, before the message goes out: what must
    /// happen at once even while the command's own thread is busy (blocked
    /// writing to a pipe nobody reads any more, say).
    pub fn watch_then(
        on_second: &'static str,
        on_first: Option<OnFirst>,
    ) -> Result<Interrupts, String> {
        let mut on_first = on_first;
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("cannot watch for Ctrl-C: {e}"))?;
        let handle = signals.handle();
        let (tx, first) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("cllm-ctrl-c".into())
            .spawn(move || {
                let mut seen = 0usize;
                for raw in signals.forever() {
                    let signal = StopSignal::from_raw(raw);
                    seen += 1;
                    if seen == 1 {
                        if let Some(first) = on_first.take() {
                            first(signal);
                        }
                        let _ = tx.try_send(signal);
                    } else {
                        eprintln!("\n{}: {on_second}", signal.name());
                        std::process::exit(i32::from(signal.exit_code()));
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

    #[test]
    fn words_are_quoted_for_a_posix_shell() {
        assert_eq!(shell_quote("runs/a b.cllm"), "'runs/a b.cllm'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("--preset"), "--preset");
    }
}
