//! Fill in the middle: with a tiny model trained here with FIM, the tab's
//! infill mode writes the middle between the text before and after the
//! cursor (the library's `Generator::infill` reply, token for token); a
//! model without FIM tokens gets a note and no Generate.

use super::*;
use cllm_generate::Infill;
use cllm_generate::decoder::DecodeOptions;
use cllm_train::events::Event;
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    TokenizerKind, TrainOptions,
};
use egui_kittest::kittest::NodeT;

const BEFORE: &str = "Text before the cursor (Ctrl+Enter generates)";
const AFTER: &str = "Text after the cursor";

/// A tiny model trained for a few steps on small C with every window
/// rearranged for fill-in-the-middle, saved to `root/models/fim.cllm`.
fn train_fim_model(root: &Path) -> PathBuf {
    let data = root.join("fim_data");
    std::fs::create_dir_all(&data).unwrap();
    let mut c = String::new();
    for i in 0..200 {
        c.push_str(&format!(
            "int add_{}(int a, int b) {{\n    return a + b * {};\n}}\n",
            i % 13,
            i % 5
        ));
    }
    std::fs::write(data.join("add.c"), c).unwrap();
    let output = root.join("models/fim.cllm");
    let config = TrainConfig {
        threads: 1,
        seed: 5,
        corpus: CorpusSettings {
            data: vec![data],
            tokenizer: TokenizerKind::Bpe,
            vocab_size: 300,
            ..Default::default()
        },
        model: ModelSettings {
            preset: "tiny".into(),
            memory: false,
            ..Default::default()
        },
        batch: BatchSettings {
            batch_size: 8,
            seq_len: 48,
            fim_rate: 1.0,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 0,
            max_steps: 40,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 0,
            eval_batches: 1,
            eval_gen: 0,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: output.clone(),
            checkpoint_dir: root.join("checkpoints"),
            runs_dir: root.join("runs"),
            run_name: "fim".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    };
    let handle = cllm_train::spawn(config, TrainOptions::default());
    loop {
        match handle.events.recv_timeout(Duration::from_secs(120)) {
            Ok(Event::Finished(_)) => break,
            Ok(Event::Error(e)) => panic!("training the FIM model failed: {e}"),
            Ok(_) => {}
            Err(e) => panic!("the FIM model's training did not finish: {e}"),
        }
    }
    assert!(output.is_file(), "no model at {}", output.display());
    output
}

/// Types `text` into the multi-line box labelled `label`.
fn type_into(h: &mut Harness<'_, WorkbenchApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::MultilineTextInput, label)
        .focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::MultilineTextInput, label)
        .type_text(text);
    h.run_steps(1);
}

#[test]
fn infill_mode_writes_the_middle_between_the_two_texts() {
    let dir = tempfile::tempdir().unwrap();
    let path = train_fim_model(dir.path());
    let mut h = app_in(dir.path());
    h.step();
    load(&mut h, &path);
    assert!(h.state().llm.load_error.is_none());
    h.run_steps(1);
    h.get_by_label("yes (fill-in-the-middle tokens)");

    h.get_by_label("Fill in the middle").click();
    h.run_steps(1);
    assert!(h.state().settings.llm.infill);
    assert!(h.query_by_label_contains("Infill unavailable").is_none());
    // The suffix closes what is open: the brace stop and the bracket guard
    // do not apply to a middle.
    for name in ["Stop when the braces close", "Balanced brackets"] {
        assert!(
            h.get_by_label(name).accesskit_node().is_disabled(),
            "{name}"
        );
    }
    {
        let s = &mut h.state_mut().settings.llm;
        s.prompt.clear();
        (s.max_tokens, s.seed) = (24, 2);
    }
    h.run_steps(1);
    let (prefix, suffix) = ("int add_3(int a, int b) {\n    return ", ";\n}\n");
    type_into(&mut h, BEFORE, prefix);
    type_into(&mut h, AFTER, suffix);
    assert_eq!(h.state().settings.llm.prompt, prefix);
    assert_eq!(h.state().settings.llm.suffix, suffix);
    let middle = generate_reply(&mut h);
    h.run_steps(1);

    // The library's infill with the same settings (the tab ends the middle
    // where the model does, not where braces close).
    let ckpt = cllm_train::checkpoint::load(&path).unwrap();
    let tok = Tokenizer::from_json(&ckpt.tokenizer_json).unwrap();
    let context = cllm_train::checkpoint::trained_context(&ckpt);
    let model = Gpt::from_params(ckpt.model, ckpt.params).unwrap();
    let model = model.with_context(context).unwrap();
    let mut cfg = h.state().settings.llm.sampling_config().unwrap();
    cfg.stop_when_closed = false;
    let infill = Infill {
        prefix: prefix.into(),
        suffix: suffix.into(),
        extra: Vec::new(),
    };
    let (mut reference, _) =
        Generator::infill(&model, &tok, &infill, cfg, DecodeOptions::default()).unwrap();
    let mut probs = Vec::new();
    while let Some(t) = reference.next_token() {
        probs.push(t.prob);
    }
    assert_eq!(middle, reference.text());
    assert!(!middle.is_empty(), "the model wrote nothing");
    let reply = h.state().llm.reply.clone().unwrap();
    assert_eq!(
        reply.tokens.iter().map(|t| t.prob).collect::<Vec<_>>(),
        probs
    );
    // Shown and checked as prefix, middle, suffix.
    assert_eq!(reply.prompt, prefix);
    assert_eq!(reply.suffix, suffix);
    assert_eq!(reply.full_text(), format!("{prefix}{middle}{suffix}"));
    h.get_by_label_contains("C syntax:");

    // Back to continuing: the second box goes, the label is the prompt's.
    h.get_by_label("Continue").click();
    h.run_steps(1);
    assert!(h.query_by_label(AFTER).is_none());
    h.get_by_role_and_label(Role::MultilineTextInput, PROMPT_LABEL);
}

#[test]
fn a_model_without_fim_tokens_says_it_cannot_infill() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_checkpoint(dir.path());
    let mut h = app_in(dir.path());
    h.step();
    load(&mut h, &path);
    h.run_steps(1);
    h.get_by_label("no (continues a prefix only)");
    assert!(h.query_by_label_contains("Infill unavailable").is_none());

    h.get_by_label("Fill in the middle").click();
    h.run_steps(1);
    h.get_by_label_contains("Infill unavailable: this model cannot fill in the middle");
    assert!(h.get_by_label("Generate").accesskit_node().is_disabled());
    // Asked anyway (Ctrl+Enter's path), it refuses with the same reason.
    let app = h.state_mut();
    app.llm.generate(&app.settings.llm);
    assert!(app.llm.reply.is_none());
    let message = app.llm.message.clone().unwrap();
    assert!(message.contains("no FIM tokens"), "{message}");
}
