//! Where a page's text goes: `DIR/<host>/<path>.md` (`host_port` when the
//! URL names a port; `/` and folders become `index.md`; a query adds a
//! short hash of it to the name), first line naming the source URL.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use url::Url;

use crate::error::CrawlError;

/// The first line of every page file.
pub fn source_line(url: &str) -> String {
    format!("<!-- source: {url} -->")
}

/// The source URL named by a page file's first line.
pub fn source_of(text: &str) -> Option<&str> {
    text.lines()
        .next()?
        .strip_prefix("<!-- source: ")?
        .strip_suffix(" -->")
}

/// A file or folder name made of safe characters only.
fn safe(segment: &str) -> String {
    let s: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-%+~,=@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".repeat(s.len().max(1))
    } else {
        s
    }
}

/// The page file of `url`, relative to the output folder.
pub fn page_path(url: &Url) -> PathBuf {
    let host = url.host_str().unwrap_or("unknown-host");
    let mut path = PathBuf::from(match url.port() {
        Some(port) => safe(&format!("{host}_{port}")),
        None => safe(host),
    });
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let is_folder = url.path().ends_with('/') || segments.is_empty();
    let mut name = if is_folder {
        for s in &segments {
            path.push(safe(s));
        }
        "index".to_string()
    } else {
        for s in &segments[..segments.len() - 1] {
            path.push(safe(s));
        }
        safe(segments[segments.len() - 1])
    };
    if let Some(q) = url.query() {
        let digest = Sha256::digest(q.as_bytes());
        let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        name.push_str(&format!("__q{hex}"));
    }
    path.push(format!("{name}.md"));
    path
}

/// Writes a page file (temporary file, then rename), creating folders.
pub fn write_page(dir: &Path, relative: &Path, url: &str, text: &str) -> Result<u64, CrawlError> {
    let path = dir.join(relative);
    let parent = path.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|source| CrawlError::CreatePageFolder {
        path: parent.to_path_buf(),
        source,
    })?;
    let mut content = source_line(url);
    content.push('\n');
    content.push_str(text.trim_end());
    content.push('\n');
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, &content)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| CrawlError::WritePage { path, source })?;
    Ok(content.len() as u64)
}

/// The content hash pages are deduplicated by (hex SHA-256 of the text).
pub fn content_hash(text: &str) -> String {
    let digest = Sha256::digest(text.trim().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        page_path(&Url::parse(s).unwrap()).display().to_string()
    }

    #[test]
    fn urls_map_to_page_files() {
        assert_eq!(p("http://a.test/"), "a.test/index.md");
        assert_eq!(p("http://a.test/docs/"), "a.test/docs/index.md");
        assert_eq!(
            p("http://a.test/docs/intro.html"),
            "a.test/docs/intro.html.md"
        );
        assert_eq!(p("http://127.0.0.1:8000/a/b"), "127.0.0.1_8000/a/b.md");
        assert_eq!(p("http://a.test/../../etc/passwd"), "a.test/etc/passwd.md");
        assert_ne!(p("http://a.test/l?page=1"), p("http://a.test/l?page=2"));
        assert!(p("http://a.test/l?page=1").starts_with("a.test/l__q"));
    }

    #[test]
    fn the_first_line_names_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let rel = PathBuf::from("a.test/x/index.md");
        write_page(dir.path(), &rel, "http://a.test/x/", "# Hi\n").unwrap();
        let text = std::fs::read_to_string(dir.path().join(&rel)).unwrap();
        assert_eq!(text, "<!-- source: http://a.test/x/ -->\n# Hi\n");
        assert_eq!(source_of(&text), Some("http://a.test/x/"));
    }
}
