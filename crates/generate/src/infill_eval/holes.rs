//! The holes `cllm eval-infill` asks a model to fill, cut from the bodies
//! of C functions (tree-sitter's `function_definition`):
//!
//! - a single-line hole runs from a point inside a body line (after the
//!   line's first non-blank character, with a non-blank character left) to
//!   the line's end, the newline excluded;
//! - a block hole is the text between the braces of the body of an `if`,
//!   `for`, `while` or `switch` (non-blank).
//!
//! Only functions that parse on their own are used, so a middle as good as
//! the original always parses. Consolidated text (`cllm prepare`'s file
//! marker lines) is cut into its files first, so a hole's context never
//! reaches into another file.

use crate::error::GenerateError;
use crate::openings::split_at_markers;
use crate::syntax::{c_parser, check_c};
use cllm_core::rng::Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use tree_sitter::Node;

/// A file the holes are cut from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The file's name (inside a consolidated text: its marker's path).
    pub name: String,
    pub text: String,
}

/// Which kind of hole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoleKind {
    SingleLine,
    Block,
}

impl HoleKind {
    pub const ALL: [HoleKind; 2] = [HoleKind::SingleLine, HoleKind::Block];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            HoleKind::SingleLine => "single_line",
            HoleKind::Block => "block",
        }
    }
}

/// One hole: the byte range `middle` of document `doc` is taken out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    pub kind: HoleKind,
    /// Index into the documents.
    pub doc: usize,
    /// The reference middle's bytes in the document.
    pub middle: Range<usize>,
    /// The enclosing function definition's bytes (what the parse check
    /// reads, with the hole filled).
    pub function: Range<usize>,
    /// 1-based line of the hole's start.
    pub line: usize,
}

impl Hole {
    /// The reference middle.
    pub fn reference<'t>(&self, docs: &'t [Document]) -> &'t str {
        &docs[self.doc].text[self.middle.clone()]
    }

    /// The enclosing function with `middle` in the hole's place.
    pub fn function_with(&self, docs: &[Document], middle: &str) -> String {
        let text = &docs[self.doc].text;
        format!(
            "{}{middle}{}",
            &text[self.function.start..self.middle.start],
            &text[self.middle.end..self.function.end]
        )
    }

    /// The document with `middle` in the hole's place.
    pub fn document_with(&self, docs: &[Document], middle: &str) -> String {
        let text = &docs[self.doc].text;
        format!(
            "{}{middle}{}",
            &text[..self.middle.start],
            &text[self.middle.end..]
        )
    }
}

/// A body line a single-line hole may be cut from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineCandidate {
    pub doc: usize,
    /// The line's bytes, without its newline.
    pub line: Range<usize>,
    /// Where the cut may fall: character boundaries in `cuts` (the first
    /// non-blank character has been passed, the last is still ahead).
    pub cuts: Range<usize>,
    pub function: Range<usize>,
    /// 1-based line number.
    pub line_no: usize,
}

/// Every place a hole can be cut from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidates {
    pub lines: Vec<LineCandidate>,
    pub blocks: Vec<Hole>,
    /// Function definitions that parse on their own (the others are
    /// skipped).
    pub functions: usize,
}

/// Cuts `texts` (`(name, text)` pairs) into documents at `cllm prepare`'s
/// file markers.
pub fn documents(texts: &[(String, String)]) -> Vec<Document> {
    texts
        .iter()
        .flat_map(|(name, text)| {
            split_at_markers(name, text).into_iter().map(|p| Document {
                name: p.file,
                text: p.text.to_string(),
            })
        })
        .collect()
}

/// Every candidate hole in `docs`, in document order. Errs only if the C
/// grammar cannot be loaded.
pub fn find_candidates(docs: &[Document]) -> Result<Candidates, GenerateError> {
    let mut parser = c_parser()?;
    let mut found = Candidates::default();
    for (d, doc) in docs.iter().enumerate() {
        let Some(tree) = parser.parse(&doc.text, None) else {
            continue;
        };
        for function in function_definitions(tree.root_node()) {
            let Some(body) = function.child_by_field_name("body") else {
                continue;
            };
            let span = function.start_byte()..function.end_byte();
            if body.kind() != "compound_statement"
                || !check_c(&doc.text[span.clone()]).is_ok_and(|r| r.parses)
            {
                continue;
            }
            found.functions += 1;
            body_lines(d, &doc.text, body, &span, &mut found.lines);
            blocks(d, body, &span, &mut found.blocks);
        }
    }
    Ok(found)
}

/// Function definitions in source order (iteratively: real files nest
/// deeply), not descending into them.
fn function_definitions(root: Node<'_>) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let is_function = node.kind() == "function_definition";
        if is_function {
            out.push(node);
        }
        if !is_function && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return out;
            }
        }
    }
}

/// The lines strictly between a body's braces that can be cut.
fn body_lines(
    doc: usize,
    text: &str,
    body: Node<'_>,
    function: &Range<usize>,
    out: &mut Vec<LineCandidate>,
) {
    let (open, close) = (body.start_byte() + 1, body.end_byte() - 1);
    let first_row = body.start_position().row + 1;
    let mut at = text[..open].rfind('\n').map_or(0, |i| i + 1);
    let mut row = body.start_position().row;
    while at < close {
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let line = at..end.min(text.len());
        if row >= first_row && line.end <= close {
            let content = text[line.clone()].trim_end_matches('\r');
            let first = content.len() - content.trim_start().len();
            let last = content.trim_end().char_indices().last().map(|(i, _)| i);
            if let Some(last) = last
                && first < last
            {
                // After the first non-blank character, up to the start of
                // the last one.
                let after_first = first + content[first..].chars().next().map_or(1, char::len_utf8);
                out.push(LineCandidate {
                    doc,
                    line: line.start..line.start + content.len(),
                    cuts: line.start + after_first..line.start + last + 1,
                    function: function.clone(),
                    line_no: row + 1,
                });
            }
        }
        at = end + 1;
        row += 1;
    }
}

/// The bodies of `if`/`for`/`while`/`switch` statements inside `body`.
fn blocks(doc: usize, body: Node<'_>, function: &Range<usize>, out: &mut Vec<Hole>) {
    let mut cursor = body.walk();
    let mut depth = 0usize;
    loop {
        let node = cursor.node();
        let field = match node.kind() {
            "if_statement" => Some("consequence"),
            "for_statement" | "while_statement" | "switch_statement" => Some("body"),
            _ => None,
        };
        if let Some(block) = field.and_then(|f| node.child_by_field_name(f))
            && let Some(middle) = between_braces(block)
        {
            out.push(Hole {
                kind: HoleKind::Block,
                doc,
                middle,
                function: function.clone(),
                line: block.start_position().row + 1,
            });
        }
        if cursor.goto_first_child() {
            depth += 1;
            continue;
        }
        loop {
            if depth == 0 {
                return;
            }
            if cursor.goto_next_sibling() {
                break;
            }
            cursor.goto_parent();
            depth -= 1;
        }
    }
}

/// The bytes between a compound statement's braces, when both are real
/// and something non-blank is between them.
fn between_braces(block: Node<'_>) -> Option<Range<usize>> {
    if block.kind() != "compound_statement" || block.has_error() || block.child_count() < 3 {
        return None;
    }
    let open = block.child(0)?;
    let close = block.child(block.child_count() - 1)?;
    if open.kind() != "{" || close.kind() != "}" || close.is_missing() {
        return None;
    }
    // Only comments and blanks between the braces: nothing to write.
    let mut cursor = block.walk();
    let has_code = block
        .children(&mut cursor)
        .any(|c| !matches!(c.kind(), "{" | "}" | "comment"));
    has_code.then(|| open.end_byte()..close.start_byte())
}

/// Draws up to `n` holes of each kind, seeded: candidates are shuffled and
/// taken in that order while `fits` accepts them (e.g. the reference middle
/// fits the tokens a model may generate); a line's cut point is drawn
/// uniformly among its character boundaries. Same candidates, `n` and
/// seed: same holes. Single-line holes come first.
pub fn draw_holes(
    docs: &[Document],
    candidates: &Candidates,
    n: usize,
    seed: u64,
    fits: &dyn Fn(&Hole) -> bool,
) -> Vec<Hole> {
    let mut rng = Rng::derive(seed, &[0x484f_4c45]); // "HOLE"
    let mut holes = Vec::new();
    let mut order: Vec<usize> = (0..candidates.lines.len()).collect();
    rng.shuffle(&mut order);
    let mut taken = 0;
    for i in order {
        if taken == n {
            break;
        }
        let c = &candidates.lines[i];
        let text = &docs[c.doc].text;
        let cuts: Vec<usize> = (c.cuts.clone())
            .filter(|&b| text.is_char_boundary(b))
            .collect();
        let cut = cuts[rng.below(cuts.len() as u64) as usize];
        let hole = Hole {
            kind: HoleKind::SingleLine,
            doc: c.doc,
            middle: cut..c.line.end,
            function: c.function.clone(),
            line: c.line_no,
        };
        if fits(&hole) {
            holes.push(hole);
            taken += 1;
        }
    }
    let mut order: Vec<usize> = (0..candidates.blocks.len()).collect();
    rng.shuffle(&mut order);
    holes.extend(
        order
            .into_iter()
            .map(|i| &candidates.blocks[i])
            .filter(|h| fits(h))
            .take(n)
            .cloned(),
    );
    holes
}
