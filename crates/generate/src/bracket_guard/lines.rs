//! Lines and the preprocessor: the start of each line (column 0 inside a
//! block), directive lines (which leave the brackets alone) and the `#if`s
//! still open.

use super::BracketGuard;
use super::word::Word;

/// Where the current line stands with the preprocessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// Only blanks in code so far.
    Start,
    /// An ordinary line of code.
    Code,
    /// A `#` line; the directive's name while it is being read.
    Directive { name: Word, reading: bool },
}

/// Directives a function body may hold.
const BLOCK_DIRECTIVES: [&str; 10] = [
    "if", "ifdef", "ifndef", "elif", "else", "endif", "error", "warning", "pragma", "line",
];

/// Conditionals a function body may nest: real C code bases stay within
/// it, while a model that has lost its place writes `#if` after `#if` and
/// never comes back.
pub const MAX_BLOCK_CONDITIONALS: usize = 4;

/// Whether `name`, read so far, may still become a directive a block holds
/// (`#if`, `#ifdef` and `#ifndef` only while `may_open`).
pub(super) fn directive_fits_a_block(name: &Word, may_open: bool) -> bool {
    !name.overflow
        && BLOCK_DIRECTIVES
            .iter()
            .filter(|d| may_open || !d.starts_with("if"))
            .any(|d| d.as_bytes().starts_with(&name.bytes[..name.len]))
}

impl BracketGuard {
    /// The line's part of one code byte that is not a line end: a byte in
    /// column 0 of a block, the blanks that start a line, and the bytes of
    /// a directive line. `Some(verdict)` when the line took the byte (the
    /// brackets never see it; with `strict`, `false` where it breaks a
    /// rule), `None` for a byte of ordinary code.
    pub(super) fn line_byte(
        &mut self,
        code: u8,
        blank: bool,
        ident: bool,
        column_zero: bool,
        strict: bool,
    ) -> Option<bool> {
        if strict && column_zero && !blank && !matches!(code, b'}' | b'#') && self.in_block() {
            return Some(false);
        }
        match &mut self.line {
            Line::Start if blank => return Some(true),
            Line::Start if code == b'#' => {
                self.line = Line::Directive {
                    name: Word::default(),
                    reading: true,
                };
                return Some(true);
            }
            Line::Start => self.line = Line::Code,
            Line::Directive { name, reading } => {
                if *reading && ident {
                    name.push(code);
                    let name = *name;
                    if strict && self.in_block() {
                        let nested = self.conditionals.iter().filter(|&&d| d > 0).count();
                        if !directive_fits_a_block(&name, nested < MAX_BLOCK_CONDITIONALS) {
                            return Some(false);
                        }
                    }
                } else if *reading && !((blank || code == b'/') && name.len == 0) {
                    // (A `/` may open a comment before the name.)
                    // A `#` with no name (`#  || x`, `#  /* c */`) is a
                    // null directive: legal, and never seen in a body.
                    let unnamed = name.len == 0;
                    *reading = false;
                    if strict && unnamed && self.in_block() {
                        return Some(false);
                    }
                }
                // Preprocessor lines leave the brackets alone.
                return Some(true);
            }
            Line::Code => {}
        }
        None
    }

    /// A line end in code: a directive line takes effect (unless a `\`
    /// continues it).
    pub(super) fn end_line(&mut self, strict: bool, continued: bool) -> bool {
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

    pub(super) fn guard(prompt: &str) -> BracketGuard {
        BracketGuard::after_prompt(prompt)
    }

    #[test]
    pub(super) fn conditionals_close_before_the_braces_around_them() {
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
    pub(super) fn lines_in_a_block_start_at_column_zero_only_to_close_it() {
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
}
