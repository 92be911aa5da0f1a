//! The list of models on disk: new checkpoints appear, grouped by run.

use super::*;

#[test]
fn a_checkpoint_from_training_appears_without_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app_in(dir.path());
    h.step();
    step_until(&mut h, "the model list", |a| !a.llm.list.is_listing());
    assert!(
        h.state()
            .llm
            .list
            .entries
            .iter()
            .all(|e| !e.path.starts_with(dir.path()))
    );

    // The trainer reports a checkpoint it wrote into the listed folder.
    let path = write_checkpoint(dir.path());
    h.state_mut().session.run.last_checkpoint =
        Some((path.clone(), cllm_train::events::SaveReason::Final));
    h.step();
    step_until(&mut h, "the new listing", |a| !a.llm.list.is_listing());
    assert!(h.state().llm.list.entries.iter().any(|e| e.path == path));
}

/// Each run's checkpoints are listed under the run's name, newest run
/// first, beside the files directly in `models/`.
#[test]
fn checkpoints_are_grouped_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_checkpoint(dir.path());
    let run = "20261129-101500-tiny";
    let in_run = dir
        .path()
        .join("checkpoints")
        .join(run)
        .join("checkpoint_best.cllm");
    std::fs::create_dir_all(in_run.parent().unwrap()).unwrap();
    std::fs::copy(&model, &in_run).unwrap();
    let mut h = app_in(dir.path());
    h.step();
    step_until(&mut h, "the model list", |a| !a.llm.list.is_listing());
    h.run();
    h.get_by_label(&format!("run {run}"));
    h.get_by_label(&format!("{}/", dir.path().join("models").display()));
    let entries = &h.state().llm.list.entries;
    let mine: Vec<_> = entries
        .iter()
        .filter(|e| e.path.starts_with(dir.path()))
        .collect();
    assert_eq!(mine.len(), 2, "{entries:?}");
    let listed_run = mine.iter().find(|e| e.path == in_run).unwrap();
    assert_eq!(listed_run.run.as_deref(), Some(run));
    assert!(mine.iter().any(|e| e.path == model && e.run.is_none()));
}
