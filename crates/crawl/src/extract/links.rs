//! What a page tells the crawler besides its text: the links to follow
//! (`<a href>` anywhere on the page, chrome included; `<link rel="next">`
//! and `rel="prev"`; frames; the same inside `<noscript>`, where mdBook
//! puts the frame of its table of contents), `<base href>`, and the robots
//! meta tag.

use ego_tree::NodeRef;
use scraper::{Html, Node};

use super::Extracted;

/// Collects the links, base and robots flags of a document into `out`.
pub(super) fn collect(doc: &Html, out: &mut Extracted) {
    visit(doc.tree.root(), out);
}

fn visit(root: NodeRef<'_, Node>, out: &mut Extracted) {
    for node in root.descendants() {
        let Node::Element(e) = node.value() else {
            continue;
        };
        let rel = |word: &str| {
            e.attr("rel")
                .is_some_and(|r| r.split_whitespace().any(|w| w.eq_ignore_ascii_case(word)))
        };
        match e.name() {
            "a" | "area" => {
                if let (Some(href), false) = (e.attr("href"), rel("nofollow")) {
                    out.links.push(href.to_string());
                }
            }
            // The next and previous pages of a sequence (a book's
            // chapters, a paginated guide).
            "link" if rel("next") || rel("prev") || rel("previous") => {
                if let Some(href) = e.attr("href") {
                    out.links.push(href.to_string());
                }
            }
            "iframe" | "frame" => {
                if let Some(src) = e.attr("src") {
                    out.links.push(src.to_string());
                }
            }
            // Parsed as text (scripting is on): read as HTML of its own.
            "noscript" => {
                let inner: String = node
                    .children()
                    .filter_map(|c| match c.value() {
                        Node::Text(t) => Some(&**t),
                        _ => None,
                    })
                    .collect();
                if inner.contains('<') {
                    let fragment = Html::parse_fragment(&inner);
                    let mut found = Extracted::default();
                    visit(fragment.tree.root(), &mut found);
                    out.links.extend(found.links);
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
}
