//! When does a C completion close what its prompt opened? A brace counter
//! over C text that skips braces inside string and character literals and
//! comments ([`CLexer`]), fed bytes as they come.
//!
//! Only ASCII bytes change the state, and UTF-8 never uses ASCII values
//! inside a multi-byte character, so every offset this module returns is a
//! character boundary.
//!
//! What it does not know: the preprocessor. Braces in `#if`/`#else`
//! branches are all counted, and a brace inside a `#define` counts like any
//! other.

use super::c_lexer::{CLexer, Lexed};

/// Brace depth of C text fed in pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BraceCounter {
    lexer: CLexer,
    /// `{` minus `}` in code so far (may go negative).
    depth: i64,
}

impl Default for BraceCounter {
    fn default() -> Self {
        BraceCounter::new()
    }
}

/// What one byte did to the depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Brace {
    Open,
    Close,
}

impl BraceCounter {
    pub fn new() -> BraceCounter {
        BraceCounter {
            lexer: CLexer::new(),
            depth: 0,
        }
    }

    /// `{` minus `}` seen in code (outside literals and comments).
    pub fn depth(&self) -> i64 {
        self.depth
    }

    /// True while the text fed so far ends inside a comment or a literal.
    pub fn in_comment_or_literal(&self) -> bool {
        self.lexer.in_comment_or_literal()
    }

    /// Feeds `text`.
    pub fn feed(&mut self, text: &str) {
        for &b in text.as_bytes() {
            self.step(b);
        }
    }

    /// One byte; says whether it was a brace in code.
    fn step(&mut self, b: u8) -> Option<Brace> {
        match self.lexer.step(b) {
            Lexed::Code(b'{') => {
                self.depth += 1;
                Some(Brace::Open)
            }
            Lexed::Code(b'}') => {
                self.depth -= 1;
                Some(Brace::Close)
            }
            _ => None,
        }
    }
}

/// Watches a completion for the moment the braces its prompt opened close
/// again. The prompt is fed first (so a prompt that ends inside a comment
/// or a literal is continued correctly); then:
///
/// - a prompt that leaves `d > 0` braces open (a function opening ends with
///   `{`) is closed by the `}` that takes the depth back to 0;
/// - a prompt that leaves none open (`// Compute the nth prime`, `void f`)
///   is closed by the `}` that ends the first block the completion opens.
///
/// A `}` at depth 0 before anything is open is not counted (the depth
/// never goes below 0 here), so it cannot count as a close.
#[derive(Clone, Debug)]
pub struct CloseWatch {
    counter: BraceCounter,
    /// Open braces: the prompt's, then the completion's, never below 0.
    open: i64,
    /// Something was open at some point (so reaching 0 is a close).
    opened: bool,
    /// Bytes of the reply's text already fed.
    fed: usize,
    closed_at: Option<usize>,
}

impl CloseWatch {
    /// A watch for a completion of `prompt`.
    pub fn after_prompt(prompt: &str) -> CloseWatch {
        let mut counter = BraceCounter::new();
        let mut open = 0i64;
        for &b in prompt.as_bytes() {
            match counter.step(b) {
                Some(Brace::Open) => open += 1,
                Some(Brace::Close) => open = (open - 1).max(0),
                None => {}
            }
        }
        CloseWatch {
            counter,
            open,
            opened: open > 0,
            fed: 0,
            closed_at: None,
        }
    }

    /// Braces the prompt left open.
    pub fn open(&self) -> i64 {
        self.open
    }

    /// Feeds the part of `reply[..limit]` not fed yet (`reply` only ever
    /// grows between calls) and returns the byte offset in `reply` just
    /// after the closing `}`, once there is one. `limit` is clamped to the
    /// text and needs no particular alignment.
    pub fn feed_reply(&mut self, reply: &str, limit: usize) -> Option<usize> {
        if self.closed_at.is_some() {
            return self.closed_at;
        }
        let limit = limit.min(reply.len());
        let bytes = reply.as_bytes();
        while self.fed < limit {
            let b = bytes[self.fed];
            self.fed += 1;
            match self.counter.step(b) {
                Some(Brace::Open) => {
                    self.open += 1;
                    self.opened = true;
                }
                Some(Brace::Close) if self.open > 0 => {
                    self.open -= 1;
                    if self.open == 0 && self.opened {
                        self.closed_at = Some(self.fed);
                        return self.closed_at;
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Offset just after the closing `}`, if it came.
    pub fn closed_at(&self) -> Option<usize> {
        self.closed_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(text: &str) -> i64 {
        let mut c = BraceCounter::new();
        c.feed(text);
        c.depth()
    }

    #[test]
    fn braces_in_literals_and_comments_do_not_count() {
        assert_eq!(depth("{ { } "), 1);
        assert_eq!(depth(r#"{ s = "}}}"; "#), 1);
        assert_eq!(depth(r#"{ s = "\"}"; "#), 1, "escaped quote");
        assert_eq!(depth(r#"{ s = "\\"; } "#), 0, "escaped backslash");
        assert_eq!(depth("{ c = '}'; "), 1);
        assert_eq!(depth(r"{ c = '\''; }"), 0);
        assert_eq!(depth(r"{ c = '\\'; }"), 0);
        assert_eq!(depth("{ // } here\n"), 1);
        assert_eq!(depth("{ /* } \n } */ "), 1);
        assert_eq!(depth("{ /* **/ } "), 0);
        assert_eq!(depth("{ a = b / c; } "), 0, "division is not a comment");
        assert_eq!(depth("{ a = b /*x*/ / c; } "), 0);
        assert_eq!(depth("{ // line \\\n } continued\n"), 1);
        assert_eq!(depth("{ // line \\\r\n } continued\n}"), 0);
        // An unterminated literal ends at the line end.
        assert_eq!(depth("{ s = \"oops\n }"), 0);
        assert_eq!(depth("{ x = 'a\n }"), 0);
        // Non-ASCII text is inert.
        assert_eq!(depth("{ s = \"é}\"; /* 日本 } */ }"), 0);
        assert_eq!(depth("}}"), -2);
    }

    #[test]
    fn state_carries_across_pieces() {
        let text = r#"{ /* } */ s = "{\"}"; c = '{'; // {
 a / b; }"#;
        let whole = depth(text);
        assert_eq!(whole, 0);
        // Every split into two pieces, and byte by byte.
        for cut in 0..=text.len() {
            if !text.is_char_boundary(cut) {
                continue;
            }
            let mut c = BraceCounter::new();
            c.feed(&text[..cut]);
            c.feed(&text[cut..]);
            assert_eq!(c.depth(), whole, "cut at {cut}");
        }
        let mut c = BraceCounter::new();
        c.feed("/");
        c.feed("/ {");
        assert!(c.in_comment_or_literal());
        assert_eq!(c.depth(), 0);
    }

    #[test]
    fn watch_closes_what_the_prompt_opened() {
        let mut w = CloseWatch::after_prompt("int f(void) {\n  if (x) {");
        assert_eq!(w.open(), 2);
        let reply = "\n    s = \"}\";\n  }\n  return '}';\n}\nint g;";
        assert_eq!(w.feed_reply(reply, 5), None);
        let at = w.feed_reply(reply, reply.len()).unwrap();
        assert_eq!(&reply[..at], "\n    s = \"}\";\n  }\n  return '}';\n}");
        assert_eq!(w.feed_reply(reply, reply.len()), Some(at));
    }

    #[test]
    fn watch_after_a_prompt_without_braces_waits_for_a_whole_block() {
        // The prompt ends inside a comment: the `{` in it does not count.
        let mut w = CloseWatch::after_prompt("// compute { the prime");
        assert_eq!(w.open(), 0);
        let reply = " }\nint p(int n) { return n; }\n";
        let at = w.feed_reply(reply, reply.len()).unwrap();
        assert_eq!(&reply[..at], " }\nint p(int n) { return n; }");
        // A stray `}` at depth 0 is not a close.
        let mut w = CloseWatch::after_prompt("x = 1;");
        assert_eq!(w.feed_reply("}}", 2), None);
        assert_eq!(w.feed_reply("}}{}", 4), Some(4));
    }

    #[test]
    fn watch_limit_need_not_be_aligned() {
        let mut w = CloseWatch::after_prompt("void f() {");
        let reply = "é}";
        assert_eq!(w.feed_reply(reply, 1), None);
        assert_eq!(w.feed_reply(reply, 100), Some(3));
        assert!(reply.is_char_boundary(3));
    }
}
