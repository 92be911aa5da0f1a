//! Where progress bars draw: stdout, with the bar kept a few columns short
//! of the terminal's width.
//!
//! indicatif pads a bar's line to the full width, which leaves the cursor in
//! the last column; the terminal's echo of `^C` then wraps onto a new line,
//! the next redraw clears that line instead of the bar's, and a stale copy
//! of the bar stays on the screen above the Ctrl-C message. Reporting a
//! width three columns short leaves room for the echo. Lines above the bar
//! must then be printed by the caller inside `ProgressBar::suspend`, with
//! their own newline: indicatif's `println` also pads and relies on the
//! cursor wrapping at the last column.

use console::Term;
use indicatif::{ProgressDrawTarget, TermLike};
use std::io;

/// Columns left free at the right of a bar: room for the echoed `^C`.
const SPARE_COLUMNS: u16 = 3;

/// Redraws per second at most.
const REFRESH_HZ: u8 = 20;

/// A progress target on stdout, hidden when stdout is not a terminal.
pub fn stdout_target() -> ProgressDrawTarget {
    let term = Term::stdout();
    if term.is_term() {
        ProgressDrawTarget::term_like_with_hz(Box::new(Narrower(term)), REFRESH_HZ)
    } else {
        ProgressDrawTarget::hidden()
    }
}

#[derive(Debug)]
struct Narrower(Term);

impl TermLike for Narrower {
    fn width(&self) -> u16 {
        self.0.size().1.saturating_sub(SPARE_COLUMNS).max(1)
    }
    fn height(&self) -> u16 {
        self.0.size().0
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        self.0.write_line(s)
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        self.0.write_str(s)
    }
    fn clear_line(&self) -> io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}
