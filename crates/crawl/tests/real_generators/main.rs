//! The crawler on sites built by the real documentation generators from
//! sources in `tests/sites/` (Markdown, reST, a Rust crate, a C header):
//! mdBook, Sphinx, MkDocs with the Material theme, rustdoc and Doxygen.
//! Each site is built into a temporary folder, served on 127.0.0.1,
//! crawled from its start page, and checked (see `site`): every content
//! page kept and nothing else, every code block of the sources byte for
//! byte, the text's structure, and none of the generator's chrome.
//! A test whose generator is missing says "skipped: ..." unless CI
//! requires the generators (see `tools`).

mod server;
mod site;
mod sources;
mod tools;

use site::{Expect, crawl_and_check};
use sources::Block;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The sources of a test site.
fn sources_of(site: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sites")
        .join(site)
}

/// Copies a site's sources into `to` (generators may write beside them).
fn copy_sources(site: &str, to: &Path) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    copy(&sources_of(site), to);
}

/// The code blocks of the files under a site's sources with extension
/// `ext`, read by `read`.
fn code_of(site: &str, ext: &str, read: fn(&str) -> Vec<Block>) -> Vec<Block> {
    fn walk(dir: &Path, ext: &str, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, ext, files);
            } else if path.extension().is_some_and(|e| e == ext) {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&sources_of(site), ext, &mut files);
    files.sort();
    files
        .iter()
        .flat_map(|f| read(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

#[test]
fn mdbook_site() {
    let Some(mdbook) = tools::require("mdBook", tools::mdbook()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (src, html) = (tmp.path().join("src"), tmp.path().join("html"));
    copy_sources("mdbook", &src);
    tools::run(
        Command::new(mdbook)
            .arg("build")
            .arg("-d")
            .arg(&html)
            .arg(&src),
    );
    crawl_and_check(
        &html,
        &Expect {
            start: "/",
            kept: &[
                ("/", "index.html"),
                ("/counting.html", "counting.html"),
                ("/config.html", "config.html"),
                ("/config/make.html", "config/make.html"),
            ],
            // mdBook's index.html is a copy of the first chapter.
            duplicates: &[("/intro.html", "/")],
            code: code_of("mdbook", "md", sources::markdown),
            min_code: 5,
            languages: true,
            text: &[
                "# Introduction\n\nThis guide explains",
                "1. Counting sheep, one at a time.\n\n2. Configuring",
                "| Breed | Wool per year | Origin |\n| --- | --- | --- |\n| Merino | 4.5 kg | Spain |",
                "- Never count a goat:\n\n  - goats have beards,\n\n  - sheep do not.",
                "one sheep at a time.[^1] A flock of 10^3 sheep",
                "1. The north gate, where the path is narrow.",
                "## Keys",
            ],
            chrome: &[
                "Keyboard shortcuts",
                "Previous chapter",
                "Next chapter",
                "Print this book",
                "Git repository",
                "Suggest an edit",
                "Toggle Table of Contents",
                "Change theme",
                "to navigate between chapters",
                "The Flock Guide",
                "↩",
            ],
        },
    );
}

#[test]
fn sphinx_site() {
    let Some(python) = tools::require("Sphinx", tools::python_with("sphinx")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (src, html) = (tmp.path().join("src"), tmp.path().join("html"));
    copy_sources("sphinx", &src);
    tools::run(
        Command::new(python)
            .args(["-m", "sphinx", "-q", "-b", "html", "-d"])
            .arg(tmp.path().join("doctrees"))
            .arg(&src)
            .arg(&html),
    );
    crawl_and_check(
        &html,
        &Expect {
            start: "/index.html",
            kept: &[
                ("/index.html", "index.html"),
                ("/counting.html", "counting.html"),
                ("/config.html", "config.html"),
                ("/api.html", "api.html"),
            ],
            duplicates: &[],
            code: code_of("sphinx", "rst", sources::rest),
            min_code: 4,
            languages: true,
            text: &[
                "# Counting sheep\n\nA flock is counted from the gate, one sheep at a time. [1]",
                "- Count each sheep once.\n\n- Never count a goat:\n\n  - goats have beards,",
                "| Key | Meaning |\n| --- | --- |\n| `name` | What the flock is called |",
                "The north gate, where the path is narrow.",
                "Count the sheep of a flock and return the total.",
                "Unknown keys are an error, not ignored.",
            ],
            chrome: &[
                "¶",
                "Navigation",
                "Related Topics",
                "Documentation overview",
                "Previous:",
                "Next:",
                "Page source",
                "Powered by",
                "Alabaster",
                "Contents",
            ],
        },
    );
}

#[test]
fn mkdocs_material_site() {
    let Some(python) = tools::require("MkDocs (Material)", tools::python_with("material")) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (src, html) = (tmp.path().join("src"), tmp.path().join("html"));
    copy_sources("mkdocs", &src);
    tools::run(
        Command::new(python)
            .args(["-m", "mkdocs", "build", "-q", "-f"])
            .arg(src.join("mkdocs.yml"))
            .arg("-d")
            .arg(&html)
            .env("NO_MKDOCS_2_WARNING", "1"),
    );
    crawl_and_check(
        &html,
        &Expect {
            start: "/",
            kept: &[
                ("/", "index.html"),
                ("/counting/", "counting/index.html"),
                ("/config/", "config/index.html"),
                ("/guide/tips/", "guide/tips/index.html"),
            ],
            duplicates: &[],
            code: code_of("mkdocs", "md", sources::markdown),
            min_code: 4,
            languages: true,
            text: &[
                "# Counting sheep\n\nA flock is counted from the gate, one sheep at a time.[^1]",
                "1. Counting, one sheep at a time.",
                "- Never count a goat:\n\n  - goats have beards,",
                "| Merino | 4.5 kg | Spain |",
                "The north gate, where the path is narrow.",
                "Unknown keys are an error, not ignored.",
            ],
            chrome: &[
                "¶",
                "Skip to content",
                "Back to top",
                "Made with",
                "Material for MkDocs",
                "Edit this page",
                "Copy to clipboard",
                "Table of contents",
                "Initializing search",
                "Previous",
                "Next",
                "↩",
            ],
        },
    );
}

#[test]
fn rustdoc_site() {
    let Some(rustdoc) = tools::require("rustdoc", tools::rustdoc()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (src, html) = (tmp.path().join("src"), tmp.path().join("html"));
    copy_sources("rustdoc", &src);
    tools::run(
        Command::new(rustdoc)
            .args([
                "--edition",
                "2021",
                "--crate-name",
                "flock",
                "--crate-type",
                "lib",
            ])
            .arg(src.join("lib.rs"))
            .arg("-o")
            .arg(&html),
    );
    let mut code = code_of("rustdoc", "rs", sources::rust_docs);
    // The source page shows the whole file.
    let lib = std::fs::read_to_string(sources_of("rustdoc").join("lib.rs")).unwrap();
    code.push(Block {
        lang: Some("rust".into()),
        code: lib.trim_end().to_string(),
    });
    crawl_and_check(
        &html,
        &Expect {
            start: "/flock/index.html",
            kept: &[
                ("/flock/index.html", "flock/index.html"),
                ("/flock/all.html", "flock/all.html"),
                ("/flock/fn.count.html", "flock/fn.count.html"),
                ("/flock/struct.Pen.html", "flock/struct.Pen.html"),
                ("/flock/trait.Woolly.html", "flock/trait.Woolly.html"),
                ("/flock/gate/index.html", "flock/gate/index.html"),
                (
                    "/flock/gate/struct.Hours.html",
                    "flock/gate/struct.Hours.html",
                ),
                (
                    "/flock/gate/constant.SUMMER.html",
                    "flock/gate/constant.SUMMER.html",
                ),
                ("/src/flock/lib.rs.html", "src/flock/lib.rs.html"),
            ],
            duplicates: &[],
            code,
            min_code: 7,
            languages: true,
            text: &[
                "# Struct Pen",
                "#### pub fn add(&mut self, sheep: S)\n\nPuts one sheep in the pen.",
                "- `Pen`, a pen of sheep;",
                "| Breed | Wool per year |\n| --- | --- |\n| Merino | 4.5 kg |",
                "the big ones noted.[^1]",
                "1. At the north gate, where the path is narrow.",
            ],
            chrome: &[
                "§",
                "Expand description",
                "Read more",
                "Copy item path",
                "Skip to main content",
                "Drag to resize",
                "In crate flock",
                "Source",
            ],
        },
    );
}

#[test]
fn doxygen_site() {
    let Some(doxygen) = tools::require("Doxygen", tools::doxygen()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_sources("doxygen", &src);
    // The Doxyfile, with the output folder added on standard input.
    let mut config = std::fs::read_to_string(src.join("Doxyfile")).unwrap();
    config.push_str(&format!(
        "\nOUTPUT_DIRECTORY = {}\n",
        tmp.path().join("out").display()
    ));
    let mut child = Command::new(doxygen)
        .arg("-")
        .current_dir(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("doxygen starts");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), config.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut code = code_of("doxygen", "md", sources::markdown);
    code.extend(code_of("doxygen", "h", sources::doxygen_comments));
    crawl_and_check(
        &tmp.path().join("out/html"),
        &Expect {
            start: "/index.html",
            kept: &[
                ("/index.html", "index.html"),
                ("/flock_8h.html", "flock_8h.html"),
                ("/structflock__pen.html", "structflock__pen.html"),
                ("/flock_8h_source.html", "flock_8h_source.html"),
            ],
            duplicates: &[],
            code,
            min_code: 3,
            languages: false,
            text: &[
                "# Using Flock\n\nFlock counts sheep from C.",
                "- `struct flock_pen`, a pen of sheep;\n\n  - filled with `flock_pen_add()`,",
                "| `flock_count` | the total |",
                "# flock_pen Struct Reference\n\nA pen that holds sheep until shearing.",
                "Counts the sheep of a flock.",
            ],
            chrome: &[
                "Generated by",
                "More...",
                "Go to the source code of this file.",
                "Go to the documentation of this file.",
                "Definition: flock.h",
                "◆",
            ],
        },
    );
}
