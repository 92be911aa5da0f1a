//! The smallest C lexer that knows where code is: a byte-at-a-time state
//! machine that tells code apart from comments and string and character
//! literals. Text arrives in pieces (a generated reply token by token), so
//! every state, including "the last byte was a `/`", carries over from one
//! piece to the next.
//!
//! Only ASCII bytes change the state, and UTF-8 never uses ASCII values
//! inside a multi-byte character, so any byte sequence is safe to feed.
//!
//! What it does not know: the preprocessor (a `#define` line is code like
//! any other). A string or character literal ends at an unescaped line end
//! (C does not let one span lines), so a stray quote costs at most a line;
//! [`Lexed::BrokenLiteral`] reports it.

/// Where the lexer is between bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Code,
    /// `// ...` up to the line end (a backslash before it continues it).
    LineComment,
    /// `/* ... */`.
    BlockComment,
    /// `"..."`.
    Str,
    /// `'...'`.
    Char,
}

/// What one byte was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lexed {
    /// A byte of code: not in a comment or a literal, and not the quote or
    /// slash that starts one. (A `/` is reported as code when it comes; if
    /// the next byte makes it a comment, that byte is not.)
    Code(u8),
    /// Inside (or opening, or closing) a comment or a literal.
    Inert,
    /// A line end inside a string or character literal: C does not allow
    /// it, and the lexer takes the literal as ended there.
    BrokenLiteral,
}

/// The lexer's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CLexer {
    state: State,
    /// The previous byte was a `\` that escapes this one (in a literal or a
    /// line comment).
    escaped: bool,
    /// In code, the previous byte was `/`; in a block comment, `*`.
    pending: bool,
}

impl Default for CLexer {
    fn default() -> Self {
        CLexer::new()
    }
}

impl CLexer {
    pub fn new() -> CLexer {
        CLexer {
            state: State::Code,
            escaped: false,
            pending: false,
        }
    }

    /// True while the text fed so far ends inside a comment or a literal.
    pub fn in_comment_or_literal(&self) -> bool {
        self.state != State::Code
    }

    /// One byte.
    pub fn step(&mut self, b: u8) -> Lexed {
        match self.state {
            State::Code => {
                let after_slash = std::mem::take(&mut self.pending);
                match b {
                    b'/' if after_slash => self.state = State::LineComment,
                    b'*' if after_slash => self.state = State::BlockComment,
                    b'"' => self.state = State::Str,
                    b'\'' => self.state = State::Char,
                    _ => {
                        self.pending = b == b'/';
                        return Lexed::Code(b);
                    }
                }
            }
            State::LineComment => {
                if std::mem::take(&mut self.escaped) {
                    // `\` then a line end continues the comment; `\r\n` too.
                    self.escaped = b == b'\r';
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'\n' {
                    // The line end itself is code: it ends the line.
                    self.state = State::Code;
                    return Lexed::Code(b);
                }
            }
            State::BlockComment => {
                let after_star = std::mem::take(&mut self.pending);
                if b == b'/' && after_star {
                    self.state = State::Code;
                } else if b == b'*' {
                    self.pending = true;
                }
            }
            State::Str | State::Char => {
                let quote = if self.state == State::Str {
                    b'"'
                } else {
                    b'\''
                };
                if std::mem::take(&mut self.escaped) {
                    // Whatever follows a backslash is part of the literal.
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == quote {
                    self.state = State::Code;
                } else if b == b'\n' {
                    self.state = State::Code;
                    return Lexed::BrokenLiteral;
                }
            }
        }
        Lexed::Inert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code bytes of `text`, and whether a literal broke.
    fn code(text: &str) -> (String, bool) {
        let mut lexer = CLexer::new();
        let mut out = String::new();
        let mut broken = false;
        for &b in text.as_bytes() {
            match lexer.step(b) {
                Lexed::Code(c) => out.push(c as char),
                Lexed::Inert => {}
                Lexed::BrokenLiteral => broken = true,
            }
        }
        (out, broken)
    }

    #[test]
    fn comments_and_literals_are_not_code() {
        assert_eq!(code(r#"a("x)"); b"#), ("a(); b".into(), false));
        assert_eq!(code(r"c = '\''; d"), ("c = ; d".into(), false));
        assert_eq!(code("e /* ) */ f // ( \n g"), ("e / f /\n g".into(), false));
        assert_eq!(code("h / i"), ("h / i".into(), false));
        assert_eq!(code("s = \"oops\n)"), ("s = )".into(), true));
        assert_eq!(code("s = \"line \\\n more\";"), ("s = ;".into(), false));
    }
}
