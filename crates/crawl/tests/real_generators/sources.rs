//! The code blocks of the test sites' sources, read the way each
//! generator reads them, so that a test can ask for every one of them,
//! byte for byte, in what the crawler kept: Markdown fences, reST's
//! `code-block` directives and `::` literal blocks, fences in Rust doc
//! comments (rustdoc's hidden `# ` lines left out), and Doxygen's
//! `@code` blocks in C comments.

/// A code block as its source writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The language the source names, if the generator shows it.
    pub lang: Option<String>,
    pub code: String,
}

/// Fenced blocks (```` ``` ```` or `~~~`) of a Markdown text; the
/// language is the info string's first word.
pub fn markdown(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(fence) = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f)) else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let info = trimmed.trim_start_matches(fence.chars().next().unwrap());
        let lang = info
            .split(|c: char| c.is_whitespace() || c == ',' || c == '{')
            .next()
            .filter(|l| !l.is_empty())
            .map(str::to_string);
        let mut code = Vec::new();
        for line in lines.by_ref() {
            if line.trim_start().starts_with(fence) {
                break;
            }
            // An indented fence takes its indentation off its lines.
            let cut = line.len() - line.trim_start().len();
            code.push(&line[cut.min(indent)..]);
        }
        blocks.push(Block {
            lang,
            code: code.join("\n"),
        });
    }
    blocks
}

/// `.. code-block:: lang` (and `code`, `sourcecode`) directives and `::`
/// literal blocks of a reST text; a literal block's language is the
/// project's, so none is asked for.
pub fn rest(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        let directive = ["code-block::", "sourcecode::", "code::"]
            .iter()
            .find_map(|d| line.strip_prefix(".. ")?.strip_prefix(d));
        let lang = match directive {
            Some(lang) => Some(lang.trim().to_string()),
            None if line.ends_with("::") && !line.starts_with("..") => None,
            None => {
                i += 1;
                continue;
            }
        };
        // The block is what is indented further than the line naming it.
        let base = indent_of(lines[i]);
        i += 1;
        // The directive's options (`:linenos:`), then a blank line.
        while i < lines.len() && lines[i].trim().starts_with(':') && directive.is_some() {
            i += 1;
        }
        let start = i;
        while i < lines.len() && (lines[i].trim().is_empty() || indent_of(lines[i]) > base) {
            i += 1;
        }
        let body: Vec<&str> = lines[start..i].to_vec();
        let code = dedent(&body);
        if !code.is_empty() {
            blocks.push(Block { lang, code });
        }
    }
    blocks
}

/// The fenced blocks in a Rust file's doc comments (`///` and `//!`):
/// each comment's lines, their common indentation taken off, read as
/// Markdown; an unnamed language is Rust, and in Rust blocks the lines
/// rustdoc hides (`#` alone or `# ` first) are left out.
pub fn rust_docs(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("///").or_else(|| t.strip_prefix("//!")) {
            comment.push(rest);
            continue;
        }
        if comment.is_empty() {
            continue;
        }
        for mut block in markdown(&dedent(&comment)) {
            if block.lang.is_none() || block.lang.as_deref() == Some("rust") {
                block.lang = Some("rust".into());
                let shown: Vec<&str> = block
                    .code
                    .lines()
                    .filter(|l| {
                        let l = l.trim_start();
                        l != "#" && !l.starts_with("# ")
                    })
                    .collect();
                block.code = shown.join("\n");
            }
            blocks.push(block);
        }
        comment.clear();
    }
    blocks
}

/// The `@code` … `@endcode` blocks of a C file's `/** */` comments: the
/// leading `*` of each line taken off, then the block's common
/// indentation. Doxygen names no language in its HTML.
pub fn doxygen_comments(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut code: Option<Vec<&str>> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix('*').unwrap_or(t);
        if t.trim_start().starts_with("@code") || t.trim_start().starts_with("\\code") {
            code = Some(Vec::new());
        } else if t.trim_start().starts_with("@endcode") || t.trim_start().starts_with("\\endcode")
        {
            if let Some(lines) = code.take() {
                blocks.push(Block {
                    lang: None,
                    code: dedent(&lines),
                });
            }
        } else if let Some(lines) = code.as_mut() {
            lines.push(t);
        }
    }
    blocks
}

/// Spaces and tabs a line starts with.
fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// Lines without their common indentation (blank lines aside), blank
/// lines at both ends left out.
fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent_of(l))
        .min()
        .unwrap_or(0);
    let cut: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                &l[indent..]
            }
        })
        .collect();
    let first = cut.iter().position(|l| !l.is_empty()).unwrap_or(cut.len());
    let last = cut
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(first, |i| i + 1);
    cut[first..last].join("\n")
}

#[test]
fn the_readers_find_the_blocks() {
    let md = "text\n\n```rust linenums=\"1\"\nfn main() {\n    x();\n}\n```\n\n~~~\nplain\n~~~\n";
    assert_eq!(
        markdown(md),
        vec![
            Block {
                lang: Some("rust".into()),
                code: "fn main() {\n    x();\n}".into()
            },
            Block {
                lang: None,
                code: "plain".into()
            }
        ]
    );
    let rst = "Intro::\n\n   a = 1\n     b\n\n.. code-block:: c\n   :linenos:\n\n   int x;\n\n   y;\nAfter\n";
    let blocks = rest(rst);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(blocks[0].code, "a = 1\n  b");
    assert_eq!(blocks[1].lang.as_deref(), Some("c"));
    assert_eq!(blocks[1].code, "int x;\n\ny;");
    let rs =
        "/// Doc.\n///\n/// ```\n/// # hidden();\n/// shown(\n///     1);\n/// ```\nfn f() {}\n";
    assert_eq!(rust_docs(rs)[0].code, "shown(\n    1);");
    let c = "/**\n * @code\n * int x;\n * if (x) {\n *     y();\n * }\n * @endcode\n */\n";
    assert_eq!(doxygen_comments(c)[0].code, "int x;\nif (x) {\n    y();\n}");
}
