//! Scanning a folder of awkward files built at run time: each is kept or
//! skipped for the right reason, with no panic and no hang.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use cllm_data::read_clean;
use cllm_data::scan::{FileStatus, ScanOptions, ScannedFile, SkipReason, scan, scan_with_text};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
    path
}

fn running_as_root() -> bool {
    // Root reads files whatever their mode, so chmod 000 proves nothing then.
    fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn scan_all(opts: &ScanOptions) -> HashMap<String, ScannedFile> {
    let mut found = HashMap::new();
    let never = AtomicBool::new(false);
    scan(opts, &never, &mut |f| {
        let key = f.relative.to_string_lossy().into_owned();
        assert!(found.insert(key, f).is_none(), "file reported twice");
    })
    .unwrap();
    found
}

#[test]
fn awkward_files_are_classified() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let original = b"int main(void) {\n    return 0;\n}\n";
    write(dir, "a_original.c", original);
    write(dir, "z_copy.c", original);
    // The same file with CRLF endings is a copy too, once cleaned.
    write(
        dir,
        "y_crlf_copy.c",
        b"int main(void) {\r\n    return 0;\r\n}\r\n",
    );
    write(dir, "crlf.c", b"int x;\r\nint y;\r\n");
    write(dir, "bom.md", b"\xEF\xBB\xBF# Title\n\ntext\n");
    write(dir, "binary.c", b"\x7fELF\x00\x00\x01binary");
    let mut invalid = vec![0xC3u8, 0x28, 0xFF, 0xFE, 0x80, 0x81];
    invalid = invalid.repeat(20);
    write(dir, "invalid.txt", &invalid);
    write(dir, "empty.txt", b"");
    write(dir, "big.txt", &b"x".repeat(5000));
    write(dir, "notes.xyz", b"not a kept extension");
    // A symlink loop and a dangling link.
    symlink(dir.join("loop_b.txt"), dir.join("loop_a.txt")).unwrap();
    symlink(dir.join("loop_a.txt"), dir.join("loop_b.txt")).unwrap();
    symlink(dir.join("missing.txt"), dir.join("dangling.txt")).unwrap();
    // A link to a regular file is read through.
    symlink(dir.join("crlf.c"), dir.join("link_to_crlf.h")).unwrap();
    // A FIFO: opening it for reading would block forever.
    let status = std::process::Command::new("mkfifo")
        .arg(dir.join("pipe.txt"))
        .status()
        .unwrap();
    assert!(status.success());
    // Unreadable even for root: reading /proc/self/mem at offset 0 fails
    // with EIO (page 0 is never mapped), though it is a regular file.
    symlink("/proc/self/mem", dir.join("proc_mem.txt")).unwrap();
    let locked = write(dir, "locked.txt", b"secret\n");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    // A nested .gitignore (honoured outside a git checkout too).
    write(dir, "sub/.gitignore", b"ignored.c\n");
    write(dir, "sub/ignored.c", b"int ignored;\n");
    write(dir, "sub/kept.rs", b"fn main() {}\n");

    let opts = ScanOptions {
        roots: vec![dir.to_path_buf()],
        extensions: Vec::new(),
        max_file_bytes: Some(1000),
        exclude: Vec::new(),
    };
    let found = scan_all(&opts);
    let status = |name: &str| {
        found
            .get(name)
            .unwrap_or_else(|| panic!("{name} not reported; got {:?}", found.keys()))
            .status
            .clone()
    };
    let skipped = |name: &str| match status(name) {
        FileStatus::Skipped(r) => r,
        FileStatus::Kept => panic!("{name} was kept"),
    };

    assert_eq!(status("a_original.c"), FileStatus::Kept);
    assert_eq!(
        skipped("z_copy.c"),
        SkipReason::Duplicate {
            of: dir.join("a_original.c")
        }
    );
    assert_eq!(
        skipped("y_crlf_copy.c"),
        SkipReason::Duplicate {
            of: dir.join("a_original.c")
        }
    );
    assert_eq!(status("crlf.c"), FileStatus::Kept);
    assert_eq!(found["crlf.c"].lines, 2);
    assert_eq!(read_clean(&dir.join("crlf.c")).unwrap(), "int x;\nint y;\n");
    assert_eq!(status("bom.md"), FileStatus::Kept);
    assert_eq!(found["bom.md"].kind, "Markdown");
    assert_eq!(
        read_clean(&dir.join("bom.md")).unwrap(),
        "# Title\n\ntext\n"
    );
    assert_eq!(skipped("binary.c"), SkipReason::Binary);
    assert_eq!(skipped("invalid.txt"), SkipReason::Binary);
    assert_eq!(skipped("empty.txt"), SkipReason::Empty);
    assert_eq!(
        skipped("big.txt"),
        SkipReason::TooLarge {
            size: 5000,
            limit: 1000
        }
    );
    assert_eq!(skipped("loop_a.txt"), SkipReason::NotRegularFile);
    assert_eq!(skipped("loop_b.txt"), SkipReason::NotRegularFile);
    assert_eq!(skipped("dangling.txt"), SkipReason::NotRegularFile);
    assert_eq!(skipped("pipe.txt"), SkipReason::NotRegularFile);
    // The link's content is the same as crlf.c: a duplicate, so it was read.
    assert_eq!(
        skipped("link_to_crlf.h"),
        SkipReason::Duplicate {
            of: dir.join("crlf.c")
        }
    );
    assert!(matches!(skipped("proc_mem.txt"), SkipReason::Unreadable(_)));
    if running_as_root() {
        // Root can read a mode-000 file; only its classification as
        // readable text is checked then (proc_mem.txt above still checks
        // an unreadable file).
        eprintln!(
            "running as root: the mode-000 file is readable, so that check is weakened \
             (kept as text instead of skipped as unreadable)"
        );
        assert_eq!(status("locked.txt"), FileStatus::Kept);
    } else {
        assert!(matches!(skipped("locked.txt"), SkipReason::Unreadable(_)));
    }
    assert_eq!(status("sub/kept.rs"), FileStatus::Kept);
    assert_eq!(found["sub/kept.rs"].kind, "Rust source");
    assert!(
        !found.contains_key("sub/ignored.c"),
        "nested .gitignore not honoured"
    );
    assert!(
        !found.contains_key("notes.xyz"),
        "extension filter not applied"
    );
    assert!(!found.contains_key("sub/.gitignore"));
}

#[test]
fn extensions_are_configurable_and_text_is_handed_over() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "a.c", b"int a;\r\n");
    write(tmp.path(), "b.py", b"print(1)\n");
    write(tmp.path(), "c.xyz", b"custom\n");
    let opts = ScanOptions {
        roots: vec![tmp.path().to_path_buf()],
        extensions: vec![".XYZ".to_string(), "c".to_string()],
        ..ScanOptions::default()
    };
    assert_eq!(
        scanned_texts(&opts),
        vec![
            ("a.c".to_string(), Some("int a;\n".to_string())),
            ("c.xyz".to_string(), Some("custom\n".to_string())),
        ]
    );
    // A file named as a root is read whatever the extensions say: they
    // choose among a folder's files.
    let opts = ScanOptions {
        roots: vec![tmp.path().join("b.py")],
        extensions: vec!["c".to_string()],
        ..ScanOptions::default()
    };
    assert_eq!(
        scanned_texts(&opts),
        vec![("b.py".to_string(), Some("print(1)\n".to_string()))]
    );
}

/// `(relative path, text)` of every file a scan hands over.
fn scanned_texts(opts: &ScanOptions) -> Vec<(String, Option<String>)> {
    let mut got = Vec::new();
    scan_with_text(opts, &AtomicBool::new(false), &mut |f, text| {
        got.push((f.relative.to_string_lossy().into_owned(), text));
    })
    .unwrap();
    got
}

#[test]
fn single_file_root_and_missing_root() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "one.txt", b"hello\n");
    let found = scan_all(&ScanOptions {
        roots: vec![file],
        ..ScanOptions::default()
    });
    assert_eq!(found["one.txt"].status, FileStatus::Kept);
    let err = scan(
        &ScanOptions {
            roots: vec![tmp.path().join("nope")],
            ..ScanOptions::default()
        },
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn cancel_stops_the_stream() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..100 {
        write(
            tmp.path(),
            &format!("f{i:03}.txt"),
            format!("file {i}\n").as_bytes(),
        );
    }
    let opts = ScanOptions {
        roots: vec![tmp.path().to_path_buf()],
        ..ScanOptions::default()
    };
    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    scan(&opts, &cancel, &mut |_| {
        seen += 1;
        cancel.store(true, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(seen, 1);
    let mut all = 0;
    scan(&opts, &AtomicBool::new(false), &mut |_| all += 1).unwrap();
    assert_eq!(all, 100);
}

#[test]
fn extensions_are_read_in_every_form_people_type() {
    use cllm_data::scan::parse_extensions;
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let want = v(&["c", "h", "md"]);
    assert_eq!(parse_extensions(&v(&["c", "h", "md"])), want);
    assert_eq!(parse_extensions(&v(&[".c,.h", ".MD"])), want);
    assert_eq!(parse_extensions(&v(&["c, h", " md "])), want);
    assert_eq!(parse_extensions(&v(&["c h\tmd", "C", ".h,,", ""])), want);
    assert!(parse_extensions(&v(&[" , . "])).is_empty());

    // A scan given the typed form keeps exactly those types.
    let tmp = tempfile::tempdir().unwrap();
    for name in ["a.c", "b.H", "c.md", "d.rs"] {
        write(tmp.path(), name, b"text\n");
    }
    let found = scan_all(&ScanOptions {
        roots: vec![tmp.path().to_path_buf()],
        extensions: v(&[".c, .h md"]),
        max_file_bytes: None,
        exclude: Vec::new(),
    });
    let mut kept: Vec<&String> = found.keys().collect();
    kept.sort();
    assert_eq!(kept, ["a.c", "b.H", "c.md"]);
}

#[test]
fn excluded_folders_and_files_are_left_out_and_a_bad_pattern_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "mine/a.c", b"int a;\n");
    write(
        tmp.path(),
        "vendor/tree-sitter-0.27.1/src/parser.c",
        b"int p;\n",
    );
    write(tmp.path(), "vendor/libffi-sys/ffi.c", b"int f;\n");
    write(tmp.path(), "mine/generated.c", b"int g;\n");
    let opts = |exclude: &[&str]| ScanOptions {
        roots: vec![tmp.path().to_path_buf()],
        exclude: exclude.iter().map(|p| p.to_string()).collect(),
        ..ScanOptions::default()
    };
    let names = |exclude: &[&str]| {
        let mut names: Vec<String> = scan_all(&opts(exclude)).into_keys().collect();
        names.sort();
        names
    };
    assert_eq!(names(&[]).len(), 4);
    assert_eq!(
        names(&["tree-sitter-*", "libffi*", "generated.c"]),
        vec!["mine/a.c".to_string()]
    );
    let err = scan(&opts(&["src/[z-a"]), &AtomicBool::new(false), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("--exclude \"src/[z-a\""), "{err}");
}
