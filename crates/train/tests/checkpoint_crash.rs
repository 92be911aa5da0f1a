//! Crash safety: a child process (this test binary again, in a child mode
//! chosen by an environment variable) saves over one path in a loop and is
//! killed at random moments; afterwards the path always verifies and loads,
//! and holds one whole save, never a mix. A second child saves with the
//! file size limit (`ulimit -f`) far below the checkpoint size, the way a
//! full disk fails a write: the save is an error and the old file survives.

mod checkpoint_support;

use checkpoint_support::sample;
use cllm_core::rng::Rng;
use cllm_train::checkpoint::{Checkpoint, load, save, verify};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_PATH_VAR: &str = "CLLM_CKPT_CRASH_CHILD_PATH";
const CHILD_MODE_VAR: &str = "CLLM_CKPT_CRASH_CHILD_MODE";

/// The checkpoint of save number `i`: every weight and moment encodes `i`,
/// so a file mixing two saves is recognisable.
fn numbered(base: &Checkpoint, i: u64) -> Checkpoint {
    let mut c = base.clone();
    c.params.fill(i as f32);
    let opt = c.optimizer.as_mut().unwrap();
    opt.m.fill(i as f32 + 0.25);
    opt.v.fill(i as f32 + 0.5);
    opt.step = i;
    c.state.step = i;
    c
}

fn check_numbered(c: &Checkpoint) -> u64 {
    let i = c.state.step;
    let opt = c.optimizer.as_ref().unwrap();
    assert_eq!(opt.step, i);
    assert!(
        c.params.iter().all(|&x| x == i as f32),
        "weights of a mixed save"
    );
    assert!(
        opt.m.iter().all(|&x| x == i as f32 + 0.25),
        "first moments of a mixed save"
    );
    assert!(
        opt.v.iter().all(|&x| x == i as f32 + 0.5),
        "second moments of a mixed save"
    );
    i
}

/// Child mode; a no-op when run as a normal test.
#[test]
fn child_process_entry() {
    let (Ok(path), Ok(mode)) = (std::env::var(CHILD_PATH_VAR), std::env::var(CHILD_MODE_VAR))
    else {
        return;
    };
    let path = Path::new(&path);
    let base = sample("baby", true, 1);
    match mode.as_str() {
        // Saves until killed, numbering saves after the one already there.
        "loop" => {
            let mut i = check_numbered(&load(path).unwrap());
            loop {
                i += 1;
                save(path, &numbered(&base, i).as_ref()).unwrap();
                println!("saved {i}");
            }
        }
        // One save that must fail; reports the error on stdout.
        "once" => match save(path, &numbered(&base, 999).as_ref()) {
            Ok(_) => println!("UNEXPECTED save succeeded"),
            Err(e) => println!("save failed: {e}"),
        },
        other => panic!("unknown child mode {other}"),
    }
}

fn child(path: &Path, mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_PATH_VAR, path)
    .env(CHILD_MODE_VAR, mode)
    .stdout(Stdio::piped());
    cmd
}

/// Never leaves a saving child behind, even when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_while_saving_leaves_a_whole_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.cllm");
    let base = sample("baby", true, 1);
    save(&path, &numbered(&base, 0).as_ref()).unwrap();
    let mut rng = Rng::new(2024);
    let mut last = 0;
    let mut torn_temporaries = 0;
    for round in 0..20 {
        let mut proc = KillOnDrop(child(&path, "loop").spawn().unwrap());
        let mut lines = BufReader::new(proc.0.stdout.take().unwrap()).lines();
        // Wait until the child is saving, then kill it at a random moment
        // (a save of this model takes some tens of milliseconds).
        let saves_before_kill = 1 + rng.below(3);
        let mut seen = 0;
        for line in lines.by_ref() {
            if line.unwrap().starts_with("saved ") {
                seen += 1;
                if seen == saves_before_kill {
                    break;
                }
            }
        }
        assert_eq!(
            seen, saves_before_kill,
            "round {round}: the child stopped early"
        );
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        proc.0.kill().unwrap();
        proc.0.wait().unwrap();
        drop(lines);

        // A temporary that does not verify is a save the kill cut short.
        let tmp = dir.path().join("crash.cllm.tmp");
        if tmp.exists() && verify(&tmp).is_err() {
            torn_temporaries += 1;
        }
        verify(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let i = check_numbered(&load(&path).unwrap());
        assert!(
            i >= last + seen,
            "round {round}: went back from {last} to {i}"
        );
        last = i;
    }
    eprintln!(
        "20 kills; {torn_temporaries} left a torn temporary file beside a good checkpoint; {last} saves in all"
    );
    // The child does nothing but save, so most kills land mid-save; if none
    // left a torn temporary, the test never interrupted a save at all.
    assert!(
        torn_temporaries > 0,
        "no kill interrupted a save: the test proved nothing"
    );
}

#[test]
fn a_failing_write_reports_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.cllm");
    let base = sample("baby", true, 1);
    save(&path, &numbered(&base, 7).as_ref()).unwrap();
    let before = std::fs::read(&path).unwrap();
    // With SIGXFSZ ignored, writing past the file size limit fails with
    // EFBIG, as a full disk fails with ENOSPC.
    let exe = std::env::current_exe().unwrap();
    let script = "trap '' XFSZ; ulimit -f 64; exec \"$0\" --exact child_process_entry --nocapture --test-threads=1";
    let out = Command::new("sh")
        .args(["-c", script])
        .arg(&exe)
        .env(CHILD_PATH_VAR, &path)
        .env(CHILD_MODE_VAR, "once")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("save failed:"), "{stdout}");
    assert!(stdout.contains("full.cllm"), "{stdout}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(check_numbered(&load(&path).unwrap()), 7);
    assert!(
        !dir.path().join("full.cllm.tmp").exists(),
        "the temporary file was left behind"
    );
}
