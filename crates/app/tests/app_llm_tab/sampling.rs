//! The sampling controls: Defaults, and their layout in a narrow window.

use super::*;

/// Settings persist between runs; Defaults puts the four sampling
/// controls back to the library's defaults and leaves the rest alone.
#[test]
fn defaults_restores_the_sampling_controls() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app_in(dir.path());
    {
        let s = &mut h.state_mut().settings.llm;
        (s.temperature, s.top_k, s.top_p, s.repetition_penalty) = (1.7, 3, 0.2, 1.9);
        (s.max_tokens, s.seed) = (77, 9);
    }
    h.run_steps(1);
    h.get_by_label("Defaults").click();
    h.run_steps(1);
    let s = &h.state().settings.llm;
    let d = cllm_generate::SamplingConfig::default();
    assert_eq!(
        (s.temperature, s.top_k, s.top_p, s.repetition_penalty),
        (d.temperature, d.top_k, d.top_p, d.repetition_penalty)
    );
    assert_eq!((s.max_tokens, s.seed), (77, 9));

    // Stopping where the prompt's braces close is on by default and
    // reaches the generator's settings; the checkbox turns it off.
    assert!(s.sampling_config().unwrap().stop_when_closed);
    h.get_by_label("Stop when the braces close").click();
    h.run_steps(1);
    assert!(
        !h.state()
            .settings
            .llm
            .sampling_config()
            .unwrap()
            .stop_when_closed
    );
}

/// At a narrow window every sampling control stays inside it: a wrapping
/// row placed each slider whole at the cursor, so the repetition penalty
/// once ran past the window's right edge at the default width.
#[test]
fn the_sampling_controls_wrap_inside_a_narrow_window() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().join("no_data").display().to_string(),
        ..Settings::default()
    };
    let mut state = WorkbenchApp::new_for_test(settings);
    state.tab = Tab::Llm;
    let width = 900.0;
    let mut app = Harness::builder()
        .with_size(egui::vec2(width, 800.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), state);
    app.run_steps(3);
    for name in [
        "Temperature",
        "Top-k",
        "Top-p",
        "Repetition penalty",
        "Max tokens",
        "Seed",
        "Stop string",
    ] {
        let nodes: Vec<_> = app.query_all_by_label(name).collect();
        assert!(!nodes.is_empty(), "no {name}");
        for n in nodes {
            let r = n.rect();
            assert!(
                r.max.x <= width + 0.5,
                "{name} ends at x = {} in a {width}-wide window",
                r.max.x
            );
        }
    }
}
