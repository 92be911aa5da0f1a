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
//!   takes (17 of the 36 completions of SQLite's held-out functions that
//!   closed but did not parse, a 30-minute `medium` model);
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
//!   almost never does this inside a function (SQLite's 2,786 function
//!   bodies: 7 column-0 comments, 45 column-0 `goto` labels, which stay
//!   legal indented, and 9 `#define`s). `extern "C" { ... }` is not a
//!   block.
//!
//! Preprocessor lines do not touch the brackets. The prompt is read
//! leniently: what it leaves open is what the reply must close.
//!
//! Only for code: in prose an apostrophe opens a "character literal" that
//! the line end then breaks, so the guard is off unless asked for
//! ([`super::SamplingConfig::balanced_brackets`]).

use super::c_lexer::{CLexer, Lexed};

/// An open bracket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Open {
    bracket: u8,
    /// A `(` right after the keyword `for`: its `;`s are allowed.
    for_header: bool,
    /// A `(` not right after an identifier (a call's or a keyword's, other
    /// than `return`) with only identifiers, blanks and `*` inside so far:
    /// it may be a cast, and its `)` may be followed by a compound
    /// literal's `{`.
    cast: bool,
    /// A `{` of a list (an initializer or an `enum`'s body), not a block:
    /// its items end with `,`, not `;`.
    list: bool,
    /// The `{` of `extern "C" {`: top-level declarations inside.
    linkage: bool,
    /// A `(` right after the keyword `if`: its `)` is followed by the if's
    /// body.
    if_header: bool,
    /// The `{` of an `if`'s body: after its `}` an `else` may come.
    if_block: bool,
}

impl Open {
    fn new(bracket: u8) -> Open {
        Open {
            bracket,
            for_header: false,
            cast: false,
            list: false,
            linkage: false,
            if_header: false,
            if_block: false,
        }
    }
}

/// Longest identifier kept to recognise `for` and directive names.
const WORD_CAP: usize = 8;

/// A short identifier (longer ones keep their first [`WORD_CAP`] bytes and
/// never equal a keyword).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Word {
    bytes: [u8; WORD_CAP],
    len: usize,
    overflow: bool,
}

impl Word {
    fn push(&mut self, b: u8) {
        if self.len < WORD_CAP {
            self.bytes[self.len] = b;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    fn is(&self, keyword: &str) -> bool {
        !self.overflow && &self.bytes[..self.len] == keyword.as_bytes()
    }

    fn starts_with(&self, prefix: &str) -> bool {
        self.bytes[..self.len].starts_with(prefix.as_bytes())
    }
}

/// Where an `if`'s body stands (for where `else` may come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IfBody {
    None,
    /// The `if (...)` header just closed at this depth of brackets: a `{`
    /// opens the body, anything else starts a body without braces.
    Next(usize),
    /// A body without braces at this depth: it ends with the `;` or the
    /// `}` that comes back to this depth.
    Braceless(usize),
}

/// Where the current line stands with the preprocessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Only blanks in code so far.
    Start,
    /// An ordinary line of code.
    Code,
    /// A `#` line; the directive's name while it is being read.
    Directive { name: Word, reading: bool },
}

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

/// Directives a function body may hold.
const BLOCK_DIRECTIVES: [&str; 10] = [
    "if", "ifdef", "ifndef", "elif", "else", "endif", "error", "warning", "pragma", "line",
];

/// Conditionals a function body may nest. Inside blocks, SQLite nests them
/// at most 4 deep (7 times in 2,765 `#if`s), libffi 4, tree-sitter 2; a
/// model that has lost its place writes `#if` after `#if` and never comes
/// back.
pub const MAX_BLOCK_CONDITIONALS: usize = 4;

/// Whether `name`, read so far, may still become a directive a block holds
/// (`#if`, `#ifdef` and `#ifndef` only while `may_open`).
fn directive_fits_a_block(name: &Word, may_open: bool) -> bool {
    !name.overflow
        && BLOCK_DIRECTIVES
            .iter()
            .filter(|d| may_open || !d.starts_with("if"))
            .any(|d| d.as_bytes().starts_with(&name.bytes[..name.len]))
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
        if strict && column_zero && !blank && !matches!(code, b'}' | b'#') && self.in_block() {
            return false;
        }
        let ident = code.is_ascii_alphanumeric() || code == b'_';
        match &mut self.line {
            Line::Start if blank => return true,
            Line::Start if code == b'#' => {
                self.line = Line::Directive {
                    name: Word::default(),
                    reading: true,
                };
                return true;
            }
            Line::Start => self.line = Line::Code,
            Line::Directive { name, reading } => {
                if *reading && ident {
                    name.push(code);
                    let name = *name;
                    if strict && self.in_block() {
                        let nested = self.conditionals.iter().filter(|&&d| d > 0).count();
                        if !directive_fits_a_block(&name, nested < MAX_BLOCK_CONDITIONALS) {
                            return false;
                        }
                    }
                } else if *reading && !((blank || code == b'/') && name.len == 0) {
                    // (A `/` may open a comment before the name.)
                    // A `#` with no name (`#  || x`, `#  /* c */`) is a
                    // null directive: legal, and never seen in a body.
                    let unnamed = name.len == 0;
                    *reading = false;
                    if strict && unnamed && self.in_block() {
                        return false;
                    }
                }
                // Preprocessor lines leave the brackets alone.
                return true;
            }
            Line::Code => {}
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

    /// A byte of code that is not a blank, right after an `if`'s header:
    /// the body has started without braces (a `{` is taken before).
    fn body_starts(&mut self) {
        if let IfBody::Next(depth) = self.if_body
            && self.stack.len() == depth
        {
            self.if_body = IfBody::Braceless(depth);
        }
    }

    /// A solid code byte outside preprocessor lines.
    fn bracket(&mut self, code: u8, strict: bool) -> bool {
        let prev = self.prev_solid;
        // Only the byte that ends an `if`'s body lets `else` come next (a
        // `/` may open a comment: `} /* x */ else`).
        if code != b'/' {
            self.else_ok = false;
        }
        if code != b'{' {
            self.body_starts();
        }
        if code != b'*' && code != b')' {
            // Anything but identifiers and `*` inside: not a cast.
            if let Some(top) = self.stack.last_mut() {
                top.cast = false;
            }
        }
        if matches!(code, b';' | b'(' | b')' | b'[' | b']' | b'{' | b'}') {
            self.enum_pending = std::mem::take(&mut self.enum_pending) && code == b'{';
        }
        let top = self.stack.last().copied();
        let top_is = |b: u8| top.is_some_and(|o| o.bracket == b);
        match code {
            b'(' => {
                let mut open = Open::new(code);
                open.for_header = self.word.is_some_and(|w| w.is("for"));
                open.if_header = self.word.is_some_and(|w| w.is("if"));
                let after_word = prev.is_ascii_alphanumeric() || prev == b'_';
                open.cast = !after_word || self.word.is_some_and(|w| w.is("return"));
                self.stack.push(open);
            }
            b'[' => self.stack.push(Open::new(code)),
            b'{' => {
                let literal = prev == b')' && self.closed_cast;
                if strict && (top_is(b'[') || (top_is(b'(') && !literal)) {
                    return false;
                }
                let mut open = Open::new(code);
                open.linkage = self.word.is_some_and(|w| w.is("extern"));
                if self.if_body == IfBody::Next(self.stack.len()) {
                    open.if_block = true;
                    self.if_body = IfBody::None;
                }
                open.list = matches!(prev, b'=' | b',')
                    || (prev == b'{' && top.is_some_and(|o| o.list))
                    || literal
                    || self.enum_pending;
                self.enum_pending = false;
                self.stack.push(open);
            }
            b')' | b']' | b'}' => {
                let opener = match code {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                let matches = top_is(opener);
                let crosses_if = code == b'}'
                    && self
                        .conditionals
                        .last()
                        .is_some_and(|&depth| self.stack.len() <= depth);
                // A block's statements end with `;` or `}` (or it is empty,
                // or a label ends it).
                let unfinished_statement = code == b'}'
                    && top.is_some_and(|o| !o.list)
                    && !matches!(prev, b';' | b'{' | b'}' | b':');
                if strict && (!matches || crosses_if || unfinished_statement) {
                    return false;
                }
                if matches && let Some(open) = self.stack.pop() {
                    self.closed_cast = open.cast;
                    if open.if_header {
                        self.if_body = IfBody::Next(self.stack.len());
                    }
                    if open.if_block {
                        self.else_ok = true;
                    } else if code == b'}' {
                        self.braceless_body_ends();
                    }
                }
            }
            b';' => {
                let refused = top_is(b'[')
                    || top.is_some_and(|o| o.list)
                    || (top_is(b'(') && !top.is_some_and(|o| o.for_header));
                if refused && strict {
                    return false;
                }
                self.braceless_body_ends();
            }
            _ => {}
        }
        true
    }

    /// A `;` or `}` that may end an `if`'s body without braces.
    fn braceless_body_ends(&mut self) {
        if let IfBody::Braceless(depth) = self.if_body
            && self.stack.len() == depth
        {
            self.if_body = IfBody::None;
            self.else_ok = true;
        }
    }

    /// A line end in code: a directive line takes effect (unless a `\`
    /// continues it).
    fn end_line(&mut self, strict: bool, continued: bool) -> bool {
        if self.reading.take().is_some() {
            self.else_ok = false;
        }
        self.word = None;
        if continued {
            return true;
        }
        self.column_zero = true;
        let line = std::mem::replace(&mut self.line, Line::Start);
        let Line::Directive { name, .. } = line else {
            return true;
        };
        if strict && name.len == 0 && self.in_block() {
            return false;
        }
        if name.starts_with("if") && !name.overflow {
            // `#if`, `#ifdef`, `#ifndef`.
            self.conditionals.push(self.stack.len());
        } else if name.is("endif") || name.is("else") || name.starts_with("elif") {
            if self.conditionals.is_empty() {
                return !strict;
            }
            if name.is("endif") {
                self.conditionals.pop();
            }
        }
        true
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
    fn closers_must_match_the_innermost_opener() {
        let g = guard("int f(int a){\n  if( g(a");
        assert!(g.allows(b")"));
        assert!(!g.allows(b"}"));
        assert!(!g.allows(b"]"));
        assert!(g.allows(b"))"));
        assert!(!g.allows(b")))"), "the third `)` would close the brace");
        assert!(g.allows(b")){ }"));
        assert!(g.allows(b")){ }\n}"));
        assert!(!g.allows(b")){ }\n}}"), "nothing left to close");
        // In comments and literals brackets do not count.
        assert!(g.allows(b" /* } */ , \"]\", ']')"));
    }

    #[test]
    fn statements_and_blocks_do_not_start_inside_parentheses() {
        let g = guard("void f(void){\n  x = g(a");
        assert!(!g.allows(b";"));
        assert!(!g.allows(b" {"));
        assert!(g.allows(b");"));
        assert!(g.allows(b", (Point){1, 2});"), "a compound literal");
        let g = guard("void f(void){\n  for(i=0");
        assert!(g.allows(b"; i<n; i++){"));
        let g = guard("void f(void){\n  for (i=0");
        assert!(g.allows(b"; i<n; i++) {"), "a blank between `for` and `(`");
        let g = guard("void f(void){\n  format(i=0");
        assert!(!g.allows(b";"), "only `for` itself");
        let g = guard("void f(void){\n  x = a[i");
        assert!(!g.allows(b";"));
        assert!(!g.allows(b"{"));
        assert!(g.allows(b"];"));
    }

    #[test]
    fn blocks_end_after_a_statement_and_lists_after_an_item() {
        let g = guard("int f(int a){\n  x = a");
        assert!(!g.allows(b"\n}"), "the statement lacks its `;`");
        assert!(g.allows(b";\n}"));
        assert!(g.allows(b";\n  if( a ){ }\n}"), "an empty block");
        assert!(g.allows(b";\n  end:\n}"), "a label");
        assert!(!g.allows(b";\n  if( a ){ b() }"));
        // Initializers and enums are lists: items, commas, no `;` inside.
        let g = guard("void f(void){\n  static const int a[] = {1, 2");
        assert!(g.allows(b"};\n}"));
        assert!(g.allows(b", };\n}"), "a trailing comma");
        assert!(!g.allows(b";"));
        let g = guard("void f(void){\n  int m[2][2] = { {1, 2}, {3");
        assert!(g.allows(b", 4} };\n}"));
        assert!(!g.allows(b", 4}; };"));
        let g = guard("enum color { RED, GREEN");
        assert!(g.allows(b" };"));
        assert!(!g.allows(b"; };"));
        let g = guard("struct point { int x");
        assert!(!g.allows(b" }"), "a struct's members end with `;`");
        assert!(g.allows(b"; int y; };"));
        // A compound literal is a list; `if (...)` opens a block.
        let g = guard("void f(void){\n  p = (Point){1, 2");
        assert!(g.allows(b"};\n}"));
        let g = guard("Point f(void){\n  return (Point){1, 2");
        assert!(g.allows(b"};\n}"));
        let g = guard("void f(void){\n  if (x){ y = 1");
        assert!(!g.allows(b"}"));
        assert!(g.allows(b"; }\n}"));
    }

    #[test]
    fn only_a_cast_is_followed_by_a_brace_inside_parentheses() {
        let g = guard("void f(void){\n  g(a, (struct point *)");
        assert!(g.allows(b"{1, 2});\n}"), "a compound literal argument");
        let g = guard("void f(void){\n  if( (h(a) || (g(b))");
        assert!(!g.allows(b"{"), "`(g(b))` holds a call: no cast");
        let g = guard("void f(void){\n  g(a, h(b)");
        assert!(!g.allows(b"{"), "a call's parentheses are no cast");
        let g = guard("void f(void){\n  g(a, (b + c)");
        assert!(!g.allows(b"{"), "an expression is no cast");
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
    fn else_comes_only_after_an_ifs_body() {
        let g = guard("int f(int a){\n");
        assert!(g.allows(b"  if( a ){\n    a++;\n  }else{\n    a--;\n  }\n}"));
        assert!(
            g.allows(b"  if( a ) a++;\n  else a--;\n}"),
            "bodies without braces"
        );
        assert!(g.allows(b"  if( a ) while( a ){ a--; }\n  else a++;\n}"));
        assert!(g.allows(b"  if( a ){ a++; }else if( a>1 ){ a--; }else{ a=0; }\n}"));
        assert!(g.allows(b"  if( a ){ a++; } /* done */\n  else a--;\n}"));
        assert!(g.allows(b"  if( a ){\n#ifdef X\n    a++;\n#endif\n  }\n  else a--;\n}"));
        assert!(g.allows(b"  if( a );\n  else a--;\n}"), "an empty body");
        assert!(g.allows(b"  if( g(a) && (a>1) ){ a++; }else{ a--; }\n}"));
        assert!(
            !g.allows(b"  while( a ){\n    a--;\n  }else{"),
            "after a while"
        );
        assert!(!g.allows(b"  {\n    a--;\n  }else"), "after a plain block");
        assert!(!g.allows(b"  a++;\n  else"), "after a statement");
        assert!(
            !g.allows(b"  if( a ){ a++; }else{ a--; }else"),
            "a second else"
        );
        assert!(!g.allows(b"  if( a ){ a++; } a--; else"));
        assert!(!g.allows(b"  if( a ){ a++; }\n  b = 1;\n  else"));
        // Refused however the word is split into tokens, as soon as it is
        // complete: the token cannot wait for the next byte, so a name
        // that starts with it (`elsewhere`, rare) is refused there too.
        let g = guard("int f(int a){\n  a++;\n  el");
        assert!(!g.allows(b"se"));
        assert!(g.allows(b"s"));
        assert!(g.allows(b"bow = 1;"));
        let g = guard("int f(int a){\n  if( a ){ a++; }\n  el");
        assert!(g.allows(b"se"));
    }

    #[test]
    fn conditionals_close_before_the_braces_around_them() {
        let g = guard("void f(void){\n#ifdef X\n  a();\n");
        assert!(!g.allows(b"}"), "the function cannot end inside its #ifdef");
        assert!(g.allows(b"#endif\n}"));
        assert!(
            g.allows(b"  if( a ){\n  }\n"),
            "a block opened and closed inside"
        );
        assert!(g.allows(b"#else\n  b();\n#endif\n}"));
        let g = guard("void f(void){\n");
        assert!(!g.allows(b"#endif\n"), "no #if open");
        assert!(!g.allows(b"#else\n"));
        assert!(
            g.allows(b"#if M(a) ((a)+1\n#endif\n"),
            "directive lines leave brackets alone"
        );
        assert!(g.allows(b"#if defined(X) \\\n  && Y\n  x;\n#endif\n}"));
    }

    #[test]
    fn lines_in_a_block_start_at_column_zero_only_to_close_it() {
        let g = guard("int f(int a){\n  a++;\n");
        assert!(g.allows(b"}"));
        assert!(g.allows(b"  return a;\n}"));
        assert!(g.allows(b"\n\n}"), "blank lines");
        assert!(g.allows(b"#ifdef X\n  a--;\n#endif\n}"));
        assert!(!g.allows(b"/*\n** g\n*/\nint g(void){"), "wandering out");
        assert!(!g.allows(b"int g(void){"));
        assert!(!g.allows(b"end:\n}"), "a label goes indented");
        assert!(!g.allows(b"  a--;\n// x\n}"));
        assert!(g.allows(b"  a--; /* x\n** y\n*/\n}"), "a comment's lines");
        assert!(g.allows(b"  s = \"a\\\nb\";\n}"), "a continued literal");
        // Inside a block, at any depth of brackets.
        let g = guard("int f(int a){\n  static const int t[] = {\n");
        assert!(!g.allows(b"1, 2,\n"), "a table inside a function");
        assert!(g.allows(b"    1, 2,\n  };\n}"));
        let g = guard("int f(int a){\n  g(a,\n");
        assert!(!g.allows(b"b);\n}"));
        assert!(
            !g.allows(b"**   b);\n}"),
            "a comment's stars outside a comment"
        );
        assert!(g.allows(b"    b);\n}"));
        // Directives: conditionals, not definitions.
        let g = guard("int f(int a){\n");
        assert!(g.allows(b"#if X\n#elif Y\n#else\n#endif\n"));
        assert!(g.allows(b"#  ifndef X\n#  endif\n#error no\n#pragma once\n"));
        assert!(!g.allows(b"#define X 1\n"));
        assert!(
            !g.allows(b"#  def"),
            "refused as soon as the name cannot fit"
        );
        assert!(!g.allows(b"#include <x.h>\n"));
        assert!(g.allows(b"#i"), "#if and #include share a start");
        assert!(!g.allows(b"#  || X\n"), "a null directive");
        assert!(!g.allows(b"#  /* X */\n"));
        assert!(!g.allows(b"#\n"));
        assert!(
            g.allows(b"#  /* X */ if Y\n#endif\n"),
            "a comment before the name"
        );
        // At most MAX_BLOCK_CONDITIONALS nested in a body; else and endif
        // stay free, and closing one makes room again.
        let four = "#if A\n#ifdef B\n#  ifndef C\n#  if D\n";
        let g = guard(&format!("int f(int a){{\n{four}"));
        assert!(!g.allows(b"#if E\n"));
        assert!(!g.allows(b"# ifdef E\n"));
        assert!(
            !g.allows(b"#i"),
            "no other directive a block holds starts so"
        );
        assert!(g.allows(b"#else\n#elif E\n#endif\n#if E\n"));
        let g = guard(&format!("{four}int f(int a){{\n"));
        assert!(
            g.allows(b"#if E\n"),
            "the file's own conditionals do not count"
        );
        // Outside blocks column 0 and every directive are free.
        let g = guard("static const int t[] = {\n");
        assert!(g.allows(b"1, 2,\n3};\n#define X 1\n"), "a table");
        let g = guard("extern \"C\" {\n");
        assert!(g.allows(b"int g(void);\n}"));
        let g = guard("int x;\n");
        assert!(g.allows(b"/* top level */\nint y;\n#include <x.h>\n"));
        let g = guard("int f(\n  int a\n");
        assert!(g.allows(b"){\n  return a;\n}"), "a signature's lines");
    }

    #[test]
    fn real_function_bodies_are_allowed_but_for_a_column_zero_label() {
        // Verbatim SQLite: tables, `#ifdef`s inside bodies, multi-line
        // calls, and one `goto` label at column 0, which the guard refuses
        // by design (it is legal indented).
        let text = include_str!("../tests/fixtures/sqlite_functions.c");
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
