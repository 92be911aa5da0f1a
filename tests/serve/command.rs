//! `cllm serve` on a checkpoint, stopped by Ctrl-C.

use super::*;

fn save_checkpoint(path: &std::path::Path, model: &Gpt) {
    let tokenizer_json = Tokenizer::bytes().to_json();
    let train_config = TrainConfig::default();
    let state = TrainingState::start();
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &tokenizer_json,
            train_config: &train_config,
            state: &state,
            memory: None,
        },
    )
    .unwrap();
}

#[test]
fn cli_serves_a_checkpoint_and_ctrl_c_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.cllm");
    save_checkpoint(&path, &closing_model());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(["serve", "--model", path.to_str().unwrap(), "--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving tiny "), "{line}");
    let url = line.trim().rsplit(' ').next().unwrap();
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/v1"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());
    let (status, v) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 4}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v), "}}}}");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "cllm serve did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("stopping the server"), "{rest}");
    assert!(rest.contains("1 requests answered"), "{rest}");
}
