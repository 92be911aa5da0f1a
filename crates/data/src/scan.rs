//! Scanning folders for training files: walk (honouring .gitignore /
//! .ignore), filter by extension, read and classify every file as kept or
//! skipped with a reason, stream the results and stop when cancelled.

use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::clean::{clean_bytes, count_lines};
use crate::error::DataError;

/// Source and text types kept when `ScanOptions::extensions` is empty.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "rs", "py", "js", "mjs", "ts", "jsx", "tsx",
    "go", "java", "kt", "swift", "rb", "php", "cs", "lua", "pl", "scala", "hs", "ml", "sql", "sh",
    "bash", "zsh", "s", "asm", "cmake", "mk", "md", "txt", "rst", "toml", "yaml", "yml", "json",
    "xml", "html", "css", "ini", "cfg",
];

/// Extensions as a person types them, in any of the forms the commands and
/// the app accept: `c h md` (several values), `.c,.h`, `"c, h"`. Splits on
/// commas and whitespace, drops leading dots, lowercases, drops empties and
/// repeats, and keeps the first-seen order.
pub fn parse_extensions(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        for part in value.split(|c: char| c == ',' || c.is_whitespace()) {
            let ext = part.trim_start_matches('.').to_lowercase();
            if !ext.is_empty() && !out.contains(&ext) {
                out.push(ext);
            }
        }
    }
    out
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanOptions {
    /// Folders (walked, honouring .gitignore / .ignore) or single files.
    pub roots: Vec<PathBuf>,
    /// Extensions kept (any form [`parse_extensions`] reads); empty: the
    /// default set.
    pub extensions: Vec<String>,
    /// Files larger than this are skipped (None: no cap).
    pub max_file_bytes: Option<u64>,
    /// Paths left out, as .gitignore patterns relative to each root
    /// (`tree-sitter-*` leaves out every folder or file of that name).
    pub exclude: Vec<String>,
}

/// The walker's overrides that leave `patterns` out under `root`.
fn exclusions(root: &Path, patterns: &[String]) -> Result<ignore::overrides::Override, DataError> {
    let mut builder = ignore::overrides::OverrideBuilder::new(root);
    for pattern in patterns {
        let problem = |e: ignore::Error| DataError::Exclude {
            pattern: pattern.clone(),
            problem: e.to_string(),
        };
        builder.add(&format!("!{pattern}")).map_err(problem)?;
    }
    builder.build().map_err(|e| DataError::Exclude {
        pattern: patterns.join(" "),
        problem: e.to_string(),
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// NUL bytes or mostly invalid UTF-8.
    Binary,
    TooLarge {
        size: u64,
        limit: u64,
    },
    Unreadable(String),
    Empty,
    /// Same content as a file already kept.
    Duplicate {
        of: PathBuf,
    },
    /// FIFO, socket, device, or a symlink that does not lead to a regular
    /// file (dangling, a loop, or a folder).
    NotRegularFile,
    /// Disappeared between listing and reading.
    Vanished,
}

impl SkipReason {
    /// Short label for summaries ("binary", "duplicate", ...).
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::Binary => "binary",
            SkipReason::TooLarge { .. } => "too large",
            SkipReason::Unreadable(_) => "unreadable",
            SkipReason::Empty => "empty",
            SkipReason::Duplicate { .. } => "duplicate",
            SkipReason::NotRegularFile => "not a regular file",
            SkipReason::Vanished => "vanished",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    Kept,
    Skipped(SkipReason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedFile {
    pub path: PathBuf,
    /// Path relative to the root it was found under (used in file markers).
    pub relative: PathBuf,
    pub size: u64,
    /// Human-readable kind, e.g. "C source", "Markdown", "text".
    pub kind: String,
    pub lines: usize,
    pub status: FileStatus,
}

/// Walks `opts.roots`, calling `on_file` for every file met, kept or
/// skipped, as soon as it is classified. Returns early when `cancel` is set.
pub fn scan(
    opts: &ScanOptions,
    cancel: &AtomicBool,
    on_file: &mut dyn FnMut(ScannedFile),
) -> Result<(), DataError> {
    scan_with_text(opts, cancel, &mut |file, _text| on_file(file))
}

/// Like [`scan`], but also hands over the cleaned text of each kept file
/// (`None` for skipped ones), so a caller that needs the content does not
/// read every file twice.
pub fn scan_with_text(
    opts: &ScanOptions,
    cancel: &AtomicBool,
    on_file: &mut dyn FnMut(ScannedFile, Option<String>),
) -> Result<(), DataError> {
    let mut extensions = parse_extensions(&opts.extensions);
    if extensions.is_empty() {
        extensions = DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect();
    }
    let mut seen: HashMap<[u8; 32], PathBuf> = HashMap::new();
    for root in &opts.roots {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::fs::symlink_metadata(root).map_err(|source| DataError::Scan {
            path: root.clone(),
            source,
        })?;
        let mut batch = Vec::new();
        let walker = ignore::WalkBuilder::new(root)
            .overrides(exclusions(root, &opts.exclude)?)
            // Honour .gitignore even when the folder is not a git checkout.
            .require_git(false)
            .follow_links(false)
            .sort_by_file_name(|a, b| a.cmp(b))
            .build();
        for entry in walker {
            if cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    if let Some(file) = walk_error(root, &err) {
                        on_file(file, None);
                    }
                    continue;
                }
            };
            // The file type comes from the directory listing: nothing is
            // opened yet, so a FIFO cannot block us here.
            let Some(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                continue;
            }
            let path = entry.path().to_path_buf();
            // The extensions choose among a folder's files; a file named
            // as a root is read whatever its name.
            if entry.depth() > 0 && !has_extension(&path, &extensions) {
                continue;
            }
            let relative = match path.strip_prefix(root) {
                Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
                _ => path
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| path.clone()),
            };
            batch.push((path, relative));
            // Small batches keep the stream lively while still reading
            // files in parallel.
            if batch.len() == 32 {
                emit_batch(&mut batch, opts.max_file_bytes, &mut seen, cancel, on_file);
            }
        }
        emit_batch(&mut batch, opts.max_file_bytes, &mut seen, cancel, on_file);
    }
    Ok(())
}

/// Reads and classifies a batch in parallel, then resolves duplicates in
/// walk order so the first copy met is the one kept, on every run.
fn emit_batch(
    batch: &mut Vec<(PathBuf, PathBuf)>,
    max_file_bytes: Option<u64>,
    seen: &mut HashMap<[u8; 32], PathBuf>,
    cancel: &AtomicBool,
    on_file: &mut dyn FnMut(ScannedFile, Option<String>),
) {
    if cancel.load(Ordering::Relaxed) {
        batch.clear();
        return;
    }
    let classified: Vec<(ScannedFile, Content)> = batch
        .par_drain(..)
        .map(|(path, relative)| classify(path, relative, max_file_bytes))
        .collect();
    for (mut file, content) in classified {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        match content {
            Some((text, hash)) => {
                if let Some(first) = seen.get(&hash) {
                    file.status = FileStatus::Skipped(SkipReason::Duplicate { of: first.clone() });
                    on_file(file, None);
                } else {
                    seen.insert(hash, file.path.clone());
                    on_file(file, Some(text));
                }
            }
            None => on_file(file, None),
        }
    }
}

type Content = Option<(String, [u8; 32])>;

/// Decides one file's fate; never opens anything but a regular file.
fn classify(
    path: PathBuf,
    relative: PathBuf,
    max_file_bytes: Option<u64>,
) -> (ScannedFile, Content) {
    let mut file = ScannedFile {
        kind: kind_of(&path).to_string(),
        path,
        relative,
        size: 0,
        lines: 0,
        status: FileStatus::Kept,
    };
    let skip = |mut file: ScannedFile, reason| {
        file.status = FileStatus::Skipped(reason);
        (file, None)
    };
    let meta = match std::fs::symlink_metadata(&file.path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return skip(file, SkipReason::Vanished),
        Err(e) => return skip(file, SkipReason::Unreadable(e.to_string())),
    };
    let meta = if meta.file_type().is_symlink() {
        // Follow it once: a loop or a dangling link errors here instead of
        // hanging, and the target's type is checked like any other file.
        match std::fs::metadata(&file.path) {
            Ok(target) => target,
            Err(_) => return skip(file, SkipReason::NotRegularFile),
        }
    } else {
        meta
    };
    if !meta.is_file() {
        return skip(file, SkipReason::NotRegularFile);
    }
    file.size = meta.len();
    if let Some(limit) = max_file_bytes
        && file.size > limit
    {
        let size = file.size;
        return skip(file, SkipReason::TooLarge { size, limit });
    }
    let bytes = match read_regular(&file.path, max_file_bytes) {
        Ok(bytes) => bytes,
        Err(ReadFailure::Vanished) => return skip(file, SkipReason::Vanished),
        Err(ReadFailure::NotRegular) => return skip(file, SkipReason::NotRegularFile),
        Err(ReadFailure::Io(msg)) => return skip(file, SkipReason::Unreadable(msg)),
    };
    file.size = bytes.len() as u64;
    if let Some(limit) = max_file_bytes
        && file.size > limit
    {
        // It grew between the listing and the read.
        let size = file.size;
        return skip(file, SkipReason::TooLarge { size, limit });
    }
    if bytes.is_empty() {
        return skip(file, SkipReason::Empty);
    }
    let text = match clean_bytes(&bytes) {
        Ok(text) => text,
        Err(_) => return skip(file, SkipReason::Binary),
    };
    if text.is_empty() {
        // A lone BOM is no content.
        return skip(file, SkipReason::Empty);
    }
    file.lines = count_lines(&text);
    // Hash the cleaned text: a CRLF copy of an LF file is still a copy.
    let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    (file, Some((text, hash)))
}

enum ReadFailure {
    Vanished,
    NotRegular,
    Io(String),
}

/// Opens without blocking (a file swapped for a FIFO after the type check
/// must not hang the scan), re-checks the type on the open handle, reads at
/// most `limit + 1` bytes.
fn read_regular(path: &Path, limit: Option<u64>) -> Result<Vec<u8>, ReadFailure> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000;
        options.custom_flags(O_NONBLOCK);
    }
    let file: File = options.open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => ReadFailure::Vanished,
        _ => ReadFailure::Io(e.to_string()),
    })?;
    let meta: Metadata = file
        .metadata()
        .map_err(|e| ReadFailure::Io(e.to_string()))?;
    if !meta.is_file() {
        return Err(ReadFailure::NotRegular);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit.map_or(u64::MAX, |l| l.saturating_add(1)))
        .read_to_end(&mut bytes)
        .map_err(|e| ReadFailure::Io(e.to_string()))?;
    Ok(bytes)
}

/// A walk error that belongs to a path (an unreadable folder, say) becomes
/// a skipped entry; others carry no file to show.
fn walk_error(root: &Path, err: &ignore::Error) -> Option<ScannedFile> {
    let mut err = err;
    loop {
        match err {
            ignore::Error::WithPath { path, err: inner } => {
                return Some(ScannedFile {
                    path: path.clone(),
                    relative: path.strip_prefix(root).unwrap_or(path).to_path_buf(),
                    size: 0,
                    kind: "folder".to_string(),
                    lines: 0,
                    status: FileStatus::Skipped(SkipReason::Unreadable(inner.to_string())),
                });
            }
            ignore::Error::WithDepth { err: inner, .. } => err = inner,
            ignore::Error::WithLineNumber { err: inner, .. } => err = inner,
            _ => return None,
        }
    }
}

fn extension_of(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_lowercase())
}

fn has_extension(path: &Path, extensions: &[String]) -> bool {
    extension_of(path).is_some_and(|e| extensions.contains(&e))
}

/// Human-readable kind from the extension.
pub fn kind_of(path: &Path) -> &'static str {
    match extension_of(path).as_deref() {
        Some("c") => "C source",
        Some("h") | Some("hh") | Some("hpp") | Some("hxx") => "C/C++ header",
        Some("cc") | Some("cpp") | Some("cxx") => "C++ source",
        Some("rs") => "Rust source",
        Some("py") => "Python source",
        Some("js") | Some("mjs") | Some("jsx") => "JavaScript source",
        Some("ts") | Some("tsx") => "TypeScript source",
        Some("go") => "Go source",
        Some("java") => "Java source",
        Some("sh") | Some("bash") | Some("zsh") => "shell script",
        Some("md") => "Markdown",
        Some("rst") => "reStructuredText",
        Some("txt") => "text",
        Some("toml") => "TOML",
        Some("yaml") | Some("yml") => "YAML",
        Some("json") => "JSON",
        Some("html") | Some("xml") => "markup",
        Some(_) => "source",
        None => "file",
    }
}
