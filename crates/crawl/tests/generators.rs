//! Main-content extraction on pages shaped like those of the documentation
//! generators people crawl (the fixtures copy each generator's markup, with
//! text of their own): the content is kept, code blocks byte for byte, and
//! none of the page chrome.

use cllm_crawl::extract::{Extracted, html_to_text};

/// Extracts a fixture and checks it: every `kept` string is in the text,
/// every code block is in it exactly (fenced), no `chrome` string is.
fn check(html: &str, kept: &[&str], code: &[&str], chrome: &[&str]) -> Extracted {
    let e = html_to_text(html);
    for k in kept {
        assert!(e.text.contains(k), "{k:?} is missing from:\n{}", e.text);
    }
    for c in code {
        assert!(
            e.text.contains(c),
            "code block {c:?} is not in:\n{}",
            e.text
        );
    }
    for c in chrome {
        assert!(!e.text.contains(c), "chrome {c:?} is in:\n{}", e.text);
    }
    e
}

#[test]
fn mdbook() {
    let e = check(
        include_str!("fixtures/mdbook.html"),
        &[
            "# Counting Sheep\n\nA flock is counted one sheep at a time, as in Flocks.",
            "## Rules\n\n- Count each sheep once.\n\n- Never count a `Goat`.",
            "| Sheep | Count |\n| --- | --- |\n| Dolly | `1` |",
            "Listing 3-1: Counting a flock",
        ],
        &[
            "```rust\n#![allow(unused)]\nfn main() {\nlet flock = [3, 1, 4];\n\nfor sheep in flock {\n    if sheep > 2 {\n        println!(\"{sheep} <- big\");\n    }\n}\n}\n```",
        ],
        &[
            "Keyboard shortcuts",
            "The Sheep Book",
            "Light",
            "No results",
            "Previous",
            "Next",
        ],
    );
    assert!(e.text.starts_with("# Counting Sheep"), "{}", e.text);
    assert_eq!(e.region, "<main>");
    // The chapters: the next one, and the table of contents in the
    // frame the page shows without JavaScript.
    for link in ["ch04-00-shearing.html", "ch02-00-fences.html", "toc.html"] {
        assert!(e.links.iter().any(|l| l == link), "{link}: {:?}", e.links);
    }
}

#[test]
fn rustdoc() {
    let e = check(
        include_str!("fixtures/rustdoc.html"),
        &[
            "# Struct Pen",
            "A pen holds sheep until they are shorn.",
            "## Examples",
            "## Implementations\n\n### impl<S> Pen<S>\n\n#### pub fn count(&self) -> usize\n\nHow many sheep are in the pen.",
        ],
        &[
            "```rust\npub struct Pen<S>\nwhere\n    S: Woolly,\n{ /* private fields */ }\n```",
            "```rust\nlet mut pen = Pen::new();\n\nfor i in 0..3 {\n    pen.add(Sheep::new(i));\n}\nassert_eq!(pen.count(), 3);\n```",
            "```rust\nPen::<Goat>::new().shear();\n```",
        ],
        &[
            "Skip to main content",
            "Expand description",
            "§",
            "ⓘ",
            "Copy item path",
            "Source",
            "1.2.0",
            "In sheep::pen",
            "Methods",
            "sheep::pen",
            "old browser",
        ],
    );
    assert!(e.text.starts_with("# Struct Pen\n\n```rust"), "{}", e.text);
}

#[test]
fn sphinx() {
    let e = check(
        include_str!("fixtures/sphinx.html"),
        &[
            "# Shearing\n\nShear a sheep with `shear()`, once a year.",
            "sheep.shear(sheep)\n\nTake the wool of one sheep.",
        ],
        // Line numbers are not code.
        &[
            "```python\ndef shear(sheep):\n    if sheep.wool:\n\n        return sheep.wool.pop()\n```",
        ],
        &[
            "¶",
            "Navigation",
            "Quick search",
            "Related Topics",
            "Powered by",
            "Spinning",
            "Sheep 1.0 documentation",
        ],
    );
    assert_eq!(e.region, "role=\"main\"");
    // `<link rel="next">` in the head is followed.
    assert!(e.links.iter().any(|l| l == "wool.html"), "{:?}", e.links);
}

#[test]
fn mkdocs_material() {
    let e = check(
        include_str!("fixtures/mkdocs.html"),
        &[
            "# Shearing\n\nSheep are shorn in spring.\n\n## Tools",
            "Note\n\nWash the shears afterwards.",
        ],
        &["```yaml\ntools:\n  - shears\n\n  - comb\n```"],
        &[
            "¶",
            "Skip to content",
            "Table of contents",
            "Home",
            "Back to top",
            "Material for MkDocs",
            "Next",
        ],
    );
    assert_eq!(e.region, "<article>");
    assert!(e.text.starts_with("# Shearing"), "{}", e.text);
}

#[test]
fn docusaurus() {
    let e = check(
        include_str!("fixtures/docusaurus.html"),
        &["# Shearing\n\nShear with care.\n\n## Tools"],
        // Lines end in `<br>`, not in newlines.
        &["```js\nconst shears = {\n  sharp: true,\n\n  size: 3\n};\n```"],
        &[
            "Skip to main content",
            "On this page",
            "Edit this page",
            "Introduction",
            "Previous",
            "Tutorial",
            "Copyright",
            "\u{200b}",
        ],
    );
    assert!(e.text.starts_with("# Shearing"), "{}", e.text);
}

#[test]
fn doxygen() {
    check(
        include_str!("fixtures/doxygen.html"),
        &[
            "# sheep::Pen Class Reference\n\nA pen that holds sheep.",
            "`#include <pen.h>`",
            "## Public Member Functions\n\n| int | count () const |\n|  | Counts the sheep in the pen. |",
            "## Detailed Description\n\nA pen that holds sheep until shearing.",
        ],
        // One `div.line` per line; Doxygen writes a space on a blank one.
        &["```\nint main() {\n    sheep::Pen pen;\n\n    return pen.count();\n}\n```"],
        &[
            "List of all members",
            "More...",
            "Counting sheep",
            "Loading...",
            "No Matches",
            "Generated by",
        ],
    );
}

#[test]
fn javadoc() {
    let e = check(
        include_str!("fixtures/javadoc.html"),
        &[
            "# Class Pen",
            "public class Pen extends Object",
            "A pen that holds sheep. Use it like this:",
            "## Method Summary",
            "Counts the sheep in the pen.",
        ],
        &[
            "```\n   Pen pen = new Pen();\n\n   for (Sheep s : flock) {\n       pen.add(s);\n   }\n```",
        ],
        &[
            "Skip navigation links",
            "JavaScript is disabled",
            "SEARCH",
            "Help",
            "All Methods",
            "Copyright",
        ],
    );
    assert_eq!(e.region, "<main>");
}

#[test]
fn github_readme() {
    let e = check(
        include_str!("fixtures/github.html"),
        &["# sheep\n\nCount sheep from Rust, one at a time.\n\n## Usage"],
        &[
            "```rust\nuse sheep::Pen;\n\nfn main() {\n    let pen = Pen::new();\n}\n```",
            "```\ncargo add sheep\n```",
        ],
        &[
            "Skip to content",
            "Sign in",
            "Notifications",
            "Count lambs too",
            "42 commits",
            "README.md",
            "Public",
            "GitHub, Inc.",
        ],
    );
    assert_eq!(e.region, "<article>");
}

/// A state class such as mdBook's `sidebar-visible` on `<html>` or
/// `<body>` says nothing about the page's content.
#[test]
fn state_classes_on_the_document_keep_it() {
    for tag in ["html", "body"] {
        let page = format!(
            "<!doctype html><{tag} class=\"light sidebar-visible\"><p>Kept text.</p></{tag}>"
        );
        assert_eq!(html_to_text(&page).text, "Kept text.", "{tag}");
    }
    let page = "<body><div class=\"sidebar-visible\"><p>Kept too.</p></div>\
                <div class=\"sidebar\"><p>Menu</p></div></body>";
    assert_eq!(html_to_text(page).text, "Kept too.");
}

/// Without a landmark, blocks that are mostly links are left out; with
/// one, only what is outside it.
#[test]
fn link_dense_blocks_without_a_landmark() {
    let page = "<body><div class=\"top\"><a href=\"/a\">Alpha page</a> and \
                <a href=\"/b\">Beta page</a> or <a href=\"/c\">Gamma page</a></div>\
                <div><h1>Title</h1><p>Some words about <a href=\"/x\">x</a>.</p></div></body>";
    let e = html_to_text(page);
    assert_eq!(e.text, "# Title\n\nSome words about x.");
    assert_eq!(e.region, "body");
    assert_eq!(e.links.len(), 4);
}

/// A landmark with no text falls back to the whole body.
#[test]
fn an_empty_landmark_falls_back_to_the_body() {
    let page = "<body><main></main><div><p>The text is here.</p></div></body>";
    let e = html_to_text(page);
    assert_eq!(e.text, "The text is here.");
    assert_eq!(e.region, "body");
}

/// Footnote markers as mdBook, pandoc, GitHub and Sphinx write them, and
/// superscripts that are not markers; the notes kept, their way back
/// ("↩") not.
#[test]
fn footnotes_and_superscripts() {
    let e = check(
        include_str!("fixtures/footnotes.html"),
        &[
            "# Wool\n\nA Merino gives 4.5 kg of wool a year.[^1] Its fibres are 10^-5 m thick, and E = mc^2 still holds.",
            "Shearing takes two minutes.[^2]",
            "Lambs are not shorn.[^3]",
            "Goats are another matter. [4]",
            "1. In a good year.",
            "2. For a shearer with ten years behind them.",
            "## Footnotes\n\n1. Their wool is too short.",
            "They are combed for cashmere.",
            "[^5]: An older book's note.",
        ],
        &[],
        &["↩", "Related pages", "year.1", "minutes.2"],
    );
    assert_eq!(e.region, "<main>");
}

/// A README rendered as GitHub does (`article.markdown-body`), served on
/// its own as `grip` and editors' previews do: headings without their
/// permalinks, numbered steps, task lists, a table, code without its copy
/// button, a footnote.
#[test]
fn readme_rendered_markdown() {
    let e = check(
        include_str!("fixtures/readme.html"),
        &[
            "# shears\n\nShear sheep from the command line[^1].\n\n## Install\n\n1. Install Rust.\n\n2. Run:",
            "| Option | Default |\n| --- | --- |\n| `--blade` | `wide` |\n| `--dry-run` | off |",
            "## Roadmap\n\n- [x] Shear ewes\n\n- [ ] Shear rams",
            "Why not goats?\n\nGoats are combed, not shorn.",
            "1. Or from a Python script.",
        ],
        &[
            "```shell\ncargo install shears\nshears --version\n```",
            "```python\nfrom shears import Shears\n\ndef shear_all(flock):\n    with Shears() as s:\n        for sheep in flock:\n            s.shear(sheep)\n```",
        ],
        &["README.md", "Copy", "Permalink", "↩", "build"],
    );
    assert_eq!(e.region, "<article>");
    assert!(e.text.starts_with("# shears"), "{}", e.text);
}
