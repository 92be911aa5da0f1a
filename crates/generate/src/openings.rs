//! Prompts taken from the data itself: the openings of C functions (the
//! signature up to and including the body's `{`), found with tree-sitter's
//! C grammar, and a seeded sample of them spread over the text.
//!
//! An opening starts where tree-sitter's `function_definition` starts (its
//! return type, storage class and attributes) and ends at the `{` that
//! opens its body. A comment before the function is *not* included: in
//! real C it is often longer than the signature (several lines), so it
//! would crowd small models' contexts and the length limit out, and
//! what is measured here is whether the model writes a body that closes and
//! parses, which the signature alone sets up. (The seed prompts, which are
//! comments, measure generation from a comment.)
//!
//! An opening is kept only if it is a clean starting point: no ERROR or
//! MISSING node before the body, exactly one brace open after it (by
//! [`CloseWatch`]'s lexer, which the generator's brace stop uses), and the
//! whole original function parses on its own, so that a completion as good
//! as the original would count as correct.
//!
//! Consolidated text (`cllm prepare`'s `// ===== FILE: <path> =====` lines)
//! is cut at those lines and each file parsed on its own, so an error in
//! one file cannot swallow the next, and each opening knows its file.
//! Offsets are byte offsets from tree-sitter; every one of them is at a
//! node boundary, which is a character boundary, and slicing is checked
//! anyway (`str::get`), so text in any language is safe: text with no C
//! functions just has no openings.

use super::braces::CloseWatch;
use super::error::GenerateError;
use super::syntax::{c_parser, check_c};
use cllm_core::rng::Rng;
use serde::{Deserialize, Serialize};
use tree_sitter::Node;

/// The start of the line `cllm prepare` puts before each file.
pub const FILE_MARKER: &str = "// ===== FILE: ";

/// Openings longer than this many bytes are skipped by default.
pub const DEFAULT_MAX_OPENING_BYTES: usize = 300;

/// One function opening found in the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    /// The name of the text it was found in (a file of the data).
    pub source: String,
    /// The file inside a consolidated text (the marker's path), else
    /// `source`.
    pub file: String,
    /// 1-based line of the opening's start in `source`.
    pub line: usize,
    /// The prompt: from the definition's start to its body's `{`.
    pub text: String,
    /// The whole original function (opening and body).
    pub definition: String,
}

/// Every usable function opening in `texts` (`(name, text)` pairs), in
/// text order: no syntax error before its body, one brace open after it,
/// and the whole original function parses on its own. Errs only if the C
/// grammar cannot be loaded.
pub fn extract_openings(texts: &[(String, String)]) -> Result<Vec<Opening>, GenerateError> {
    let mut parser = c_parser()?;
    let mut found = Vec::new();
    for (name, text) in texts {
        for piece in split_at_markers(name, text) {
            let Some(tree) = parser.parse(piece.text, None) else {
                continue;
            };
            collect(tree.root_node(), &piece, name, &mut found);
        }
    }
    Ok(found)
}

/// One file of a (possibly consolidated) text.
pub(crate) struct Piece<'t> {
    pub(crate) file: String,
    /// 0-based line of the piece's first line in the whole text.
    pub(crate) first_line: usize,
    pub(crate) text: &'t str,
}

/// Cuts `text` at `cllm prepare`'s file marker lines (each piece starts
/// after its marker line); text before the first marker is a piece named
/// `name`.
pub(crate) fn split_at_markers<'t>(name: &str, text: &'t str) -> Vec<Piece<'t>> {
    let mut pieces = Vec::new();
    let mut file = name.to_string();
    let mut start = 0usize;
    let mut first_line = 0usize;
    let mut line_no = 0usize;
    let mut at = 0usize;
    while at < text.len() {
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
        let line = &text[at..end];
        if let Some(rest) = line.strip_prefix(FILE_MARKER) {
            let path = rest.trim_end().trim_end_matches('=').trim_end();
            if start < at {
                pieces.push(Piece {
                    file: file.clone(),
                    first_line,
                    text: &text[start..at],
                });
            }
            file = path.to_string();
            start = end;
            first_line = line_no + 1;
        }
        at = end;
        line_no += 1;
    }
    if start < text.len() {
        pieces.push(Piece {
            file,
            first_line,
            text: &text[start..],
        });
    }
    pieces
}

/// Walks the tree in source order (iteratively: real files nest deeply),
/// not descending into function definitions.
fn collect(root: Node<'_>, piece: &Piece<'_>, source: &str, out: &mut Vec<Opening>) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let mut descend = true;
        if node.kind() == "function_definition" {
            descend = false;
            if let Some(opening) = opening_of(node, piece, source) {
                out.push(opening);
            }
        }
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return;
            }
        }
    }
}

fn opening_of(node: Node<'_>, piece: &Piece<'_>, source: &str) -> Option<Opening> {
    let body = node.child_by_field_name("body")?;
    if body.kind() != "compound_statement" || body.is_missing() {
        return None;
    }
    // Nothing before the body may be an error or an assumption.
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        if child.id() == body.id() {
            break;
        }
        if child.is_error() || child.is_missing() || child.has_error() {
            return None;
        }
    }
    let start = node.start_byte();
    let brace_end = body.start_byte() + 1;
    let text = piece.text.get(start..brace_end)?;
    if !text.ends_with('{') || CloseWatch::after_prompt(text).open() != 1 {
        return None;
    }
    let definition = piece.text.get(start..node.end_byte())?;
    if !check_c(definition).is_ok_and(|r| r.parses) {
        return None;
    }
    Some(Opening {
        source: source.to_string(),
        file: piece.file.clone(),
        line: piece.first_line + node.start_position().row + 1,
        text: text.to_string(),
        definition: definition.to_string(),
    })
}

/// Chooses up to `n` openings, seeded and spread over the text: the
/// openings (in text order) are cut into `n` equal runs and one is drawn
/// from each run; runs with no usable opening leave their place to a
/// seeded draw from the rest. An opening is usable if it is at most
/// `max_bytes` long and `fits` accepts it (e.g. its tokens fit the model's
/// context). The result is in text order. Same openings, `n`, seed and
/// limits: same choice.
pub fn sample_openings(
    all: &[Opening],
    n: usize,
    seed: u64,
    max_bytes: usize,
    fits: &dyn Fn(&Opening) -> bool,
) -> Vec<Opening> {
    let m = all.len();
    if n == 0 || m == 0 {
        return Vec::new();
    }
    let usable = |o: &Opening| o.text.len() <= max_bytes && fits(o);
    let mut rng = Rng::derive(seed, &[0x4f50_454e]); // "OPEN"
    let runs = n.min(m);
    let mut chosen: Vec<usize> = Vec::with_capacity(runs);
    let mut rest: Vec<usize> = Vec::new();
    for r in 0..runs {
        let mut run: Vec<usize> = (r * m / runs..(r + 1) * m / runs).collect();
        rng.shuffle(&mut run);
        if let Some(k) = run.iter().position(|&i| usable(&all[i])) {
            chosen.push(run[k]);
            rest.extend_from_slice(&run[k + 1..]);
        }
    }
    if chosen.len() < n {
        rng.shuffle(&mut rest);
        for i in rest {
            if chosen.len() == n {
                break;
            }
            if usable(&all[i]) {
                chosen.push(i);
            }
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| all[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(name: &str, text: &str) -> Vec<(String, String)> {
        vec![(name.to_string(), text.to_string())]
    }

    const SNIPPET: &str = r#"#include <stdio.h>
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define BLOCK { int unused; }

/* A comment with a fake function: int fake(void) { return 0; } */
static int add(int a, int b) {
  if (a > b) { return MAX(a, b); }
  const char *s = "}{ not a brace";
  char c = '}';
  return a + b; // }
}

int
kr_style(a, b)
  int a;
  char *b;
{
  return a;
}

struct point { int x, y; };

struct point *make_point(int x,
                         int y)
{
  static struct point p = { 0, 0 };
  p.x = x; p.y = y;
  return &p;
}

void (*get_handler(int sig))(int) {
  return 0;
}

int with_comment(int x /* größe { */, char c) {
  return x + c;
}
"#;

    #[test]
    fn finds_each_function_opening_and_nothing_else() {
        let found = extract_openings(&texts("snippet.c", SNIPPET)).unwrap();
        let openings: Vec<&str> = found.iter().map(|o| o.text.as_str()).collect();
        assert_eq!(
            openings,
            vec![
                "static int add(int a, int b) {",
                "int\nkr_style(a, b)\n  int a;\n  char *b;\n{",
                "struct point *make_point(int x,\n                         int y)\n{",
                "void (*get_handler(int sig))(int) {",
                "int with_comment(int x /* größe { */, char c) {",
            ]
        );
        let lines: Vec<usize> = found.iter().map(|o| o.line).collect();
        assert_eq!(lines, vec![6, 13, 23, 31, 35]);
        for o in &found {
            assert_eq!(o.source, "snippet.c");
            assert_eq!(o.file, "snippet.c");
            assert!(o.definition.starts_with(&o.text));
            assert!(o.definition.ends_with('}'));
            assert!(check_c(&o.definition).unwrap().parses, "{}", o.definition);
        }
        assert!(found[0].definition.contains("return a + b; // }\n}"));
    }

    #[test]
    fn consolidated_text_is_cut_at_file_markers() {
        let text = "// ===== FILE: src/a.c =====\nint a(void) {\n  return 1;\n}\n\
                    // ===== FILE: src/b.c =====\nint broken(void) {\n  return (;\n\
                    // ===== FILE: src/é.c =====\nint b(void) { return 2; }\n";
        let found = extract_openings(&texts("all.txt", text)).unwrap();
        let got: Vec<(&str, usize, &str)> = found
            .iter()
            .map(|o| (o.file.as_str(), o.line, o.text.as_str()))
            .collect();
        assert!(got.contains(&("src/a.c", 2, "int a(void) {")), "{got:?}");
        assert!(got.contains(&("src/é.c", 9, "int b(void) {")), "{got:?}");
        assert!(found.iter().all(|o| o.source == "all.txt"));
        // The unclosed function in b.c is not a usable opening, and it did
        // not swallow é.c's.
        assert_eq!(found.len(), 2, "{got:?}");
    }

    #[test]
    fn text_without_c_functions_has_no_openings() {
        let rust = "fn main() {\n    let s = \"é}\";\n    println!(\"{s}\");\n}\n\
                    impl Foo for Bar { fn x(&self) -> u8 { 1 } }\n";
        let prose = "Ünïcödé prose — no code at all. 日本語のテキスト。\n";
        for t in [rust, prose, "", "{{{{", "}}}}"] {
            let found = extract_openings(&texts("x.rs", t)).unwrap();
            assert!(found.is_empty(), "{t:?}: {found:?}");
        }
    }

    #[test]
    fn sampling_is_seeded_spread_and_limited() {
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("int f{i}(int x) {{\n  return x + {i};\n}}\n"));
        }
        // One long opening that the byte limit drops.
        text.push_str(&format!(
            "int long_one(int {}) {{ return 0; }}\n",
            "a".repeat(400)
        ));
        let found = extract_openings(&texts("many.c", &text)).unwrap();
        assert_eq!(found.len(), 101);
        let pick = sample_openings(&found, 10, 7, 300, &|_| true);
        assert_eq!(pick.len(), 10);
        assert_eq!(pick, sample_openings(&found, 10, 7, 300, &|_| true));
        assert_ne!(pick, sample_openings(&found, 10, 8, 300, &|_| true));
        // One from each tenth of the text, in text order.
        let lines: Vec<usize> = pick.iter().map(|o| o.line).collect();
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
        for (r, o) in pick.iter().enumerate() {
            let index = (o.line - 1) / 3;
            assert!(
                (r * 101 / 10..(r + 1) * 101 / 10).contains(&index),
                "{lines:?}"
            );
        }
        assert!(
            sample_openings(&found, 200, 7, 300, &|_| true)
                .iter()
                .all(|o| o.text.len() <= 300)
        );
        assert_eq!(sample_openings(&found, 200, 7, 300, &|_| true).len(), 100);
        // A filter that refuses most: only what it accepts comes back.
        let even = |o: &Opening| o.text.contains('2');
        let some = sample_openings(&found, 50, 7, 300, &even);
        assert!(!some.is_empty() && some.iter().all(even));
        assert_eq!(some.len(), found.iter().filter(|o| even(o)).count().min(50));
    }
}
