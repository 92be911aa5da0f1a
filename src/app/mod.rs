//! The desktop app (eframe/egui): Training and LLM tabs.

/// Opens the app window.
pub fn run_app() -> Result<(), String> {
    Err("the desktop app is not built yet: use `cllm train`".into())
}
