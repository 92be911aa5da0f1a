//! The line guard: for code, a line of the reply that repeats a recent line
//! or runs on past any sensible length is written again
//! ([`super::SamplingConfig::line_guard`]).
//!
//! Small models that lose their place in a function fall into a few habits
//! that no bracket rule can refuse: the same statement again and again
//! (`nByte += nByte;` twenty times), a line that never ends (a string
//! literal they cannot close, `*nAlloc*nAlloc*…`, a row of `}`), or a cycle
//! of directives; most completions that never close their function do one
//! of these. Real code almost never does: its lines stay under a couple of
//! hundred characters, and a line of 8 or more characters that is not a
//! row of numbers rarely repeats the line before it or occurs a fourth time
//! within 16 lines.
//!
//! The guard reads the text (the prompt's, then the reply's) and reports a
//! [`LineFault`] when a line ends as a repeat or grows too long; the
//! generator then takes the reply back to where that line began and
//! samples it again, refusing, for a repeat, the token the line's text
//! started with ([`super::Generator`]). This is sampling with rejection:
//! it changes nothing in a reply that has no such line.

use std::collections::VecDeque;

/// A line longer than this (in characters), or than twice the prompt's
/// longest line when that is longer, is written again.
pub const MAX_LINE_CHARS: usize = 200;
/// Lines shorter than this (trimmed) may repeat freely: `}`, `break;`,
/// `#endif`.
pub const MIN_CHECKED_CHARS: usize = 8;
/// How many recent non-blank lines a new line is compared with.
pub const RECENT_LINES: usize = 16;
/// A line that already occurs this many times among the recent lines is a
/// loop (the fourth `if( rc==SQLITE_OK ){` within 16 lines).
pub const LOOP_OCCURRENCES: usize = 3;
/// Attempts at one line before the guard lets it stand.
pub const RETRIES_PER_LINE: usize = 4;
/// Lines written again in one reply at most, so that a reply costs at most
/// a bounded number of extra tokens.
pub const RETRIES_PER_REPLY: usize = 16;

/// What is wrong with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFault {
    /// The line just ended repeats the line before it, or is the
    /// [`LOOP_OCCURRENCES`]+1-th occurrence among the recent lines.
    Repeats,
    /// The line being written is longer than the guard's limit.
    TooLong,
}

#[derive(Clone, Debug)]
pub struct LineGuard {
    /// The last [`RECENT_LINES`] non-blank lines, trimmed, newest last.
    recent: VecDeque<String>,
    /// The line being written (its text since the last line end).
    current: String,
    /// Its length in characters.
    current_chars: usize,
    max_chars: usize,
}

/// A row of a numeric table (`0, 0, 0x1f, -1,`): such rows legitimately
/// repeat.
fn is_data_row(line: &str) -> bool {
    line.chars()
        .all(|c| c.is_ascii_hexdigit() || " \t,+-.xXuUlL".contains(c))
}

impl LineGuard {
    /// The guard after reading `prompt` (its last, unfinished line becomes
    /// the start of the reply's first line).
    pub fn after_prompt(prompt: &str) -> LineGuard {
        let longest = prompt.split('\n').map(|l| l.chars().count()).max();
        let mut guard = LineGuard {
            recent: VecDeque::with_capacity(RECENT_LINES + 1),
            current: String::new(),
            current_chars: 0,
            max_chars: MAX_LINE_CHARS.max(2 * longest.unwrap_or(0)),
        };
        // The prompt is the user's: its lines are remembered, never judged.
        guard.feed_unjudged(prompt);
        guard
    }

    /// The longest line the guard lets stand, in characters.
    pub fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// Reads `text`, the reply's continuation. Returns the first fault it
    /// finds (the guard's state is then undefined: the caller goes back to
    /// a copy taken at the line's start).
    pub fn feed(&mut self, text: &str) -> Option<LineFault> {
        self.read(text, true)
    }

    /// Reads `text` without judging it: a line that stands although it has
    /// a fault (its attempts used up).
    pub fn feed_unjudged(&mut self, text: &str) {
        self.read(text, false);
    }

    fn read(&mut self, text: &str, judge: bool) -> Option<LineFault> {
        for c in text.chars() {
            if c == '\n' {
                if judge && self.ends_as_repeat() {
                    return Some(LineFault::Repeats);
                }
                self.end_line();
            } else {
                self.current.push(c);
                self.current_chars += 1;
                if judge && self.current_chars > self.max_chars {
                    return Some(LineFault::TooLong);
                }
            }
        }
        None
    }

    /// Whether the line being written, ended here, would repeat.
    fn ends_as_repeat(&self) -> bool {
        let line = self.current.trim();
        if line.chars().count() < MIN_CHECKED_CHARS || is_data_row(line) {
            return false;
        }
        self.recent.back().is_some_and(|last| last == line)
            || self.recent.iter().filter(|l| *l == line).count() >= LOOP_OCCURRENCES
    }

    fn end_line(&mut self) {
        let line = self.current.trim();
        if !line.is_empty() {
            if self.recent.len() == RECENT_LINES {
                self.recent.pop_front();
            }
            self.recent.push_back(line.to_string());
        }
        self.current.clear();
        self.current_chars = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_repeats_the_one_before_is_a_fault() {
        let mut g = LineGuard::after_prompt("int f(int n){\n  total += n;\n");
        assert_eq!(g.feed("  total += n;"), None, "not judged before it ends");
        assert_eq!(g.feed("\n"), Some(LineFault::Repeats));
        // Indentation does not hide a repeat; a different line passes.
        let mut g = LineGuard::after_prompt("int f(int n){\n  total += n;\n");
        assert_eq!(g.feed("      total += n;\n"), Some(LineFault::Repeats));
        let mut g = LineGuard::after_prompt("int f(int n){\n  total += n;\n");
        assert_eq!(g.feed("  total -= n;\n  total += n;\n"), None);
    }

    #[test]
    fn short_lines_blank_lines_and_data_rows_may_repeat() {
        let mut g = LineGuard::after_prompt("int f(int n){\n");
        let text = "  }\n  }\n\n\n  break;\n  break;\n  0, 0, 0, 0, 0x1f,\n  0, 0, 0, 0, 0x1f,\n";
        assert_eq!(g.feed(text), None);
    }

    #[test]
    fn a_fourth_occurrence_within_sixteen_lines_is_a_loop() {
        let body = "  if( rc==SQLITE_OK ){\n    x++;\n  }\n";
        let mut g = LineGuard::after_prompt("int f(int n){\n");
        assert_eq!(g.feed(&body.repeat(3)), None);
        assert_eq!(g.feed(body), Some(LineFault::Repeats));
        // Far enough apart, it is not.
        let mut g = LineGuard::after_prompt("int f(int n){\n");
        let filler: String = (0..14).map(|i| format!("  a{i} = b{i};\n")).collect();
        for _ in 0..5 {
            assert_eq!(g.feed(body), None);
            assert_eq!(g.feed(&filler), None);
        }
    }

    #[test]
    fn a_line_past_the_limit_is_a_fault_as_soon_as_it_gets_there() {
        let mut g = LineGuard::after_prompt("int f(int n){\n  return ");
        let room = MAX_LINE_CHARS - "  return ".len();
        assert_eq!(g.feed(&"n*".repeat(room / 2)), None);
        assert_eq!(g.feed("nn"), Some(LineFault::TooLong));
        // A prompt with long lines raises the limit to twice its longest.
        let long = format!("int f(int n){{\n  /* {} */\n", "x".repeat(300));
        let g = LineGuard::after_prompt(&long);
        assert_eq!(g.max_chars(), 2 * (300 + 8));
    }

    #[test]
    fn the_prompt_is_remembered_but_never_judged() {
        // The prompt repeats itself; only the reply's repeat is a fault.
        let g = LineGuard::after_prompt("x = a + b;\nx = a + b;\nx = a + b;\nx = a + b;\n");
        let mut reply = g.clone();
        assert_eq!(reply.feed("x = a + b;\n"), Some(LineFault::Repeats));
        // Multibyte characters count once each.
        let mut g = LineGuard::after_prompt("");
        assert_eq!(g.feed(&"é".repeat(MAX_LINE_CHARS)), None);
        assert_eq!(g.feed("é"), Some(LineFault::TooLong));
    }
}
