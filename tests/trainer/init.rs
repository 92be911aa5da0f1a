//! A run that starts from a base model (`--init`): the base's weights,
//! tokenizer and size, a fresh optimizer and schedule, the base named in the
//! log and the checkpoints; settings that contradict the base refused.

use super::*;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_core::{Batch, Gpt, Loss, Workspace};
use cllm_data::batches::{BatchPosition, Batcher};
use cllm_data::tokenizer::Tokenizer;
use std::sync::atomic::AtomicBool;

/// The "repository" a base is fine-tuned on: C in the style of the base's
/// corpus, with other names and constants.
fn my_repo(dir: &Path) -> PathBuf {
    let data = dir.join("mine");
    std::fs::create_dir_all(&data).unwrap();
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "int g{}(int y) {{ return y + {}; }}\n",
            i % 13,
            i % 5
        ));
    }
    std::fs::write(data.join("mine.c"), text).unwrap();
    data
}

/// A tiny base: BPE over the test corpus, 300 steps, in `dir/base`.
fn train_base(dir: &Path) -> PathBuf {
    let mut cfg = config(dir, 1);
    cfg.corpus.tokenizer = TokenizerKind::Bpe;
    cfg.corpus.vocab_size = 300;
    cfg.budget.epochs = 0;
    cfg.budget.max_steps = 300;
    cfg.optimizer.lr = 1e-2;
    cfg.evaluation.eval_every = 0;
    cfg.outputs.checkpoint_every = 0;
    cfg.batch.fim_rate = 0.0;
    cfg.model.memory = false;
    cfg.model.precision = PrecisionChoice::Fp32;
    cfg.outputs.output = dir.join("base/base.cllm");
    cfg.outputs.run_name = "base".into();
    run(cfg);
    dir.join("base/base.cllm")
}

/// A run on `data` from `base`, as `cllm train --init BASE --data DATA
/// --max-steps 3` sends it: the front end's defaults elsewhere.
fn from_base(dir: &Path, base: &Path, data: PathBuf) -> TrainConfig {
    TrainConfig {
        threads: 1,
        seed: 5,
        corpus: CorpusSettings {
            data: vec![data],
            ..Default::default()
        },
        model: ModelSettings {
            init: Some(base.to_path_buf()),
            memory: false,
            precision: PrecisionChoice::Fp32,
            ..Default::default()
        },
        batch: BatchSettings {
            batch_size: 6,
            fim_rate: 0.0,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 0,
            max_steps: 3,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: dir.join("models/tuned.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            run_name: "tuned".into(),
            ..Default::default()
        },
        given: ["data", "init", "max_steps", "threads", "seed"]
            .map(String::from)
            .to_vec(),
        ..TrainConfig::default()
    }
}

/// The losses of the base's weights and of new weights (the run's seed) on
/// the first batch a run of `cfg` (as the trainer settles it) takes,
/// computed here without the trainer's spheres.
fn losses_on_first_batch(cfg: &TrainConfig, base: &Path) -> (f32, f32) {
    let ck = checkpoint::load(base).unwrap();
    let tokenizer = Tokenizer::from_json(&ck.tokenizer_json).unwrap();
    let mut settled = cfg.clone();
    settled.batch.seq_len = ck.train_config.batch.seq_len;
    let never = AtomicBool::new(false);
    let prepared =
        cllm_train::prepare::prepare(&settled, Some(tokenizer), &never, &mut |_| {}).unwrap();
    let (n, t) = (settled.batch.batch_size, settled.batch.seq_len);
    let mut batcher = Batcher::new(&prepared.train, t, settled.seed).unwrap();
    batcher.set_position(BatchPosition { epoch: 0, index: 0 });
    let (mut inputs, mut targets) = (vec![0u32; n * t], vec![0u32; n * t]);
    for s in 0..n {
        let r = s * t..(s + 1) * t;
        batcher.next_into(&mut inputs[r.clone()], &mut targets[r]);
    }
    let batch = Batch {
        inputs: &inputs,
        targets: &targets,
        batch: n,
        seq: t,
    };
    let loss =
        |model: Gpt| model.forward(&mut Workspace::new(&model.config, n, t), Loss::of(&batch));
    let new = Gpt::new(ck.model.clone(), settled.seed).unwrap();
    (
        loss(Gpt::from_params(ck.model, ck.params).unwrap()),
        loss(new),
    )
}

/// The error a run of `cfg` ends with.
fn refusal(cfg: TrainConfig) -> String {
    let handle = spawn(cfg);
    while let Ok(e) = handle.events.recv_timeout(Duration::from_secs(120)) {
        match e {
            Event::Error(e) => return e,
            Event::Finished(_) => panic!("the run should have been refused"),
            _ => {}
        }
    }
    panic!("no error within two minutes");
}

#[test]
fn a_run_from_a_base_starts_from_its_weights_tokenizer_and_size() {
    let d = tempfile::tempdir().unwrap();
    let base = train_base(d.path());
    let base_ck = checkpoint::load(&base).unwrap();
    let cfg = from_base(d.path(), &base, my_repo(d.path()));
    let tuned = run(cfg.clone());
    // The first step's loss is the base's on that batch, not new weights'.
    let first = tuned.steps[0].loss;
    let (of_base, of_new) = losses_on_first_batch(&cfg, &base);
    assert!(
        (first - of_base).abs() <= 1e-5 * of_base.abs(),
        "first step {first}, the base on that batch {of_base}"
    );
    assert!(
        (first - of_new).abs() > 0.1,
        "{first} vs new weights' {of_new}"
    );
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh_cfg = cfg.clone();
    fresh_cfg.model.init = None;
    fresh_cfg.model.preset = "tiny".into();
    fresh_cfg.corpus.vocab_size = 300;
    fresh_cfg.batch.seq_len = 16;
    fresh_cfg.outputs.output = fresh_dir.path().join("fresh.cllm");
    fresh_cfg.outputs.checkpoint_dir = fresh_dir.path().join("checkpoints");
    fresh_cfg.outputs.runs_dir = fresh_dir.path().join("runs");
    run(fresh_cfg);
    // The base's tokenizer and size, not a new tokenizer for this data
    // (which the new run did train: another vocabulary).
    let out = checkpoint::load(&d.path().join("models/tuned.cllm")).unwrap();
    assert_eq!(out.tokenizer_json, base_ck.tokenizer_json);
    let fresh_ck = checkpoint::load(&fresh_dir.path().join("fresh.cllm")).unwrap();
    assert_ne!(fresh_ck.tokenizer_json, base_ck.tokenizer_json);
    assert_eq!(out.model, base_ck.model);
    assert_eq!(out.train_config.model.preset, "tiny");
    // A fresh optimizer and schedule: three steps of its own.
    assert_eq!(out.state.step, 3);
    assert_eq!(out.optimizer.as_ref().unwrap().step, 3);
    assert_eq!(
        tuned.steps[0].lr,
        cfg.optimizer.lr / cfg.optimizer.warmup_steps as f32
    );
    // The base is named in the model's metadata and the run's log.
    let named = out.state.base.expect("the model names its base");
    let checksum = checkpoint::verify(&base).unwrap().checksum_sha256;
    assert_eq!(named.path, base);
    assert_eq!((named.run.as_str(), named.step), ("base", 300));
    assert_eq!(named.checksum_sha256, checksum);
    let log = std::fs::read_to_string(d.path().join("runs/tuned/metrics.jsonl")).unwrap();
    let header = log.lines().next().unwrap();
    assert!(
        header.contains(r#""base":{"path""#) && header.contains(&checksum),
        "{header}"
    );
    assert!(
        tuned.events.iter().any(|e| matches!(e, Event::Info(m)
            if m.starts_with(&format!("starting from the base model {}", base.display())))),
        "the run says what it starts from"
    );
}

#[test]
fn settings_that_contradict_the_base_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let base = train_base(d.path());
    let mine = my_repo(d.path());
    let with = |field: &str, change: &dyn Fn(&mut TrainConfig)| {
        let mut cfg = from_base(d.path(), &base, mine.clone());
        change(&mut cfg);
        cfg.given.push(field.into());
        refusal(cfg)
    };
    let named = |e: &str, option: &str| {
        e.starts_with(option) && e.contains(&base.display().to_string()) && e.contains("--init")
    };
    let e = with("preset", &|c| c.model.preset = "small".into());
    assert!(named(&e, "--preset small") && e.contains("'tiny'"), "{e}");
    let e = with("vocab_size", &|c| c.corpus.vocab_size = 512);
    assert!(
        named(&e, "--vocab-size 512") && e.contains("bpe with 300 tokens"),
        "{e}"
    );
    let e = with("tokenizer", &|c| c.corpus.tokenizer = TokenizerKind::Bytes);
    assert!(named(&e, "--tokenizer bytes"), "{e}");
    let e = with("seq_len", &|c| c.batch.seq_len = 64);
    assert!(
        named(&e, "--seq-len 64") && e.contains("context is 16 tokens"),
        "{e}"
    );
    // What agrees with the base is no contradiction.
    let mut same = from_base(d.path(), &base, mine.clone());
    same.model.preset = "tiny".into();
    same.corpus.vocab_size = 300;
    same.given
        .extend(["preset", "vocab_size"].map(String::from));
    assert_eq!(run(same).summary.steps, 3);
    // --init with --resume is one or the other.
    let mut both = from_base(d.path(), &base, mine);
    both.resume = Some(base.clone());
    let e = refusal(both);
    assert!(
        e.contains("--init") && e.contains("--resume") && e.contains("cannot be used together"),
        "{e}"
    );
}
