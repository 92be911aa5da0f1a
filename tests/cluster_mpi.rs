//! `mpirun -np 2 cllm train`: the real MPI path, two processes over
//! OpenMPI. Built only with `--features mpi` (`.ci/run` installs OpenMPI and
//! runs these); tests/cluster_local.rs covers the same trainer code with
//! threads as ranks on every machine.
#![cfg(feature = "mpi")]

mod cluster_support;
use cllm_train::checkpoint;
use cluster_support::corpus;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `cllm train` on the tiny preset in `dir`, with `extra` flags.
fn train_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let data = corpus(dir, 400);
    let mut args: Vec<String> = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--preset",
        "tiny",
        "--tokenizer",
        "bytes",
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--lr",
        "0.003",
        "--warmup",
        "3",
        "--eval-every",
        "5",
        "--eval-batches",
        "2",
        "--memory",
        "off",
        "--dropout",
        "0.1",
        "--seed",
        "9",
        "--run-name",
        "mpi",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn mpirun(ranks: usize, dir: &Path, args: &[String]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &ranks.to_string()])
        .arg(env!("CARGO_BIN_EXE_cllm"))
        .args(args)
        .current_dir(dir)
        // CI runs as root; OpenMPI refuses root unless told.
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdin(Stdio::null());
    c
}

fn solo(dir: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cllm"));
    c.args(args).current_dir(dir).stdin(Stdio::null());
    c
}

/// Runs to the end (three minutes at most) and insists it succeeded.
fn ok(c: Command) -> Output {
    let out = finish(c, Duration::from_secs(180));
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A started job whose output goes to files (a pipe nobody reads while it
/// runs would fill and stall it).
struct Job {
    child: Child,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

fn start(mut c: Command) -> Job {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let child = c
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .expect("the command starts");
    Job { child, out, err }
}

fn finish(c: Command, limit: Duration) -> Output {
    wait_with_deadline(start(c), limit)
}

fn wait_with_deadline(mut job: Job, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = job.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = job.child.kill();
            let _ = job.child.wait();
            panic!(
                "did not end within {limit:?}:\n{}\n{}",
                std::fs::read_to_string(job.out.path()).unwrap_or_default(),
                std::fs::read_to_string(job.err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: std::fs::read(job.out.path()).unwrap(),
        stderr: std::fs::read(job.err.path()).unwrap(),
    }
}

/// The per-step losses in the JSON lines rank 0 printed.
fn step_losses(out: &Output) -> Vec<f64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("Step").map(|s| s["loss"].as_f64().unwrap()))
        .collect()
}

fn weights(path: &Path) -> Vec<f32> {
    checkpoint::load(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .params
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const FINAL: &str = "models/trained_model_kissing_spheres.cllm";

#[test]
fn two_ranks_match_one_machine_with_two_threads_and_repeat_bit_for_bit() {
    let (da, db, d1) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let steps = ["--max-steps", "20", "--threads", "1"];
    let a = ok(mpirun(2, da.path(), &train_args(da.path(), &steps)));
    let b = ok(mpirun(2, db.path(), &train_args(db.path(), &steps)));
    // Built with MPI but started without mpirun: one machine.
    let one = ok(solo(
        d1.path(),
        &train_args(d1.path(), &["--max-steps", "20", "--threads", "2"]),
    ));
    let (la, lb, l1) = (step_losses(&a), step_losses(&b), step_losses(&one));
    assert_eq!(la.len(), 20, "rank 0 alone prints the run's lines");
    assert_eq!(la, lb, "same seed and layout: the same losses");
    for (x, y) in la.iter().zip(&l1) {
        assert!((x - y).abs() <= 1e-4 * y.abs(), "{x} vs {y}");
    }
    let (wa, wb, w1) = (
        weights(&da.path().join(FINAL)),
        weights(&db.path().join(FINAL)),
        weights(&d1.path().join(FINAL)),
    );
    assert_eq!(wa, wb);
    assert!(max_diff(&wa, &w1) < 1e-3);
    // The cluster's lines: ranks x spheres and the all-reduce.
    let text = String::from_utf8_lossy(&a.stdout);
    let cluster: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("Cluster").cloned())
        .collect();
    assert_eq!(cluster.len(), 20);
    assert_eq!(cluster[0]["ranks"], 2);
    assert!(cluster[0]["allreduce_bytes"].as_u64().unwrap() > 0);
    assert!(text.contains("MPI: 2 ranks"));
    // What Ctrl-C does, and how to give OpenMPI's kill more time.
    let err = String::from_utf8_lossy(&a.stderr);
    assert!(
        err.contains("Ctrl-C on mpirun (or SIGTERM to the ranks): rank 0 saves the last completed step at once")
            && err.contains("kills the ranks 1 s after its SIGTERM")
            && err.contains("mpirun --mca odls_base_sigkill_timeout 30"),
        "{err}"
    );
    // Only rank 0 wrote: one run folder.
    assert_eq!(
        std::fs::read_dir(da.path().join("checkpoints"))
            .unwrap()
            .count(),
        1
    );
}

/// The ranks of one host sum through a shared window; OpenMPI's all-reduce
/// (asked for with `CLLM_MPI_SHARED_MEMORY=0`, or taken when the window's
/// directory has no room) must give the same run: two ranks add the same
/// two numbers either way, so bit for bit.
#[test]
fn summing_through_shared_memory_or_through_mpi_gives_the_same_run() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let steps = ["--max-steps", "12", "--threads", "1"];
    let window = ok(mpirun(
        2,
        dirs[0].path(),
        &train_args(dirs[0].path(), &steps),
    ));
    let mut plain = mpirun(2, dirs[1].path(), &train_args(dirs[1].path(), &steps));
    plain.env("CLLM_MPI_SHARED_MEMORY", "0");
    let plain = ok(plain);
    let mut no_room = mpirun(2, dirs[2].path(), &train_args(dirs[2].path(), &steps));
    no_room.env(
        "OMPI_MCA_osc_sm_backing_directory",
        dirs[2].path().join("no such directory"),
    );
    let no_room = ok(no_room);
    let text = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text(&window).contains("sum through shared memory"),
        "{}",
        text(&window)
    );
    assert!(!text(&plain).contains("shared memory"));
    let err = String::from_utf8_lossy(&no_room.stderr);
    assert!(
        err.contains("summing gradients through MPI instead"),
        "{err}"
    );
    let losses = step_losses(&window);
    assert_eq!(losses.len(), 12);
    assert_eq!(losses, step_losses(&plain));
    assert_eq!(losses, step_losses(&no_room));
    // Through shared memory each rank updates its share of the weights
    // (and the moments are gathered before the save); through MPI every
    // rank updates all: the same model and the same optimizer state.
    let saved: Vec<_> = dirs
        .iter()
        .map(|d| checkpoint::load(&d.path().join(FINAL)).unwrap())
        .collect();
    for other in &saved[1..] {
        assert_eq!(saved[0].params, other.params);
        let (a, b) = (
            saved[0].optimizer.as_ref().unwrap(),
            other.optimizer.as_ref().unwrap(),
        );
        assert!(a.m == b.m && a.v == b.v, "AdamW moments differ");
    }
}

#[test]
fn a_two_rank_run_resumes_on_two_ranks_and_on_one() {
    let (ds, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let straight = ok(mpirun(
        2,
        ds.path(),
        &train_args(ds.path(), &["--max-steps", "16", "--threads", "1"]),
    ));
    let expect = step_losses(&straight);
    let half = ok(mpirun(
        2,
        dr.path(),
        &train_args(
            dr.path(),
            &[
                "--max-steps",
                "8",
                "--threads",
                "1",
                "--output",
                "half.cllm",
            ],
        ),
    ));
    assert_eq!(step_losses(&half).len(), 8);
    let resume = |out: &str| {
        vec![
            "train".to_string(),
            "--resume".into(),
            "half.cllm".into(),
            "--max-steps".into(),
            "16".into(),
            "--output".into(),
            out.into(),
            "--json".into(),
        ]
    };
    let two = ok(mpirun(2, dr.path(), &resume("two.cllm")));
    assert_eq!(
        step_losses(&two),
        expect[8..].to_vec(),
        "exact on two ranks"
    );
    assert_eq!(
        weights(&dr.path().join("two.cllm")),
        weights(&ds.path().join(FINAL))
    );
    let one = ok(mpirun(1, dr.path(), &resume("one.cllm")));
    assert!(String::from_utf8_lossy(&one.stdout).contains("resumed on 1 rank"));
    for (x, y) in step_losses(&one).iter().zip(&expect[8..]) {
        assert!((x - y).abs() <= 1e-4 * y.abs(), "{x} vs {y}");
    }
    assert!(
        max_diff(
            &weights(&dr.path().join("one.cllm")),
            &weights(&ds.path().join(FINAL))
        ) < 1e-3
    );
}

#[test]
fn a_killed_rank_ends_the_job_and_the_last_checkpoint_stays_intact() {
    let d = tempfile::tempdir().unwrap();
    let args = train_args(d.path(), &["--epochs", "100000", "--threads", "1"]);
    let job = start(mpirun(2, d.path(), &args));
    let best = checkpoint::best_path(&d.path().join("checkpoints/mpi"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !best.exists() {
        assert!(
            Instant::now() < deadline,
            "no checkpoint within two minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The ranks are mpirun's children running cllm: kill one of them.
    let pids = String::from_utf8(
        Command::new("pgrep")
            .args(["-P", &job.child.id().to_string(), "-f", "cllm"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let victim = pids.lines().last().expect("a rank process").to_string();
    let killed_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-9", &victim])
            .status()
            .unwrap()
            .success()
    );
    let out = wait_with_deadline(job, Duration::from_secs(60));
    assert!(!out.status.success(), "the job must fail when a rank dies");
    assert!(killed_at.elapsed() < Duration::from_secs(60));
    // Whatever was last written loads: written whole or not at all.
    checkpoint::load(&best).expect("the best checkpoint is intact");
}

#[test]
fn ranks_whose_weights_drift_stop_with_an_error() {
    let d = tempfile::tempdir().unwrap();
    let mut c = mpirun(
        2,
        d.path(),
        &train_args(d.path(), &["--max-steps", "60", "--threads", "1"]),
    );
    c.env("CLLM_TEST_PERTURB_RANK", "1:3");
    // Ranks that share a host's memory each update their share of the
    // weights and gather the rest, so they cannot drift: the check guards
    // ranks that update every weight, as over MPI's all-reduce.
    c.env("CLLM_MPI_SHARED_MEMORY", "0");
    let out = finish(c, Duration::from_secs(120));
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("differ from rank 0's at step 50"), "{all}");
}

/// Steps in rank 0's run log so far.
fn logged_steps(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .count() as u64
}

/// Ctrl-C in a terminal signals mpirun (its foreground process group, not
/// the ranks, which OpenMPI puts in groups of their own); OpenMPI sends the
/// ranks SIGTERM a second later and SIGKILL a second after that. Rank 0
/// saves its last completed step at once: the final checkpoint, from which
/// the run resumes with exactly the losses of a run never interrupted.
#[test]
fn ctrl_c_on_mpirun_leaves_a_final_checkpoint_that_resumes_exactly() {
    let (d, ds) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let long = ["--epochs", "300", "--threads", "1"];
    // Plain lines: mpirun stops reading the ranks' output when it is
    // interrupted, and the JSON lines of a model this small would fill the
    // pipe before the message of the save could go in.
    let mut args = train_args(d.path(), &long);
    args.retain(|a| a != "--json");
    let mut c = mpirun(2, d.path(), &args);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let job = start(c);
    let log = d.path().join("runs/mpi/metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while logged_steps(&log) < 3 {
        assert!(Instant::now() < deadline, "no steps within two minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let at_signal = logged_steps(&log);
    let group = format!("-{}", job.child.id());
    assert!(
        Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .unwrap()
            .success()
    );
    let out = wait_with_deadline(job, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{all}");
    // "SIGTERM: step S saved at once (0.01 s): checkpoints/mpi/final.cllm"
    let line = text
        .lines()
        .find(|l| l.contains(" saved at once ("))
        .unwrap_or_else(|| panic!("no save at once: {all}"));
    assert!(line.starts_with("SIGTERM: step "), "{line}");
    let saved: u64 = line["SIGTERM: step ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(line.ends_with("checkpoints/mpi/final.cllm"), "{line}");
    assert!(
        text.contains(&format!(
            "resume with: mpirun -np 2 {}",
            env!("CARGO_BIN_EXE_cllm")
        )),
        "{all}"
    );
    // The last step completed when the signal came (logged steps are
    // handed over once what follows them is done: one may be under way).
    assert!(
        saved + 1 >= at_signal,
        "step {saved} saved, {at_signal} logged"
    );
    assert!(saved <= logged_steps(&log));
    let ck = checkpoint::load(&d.path().join(FINAL)).unwrap();
    assert_eq!(ck.state.step, saved);
    assert_eq!(
        checkpoint::load(&d.path().join("checkpoints/mpi/final.cllm")).unwrap(),
        ck
    );

    let upto = (saved + 4).to_string();
    let mut longer = long.to_vec();
    longer.extend(["--max-steps", &upto]);
    let straight = ok(mpirun(2, ds.path(), &train_args(ds.path(), &longer)));
    let resume: Vec<String> = ["train", "--resume", FINAL, "--max-steps", &upto]
        .iter()
        .chain(&["--output", "resumed.cllm", "--json"])
        .map(|s| s.to_string())
        .collect();
    let resumed = ok(mpirun(2, d.path(), &resume));
    let expect = step_losses(&straight);
    assert_eq!(expect.len() as u64, saved + 4);
    assert_eq!(step_losses(&resumed), expect[saved as usize..].to_vec());
    assert_eq!(
        weights(&d.path().join("resumed.cllm")),
        weights(&ds.path().join(FINAL))
    );
}
