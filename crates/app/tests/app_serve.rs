//! The LLM tab's server control, driven headlessly with egui_kittest: load
//! a tiny checkpoint, Start server, answer a completion over HTTP at the
//! address the tab shows, Stop server, and the port is closed.

use cllm_app::settings::Settings;
use cllm_app::{Tab, WorkbenchApp};
use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use cllm_train::{OutputSettings, TrainConfig};
use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write_checkpoint(root: &Path) -> PathBuf {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 64;
    let model = Gpt::new(cfg, 11).unwrap();
    let path = root.join("models/tiny.cllm");
    save(
        &path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &Tokenizer::bytes().to_json(),
            train_config: &TrainConfig::default(),
            state: &TrainingState::start(),
            memory: None,
        },
    )
    .unwrap();
    path
}

fn step_until(h: &mut Harness<'_, WorkbenchApp>, what: &str, done: impl Fn(&WorkbenchApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// POSTs a completion; the status line and body.
fn complete(addr: SocketAddr) -> String {
    let body = r#"{"prompt":"int","max_tokens":3,"temperature":0}"#;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_llm_tab_starts_and_stops_a_server_for_the_loaded_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_checkpoint(dir.path());
    let settings = Settings {
        data_dir: dir.path().join("no_data").display().to_string(),
        train: TrainConfig {
            outputs: OutputSettings {
                output: dir.path().join("models/final.cllm"),
                checkpoint_dir: dir.path().join("checkpoints"),
                ..Default::default()
            },
            ..TrainConfig::default()
        },
        ..Settings::default()
    };
    let mut app = WorkbenchApp::new_for_test(settings);
    app.tab = Tab::Llm;
    app.settings.llm.model_path = path.display().to_string();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app);
    h.step();
    h.get_by_label("Load").click();
    h.step();
    step_until(&mut h, "the load", |a| a.llm.loaded.is_some());
    h.run_steps(1);

    // Port 0: a free one, whatever else runs on this machine.
    h.state_mut().llm.server_port = 0;
    h.get_by_role_and_label(Role::Button, "Start server")
        .click();
    h.run_steps(2);
    let message = h.state().llm.server_message.clone();
    let addr = h
        .state()
        .llm
        .server
        .as_ref()
        .unwrap_or_else(|| panic!("no server: {message:?}"))
        .addr();
    assert!(addr.ip().is_loopback());
    h.get_by_label(&format!("http://{addr}/v1"));
    let answer = complete(addr);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"completion_tokens\":3"), "{answer}");
    h.run_steps(1);
    h.get_by_label_contains("1 answered");

    h.get_by_role_and_label(Role::Button, "Stop server").click();
    h.run_steps(2);
    assert!(h.state().llm.server.is_none());
    h.get_by_role_and_label(Role::Button, "Start server");
    // The stop runs on its own thread: the port closes shortly after.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the server still listens");
        std::thread::sleep(Duration::from_millis(10));
    }
}
