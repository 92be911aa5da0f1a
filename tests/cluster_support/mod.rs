//! What the data-parallel tests share: a small learnable corpus.

use std::path::{Path, PathBuf};

/// `dir/data/a.c`: `lines` lines of C with a comment, learnable in a few
/// steps.
pub fn corpus(dir: &Path, lines: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut a = String::new();
    for i in 0..lines {
        a.push_str(&format!(
            "int f{}(int x) {{ return x * {}; }} // fox {}\n",
            i % 17,
            i % 7,
            i % 11
        ));
    }
    std::fs::write(data.join("a.c"), a).unwrap();
    data
}
