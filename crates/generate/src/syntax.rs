//! Does a C text parse? tree-sitter with its C grammar builds a tree that
//! marks what it could not fit (ERROR nodes) and what it had to assume
//! (MISSING nodes, e.g. a `}` never closed). The first such node in source
//! order is the first syntax error.
//!
//! A generated completion is checked together with its prompt, since the
//! prompt opens what the completion must close: `int main() {` followed by
//! a body that never ends with `}` does not parse.

use super::error::GenerateError;
use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser};

/// The first syntax error: 1-based line and column (column in bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// What kind of error, for counting: `MISSING <kind>` for a node the
    /// parser had to assume (`MISSING }`, `MISSING ;`, `MISSING
    /// identifier`), `ERROR in <kind>` for text it could not fit, with the
    /// kind of the node it sits in (`ERROR in compound_statement`), and
    /// `ERROR (whole text)` when the parser recovered no structure at all
    /// (the tree's root is the error).
    #[serde(default)]
    pub kind: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyntaxReport {
    /// True when the whole text parses with no error or missing node.
    pub parses: bool,
    /// Where it first fails (`None` when it parses).
    pub first_error: Option<SyntaxError>,
}

/// Parses `source` as C. Errs only if the grammar cannot be loaded or the
/// parser gives up (never for bad C, which is a report with `parses` false).
pub fn check_c(source: &str) -> Result<SyntaxReport, GenerateError> {
    let mut parser = c_parser()?;
    let tree = parser
        .parse(source, None)
        .ok_or(GenerateError::ParserGaveUp)?;
    let root = tree.root_node();
    if !root.has_error() {
        return Ok(SyntaxReport {
            parses: true,
            first_error: None,
        });
    }
    let first_error = first_error_node(root).map(|node| {
        let at = node.start_position();
        let kind = error_kind(node);
        let message = if node.is_missing() {
            format!("missing `{}`", node.kind())
        } else {
            let text = node.utf8_text(source.as_bytes()).unwrap_or("");
            let shown: String = text.chars().take(30).collect();
            let more = if text.chars().count() > 30 { "…" } else { "" };
            format!("unexpected `{}{more}`", shown.replace('\n', "⏎"))
        };
        SyntaxError {
            line: at.row + 1,
            column: at.column + 1,
            message,
            kind,
        }
    });
    Ok(SyntaxReport {
        parses: false,
        first_error,
    })
}

/// A tree-sitter parser with the C grammar loaded.
pub fn c_parser() -> Result<Parser, GenerateError> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_c::LANGUAGE.into())
        .map_err(|e| GenerateError::Grammar(e.to_string()))?;
    Ok(parser)
}

/// [`SyntaxError::kind`] of an ERROR or MISSING node.
fn error_kind(node: Node<'_>) -> String {
    if node.is_missing() {
        format!("MISSING {}", node.kind())
    } else {
        match node.parent() {
            Some(parent) => format!("ERROR in {}", parent.kind()),
            None => "ERROR (whole text)".to_string(),
        }
    }
}

/// The first ERROR or MISSING node in source order, walking only into
/// subtrees that contain one (iteratively: generated text can nest deeply).
fn first_error_node(root: Node<'_>) -> Option<Node<'_>> {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        if node.is_error() || node.is_missing() {
            return Some(node);
        }
        if node.has_error() && cursor.goto_first_child() {
            continue;
        }
        // No error below: move to the next sibling, climbing as needed.
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(source: &str) -> String {
        check_c(source).unwrap().first_error.unwrap().kind
    }

    #[test]
    fn error_kinds_name_what_went_wrong() {
        assert_eq!(kind("int main() {\n    return 0;\n"), "MISSING }");
        assert_eq!(kind("int f(void) { int x = 1 }"), "MISSING ;");
        assert_eq!(
            kind("int a(void) { return 1; }\nint b(void) { return 1 +; }\n"),
            "MISSING identifier"
        );
        let k = kind("int f(void) {\n  int x = 1;\n  x = = 2 @;\n}\n");
        assert!(k.starts_with("ERROR in "), "{k}");
        // A completion the parser recovers nothing from (a real sample of a
        // small model trained briefly on SQLite).
        let garbled = "static void fts5PrefixMergerInsertByRowid(\n  PrefixMerger **ppHead,\n  PrefixMerger *p\n){\n  UNUSED_s(\n  i<p,\n  sqlite3_mate(P3_str_db *p, &nmp(ap, i==0]);\n  if(p, & SQLITE_BKPT, 0; i, j==0 ){\n    i==0].p, \"m; iCol) ) if( pAUTRtree_OK );\n  rc = sqlite3_str_mutex_free( (v,\n      }else{\n      p[i->a=nSe(pParse, OP_D, 0);\n    p->nArg = (a>0 ) return 0);\n    if( p, pUpRowid(a[p, pLoop = (p->n[p->zP2;\n  }\n    p->azP_Rep;\n  }";
        assert_eq!(kind(garbled), "ERROR (whole text)");
        assert_eq!(kind("}}}"), "ERROR in translation_unit");
        let r = check_c("int f(void) { return 0; }").unwrap();
        assert!(r.parses && r.first_error.is_none());
    }
}
