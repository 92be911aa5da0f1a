//! Page chrome: the elements of a page that are not its content (menus,
//! sidebars, tables of contents, permalink glyphs, copy buttons, skip
//! links, toggles). Decided element by element, by tag, ARIA role and
//! whole class or id tokens of the element itself, never by substrings of
//! class names and never on `<html>` or `<body>` (generators put state
//! classes such as `sidebar-visible` there).

use ego_tree::NodeRef;
use scraper::Node;
use scraper::node::Element;

/// Elements whose content is never text for the model.
const TAGS: &[&str] = &[
    "head",
    "script",
    "style",
    "noscript",
    "nav",
    "footer",
    "aside",
    "form",
    "search",
    "svg",
    "iframe",
    "frame",
    "frameset",
    "button",
    "select",
    "textarea",
    "input",
    "label",
    "template",
    "object",
    "embed",
    "canvas",
    "video",
    "audio",
    "map",
    "dialog",
    "menu",
    "link",
    "meta",
    // GitHub's copy button; rustdoc's toolbar and mobile top bar.
    "clipboard-copy",
    "rustdoc-toolbar",
    "rustdoc-topbar",
];

/// ARIA roles and classes of the `aside`s that hold a page's footnotes.
const NOTE_ROLES: &[&str] = &["doc-footnote", "doc-endnotes", "doc-endnote"];
const NOTE_CLASSES: &[&str] = &["footnote", "footnote-list", "footnotes"];

/// ARIA roles of chrome.
const ROLES: &[&str] = &[
    "navigation",
    "search",
    "banner",
    "contentinfo",
    "complementary",
    "menu",
    "menubar",
    "toolbar",
    "tablist",
    "dialog",
];

/// Whole class or id tokens (lower-cased) of chrome, generic ones first,
/// then those of the generators the crawler is tested on.
const TOKENS: &[&str] = &[
    // Generic.
    "nav",
    "navbar",
    "navigation",
    "menu",
    "menu-bar",
    "breadcrumb",
    "breadcrumbs",
    "sidebar",
    "side-bar",
    "sidenav",
    "toc",
    "gtoc",
    "table-of-contents",
    "skip-link",
    "skip-to-content",
    "skip-main-content",
    "skipnav",
    "copy-button",
    "copybtn",
    "site-header",
    "site-footer",
    "footer",
    "picker",
    "hidden",
    "linenos",
    "lineno",
    // mdBook.
    "nav-wrapper",
    "nav-wide-wrapper",
    "nav-chapters",
    "mobile-nav-chapters",
    "sidebar-scrollbox",
    "sidebar-resize-handle",
    // rustdoc: "Expand description" summaries, version and source links.
    "hideme",
    "rightside",
    "since",
    "src",
    "srclink",
    "rustdoc-breadcrumbs",
    "sidebar-resizer",
    "notable-traits",
    "src-line-numbers",
    // Sphinx (classic, Read the Docs, PyData).
    "sphinxsidebar",
    "sphinxsidebarwrapper",
    "related",
    "wy-nav-side",
    "wy-nav-top",
    "rst-versions",
    "rst-footer-buttons",
    "toctree-wrapper",
    "viewcode-link",
    "prev-next-area",
    "bd-sidebar",
    "bd-sidebar-primary",
    "bd-sidebar-secondary",
    "bd-toc",
    "bd-header",
    "bd-footer",
    "headerbtn",
    // MkDocs Material.
    "md-header",
    "md-footer",
    "md-sidebar",
    "md-nav",
    "md-search",
    "md-tabs",
    "md-source",
    "md-content__button",
    "md-clipboard",
    "md-top",
    "md-dialog",
    "md-skip",
    // Docusaurus.
    "theme-doc-toc-mobile",
    "theme-doc-toc-desktop",
    "theme-doc-breadcrumbs",
    "theme-doc-footer",
    "theme-edit-this-page",
    "theme-last-updated",
    "pagination-nav",
    // Doxygen (ids).
    "titlearea",
    "main-nav",
    "side-nav",
    "nav-tree",
    "nav-path",
    "navpath",
    "navrow1",
    "navrow2",
    "navrow3",
    "navrow4",
    "msearchbox",
    "msearchselectwindow",
    "msearchresultswindow",
    // Doxygen's tooltips, hidden copies of a symbol's documentation
    // inside code blocks.
    "ttc",
    // javadoc (8 and later).
    "topnav",
    "subnav",
    "bottomnav",
    "navlist",
    "legalcopy",
    "fixednav",
    "navpadding",
    // GitHub.
    "zeroclipboard-container",
];

/// Classes of permalink anchors: dropped when they hold no word.
const PERMALINK_CLASSES: &[&str] = &[
    "anchor",
    "anchor-link",
    "anchorjs-link",
    "headerlink",
    "hash-link",
    "header-anchor",
    "heading-anchor",
    "permalink",
    "doc-anchor",
    "tooltip",
];

/// Glyphs a link may consist of without being content: permalinks
/// (Doxygen's "◆"), rustdoc's notable-trait "ⓘ", a footnote's way back
/// ("↩", as text or emoji), a zero-width space.
const GLYPHS: &[&str] = &[
    "§",
    "¶",
    "#",
    "🔗",
    "ⓘ",
    "∞",
    "◆",
    "↩",
    "↩\u{fe0e}",
    "↩\u{fe0f}",
    "\u{200b}",
    "",
];

/// The whole text (lower-cased) of links that are interface, wherever
/// they point: rustdoc's "Read more" after a trait method's summary,
/// Doxygen's "More..." and its links between a file's documentation and
/// its source.
const LINK_TEXTS: &[&str] = &[
    "read more",
    "more...",
    "go to the source code of this file.",
    "go to the documentation of this file.",
];

/// Whether an element is left out with all it holds, by what it is and
/// its own text; link bars need the counts of [`crate::extract::region`].
pub(super) fn is_chrome(node: NodeRef<'_, Node>) -> bool {
    let Node::Element(e) = node.value() else {
        return false;
    };
    let name = e.name();
    if name == "html" || name == "body" {
        return false;
    }
    // Docutils puts footnotes in `aside`s.
    let note = name == "aside"
        && (e.attr("role").is_some_and(|r| NOTE_ROLES.contains(&r))
            || e.classes().any(|c| NOTE_CLASSES.contains(&c)));
    if (TAGS.contains(&name) && !note)
        || e.attr("hidden").is_some()
        || e.attr("aria-hidden") == Some("true")
        || e.attr("role").is_some_and(|r| ROLES.contains(&r))
    {
        return true;
    }
    let chrome_token = |t: &str| TOKENS.contains(&t.to_ascii_lowercase().as_str());
    if e.id().is_some_and(chrome_token) || e.classes().any(chrome_token) {
        return true;
    }
    name == "a" && is_chrome_link(node, e)
}

/// A permalink glyph, a skip link ("Skip to main content"), or a link
/// whose text is interface ("Read more").
fn is_chrome_link(node: NodeRef<'_, Node>, e: &Element) -> bool {
    let text = own_text(node);
    let text = text.trim();
    let in_page = e.attr("href").is_some_and(|h| h.starts_with('#'));
    let permalink = e
        .classes()
        .any(|c| PERMALINK_CLASSES.contains(&c.to_ascii_lowercase().as_str()));
    if permalink && !text.chars().any(char::is_alphanumeric) {
        return true;
    }
    if in_page && GLYPHS.contains(&text) {
        return true;
    }
    let lower = text.to_lowercase();
    if LINK_TEXTS.contains(&lower.as_str()) {
        return true;
    }
    in_page
        && (lower.starts_with("skip to")
            || lower.starts_with("skip navigation")
            || lower.starts_with("jump to"))
}

/// All the text under a node.
pub(super) fn own_text(node: NodeRef<'_, Node>) -> String {
    let mut text = String::new();
    for d in node.descendants() {
        if let Node::Text(t) = d.value() {
            text.push_str(t);
        }
    }
    text
}
