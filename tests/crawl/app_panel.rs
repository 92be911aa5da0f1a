//! The app's Crawl section against the test site.

use super::*;

/// The app's Crawl section, driven headlessly with egui_kittest against the
/// test server: typed URL, depth and delay, Start; the crawl runs on its
/// own thread while frames go on; kept pages join the file list checked,
/// skipped URLs are listed with their reasons.
#[test]
fn the_crawl_panel_adds_pages_to_the_file_list() {
    use cllm_app::WorkbenchApp;
    use cllm_app::settings::Settings;
    use eframe::egui;
    use egui::accesskit::Role;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use std::time::Instant;

    let f = fixture();
    let data_dir = f.dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let settings = Settings {
        data_dir: data_dir.display().to_string(),
        ..Settings::default()
    };
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(
            |ui, app: &mut WorkbenchApp| app.show(ui),
            WorkbenchApp::new_for_test(settings),
        );
    let step_until =
        |h: &mut Harness<'_, WorkbenchApp>, what: &str, done: &dyn Fn(&WorkbenchApp) -> bool| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !done(h.state()) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                h.step();
                std::thread::yield_now();
            }
        };
    step_until(&mut h, "the scan", &|a| !a.data.is_scanning());
    h.get_by_label("Crawl a website").click();
    h.run();
    h.get_by_role_and_label(Role::TextInput, "URL").focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "URL")
        .type_text(&f.main.url("/docs/"));
    h.run_steps(1);
    h.get_by_label("Depth").set_value_accesskit(1.0);
    h.get_by_label("Delay (s)").set_value_accesskit(0.0);
    h.run();
    assert_eq!(h.state().data.crawl.url, f.main.url("/docs/"));
    assert_eq!(h.state().data.crawl.depth, 1);
    h.get_by_label("Start crawl").click();
    h.step();
    assert!(
        h.state().data.crawl.is_crawling(),
        "{:?}",
        h.state().data.crawl.message
    );
    step_until(&mut h, "the crawl", &|a| !a.data.crawl.is_crawling());
    h.run();

    let app = h.state();
    let message = app.data.crawl.message.clone().unwrap();
    assert!(message.0.starts_with("Crawl done: 3 kept"), "{message:?}");
    let out = data_dir
        .join("crawl")
        .join(format!("127.0.0.1_{}", f.main.addr.port()));
    for file in ["docs/index.md", "docs/guide/index.md", "index.md"] {
        let path = out.join(file);
        let row = app
            .data
            .rows
            .iter()
            .find(|r| r.file.path == path)
            .unwrap_or_else(|| panic!("{file} not in the list"));
        assert!(row.checked, "{file}");
        assert!(app.data.sources.contains_key(&path), "{file}");
    }
    assert_eq!(
        app.data.sources[&out.join("docs/index.md")],
        f.main.url("/docs/")
    );
    assert!(app.run_config().is_ok(), "{:?}", app.run_config().err());
    h.get_by_label_contains("Selected: 3 files");
    h.get_by_label_contains("docs/guide/index.md");
    h.get_by_label_contains("Skipped URLs (").click();
    h.run();
    for reason in [
        "skipped: too deep",
        "skipped: not http",
        "skipped: out of scope",
    ] {
        assert!(
            h.query_all_by_label_contains(reason).next().is_some(),
            "no {reason:?} in the skipped list"
        );
    }
}
