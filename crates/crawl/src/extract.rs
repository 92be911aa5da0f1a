//! Text out of a response, the way a code model wants it: the declared
//! charset decoded; HTML turned into Markdown-like text with headings,
//! paragraphs, list items and code blocks (`pre`, kept verbatim with their
//! indentation, fenced), navigation, scripts and styles dropped; plain text
//! and Markdown kept as they are. Links are collected for the frontier.

use ego_tree::NodeRef;
use encoding_rs::Encoding;
use scraper::{Html, Node};

/// What a page gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    pub text: String,
    /// `href`s as written (resolved by the caller against `base`).
    pub links: Vec<String>,
    /// `<base href>`, if the page sets one.
    pub base: Option<String>,
    /// `<meta name="robots" content="noindex">`: do not keep the page.
    pub noindex: bool,
    /// `<meta name="robots" content="nofollow">`: do not follow its links.
    pub nofollow: bool,
}

/// How a media type is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Html,
    /// Plain text, Markdown, source code: kept as it is.
    Plain,
    NotText,
}

/// The kind of a response from its media type (and, when it has none,
/// from the start of its body).
pub fn kind_of(media_type: Option<&str>, body: &[u8]) -> Kind {
    match media_type {
        Some("text/html" | "application/xhtml+xml") => Kind::Html,
        Some(m) if m.starts_with("text/") => Kind::Plain,
        Some("application/markdown" | "application/x-markdown") => Kind::Plain,
        Some(_) => Kind::NotText,
        None => {
            let head = String::from_utf8_lossy(&body[..body.len().min(512)]).to_ascii_lowercase();
            let head = head.trim_start();
            if head.starts_with("<!doctype html") || head.starts_with("<html") {
                Kind::Html
            } else {
                Kind::Plain
            }
        }
    }
}

/// Whether a media type's body is worth reading at all.
pub fn wants_body(media_type: Option<&str>) -> bool {
    kind_of(media_type, b"") != Kind::NotText
}

/// Whether bytes look binary (a NUL in the first 8 KiB).
pub fn looks_binary(body: &[u8]) -> bool {
    body[..body.len().min(8192)].contains(&0)
}

/// Decodes a body: a byte-order mark wins, then the header's charset, then
/// a `<meta charset>` in the first KiB of HTML, then UTF-8 when the bytes
/// are valid UTF-8, else windows-1252 (what browsers assume for Latin-1).
pub fn decode(body: &[u8], header_charset: Option<&str>, html: bool) -> String {
    if let Some((enc, bom)) = Encoding::for_bom(body) {
        return enc.decode_without_bom_handling(&body[bom..]).0.into_owned();
    }
    let declared = header_charset
        .and_then(|c| Encoding::for_label(c.as_bytes()))
        .or_else(|| {
            html.then(|| meta_charset(&body[..body.len().min(1024)]))
                .flatten()
        });
    let enc = match declared {
        Some(enc) => enc,
        None if std::str::from_utf8(body).is_ok() => encoding_rs::UTF_8,
        None => encoding_rs::WINDOWS_1252,
    };
    enc.decode_without_bom_handling(body).0.into_owned()
}

/// `charset=` in a `<meta charset>` or `<meta http-equiv>` tag.
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<meta") {
        rest = &rest[i + 5..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if let Some(j) = tag.find("charset=") {
            let value: String = tag[j + 8..]
                .trim_start_matches(['"', '\''])
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_:.".contains(*c))
                .collect();
            if let Some(enc) = Encoding::for_label(value.as_bytes()) {
                return Some(enc);
            }
        }
    }
    None
}

/// Elements whose content is never text for the model.
const DROPPED: &[&str] = &[
    "head", "script", "style", "noscript", "nav", "footer", "aside", "form", "svg", "iframe",
    "button", "select", "template", "object", "canvas", "video", "audio", "map",
];

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
    "tr",
    "thead",
    "tbody",
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
];

/// Extracts the text and links of an HTML document.
pub fn html_to_text(html: &str) -> Extracted {
    let doc = Html::parse_document(html);
    let mut out = Extracted::default();
    for node in doc.tree.root().descendants() {
        let Node::Element(e) = node.value() else {
            continue;
        };
        match e.name() {
            "a" => {
                let nofollow = e
                    .attr("rel")
                    .is_some_and(|r| r.split_whitespace().any(|w| w == "nofollow"));
                if let (Some(href), false) = (e.attr("href"), nofollow) {
                    out.links.push(href.to_string());
                }
            }
            "base" if out.base.is_none() => out.base = e.attr("href").map(str::to_string),
            "meta" => {
                let name = e.attr("name").unwrap_or("").to_ascii_lowercase();
                if name == "robots" || name == "cllm-crawl" {
                    let content = e.attr("content").unwrap_or("").to_ascii_lowercase();
                    for word in content.split([',', ' ']).map(str::trim) {
                        match word {
                            "noindex" | "none" => out.noindex = true,
                            _ => {}
                        }
                        match word {
                            "nofollow" | "none" => out.nofollow = true,
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let mut w = Writer::default();
    w.walk(doc.tree.root());
    w.flush();
    out.text = w.blocks.join("\n\n");
    out
}

#[derive(Default)]
struct Writer {
    blocks: Vec<String>,
    /// The paragraph being gathered, whitespace not yet collapsed.
    inline: String,
    /// Prefix of the paragraph being gathered ("## ", "- ").
    prefix: String,
    list_depth: usize,
}

impl Writer {
    fn flush(&mut self) {
        let text = self.inline.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() {
            self.blocks.push(format!("{}{text}", self.prefix));
        }
        self.inline.clear();
        self.prefix.clear();
    }

    fn walk(&mut self, node: NodeRef<'_, Node>) {
        match node.value() {
            Node::Text(t) => self.inline.push_str(t),
            Node::Element(e) => {
                let name = e.name();
                if is_dropped(e) {
                    return;
                }
                match name {
                    "pre" => {
                        self.flush();
                        self.code_block(node);
                    }
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        self.flush();
                        let level = usize::from(name.as_bytes()[1] - b'0');
                        self.children(node);
                        let heading = std::mem::take(&mut self.inline);
                        self.prefix = format!("{} ", "#".repeat(level));
                        self.inline = heading;
                        self.flush();
                    }
                    "li" => {
                        self.flush();
                        let indent = "  ".repeat(self.list_depth.saturating_sub(1));
                        // The item's text takes the marker; a nested list
                        // or paragraph inside flushes it first.
                        self.prefix = format!("{indent}- ");
                        self.children(node);
                        self.flush();
                    }
                    "ul" | "ol" => {
                        self.flush();
                        self.list_depth += 1;
                        self.children(node);
                        self.list_depth -= 1;
                        self.flush();
                    }
                    "code" | "kbd" | "samp" | "tt" => {
                        let mut text = String::new();
                        for t in node.descendants() {
                            if let Node::Text(t) = t.value() {
                                text.push_str(t);
                            }
                        }
                        let text = text.trim();
                        if !text.is_empty() {
                            self.inline.push_str(&format!(" `{text}` "));
                        }
                    }
                    "br" => self.inline.push(' '),
                    "td" | "th" => {
                        self.inline.push(' ');
                        self.children(node);
                        self.inline.push(' ');
                    }
                    "img" => {}
                    _ if BLOCKS.contains(&name) => {
                        self.flush();
                        self.children(node);
                        self.flush();
                    }
                    _ => self.children(node),
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

    /// A `pre` block verbatim, fenced, with the language a `language-x`
    /// or `lang-x` class names.
    fn code_block(&mut self, node: NodeRef<'_, Node>) {
        let mut text = String::new();
        let mut lang = None;
        code_text(node, &mut text, &mut lang);
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

/// Whether an element is left out with all it holds: scripts, styles,
/// navigation (`nav`, `role="navigation"`, and the ids and classes sites
/// give their menus, tables of contents and sidebars), hidden elements.
fn is_dropped(e: &scraper::node::Element) -> bool {
    if DROPPED.contains(&e.name())
        || e.attr("hidden").is_some()
        || e.attr("aria-hidden") == Some("true")
        || e.attr("role") == Some("navigation")
    {
        return true;
    }
    let chrome = |token: &str| {
        let t = token.to_ascii_lowercase();
        NAV_TOKENS.contains(&t.as_str())
            || t.starts_with("toc")
            || t.ends_with("-toc")
            || t.contains("sidebar")
            || t.contains("breadcrumb")
            || t.contains("navbar")
    };
    e.id().is_some_and(chrome) || e.classes().any(chrome)
}

/// Ids and classes of page chrome.
const NAV_TOKENS: &[&str] = &[
    "nav",
    "navigation",
    "menu",
    "gtoc",
    "skip-to-content",
    "skip-link",
    "picker",
    "copy-button",
    "headerlink",
    "site-header",
    "site-footer",
];

/// The text of a code block: its text nodes in order, dropped elements
/// (buttons, inputs, hidden parts) left out, a newline between two
/// `code` elements side by side; `lang` from the first `language-x` or
/// `lang-x` class.
fn code_text(node: NodeRef<'_, Node>, text: &mut String, lang: &mut Option<String>) {
    for child in node.children() {
        match child.value() {
            Node::Text(t) => text.push_str(t),
            Node::Element(e) => {
                if is_dropped(e) || e.name() == "input" {
                    continue;
                }
                if lang.is_none() {
                    *lang = e.classes().find_map(|c| {
                        c.strip_prefix("language-")
                            .or_else(|| c.strip_prefix("lang-"))
                            .map(str::to_string)
                    });
                }
                if e.name() == "code" && !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                code_text(child, text, lang);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_lists_and_code_blocks() {
        let html = r#"<html><head><title>T</title><style>x{}</style></head><body>
            <nav><a href="/a">Home</a> | <a href="/b">Docs</a></nav>
            <h1>Title</h1><p>Some   <b>bold</b>
            text with <code>x + 1</code>.</p>
            <ul><li>one</li><li>two<ul><li>deep</li></ul></li></ul>
            <pre><code class="language-c">int main() {
    if (x) {
        return 1;
    }
}</code></pre>
            <script>alert(1)</script><footer>(c) me</footer></body></html>"#;
        let e = html_to_text(html);
        assert_eq!(
            e.text,
            "# Title\n\nSome bold text with `x + 1` .\n\n- one\n\n- two\n\n  - deep\n\n\
             ```c\nint main() {\n    if (x) {\n        return 1;\n    }\n}\n```"
        );
        assert_eq!(e.links, vec!["/a", "/b"]);
    }

    #[test]
    fn page_chrome_is_dropped_and_code_variants_are_split() {
        let html = r##"<a class="skip-to-content" href="#c">Skip</a>
            <div id="toc"><ul><li>Contents</li></ul></div>
            <div class="left-sidebar">Menu</div><h2>API<a class="headerlink">#</a></h2>
            <pre><input type="checkbox"><code class="language-js cjs">const a = require('a');</code><code class="language-js mjs">import a from 'a';</code><button>copy</button></pre>"##;
        assert_eq!(
            html_to_text(html).text,
            "## API\n\n```js\nconst a = require('a');\nimport a from 'a';\n```"
        );
    }

    #[test]
    fn latin1_is_decoded_from_header_or_meta() {
        let body = b"caf\xe9 na\xefve";
        assert_eq!(decode(body, Some("ISO-8859-1"), false), "café naïve");
        let html = b"<html><head><meta charset=\"iso-8859-1\"></head><body>\xe9</body>";
        assert!(decode(html, None, true).contains('é'));
        assert_eq!(decode("é".as_bytes(), None, true), "é");
    }

    #[test]
    fn robots_meta_and_nofollow_links() {
        let e = html_to_text(
            r#"<meta name="robots" content="noindex, nofollow"><a rel="nofollow" href="/x">x</a>"#,
        );
        assert!(e.noindex && e.nofollow);
        assert!(e.links.is_empty());
    }
}
