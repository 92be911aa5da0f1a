//! Bracket-balanced decoding for C and languages that look like it: before
//! each token is sampled, the tokens that would make the code's brackets
//! impossible to balance are taken out of the choice, the way grammar-
//! constrained decoding works (llama.cpp's GBNF), with a grammar of
//! brackets alone.
//!
//! A token is refused when, fed after the text so far, one of its bytes in
//! code (not in a comment or a literal, see [`CLexer`]):
//! - closes a bracket that is not the innermost open one (`)` while a `{`
//!   is innermost), or closes one that was never opened;
//! - ends a statement (`;`) inside parentheses other than a `for (...)`
//!   header, inside `[...]`, or inside a list (an initializer's or an
//!   `enum`'s braces);
//! - opens a brace (`{`) inside `[...]`, or inside parentheses other than
//!   right after what may be a cast (a compound literal:
//!   `f(a, (Point){1, 2})`; not after a call's or an expression's `)`);
//! - closes a block before its last statement ended: a block's `}` comes
//!   after `;`, `}`, `{` or a label's `:` (a list's after anything);
//! - ends a line inside a string or character literal;
//! - writes `else` anywhere but right after an `if`'s body (its block's
//!   `}`, or the `;` or block that ends a body without braces): a model
//!   writes `}else{` after a `while` or a plain block, which no C parser
//!   takes (the commonest reason a closed completion did not parse);
//! - closes a brace opened before the innermost open `#if` while that `#if`
//!   is still open (the `}` of a function whose `#ifdef` has no `#endif`
//!   yet), or ends a `#else`, `#elif` or `#endif` line with no `#if` open;
//! - inside a block (a function's body, at any depth of brackets within
//!   it), starts a line at column 0 with anything but `}`, `#` or the
//!   line's end, or writes a directive other than a conditional (`#if`,
//!   `#ifdef`, `#ifndef`, `#elif`, `#else`, `#endif`), `#error`,
//!   `#warning`, `#pragma` or `#line`. A model that has lost track of its
//!   function writes a column-0 comment, prototype or run of `#define`s
//!   and then top-level code, and never closes the function; real code
//!   almost never does this inside a function (a column-0 `goto` label,
//!   the commonest case, stays legal indented). `extern "C" { ... }` is not
//!   a block.
//!
//! Preprocessor lines do not touch the brackets. The prompt is read
//! leniently: what it leaves open is what the reply must close.
//!
//! Only for code: in prose an apostrophe opens a "character literal" that
//! the line end then breaks, so the guard is off unless asked for
//! ([`super::SamplingConfig::balanced_brackets`]).

use super::c_lexer::{CLexer, Lexed};

mod brackets;
mod lines;
mod word;

use brackets::{IfBody, Open};
use lines::Line;
pub use lines::MAX_BLOCK_CONDITIONALS;
use word::Word;

/// The brackets of the text read so far, and what may come next.
#[derive(Clone, Debug)]
pub struct BracketGuard {
    lexer: CLexer,
    stack: Vec<Open>,
    /// For each `#if` still open, the depth of `stack` when it began.
    conditionals: Vec<usize>,
    line: Line,
    /// The identifier last read in code, while only blanks followed it.
    word: Option<Word>,
    /// The identifier being read (the previous code byte was part of it).
    reading: Option<Word>,
    /// The last code byte that was not a blank.
    prev_solid: u8,
    /// The last `)` closed parentheses that may be a cast.
    closed_cast: bool,
    /// The keyword `enum` came since the last `;`, bracket or brace: the
    /// next `{` opens a list.
    enum_pending: bool,
    /// The previous byte was a `\` (a directive continues on the next line).
    after_backslash: bool,
    /// Nothing of the current line has been read yet: the next byte is in
    /// column 0.
    column_zero: bool,
    if_body: IfBody,
    /// An `if`'s body just ended: `else` may come next.
    else_ok: bool,
}

/// Bytes that can make the guard refuse a token: a token without any of
/// them is always allowed.
fn can_be_refused(b: u8) -> bool {
    matches!(b, b'(' | b')' | b'[' | b']' | b'{' | b'}' | b';' | b'\n')
}

impl BracketGuard {
    /// The guard after reading `prompt` leniently.
    pub fn after_prompt(prompt: &str) -> BracketGuard {
        let mut guard = BracketGuard {
            lexer: CLexer::new(),
            stack: Vec::new(),
            conditionals: Vec::new(),
            line: Line::Start,
            word: None,
            reading: None,
            prev_solid: 0,
            closed_cast: false,
            enum_pending: false,
            after_backslash: false,
            column_zero: true,
            if_body: IfBody::None,
            else_ok: false,
        };
        guard.feed(prompt.as_bytes());
        guard
    }

    /// Brackets open, innermost last (for tests and display).
    pub fn open_brackets(&self) -> String {
        self.stack.iter().map(|o| o.bracket as char).collect()
    }

    /// Whether `bytes`, coming next, keep the brackets balanceable.
    pub fn allows(&self, bytes: &[u8]) -> bool {
        let watching_line = (self.column_zero
            || matches!(self.line, Line::Directive { reading: true, .. }))
            && self.in_block();
        // These bytes may complete the word `else` where it may not come.
        let watching_else = !self.else_ok
            && bytes.contains(&b'e')
            && (bytes.windows(4).any(|w| w == b"else")
                || self
                    .reading
                    .is_some_and(|w| !w.overflow && b"else".starts_with(&w.bytes[..w.len])));
        if !watching_line && !watching_else && !bytes.iter().any(|&b| can_be_refused(b)) {
            return true;
        }
        let mut trial = self.clone();
        bytes.iter().all(|&b| trial.step(b, true))
    }

    /// Reads `bytes` as the text's continuation. What [`allows`] would
    /// refuse is read leniently: a closing bracket that does not match the
    /// innermost one is ignored, anything else is taken as it comes.
    ///
    /// [`allows`]: BracketGuard::allows
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.step(b, false);
        }
    }

    /// Sets the score of every token of `vocab` (`vocab[id]`: its bytes)
    /// that [`allows`](Self::allows) refuses to −∞, except `keep` (the
    /// end-of-text token). Returns how many it refused; when that would be
    /// every token still possible, it refuses none.
    pub fn mask(&self, vocab: &[Vec<u8>], keep: Option<u32>, scores: &mut [f32]) -> usize {
        let refused: Vec<usize> = vocab
            .iter()
            .enumerate()
            .filter(|&(id, bytes)| {
                Some(id as u32) != keep && scores[id] > f32::NEG_INFINITY && !self.allows(bytes)
            })
            .map(|(id, _)| id)
            .collect();
        let possible = scores.iter().filter(|&&s| s > f32::NEG_INFINITY).count();
        if refused.len() >= possible {
            return 0;
        }
        for &id in &refused {
            scores[id] = f32::NEG_INFINITY;
        }
        refused.len()
    }

    /// Some open bracket is a block's `{`: lines are indented, and only
    /// some directives make sense.
    fn in_block(&self) -> bool {
        self.stack
            .iter()
            .any(|o| o.bracket == b'{' && !o.list && !o.linkage)
    }

    /// One byte; `strict`: returns false where the byte breaks a rule
    /// (the state is then unspecified and the trial copy is dropped).
    fn step(&mut self, b: u8, strict: bool) -> bool {
        let after_backslash = std::mem::replace(&mut self.after_backslash, b == b'\\');
        let column_zero = std::mem::replace(&mut self.column_zero, false);
        let code = match self.lexer.step(b) {
            Lexed::Code(c) => c,
            Lexed::Inert => return true,
            Lexed::BrokenLiteral => {
                self.end_line(strict, false);
                return !strict;
            }
        };
        if code == b'\n' {
            return self.end_line(strict, after_backslash);
        }
        let blank = code == b' ' || code == b'\t' || code == b'\r' || code == 0x0c;
        let ident = code.is_ascii_alphanumeric() || code == b'_';
        if let Some(verdict) = self.line_byte(code, blank, ident, column_zero, strict) {
            return verdict;
        }
        // Identifiers: remember the last one while only blanks follow it.
        if ident {
            let word = self.reading.get_or_insert_with(Word::default);
            word.push(code);
            if strict && word.is("else") && !self.else_ok {
                return false;
            }
            self.word = None;
            self.prev_solid = code;
            self.body_starts();
            return true;
        }
        if let Some(w) = self.reading.take() {
            self.enum_pending |= w.is("enum");
            // A word (`else` itself too) ends where an `else` may come.
            self.else_ok = false;
            self.word = Some(w);
        }
        if blank {
            return true;
        }
        let ok = self.bracket(code, strict);
        self.word = None;
        // A `/` may turn out to open a comment with the next byte (the
        // lexer cannot tell yet): it does not count as the last solid byte.
        if code != b'/' {
            self.prev_solid = code;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(prompt: &str) -> BracketGuard {
        BracketGuard::after_prompt(prompt)
    }

    #[test]
    fn the_prompt_leaves_its_brackets_open() {
        assert_eq!(guard("int f(int a){\n  if( a>0 ){").open_brackets(), "{{");
        assert_eq!(guard("x = a[f(\"(\"").open_brackets(), "[(");
        assert_eq!(guard("/* ( */ y = '{';").open_brackets(), "");
        // A prompt that closes what it never opened is read leniently.
        assert_eq!(guard("} ) ( ").open_brackets(), "(");
    }

    #[test]
    fn lines_do_not_end_inside_literals() {
        let g = guard("void f(void){\n  s = \"abc");
        assert!(!g.allows(b"\n"));
        assert!(g.allows(b"\\n\";\n"));
        assert!(
            g.allows(b"\\\n  more\";\n"),
            "a backslash continues the literal"
        );
        let g = guard("void f(void){\n  c = '");
        assert!(!g.allows(b"x\n"));
        assert!(g.allows(b"x';\n"));
    }

    #[test]
    fn real_function_bodies_are_allowed_but_for_a_column_zero_label() {
        // Verbatim SQLite: tables, `#ifdef`s inside bodies, multi-line
        // calls, and one `goto` label at column 0, which the guard refuses
        // by design (it is legal indented).
        let text = include_str!("../../tests/fixtures/sqlite_functions.c");
        let openings =
            crate::openings::extract_openings(&[("sqlite".into(), text.into())]).unwrap();
        assert_eq!(openings.len(), 7, "the clean openings of the 9 functions");
        let mut refused = Vec::new();
        for o in &openings {
            let body = &o.definition[o.text.len()..];
            let g = guard(&o.text);
            if !g.allows(body.as_bytes()) {
                refused.push(o.line);
                let indented = body.replace("\nsetoutputs_col_out:", "\n  setoutputs_col_out:");
                assert!(g.allows(indented.as_bytes()), "line {}", o.line);
            }
            let mut whole = g.clone();
            whole.feed(body.as_bytes());
            assert_eq!(whole.open_brackets(), "", "line {}", o.line);
        }
        let labelled: Vec<usize> = openings
            .iter()
            .filter(|o| o.definition.contains("\nsetoutputs_col_out:"))
            .map(|o| o.line)
            .collect();
        assert_eq!(labelled.len(), 1);
        assert_eq!(refused, labelled);
    }

    #[test]
    fn feeding_in_any_pieces_gives_the_same_state() {
        let text = "int f(int a){\n  for(i=0; i<n; i++){ s = \"}{\"; /* ( */ } // ;\n#if X\n  g(a, (P){1});\n#endif\n";
        let whole = {
            let mut g = guard("");
            g.feed(text.as_bytes());
            g
        };
        assert_eq!(whole.open_brackets(), "{");
        for cut in 0..=text.len() {
            let mut g = guard("");
            g.feed(&text.as_bytes()[..cut]);
            assert!(g.allows(&text.as_bytes()[cut..]), "cut at {cut}");
            g.feed(&text.as_bytes()[cut..]);
            assert_eq!(g.open_brackets(), whole.open_brackets(), "cut at {cut}");
            assert!(g.allows(b"}") && !g.allows(b"}}"), "cut at {cut}");
        }
    }

    #[test]
    fn masking_refuses_only_what_breaks_and_never_everything() {
        let vocab: Vec<Vec<u8>> = ["a", ";", "}", ")", ");", "<eot>"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let g = guard("void f(void){\n  g(x");
        let mut scores = vec![0.0f32; vocab.len()];
        assert_eq!(g.mask(&vocab, Some(5), &mut scores), 2);
        assert_eq!(
            scores.iter().map(|s| s.is_finite()).collect::<Vec<_>>(),
            [true, false, false, true, true, true]
        );
        // When only refused tokens remain possible, nothing is refused.
        let mut scores = vec![f32::NEG_INFINITY; vocab.len()];
        scores[1] = 0.0;
        scores[2] = -1.0;
        assert_eq!(g.mask(&vocab, None, &mut scores), 0);
        assert_eq!(scores[1], 0.0);
    }
}
