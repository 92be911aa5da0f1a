//! Consolidating cleaned files into one training text, each file preceded by
//! a marker line `// ===== FILE: <relative path> =====`, and splitting such
//! a text back into its files.

use std::io::Write;

const MARKER_START: &str = "// ===== FILE: ";
const MARKER_END: &str = " =====";

/// The marker line (without its newline) for one file.
pub fn marker_line(relative: &str) -> String {
    format!("{MARKER_START}{relative}{MARKER_END}")
}

/// Writes each `(relative path, text)` as a marker line followed by the
/// text; a text without a final newline gets one so the next marker starts a
/// line of its own. Returns the number of bytes written.
pub fn write_consolidated<W: Write>(
    out: &mut W,
    files: &[(String, String)],
) -> std::io::Result<u64> {
    let mut written = 0u64;
    for (relative, text) in files {
        let marker = marker_line(relative);
        out.write_all(marker.as_bytes())?;
        out.write_all(b"\n")?;
        out.write_all(text.as_bytes())?;
        written += marker.len() as u64 + 1 + text.len() as u64;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    Ok(written)
}

/// Splits a consolidated text back into `(relative path, text)` pairs. Text
/// before the first marker (or a text without markers at all) becomes one
/// file named `unnamed`, so plain text files work as training data too.
pub fn split_consolidated(text: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut name: Option<String> = None;
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.strip_suffix('\n').unwrap_or(line);
        if let Some(rel) = bare
            .strip_prefix(MARKER_START)
            .and_then(|r| r.strip_suffix(MARKER_END))
        {
            push_file(&mut files, name.take(), &text[start..pos]);
            name = Some(rel.to_string());
            start = pos + line.len();
        }
        pos += line.len();
    }
    push_file(&mut files, name, &text[start..]);
    files
}

fn push_file(files: &mut Vec<(String, String)>, name: Option<String>, body: &str) {
    match name {
        Some(name) => files.push((name, body.to_string())),
        // Leading text before any marker: keep it unless it is blank.
        None if !body.trim().is_empty() => files.push(("unnamed".to_string(), body.to_string())),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_split_round_trips() {
        let files = vec![
            ("src/a.c".to_string(), "int a;\n".to_string()),
            ("b.md".to_string(), "# no final newline".to_string()),
            (
                "c.txt".to_string(),
                "// ===== FILE: inner ===== not a marker\n\n".to_string(),
            ),
        ];
        let mut out = Vec::new();
        let n = write_consolidated(&mut out, &files).unwrap();
        assert_eq!(n as usize, out.len());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("// ===== FILE: src/a.c =====\nint a;\n// ===== FILE: b.md"));
        let back = split_consolidated(&text);
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], files[0]);
        assert_eq!(back[1].1, "# no final newline\n");
        assert_eq!(back[2], files[2]);
    }

    #[test]
    fn plain_text_is_one_file() {
        assert_eq!(
            split_consolidated("hello\nworld\n"),
            vec![("unnamed".to_string(), "hello\nworld\n".to_string())]
        );
        assert!(split_consolidated("").is_empty());
    }
}
