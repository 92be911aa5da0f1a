//! The content region written as Markdown-like text: headings (`## `),
//! paragraphs, list items (`- ` or `1. `, nested by two spaces; `[x] `
//! for a checked box), table rows (`| a | b |`), footnote markers
//! (`[^1]`) and superscripts (`^3`), and code blocks, fenced, their
//! text exactly as in the page (indentation, blank lines and all).

use ego_tree::NodeRef;
use scraper::CaseSensitivity::CaseSensitive;
use scraper::Node;

use super::chrome::{is_chrome, own_text};
use super::region::Region;

/// Elements that end a paragraph.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "caption",
    "dl",
    "dt",
    "dd",
    "figure",
    "figcaption",
    "ul",
    "ol",
    "hr",
    "details",
    "summary",
    "body",
    "html",
    "center",
    "address",
];

/// Elements that break a line inside a code block.
const CODE_LINES: &[&str] = &["div", "p"];

pub(super) struct Writer<'r> {
    region: &'r Region,
    pub blocks: Vec<String>,
    /// The paragraph being gathered, whitespace not yet collapsed.
    inline: String,
    /// Prefix of the paragraph being gathered ("## ", "- "): kept until
    /// text comes (a list item's text may be in a paragraph inside it).
    prefix: String,
    /// The lists around: `None` for bullets, else the next item's number.
    lists: Vec<Option<u64>>,
    /// Inside a table cell or a heading: blocks join its line.
    inline_only: usize,
    /// Rows of the current table, written as one block at its end.
    rows: Vec<String>,
}

impl<'r> Writer<'r> {
    pub(super) fn new(region: &'r Region) -> Writer<'r> {
        Writer {
            region,
            blocks: Vec::new(),
            inline: String::new(),
            prefix: String::new(),
            lists: Vec::new(),
            inline_only: 0,
            rows: Vec::new(),
        }
    }

    pub(super) fn flush(&mut self) {
        let text = collapse(&self.inline);
        // A paragraph of a glyph or two ("·", "|") is what chrome left.
        let words = text.chars().any(char::is_alphanumeric) || text.chars().count() > 3;
        if !text.is_empty() && words {
            self.blocks.push(format!("{}{text}", self.prefix));
            self.prefix.clear();
        }
        self.inline.clear();
    }

    /// Ends a block whose prefix must not reach the next one.
    fn end_block(&mut self) {
        self.flush();
        self.prefix.clear();
    }

    pub(super) fn walk(&mut self, node: NodeRef<'_, Node>) {
        match node.value() {
            Node::Text(t) => self.inline.push_str(t),
            Node::Element(e) => {
                if e.name() == "input" && e.attr("type") == Some("checkbox") && self.in_item() {
                    let mark = if e.attr("checked").is_some() {
                        "[x] "
                    } else {
                        "[ ] "
                    };
                    self.inline.push_str(mark);
                    return;
                }
                if self.region.drops(node) {
                    return;
                }
                let name = e.name();
                match name {
                    "pre" if self.inline_only == 0 => {
                        self.flush();
                        self.code_block(node, false);
                    }
                    // Doxygen's code blocks: a `div.line` per line.
                    "div" if self.inline_only == 0 && e.has_class("fragment", CaseSensitive) => {
                        self.flush();
                        self.code_block(node, true);
                    }
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" if self.inline_only == 0 => {
                        self.heading(node, usize::from(name.as_bytes()[1] - b'0'));
                    }
                    // Doxygen's page title.
                    "div" if self.inline_only == 0 && e.has_class("headertitle", CaseSensitive) => {
                        self.heading(node, 1);
                    }
                    "li" if self.inline_only == 0 => {
                        self.end_block();
                        let indent = "  ".repeat(self.lists.len().saturating_sub(1));
                        let marker = match self.lists.last_mut() {
                            Some(Some(n)) => {
                                *n += 1;
                                format!("{}. ", *n - 1)
                            }
                            _ => "- ".to_string(),
                        };
                        // The item's first text takes the marker, also
                        // from a paragraph inside it.
                        self.prefix = format!("{indent}{marker}");
                        self.children(node);
                        self.end_block();
                    }
                    "ul" | "ol" if self.inline_only == 0 => {
                        self.end_block();
                        let start = e.attr("start").and_then(|s| s.trim().parse().ok());
                        self.lists
                            .push((name == "ol").then_some(start.unwrap_or(1)));
                        self.children(node);
                        self.lists.pop();
                        self.end_block();
                    }
                    "sup" => self.superscript(node),
                    "table" if self.inline_only == 0 => {
                        self.flush();
                        let outer = std::mem::take(&mut self.rows);
                        self.children(node);
                        self.flush();
                        let rows = std::mem::replace(&mut self.rows, outer);
                        if !rows.is_empty() {
                            self.blocks.push(rows.join("\n"));
                        }
                    }
                    "tr" if self.inline_only == 0 && !self.region.has_pre(node) => self.row(node),
                    "pre" | "code" | "kbd" | "samp" | "tt" => {
                        let text = own_text(node);
                        let text = text.trim();
                        if !text.is_empty() {
                            let tick = if text.contains('`') { "``" } else { "`" };
                            self.inline.push_str(&format!("{tick}{text}{tick}"));
                        }
                    }
                    "br" => self.inline.push(' '),
                    "img" => {}
                    _ if !is_block(name) => self.children(node),
                    _ if self.inline_only > 0 => {
                        self.inline.push(' ');
                        self.children(node);
                        self.inline.push(' ');
                    }
                    _ => {
                        self.flush();
                        self.children(node);
                        self.flush();
                    }
                }
            }
            _ => self.children(node),
        }
    }

    fn children(&mut self, node: NodeRef<'_, Node>) {
        for child in node.children() {
            self.walk(child);
        }
    }

    /// Whether the writer is inside a list item (where a checkbox is a
    /// task list's box, not a form's).
    fn in_item(&self) -> bool {
        !self.lists.is_empty()
    }

    /// A heading of `level` as `## text`, on a line of its own.
    fn heading(&mut self, node: NodeRef<'_, Node>, level: usize) {
        self.end_block();
        self.inline_only += 1;
        self.children(node);
        self.inline_only -= 1;
        let heading = std::mem::take(&mut self.inline);
        self.prefix = format!("{} ", "#".repeat(level));
        self.inline = heading;
        self.end_block();
    }

    /// A footnote marker (a superscript that links into the page, or
    /// inside such a link) as `[^1]`; any other superscript as `^2`.
    fn superscript(&mut self, node: NodeRef<'_, Node>) {
        let text = collapse(&own_text(node));
        if text.is_empty() {
            return;
        }
        let to_note = |n: NodeRef<'_, Node>| {
            matches!(n.value(), Node::Element(e) if e.name() == "a"
                && e.attr("href").is_some_and(|h| h.contains('#')))
        };
        let label = text.trim_start_matches('[').trim_end_matches(']');
        // Older mdBook numbers a footnote's text with one: it prefixes
        // the note's first paragraph.
        if let Node::Element(e) = node.value()
            && e.has_class("footnote-definition-label", CaseSensitive)
        {
            self.flush();
            self.prefix = format!("[^{label}]: ");
        } else if node.descendants().any(to_note) || node.ancestors().take(2).any(to_note) {
            self.inline.push_str(&format!("[^{label}]"));
        } else {
            self.inline.push_str(&format!("^{text}"));
        }
    }

    /// A table row as `| a | b |`; a first row of header cells is
    /// followed by `| --- | --- |`.
    fn row(&mut self, node: NodeRef<'_, Node>) {
        self.flush();
        let mut cells = Vec::new();
        let mut all_headers = true;
        for cell in node.children() {
            let Node::Element(e) = cell.value() else {
                continue;
            };
            if !matches!(e.name(), "td" | "th") || self.region.drops(cell) {
                continue;
            }
            all_headers &= e.name() == "th";
            let outside = std::mem::take(&mut self.inline);
            self.inline_only += 1;
            self.children(cell);
            self.inline_only -= 1;
            let text = std::mem::replace(&mut self.inline, outside);
            cells.push(collapse(&text).replace('|', "\\|"));
        }
        if cells.iter().all(String::is_empty) {
            return;
        }
        // A row that is only a heading (Doxygen's member groups) is one.
        let filled: Vec<&String> = cells.iter().filter(|c| !c.is_empty()).collect();
        if let ([text], Some(level)) = (&filled[..], heading_level(node)) {
            let rows = std::mem::take(&mut self.rows);
            if !rows.is_empty() {
                self.blocks.push(rows.join("\n"));
            }
            self.blocks.push(format!("{} {text}", "#".repeat(level)));
            return;
        }
        let first = self.rows.is_empty();
        self.rows.push(format!("| {} |", cells.join(" | ")));
        if first && all_headers {
            self.rows.push(format!("|{}", " --- |".repeat(cells.len())));
        }
    }

    /// A `pre` block verbatim, fenced, with the language its classes (or
    /// those of its code or its wrappers) name; `by_lines` for blocks of
    /// one element per line, where a blank line holds a space.
    fn code_block(&mut self, node: NodeRef<'_, Node>, by_lines: bool) {
        let mut text = String::new();
        let mut lang = lang_of(node);
        if by_lines {
            let mut lines = Vec::new();
            for line in node.children() {
                if matches!(line.value(), Node::Element(_)) && !is_chrome(line) {
                    let mut l = String::new();
                    code_text(line, &mut l, &mut lang);
                    lines.push(if l.trim().is_empty() {
                        String::new()
                    } else {
                        l
                    });
                }
            }
            text = lines.join("\n");
        } else {
            code_text(node, &mut text, &mut lang);
        }
        // The wrappers up to the block around (MkDocs puts the language
        // on a `div` around a table of line numbers and code).
        if lang.is_none() {
            lang = node
                .ancestors()
                .take_while(|a| {
                    !matches!(a.value(), Node::Element(e)
                        if matches!(e.name(), "body" | "main" | "article" | "section"))
                })
                .take(8)
                .find_map(lang_of);
        }
        // HTML drops a newline right after <pre>; html5ever already does.
        let text = text.trim_end();
        let text = text.trim_start_matches(['\n', '\r']);
        if text.trim().is_empty() {
            return;
        }
        let fence = if text.contains("```") { "~~~~" } else { "```" };
        self.blocks.push(format!(
            "{fence}{}\n{text}\n{fence}",
            lang.unwrap_or_default()
        ));
    }
}

/// Whether an element starts a line of its own.
fn is_block(name: &str) -> bool {
    BLOCKS.contains(&name)
        || matches!(
            name,
            "li" | "tr" | "td" | "th" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
        )
}

/// The level of the first heading under a node.
fn heading_level(node: NodeRef<'_, Node>) -> Option<usize> {
    node.descendants().find_map(|d| match d.value() {
        Node::Element(e) => match e.name().as_bytes() {
            [b'h', n @ b'1'..=b'6'] => Some(usize::from(n - b'0')),
            _ => None,
        },
        _ => None,
    })
}

/// Whitespace runs as one space, none at the ends.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The language an element's classes name: `language-x`, `lang-x`,
/// `highlight-source-x` (GitHub), `highlight-x` (Sphinx), `rust`
/// (rustdoc).
fn lang_of(node: NodeRef<'_, Node>) -> Option<String> {
    let Node::Element(e) = node.value() else {
        return None;
    };
    e.classes().find_map(|c| {
        let lang = c
            .strip_prefix("language-")
            .or_else(|| c.strip_prefix("lang-"))
            .or_else(|| c.strip_prefix("highlight-source-"))
            .or_else(|| c.strip_prefix("highlight-"))
            .or((c == "rust").then_some("rust"))?;
        let plain = matches!(lang, "" | "default" | "none" | "text" | "plaintext");
        (!plain).then(|| lang.to_string())
    })
}

/// The text of a code block: its text nodes in order, chrome (buttons,
/// line numbers, hidden parts, what `data-nosnippet` marks: rustdoc's
/// line numbers) left out, a newline between two `code`
/// elements side by side and around block elements (rustdoc's `where`
/// clauses); `lang` from the first class that names one.
fn code_text(node: NodeRef<'_, Node>, text: &mut String, lang: &mut Option<String>) {
    for child in node.children() {
        match child.value() {
            Node::Text(t) => text.push_str(t),
            Node::Element(e) => {
                if is_chrome(child) || e.attr("data-nosnippet").is_some() {
                    continue;
                }
                if lang.is_none() {
                    *lang = lang_of(child);
                }
                let line = CODE_LINES.contains(&e.name());
                if (line || e.name() == "code") && !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                if e.name() == "br" {
                    text.push('\n');
                }
                code_text(child, text, lang);
                if line && !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            _ => {}
        }
    }
}
