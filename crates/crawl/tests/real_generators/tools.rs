//! The generators, found or explained: each test runs where its tool is
//! installed and prints "skipped: ..." elsewhere, unless
//! `CLLM_REQUIRE_DOC_GENERATORS=1` (CI sets it after .ci/run installs
//! them), which makes a missing tool a failure.
//!
//! Where they are looked for: `CLLM_TEST_MDBOOK` (else `mdbook` on the
//! PATH); `CLLM_TEST_DOCS_PYTHON`, a python3 that imports `sphinx` and
//! `material` (else `python3`); `rustdoc` and `doxygen` on the PATH.

use std::process::Command;

/// The variable that makes a missing generator a failure.
const REQUIRE: &str = "CLLM_REQUIRE_DOC_GENERATORS";

/// The tool, or `None` after saying why the test is skipped (a panic
/// when CI requires the tools).
pub fn require(test: &str, found: Result<String, String>) -> Option<String> {
    match found {
        Ok(tool) => Some(tool),
        Err(why) if std::env::var(REQUIRE).as_deref() == Ok("1") => {
            panic!("{REQUIRE}=1 but {why}")
        }
        Err(why) => {
            println!("skipped: the {test} site: {why}");
            None
        }
    }
}

pub fn rustdoc() -> Result<String, String> {
    runs(
        "rustdoc",
        &["--version"],
        "it comes with the Rust toolchain",
    )
}

pub fn mdbook() -> Result<String, String> {
    let tool = std::env::var("CLLM_TEST_MDBOOK").unwrap_or_else(|_| "mdbook".into());
    runs(
        &tool,
        &["--version"],
        "set CLLM_TEST_MDBOOK to an mdbook binary (`cargo install mdbook --version 0.5.4 --no-default-features --locked`)",
    )
}

pub fn doxygen() -> Result<String, String> {
    runs("doxygen", &["--version"], "`apt-get install doxygen`")
}

/// A python3 with Sphinx (for the Sphinx site) or MkDocs with the
/// Material theme (for the MkDocs site).
pub fn python_with(module: &str) -> Result<String, String> {
    let python = std::env::var("CLLM_TEST_DOCS_PYTHON").unwrap_or_else(|_| "python3".into());
    runs(
        &python,
        &["-c", &format!("import {module}")],
        "set CLLM_TEST_DOCS_PYTHON to a python3 with `pip install sphinx mkdocs-material`",
    )
}

/// `tool` if it runs with `args` and succeeds, else what is wrong and
/// how to get it.
fn runs(tool: &str, args: &[&str], how: &str) -> Result<String, String> {
    match Command::new(tool).args(args).output() {
        Ok(out) if out.status.success() => Ok(tool.to_string()),
        Ok(out) => Err(format!(
            "`{tool} {}` failed ({}); {how}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        )),
        Err(e) => Err(format!("no {tool} ({e}); {how}")),
    }
}

/// Runs a generator; its output on failure names what went wrong.
pub fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} did not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
