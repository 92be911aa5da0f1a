//! Where a page's content is: the region the writer reads, chosen by the
//! page's structure (`<main>`, `role="main"`, a single `<article>` in it,
//! Doxygen's `#doc-content`), else the whole body; and, inside it, the
//! blocks that are link bars or, without a landmark, mostly links.

use ego_tree::{NodeId, NodeRef};
use scraper::{Html, Node};
use std::collections::HashMap;

use super::chrome::is_chrome;

/// Text counts of a node, chrome left out.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    /// Characters of text that are not whitespace.
    text: usize,
    /// Of which inside links.
    link_text: usize,
    links: usize,
    /// Of which to a place on the same page (`href="#…"`).
    page_links: usize,
    /// A letter or digit outside links.
    words_outside_links: bool,
    /// Holds a `pre` block.
    has_pre: bool,
}

/// The content region of a document and what to leave out inside it.
pub(super) struct Region {
    stats: HashMap<NodeId, Stats>,
    /// The element read, with what names it (`<main>`, `<article>`,
    /// `body`) for messages.
    pub root: NodeId,
    pub name: &'static str,
    /// No landmark: link-dense blocks are dropped too.
    by_density: bool,
}

/// Elements that may be a link bar or a link-dense block. Lists are not:
/// a list of links in the text is content; menus come in a wrapper (or
/// a `nav`, or with a class that says so).
const CONTAINERS: &[&str] = &["div", "p", "section", "header", "table"];

/// A block is link-dense (without a landmark) when links hold at least
/// this share of its text.
const DENSE: f64 = 0.6;

impl Region {
    /// The region of a parsed document.
    pub(super) fn find(doc: &Html) -> Region {
        let mut stats = HashMap::new();
        count(doc.tree.root(), false, &mut stats);
        let mut region = Region {
            stats,
            root: doc.tree.root().id(),
            name: "page",
            by_density: true,
        };
        let landmark = |n: NodeRef<'_, Node>| match n.value() {
            Node::Element(e) => {
                e.name() == "main"
                    || e.attr("role") == Some("main")
                    || e.id().is_some_and(|id| id == "doc-content")
            }
            _ => false,
        };
        let mains = region.outermost(doc.tree.root(), &landmark);
        if let Some(main) = mains.iter().max_by_key(|n| region.words(**n)) {
            region.root = main.id();
            region.name = match main.value() {
                Node::Element(e) if e.name() == "main" => "<main>",
                Node::Element(e) if e.name() == "article" => "<article>",
                Node::Element(e) if e.attr("role") == Some("main") => "role=\"main\"",
                _ => "#doc-content",
            };
            region.by_density = false;
        } else if let Some(body) = doc
            .tree
            .root()
            .descendants()
            .find(|n| matches!(n.value(), Node::Element(e) if e.name() == "body"))
        {
            region.root = body.id();
            region.name = "body";
        }
        // A single article holding a good part of the region's text is
        // the content (MkDocs, Docusaurus, GitHub); several are a list.
        let root = doc.tree.get(region.root).unwrap_or(doc.tree.root());
        let is_article =
            |n: NodeRef<'_, Node>| matches!(n.value(), Node::Element(e) if e.name() == "article");
        let articles: Vec<_> = root
            .children()
            .flat_map(|c| region.outermost(c, &is_article))
            .collect();
        if let [article] = articles[..]
            && region.words(article) * 3 >= region.words(root)
        {
            region.root = article.id();
            region.name = "<article>";
            region.by_density = false;
        }
        region
    }

    /// The whole body, for a page whose landmark held no text.
    pub(super) fn widen(&mut self, doc: &Html) {
        let body = doc
            .tree
            .root()
            .descendants()
            .find(|n| matches!(n.value(), Node::Element(e) if e.name() == "body"));
        self.root = body.unwrap_or(doc.tree.root()).id();
        self.name = "body";
        self.by_density = true;
    }

    /// Whether a node holds a `pre` block.
    pub(super) fn has_pre(&self, node: NodeRef<'_, Node>) -> bool {
        self.stats.get(&node.id()).is_some_and(|s| s.has_pre)
    }

    /// The outermost elements under `node` (itself included) that `is`
    /// picks, chrome left out.
    fn outermost<'a>(
        &self,
        node: NodeRef<'a, Node>,
        is: &dyn Fn(NodeRef<'a, Node>) -> bool,
    ) -> Vec<NodeRef<'a, Node>> {
        if is_chrome(node) {
            return Vec::new();
        }
        if is(node) {
            return vec![node];
        }
        node.children()
            .flat_map(|c| self.outermost(c, is))
            .collect()
    }

    /// Characters of text outside links under a node.
    fn words(&self, node: NodeRef<'_, Node>) -> usize {
        self.stats
            .get(&node.id())
            .map_or(0, |s| s.text - s.link_text)
    }

    /// Whether an element inside the region is left out: chrome, a link
    /// bar (two links or more and no word outside them: breadcrumbs,
    /// "prev | next", a table of contents; or a single link to a place
    /// on the page holding all the block's text: Doxygen's "Data
    /// Fields"), or, without a landmark, a block that is mostly links.
    /// The region's root is always read.
    pub(super) fn drops(&self, node: NodeRef<'_, Node>) -> bool {
        if is_chrome(node) {
            return true;
        }
        if node.id() == self.root {
            return false;
        }
        let Node::Element(e) = node.value() else {
            return false;
        };
        if !CONTAINERS.contains(&e.name()) {
            return false;
        }
        let Some(s) = self.stats.get(&node.id()) else {
            return false;
        };
        if s.has_pre {
            return false;
        }
        if s.links >= 2 && !s.words_outside_links {
            return true;
        }
        if s.links == 1 && s.page_links == 1 && s.text > 0 && s.link_text == s.text {
            return true;
        }
        self.by_density && s.links >= 3 && s.link_text as f64 >= DENSE * s.text as f64
    }
}

/// Counts the text under `node` into `stats` (chrome counts nothing);
/// `in_link` when inside an `a`.
fn count(node: NodeRef<'_, Node>, in_link: bool, stats: &mut HashMap<NodeId, Stats>) -> Stats {
    let mut s = Stats::default();
    match node.value() {
        Node::Text(t) => {
            s.text = t.chars().filter(|c| !c.is_whitespace()).count();
            if in_link {
                s.link_text = s.text;
            } else {
                s.words_outside_links = t.chars().any(char::is_alphanumeric);
            }
            return s;
        }
        Node::Element(_) if is_chrome(node) => {
            stats.insert(node.id(), s);
            return s;
        }
        Node::Element(e) => {
            let href = e.attr("href").filter(|_| e.name() == "a");
            let is_link = href.is_some();
            s.links = usize::from(is_link);
            s.page_links = usize::from(href.is_some_and(|h| h.starts_with('#')));
            s.has_pre = e.name() == "pre";
            for child in node.children() {
                let c = count(child, in_link || is_link, stats);
                s.text += c.text;
                s.link_text += c.link_text;
                s.links += c.links;
                s.page_links += c.page_links;
                s.words_outside_links |= c.words_outside_links;
                s.has_pre |= c.has_pre;
            }
        }
        _ => {
            for child in node.children() {
                let c = count(child, in_link, stats);
                s.text += c.text;
                s.link_text += c.link_text;
                s.links += c.links;
                s.page_links += c.page_links;
                s.words_outside_links |= c.words_outside_links;
                s.has_pre |= c.has_pre;
            }
        }
    }
    stats.insert(node.id(), s);
    s
}
