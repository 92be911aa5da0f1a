//! Cleaning raw file bytes into training text: binary detection, BOM removal
//! and line-ending normalisation. Everything else is kept byte for byte.

use std::path::Path;

use crate::error::DataError;

/// Why raw bytes could not be turned into text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotText {
    /// NUL bytes, or more than `MAX_INVALID_FRACTION` of the bytes are not
    /// valid UTF-8.
    Binary,
}

/// A file with a few stray invalid bytes (a Latin-1 comment in a C file) is
/// still worth training on; one where a tenth of the bytes are invalid is
/// almost certainly not text.
const MAX_INVALID_FRACTION: f64 = 0.1;

const BOM: &str = "\u{feff}";

/// Turns raw file bytes into clean text: drops a leading UTF-8 BOM, turns
/// CRLF and lone CR into LF, and replaces the (few) invalid UTF-8 sequences
/// with U+FFFD. NUL bytes or mostly-invalid UTF-8 mean binary.
pub fn clean_bytes(bytes: &[u8]) -> Result<String, NotText> {
    if bytes.contains(&0) {
        return Err(NotText::Binary);
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => {
            if invalid_utf8_bytes(bytes) as f64 > MAX_INVALID_FRACTION * bytes.len() as f64 {
                return Err(NotText::Binary);
            }
            String::from_utf8_lossy(bytes)
        }
    };
    Ok(normalise_text(&text))
}

/// Drops a leading BOM and normalises line endings to LF.
pub fn normalise_text(text: &str) -> String {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    if !text.contains('\r') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\r') {
        out.push_str(&rest[..i]);
        out.push('\n');
        rest = &rest[i + 1..];
        // CRLF is one line ending, not two.
        if let Some(after) = rest.strip_prefix('\n') {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Counts bytes that belong to invalid UTF-8 sequences.
fn invalid_utf8_bytes(mut bytes: &[u8]) -> usize {
    let mut invalid = 0;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return invalid,
            Err(e) => {
                let bad = e.error_len().unwrap_or(bytes.len() - e.valid_up_to());
                invalid += bad;
                bytes = &bytes[e.valid_up_to() + bad..];
            }
        }
    }
}

/// Reads a file and cleans it (LF line endings, BOM dropped). The error names
/// the file and the problem.
pub fn read_clean(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
    clean_bytes(&bytes).map_err(|_| DataError::Binary {
        path: path.to_path_buf(),
    })
}

/// Number of lines as an editor shows them: a final line without a newline
/// still counts.
pub fn count_lines(text: &str) -> usize {
    let newlines = text.bytes().filter(|&b| b == b'\n').count();
    if text.is_empty() || text.ends_with('\n') {
        newlines
    } else {
        newlines + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_and_bom() {
        assert_eq!(
            clean_bytes(b"\xEF\xBB\xBFa\r\nb\rc\n\r\n").unwrap(),
            "a\nb\nc\n\n"
        );
        assert_eq!(
            clean_bytes("tab\t \u{e9}\n".as_bytes()).unwrap(),
            "tab\t \u{e9}\n"
        );
        // Only a leading BOM is dropped.
        assert_eq!(normalise_text("x\u{feff}"), "x\u{feff}");
    }

    #[test]
    fn binary_detection() {
        assert_eq!(clean_bytes(b"ab\0cd"), Err(NotText::Binary));
        assert_eq!(clean_bytes(&[0xff; 40]), Err(NotText::Binary));
        // One stray Latin-1 byte in a long line is still text.
        let mut few = b"int x = 1; /* caf".to_vec();
        few.push(0xe9);
        few.extend_from_slice(b" */ int y = 2; int z = 3;\n");
        assert_eq!(clean_bytes(&few).unwrap().matches('\u{fffd}').count(), 1);
    }

    #[test]
    fn lines() {
        assert_eq!(count_lines(""), 0);
        assert_eq!(count_lines("a"), 1);
        assert_eq!(count_lines("a\nb\n"), 2);
        assert_eq!(count_lines("a\n\nb"), 3);
    }
}
