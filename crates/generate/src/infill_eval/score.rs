//! How a filled middle is scored against the reference, and the figures of
//! a group of holes.
//!
//! - exact match: the two are equal once trailing whitespace is trimmed
//!   from both;
//! - edit similarity: `1 - levenshtein(a, b) / max(len a, len b)` over
//!   characters, on the same trimmed texts (CrossCodeEval's and RepoBench's
//!   "ES"); two empty texts are identical (1).

use super::holes::HoleKind;
use crate::generator::FinishReason;
use serde::{Deserialize, Serialize};

/// Exact match after trimming trailing whitespace.
pub fn exact_match(middle: &str, reference: &str) -> bool {
    middle.trim_end() == reference.trim_end()
}

/// Edit similarity of the trimmed texts, in [0, 1].
pub fn edit_similarity(middle: &str, reference: &str) -> f64 {
    let a: Vec<char> = middle.trim_end().chars().collect();
    let b: Vec<char> = reference.trim_end().chars().collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    1.0 - levenshtein(&a, &b) as f64 / longest as f64
}

/// Insertions, deletions and substitutions that turn `a` into `b`.
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// How the model was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Prefix and suffix (`Generator::infill`).
    Infill,
    /// The same prefix tokens, no suffix: a left-to-right completion.
    PrefixOnly,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Infill => "infill",
            Mode::PrefixOnly => "prefix_only",
        }
    }
}

/// One filled hole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HoleResult {
    /// Index of the hole in the drawn set.
    pub hole: usize,
    pub kind: HoleKind,
    pub mode: Mode,
    pub memory: bool,
    /// The document and the hole's 1-based line in it.
    pub file: String,
    pub line: usize,
    pub reference: String,
    pub middle: String,
    pub exact: bool,
    pub edit_similarity: f64,
    /// The enclosing function with the middle put back parses as C.
    pub parses: bool,
    pub tokens: usize,
    pub finish: FinishReason,
    /// Whether the context was cut to fit the model (the infill prompt's
    /// prefix or suffix; prefix-only uses the same prefix tokens).
    pub truncated: bool,
}

/// The figures of one kind of hole, asked one way, with or without memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub kind: HoleKind,
    pub mode: Mode,
    pub memory: bool,
    pub count: usize,
    pub exact_match: f64,
    pub edit_similarity: f64,
    pub parse_rate: f64,
    /// Middles that came back empty (an empty block still parses).
    pub empty: usize,
    pub mean_tokens: f64,
}

impl Cell {
    /// The figures of the results of `kind`, `mode` and `memory` in
    /// `results` (a cell of zeros with count 0 when there are none).
    pub fn of(results: &[HoleResult], kind: HoleKind, mode: Mode, memory: bool) -> Cell {
        let chosen: Vec<&HoleResult> = results
            .iter()
            .filter(|r| r.kind == kind && r.mode == mode && r.memory == memory)
            .collect();
        let count = chosen.len();
        let mean = |f: &dyn Fn(&HoleResult) -> f64| {
            if count == 0 {
                0.0
            } else {
                chosen.iter().map(|r| f(r)).sum::<f64>() / count as f64
            }
        };
        Cell {
            kind,
            mode,
            memory,
            count,
            exact_match: mean(&|r| f64::from(u8::from(r.exact))),
            edit_similarity: mean(&|r| r.edit_similarity),
            parse_rate: mean(&|r| f64::from(u8::from(r.parses))),
            empty: chosen.iter().filter(|r| r.middle.trim().is_empty()).count(),
            mean_tokens: mean(&|r| r.tokens as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lev(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        levenshtein(&a, &b)
    }

    #[test]
    fn levenshtein_counts_the_edits() {
        assert_eq!(lev("kitten", "sitting"), 3);
        assert_eq!(lev("", "abc"), 3);
        assert_eq!(lev("abc", ""), 3);
        assert_eq!(lev("flaw", "lawn"), 2);
        assert_eq!(lev("same", "same"), 0);
        // Characters, not bytes.
        assert_eq!(lev("ü", "u"), 1);
    }

    #[test]
    fn edit_similarity_by_hand() {
        // 3 edits over the longer length 7.
        assert!((edit_similarity("kitten", "sitting") - (1.0 - 3.0 / 7.0)).abs() < 1e-12);
        // `return a + b;` vs `return a - b;`: one substitution in 13.
        let es = edit_similarity("return a - b;", "return a + b;");
        assert!((es - 12.0 / 13.0).abs() < 1e-12, "{es}");
        // Trailing whitespace is not counted; leading whitespace is.
        assert_eq!(edit_similarity("x = 1;  \n", "x = 1;"), 1.0);
        assert!((edit_similarity(" x", "x") - 0.5).abs() < 1e-12);
        assert_eq!(edit_similarity("", ""), 1.0);
        assert_eq!(edit_similarity("", "abcd"), 0.0);
        assert_eq!(edit_similarity("wxyz", "abcd"), 0.0);
    }

    #[test]
    fn exact_match_ignores_trailing_whitespace_only() {
        assert!(exact_match("a + b;\n    ", "a + b;"));
        assert!(!exact_match(" a + b;", "a + b;"));
        assert!(!exact_match("a+b;", "a + b;"));
    }
}
