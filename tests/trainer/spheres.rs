//! The sphere tree: bit-identical runs, agreement across thread counts, work
//! sharing, gradient accumulation and what each sphere reports.

use super::*;

#[test]
fn same_seed_and_threads_give_bit_identical_runs_with_dropout() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let make = |d: &Path| {
        let mut c = config(d, 3);
        c.model.dropout = Some(0.1);
        c
    };
    let a = run(make(d1.path()));
    let b = run(make(d2.path()));
    assert_eq!(a.steps.len(), 12);
    let la: Vec<u32> = a.steps.iter().map(|s| s.loss.to_bits()).collect();
    let lb: Vec<u32> = b.steps.iter().map(|s| s.loss.to_bits()).collect();
    assert_eq!(la, lb);
    assert_eq!(
        weights(&d1.path().join("models/final.cllm")),
        weights(&d2.path().join("models/final.cllm"))
    );
}

#[test]
fn one_and_three_spheres_agree_to_float_tolerance() {
    let (d1, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // With dropout on: masks are drawn per sequence, so they agree too.
    let make = |d: &Path, n| {
        let mut c = config(d, n);
        c.model.dropout = Some(0.1);
        c
    };
    let one = run(make(d1.path(), 1));
    let three = run(make(d3.path(), 3));
    assert_eq!(one.steps.len(), 12);
    assert_eq!(one.steps.len(), three.steps.len());
    for (a, b) in one.steps.iter().zip(&three.steps) {
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs(),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    let wa = weights(&d1.path().join("models/final.cllm"));
    let wb = weights(&d3.path().join("models/final.cllm"));
    let max_diff = wa
        .iter()
        .zip(&wb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "weights differ by {max_diff}");
    // And the summation order really differs: not trivially the same path.
    assert_eq!(three.summary.sphere_sequences.len(), 3);
}

#[test]
fn every_sphere_gets_work_and_stats_stream() {
    let d = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = config(d.path(), 4);
        c.batch.batch_size = 5;
        c
    });
    assert_eq!(out.summary.sphere_sequences.len(), 4);
    assert!(
        out.summary.sphere_sequences.iter().all(|&b| b > 0),
        "{:?}",
        out.summary.sphere_sequences
    );
    assert_eq!(out.summary.sphere_sequences.iter().sum::<u64>(), 12 * 5);
    let last = out
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Spheres(s) => Some(s.clone()),
            _ => None,
        })
        .expect("sphere stats were sent");
    assert_eq!(last.len(), 4);
    assert_eq!(last[3].parent, Some(0));
    assert!(last.iter().all(|s| s.sequences > 0 && s.avg_loss > 0.0));
    // Evaluations and the metrics log.
    assert!(out.events.iter().any(|e| matches!(e, Event::Eval(_))));
    let log = std::fs::read_to_string(d.path().join("runs/test/metrics.jsonl")).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count()
            == 12
    );
    assert!(log.contains("\"kind\":\"eval\""));
    assert!(d.path().join("runs/test/config.json").exists());
}

#[test]
fn accumulation_runs_micro_batches_in_the_same_memory() {
    let ready = |out: &Outcome| {
        out.events
            .iter()
            .find_map(|e| match e {
                Event::Ready(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (d1, d8) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run({
        let mut c = config(d1.path(), 2);
        c.budget.max_steps = 3;
        c
    });
    let eight = run({
        let mut c = config(d8.path(), 2);
        c.budget.max_steps = 3;
        c.batch.accum_steps = 8;
        c
    });
    let (w1, w8) = (ready(&one).workspace_bytes, ready(&eight).workspace_bytes);
    eprintln!("workspace at K = 1: {w1} bytes; at K = 8: {w8} bytes");
    assert!(w1 > 0);
    assert_eq!(w1, w8, "the workspace grew with accumulation");
    // And the step really saw 8x the sequences.
    assert_eq!(
        eight.summary.sphere_sequences.iter().sum::<u64>(),
        8 * one.summary.sphere_sequences.iter().sum::<u64>()
    );
}

/// While a run trains, no snapshot calls a working sphere idle: each reads
/// computing, waiting or reducing; the last one, after the run, reads idle.
#[test]
fn sphere_states_say_what_the_spheres_do() {
    use cllm_train::events::SphereState;
    let d = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = config(d.path(), 3);
        c.budget.max_steps = 6;
        c
    });
    let snapshots: Vec<&Vec<cllm_train::events::SphereStats>> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Spheres(s) => Some(s),
            _ => None,
        })
        .collect();
    let (last, during) = snapshots.split_last().unwrap();
    assert!(last.iter().all(|s| s.state == SphereState::Idle));
    let trained: Vec<_> = during
        .iter()
        .filter(|s| s.iter().any(|x| x.sequences > 0))
        .collect();
    assert!(!trained.is_empty());
    for snap in &trained {
        assert!(
            snap.iter().all(|s| s.state != SphereState::Idle),
            "a sphere with work reads idle: {snap:?}"
        );
    }
    let seen = |st: SphereState| trained.iter().any(|s| s.iter().any(|x| x.state == st));
    assert!(seen(SphereState::Computing) && seen(SphereState::Reducing));
}
