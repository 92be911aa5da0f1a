//! The writer and the chrome rules on small pages; whole pages of each
//! generator are in `tests/generators.rs`.

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
        "# Title\n\nSome bold text with `x + 1`.\n\n- one\n\n- two\n\n  - deep\n\n\
             ```c\nint main() {\n    if (x) {\n        return 1;\n    }\n}\n```"
    );
    assert_eq!(e.links, vec!["/a", "/b"]);
}

#[test]
fn page_chrome_is_dropped_and_code_variants_are_split() {
    let html = r##"<a class="skip-to-content" href="#c">Skip</a>
            <div id="toc"><ul><li>Contents</li></ul></div>
            <div class="sidebar left">Menu</div><h2>API<a class="headerlink">#</a></h2>
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

#[test]
fn ordered_lists_count_and_items_keep_their_marker_over_paragraphs() {
    // An empty heading's "## " must not reach the next paragraph either.
    let html = r##"<main><ol start="3"><li><p>three</p></li><li>four<ol><li>a</li></ol></li></ol>
            <ul><li><p>bullet in a paragraph</p><p>second paragraph</p></li></ul>
            <h2><a class="headerlink" href="#">¶</a></h2><p>after</p></main>"##;
    assert_eq!(
        html_to_text(html).text,
        "3. three\n\n4. four\n\n  1. a\n\n- bullet in a paragraph\n\nsecond paragraph\n\nafter"
    );
}

#[test]
fn interface_links_line_numbers_and_tooltips_are_not_text() {
    // rustdoc's "Read more" and source line numbers, Doxygen's "More...",
    // its tooltips in code and its summary link.
    let html = r##"<main><div class="summary"><a href="#pub-attribs">Data Fields</a></div>
            <p>Makes a copy. <a href="trait.X.html#tymethod.y">Read more</a></p>
            <p>Counts sheep. <a href="pen.html#a1">More...</a></p>
            <pre class="rust"><code><a href=#1 id=1 data-nosnippet>1</a>fn main() {
<a href=#2 id=2 data-nosnippet>2</a>}</code></pre>
            <div class="fragment"><div class="line">pen.count();</div>
            <div class="ttc" id="a1"><div class="ttname"><a href="x.html">count</a></div><div class="ttdef"><b>Definition:</b> pen.h:3</div></div></div>
            <div><code><a href="#count()">count</a>()</code></div></main>"##;
    assert_eq!(
        html_to_text(html).text,
        "Makes a copy.\n\nCounts sheep.\n\n```rust\nfn main() {\n}\n```\n\n```\npen.count();\n```\n\n`count()`"
    );
}
