//! The data panel: selection and totals, the real scanner, dropped files.

use super::*;

#[test]
fn select_files_and_totals() {
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.run();
    assert_eq!(h.state().data.rows.len(), 4);
    h.get_by_label_contains("skipped: binary");
    h.get_by_label_contains("Selected: 3 files");

    h.get_by_label("Select None").click();
    h.run();
    h.get_by_label_contains("Selected: 0 files");
    assert!(
        h.state()
            .run_config()
            .unwrap_err()
            .contains("no files selected")
    );

    h.get_by_label("util.h").click();
    h.run();
    h.get_by_label_contains("Selected: 1 files · 800 B");
    // Estimated tokens for BPE: bytes / 4.
    h.get_by_label_contains("~200 tokens");
    let cfg = h.state().run_config().unwrap();
    assert_eq!(cfg.corpus.files, vec![PathBuf::from("corpus/util.h")]);

    // The extension filter hides other kinds and keeps them out of the run.
    h.get_by_label("Select All").click();
    h.run();
    h.get_by_label("Extensions").set_text_value_accesskit("md");
    h.run();
    h.get_by_label_contains("Selected: 1 files");
    assert!(h.query_by_label("main.c").is_none());
    assert_eq!(
        h.state().run_config().unwrap().corpus.files,
        vec![PathBuf::from("corpus/README.md")]
    );
}

/// Uses the real scanner; needs the data engineer's `scan` (merged later).
#[test]
fn scan_lists_real_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.c"), "int main() { return 0; }\n").unwrap();
    std::fs::write(dir.path().join("notes.md"), "# notes\nline two\n").unwrap();
    let settings = Settings {
        data_dir: dir.path().display().to_string(),
        extension_filter: "c md".into(),
        ..Settings::default()
    };
    let mut h = harness(WorkbenchApp::new_for_test(settings));
    finish_scan(&mut h);
    h.run();
    assert_eq!(h.state().data.error, None);
    h.get_by_label("hello.c");
    h.get_by_label("notes.md");
    assert_eq!(h.state().run_config().unwrap().corpus.files.len(), 2);
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_files_are_added_to_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let dropped = dir.path().join("dropped.rs");
    std::fs::write(&dropped, "fn main() {}\n").unwrap();
    let mut h = harness(scripted_app());
    finish_scan(&mut h);
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(dropped.clone())));
    h.step();
    finish_scan(&mut h);
    h.run();
    assert_eq!(
        h.state().data.rows.len(),
        5,
        "added to, not replacing, the list"
    );
    h.get_by_label("dropped.rs");
    assert!(
        h.state()
            .run_config()
            .unwrap()
            .corpus
            .files
            .contains(&dropped)
    );
}
