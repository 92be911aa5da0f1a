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

/// A `cllm serve` child, killed when dropped (a failing test leaves none).
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cllm serve ARGS` on port 0 with `env` set: the child, its address
/// and its stderr after the first line.
fn spawn_serve(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Served, SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"));
    cmd.arg("serve").args(args).args(["--port", "0"]);
    cmd.env_remove("CLLM_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
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
    (Served(child), addr, stderr)
}

/// A completion from the server of `closing_model`: four closers.
fn answers_with_closers(addr: SocketAddr) {
    let (status, v) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 4}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v), "}}}}");
}

#[test]
fn the_key_comes_from_the_environment_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.cllm");
    save_checkpoint(&path, &closing_model());
    let model = path.to_str().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "from-file\n").unwrap();
    let key_file = key_file.to_str().unwrap();
    for (args, env, key) in [
        (
            vec!["--model", model],
            vec![("CLLM_API_KEY", "from-env")],
            "from-env",
        ),
        (
            vec!["--model", model, "--api-key-file", key_file],
            vec![("CLLM_API_KEY", "ignored")],
            "from-file",
        ),
    ] {
        // The reader stays open: the server writes more lines after the first.
        let (server, addr, _stderr) = spawn_serve(&args, &env);
        let (status, _) = call(addr, "GET", "/v1/models", "", "");
        assert_eq!(status, 401, "{args:?}");
        let (status, _) = call(
            addr,
            "GET",
            "/v1/models",
            "",
            &format!("Authorization: Bearer {key}\r\n"),
        );
        assert_eq!(status, 200, "{args:?}");
        let (status, _) = call(addr, "GET", "/health", "", "");
        assert_eq!(status, 200);
        drop(server);
    }
    // An empty key is a mistake, not "no key".
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(["serve", "--model", model, "--port", "0"])
        .env("CLLM_API_KEY", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CLLM_API_KEY"), "{err}");
    // --help warns that a key on the command line shows in `ps`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("shows in `ps`"), "{help}");
    assert!(
        help.contains("--api-key-file") && help.contains("CLLM_API_KEY"),
        "{help}"
    );
}

#[test]
fn cli_serves_a_checkpoint_and_ctrl_c_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.cllm");
    save_checkpoint(&path, &closing_model());
    let (mut server, addr, mut stderr) = spawn_serve(&["--model", path.to_str().unwrap()], &[]);
    assert!(addr.ip().is_loopback());
    answers_with_closers(addr);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(server.0.id() as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
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

#[test]
fn the_server_keeps_answering_when_its_stderr_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.cllm");
    save_checkpoint(&path, &closing_model());
    let (mut server, addr, stderr) = spawn_serve(&["--model", path.to_str().unwrap()], &[]);
    // The terminal goes away after the first line; the rest of the start-up
    // lines and every request's line then fail to write.
    drop(stderr);
    for _ in 0..3 {
        answers_with_closers(addr);
    }
    assert!(server.0.try_wait().unwrap().is_none(), "the server ended");
}
