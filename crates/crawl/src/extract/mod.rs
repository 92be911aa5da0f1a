//! Text out of a response, the way a code model wants it: the declared
//! charset decoded; HTML turned into Markdown-like text with headings,
//! paragraphs, list items, table rows and code blocks (`pre`, kept
//! verbatim with their indentation, fenced); plain text and Markdown kept
//! as they are. Links are collected for the frontier. The parts:
//!
//! - `region`: where the content is (`<main>`, `role="main"`, a single
//!   `<article>`; else the body, link-dense blocks left out).
//! - `chrome`: the elements that are not content (menus, sidebars,
//!   tables of contents, permalinks, copy buttons, skip links, toggles).
//! - `writer`: the region as text. `links`: links, base, robots meta.

mod chrome;
mod links;
mod region;
#[cfg(test)]
mod tests;
mod writer;

use encoding_rs::Encoding;
use scraper::Html;

use region::Region;
use writer::Writer;

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
    /// Where the text was taken from (`<main>`, `<article>`, `body`…),
    /// for messages about a page that gave none.
    pub region: &'static str,
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

/// Extracts the text and links of an HTML document: the links from the
/// whole page, the text from its content region only,
/// or from the whole body when that region holds none.
pub fn html_to_text(html: &str) -> Extracted {
    let doc = Html::parse_document(html);
    let mut out = Extracted::default();
    links::collect(&doc, &mut out);
    let mut region = Region::find(&doc);
    out.text = write(&doc, &region);
    if out.text.is_empty() && region.name != "body" {
        region.widen(&doc);
        out.text = write(&doc, &region);
    }
    out.region = region.name;
    out
}

/// The text of a document's region.
fn write(doc: &Html, region: &Region) -> String {
    let mut w = Writer::new(region);
    if let Some(root) = doc.tree.get(region.root) {
        w.walk(root);
    }
    w.flush();
    w.blocks.join("\n\n")
}
