//! UI tests of the LLM tab: the real `WorkbenchApp` driven headlessly with
//! egui_kittest over a small checkpoint written here from a freshly
//! initialised model. The tab lists it, loads it off the UI thread, streams
//! a reply that must equal the library generator's, reports counts, speed
//! and the C syntax check, stops mid-reply, shows alternatives on hover,
//! and refuses damaged files and empty prompts with a message.

use cllm_app::settings::Settings;
use cllm_app::{Tab, WorkbenchApp};
use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{FinishReason, Generator};
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PROMPT_LABEL: &str = "Prompt text (Ctrl+Enter generates)";

/// A tiny model over the byte tokenizer, saved to `models/tiny.cllm`.
fn write_checkpoint(root: &Path) -> PathBuf {
    write_checkpoint_of(root, "tiny")
}

/// [`write_checkpoint`] of another preset's shape (bytes as tokens).
fn write_checkpoint_of(root: &Path, preset: &str) -> PathBuf {
    let mut cfg = ModelConfig::preset(preset).unwrap();
    cfg.vocab_size = 256;
    let model = Gpt::new(cfg, 11).unwrap();
    let path = root.join("models/tiny.cllm");
    let mut state = TrainingState::start();
    state.step = 120;
    state.epoch = 2;
    state.best_val_loss = Some(2.3456);
    save_byte_model(&path, &model, &state, None);
    path
}

/// The app on the LLM tab, its training output pointed into `root` so the
/// model list searches `root/models` and `root/checkpoints`.
fn app_in(root: &Path) -> Harness<'static, WorkbenchApp> {
    let settings = Settings {
        data_dir: root.join("no_data").display().to_string(),
        train: TrainConfig {
            output: root.join("models/final.cllm"),
            checkpoint_dir: root.join("checkpoints"),
            ..TrainConfig::default()
        },
        ..Settings::default()
    };
    let mut app = WorkbenchApp::new_for_test(settings);
    app.tab = Tab::Llm;
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app)
}

/// Steps frames until `done` holds; the work is on background threads and
/// frames never wait for it, so this only bounds a hang.
fn step_until(h: &mut Harness<'_, WorkbenchApp>, what: &str, done: impl Fn(&WorkbenchApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::yield_now();
    }
}

/// Types `path` into the model field and presses Load.
fn load(h: &mut Harness<'_, WorkbenchApp>, path: &Path) {
    h.state_mut().settings.llm.model_path.clear();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Model file")
        .focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Model file")
        .type_text(&path.display().to_string());
    h.run_steps(1);
    assert_eq!(
        h.state().settings.llm.model_path,
        path.display().to_string()
    );
    h.get_by_label("Load").click();
    h.step();
    step_until(h, "the load", |a| !a.llm.is_loading());
}

#[test]
fn load_generate_stream_and_check_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_checkpoint(dir.path());
    let mut h = app_in(dir.path());
    h.step();
    step_until(&mut h, "the model list", |a| !a.llm.list.is_listing());
    let listed = h
        .state()
        .llm
        .list
        .entries
        .iter()
        .find(|e| e.path == path)
        .expect("the checkpoint is listed")
        .clone();
    assert_eq!(listed.loss(), Some(2.3456));
    h.run_steps(1);
    h.get_by_label("2.3456");

    load(&mut h, &path);
    assert!(
        h.state().llm.load_error.is_none(),
        "{:?}",
        h.state().llm.load_error
    );
    h.run_steps(1);
    h.get_by_label_contains("tiny · 2 layers · 2 heads · 16 wide");
    h.get_by_label_contains("256 tokens (bytes tokenizer)");
    h.get_by_label_contains("step 120 · epoch 2 · best val loss 2.3456");

    // Type a prompt over an emptied box.
    h.state_mut().settings.llm.prompt.clear();
    h.state_mut().settings.llm.max_tokens = 40;
    h.state_mut().settings.llm.seed = 7;
    h.run_steps(1);
    h.get_by_role_and_label(Role::MultilineTextInput, PROMPT_LABEL)
        .focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::MultilineTextInput, PROMPT_LABEL)
        .type_text("int main() {");
    h.run_steps(1);
    assert_eq!(h.state().settings.llm.prompt, "int main() {");

    h.get_by_label("Generate").click();
    h.step();
    assert!(h.state().llm.reply.is_some(), "Generate started a reply");
    step_until(&mut h, "the reply", |a| {
        a.llm.reply.as_ref().is_some_and(|r| r.is_done()) && !a.llm.is_generating()
    });
    h.run_steps(1);

    // The tab shows exactly what the library generator produces.
    let (model, tok) = {
        let ckpt = cllm_train::checkpoint::load(&path).unwrap();
        (
            Gpt::from_params(ckpt.model, ckpt.params).unwrap(),
            Tokenizer::from_json(&ckpt.tokenizer_json).unwrap(),
        )
    };
    let cfg = h.state().settings.llm.sampling_config().unwrap();
    let mut reference = Generator::new(&model, &tok, "int main() {", cfg).unwrap();
    let mut ref_probs = Vec::new();
    while let Some(t) = reference.next_token() {
        ref_probs.push(t.prob);
    }
    let reply = h.state().llm.reply.clone().unwrap();
    assert_eq!(reply.text, reference.text());
    assert_eq!(
        reply.tokens.iter().map(|t| t.prob).collect::<Vec<_>>(),
        ref_probs
    );
    let stats = reply.stats.clone().unwrap();
    assert_eq!(stats.generated_tokens, 40);
    assert_eq!(stats.finish, Some(FinishReason::MaxTokens));
    assert!(stats.tokens_per_sec > 0.0);

    h.get_by_label_contains("40 tokens · ");
    h.get_by_label_contains("tokens/s");
    h.get_by_label_contains("stopped at max tokens");
    // Random weights do not write C: the check names where it first fails.
    let syntax = cllm_generate::check_c(&format!("int main() {{{}", reference.text())).unwrap();
    let label = if syntax.parses {
        "C syntax: parses".to_string()
    } else {
        let e = syntax.first_error.unwrap();
        format!("C syntax: first error at line {}:{}", e.line, e.column)
    };
    h.get_by_label_contains(&label);

    // Hovering the reply outlines a token and lists its alternatives.
    let area = h.get_by_label("Generated text").rect();
    let mut found = None;
    'search: for row in 0..12 {
        for col in 0..40 {
            let pos = egui::pos2(
                area.left() + 2.0 + col as f32 * (area.width() / 40.0),
                area.top() + 4.0 + row as f32 * 8.0,
            );
            h.hover_at(pos);
            h.run_steps(2);
            if let Some(t) = h.state().llm.hovered_token {
                found = Some(t);
                break 'search;
            }
        }
    }
    let t = found.expect("some point of the reply is over a generated token");
    assert!(t < 40);
    // Tooltips wait for the pointer to rest (frames advance the clock).
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.query_by_label_contains("Top alternatives").is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the alternatives"
        );
        h.step();
    }
}

#[test]
fn stop_ends_a_long_reply_midway() {
    let dir = tempfile::tempdir().unwrap();
    // The tab's limit is 4,096 tokens, which the `tiny` model decodes in
    // about 50 ms, a few frames of this test: a reply that long from
    // `small` takes well over the frames between its first tokens and Stop.
    let path = write_checkpoint_of(dir.path(), "small");
    let mut h = app_in(dir.path());
    h.step();
    load(&mut h, &path);
    // As many tokens as the tab allows: only Stop ends the reply in time.
    let max = 4096;
    h.state_mut().settings.llm.max_tokens = max;
    h.state_mut().settings.llm.prompt = "void cllm_".into();
    h.run_steps(1);
    h.get_by_label("Generate").click();
    h.step();
    step_until(&mut h, "the first tokens", |a| {
        a.llm.reply.as_ref().is_some_and(|r| r.tokens.len() >= 5)
    });
    h.run_steps(1);
    let reply = h.state().llm.reply.as_ref().unwrap();
    assert!(
        !reply.is_done(),
        "the reply ended before Stop: {:?} / {:?} after {} tokens",
        reply.stats.as_ref().map(|s| s.finish),
        reply.error,
        reply.tokens.len()
    );
    h.get_by_label_contains("generating…");
    h.get_by_label("Stop").click();
    h.step();
    step_until(&mut h, "the stop", |a| !a.llm.is_generating());
    let reply = h.state().llm.reply.clone().unwrap();
    let stats = reply.stats.expect("a stopped reply still reports stats");
    assert_eq!(
        stats.finish,
        Some(FinishReason::Cancelled),
        "{} tokens, error {:?}",
        stats.generated_tokens,
        reply.error
    );
    assert!(stats.generated_tokens < max);
    assert_eq!(stats.generated_tokens, reply.tokens.len());
    h.run_steps(1);
    h.get_by_label_contains("stopped by you");
    h.get_by_label("Generate");
}

#[test]
fn damaged_files_and_empty_prompts_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_checkpoint(dir.path());
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("checkpoints/cut.cllm");
    std::fs::create_dir_all(truncated.parent().unwrap()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(
        dir.path().join("models/garbage.cllm"),
        b"not a model at all",
    )
    .unwrap();

    let mut h = app_in(dir.path());
    h.step();
    step_until(&mut h, "the model list", |a| !a.llm.list.is_listing());
    h.run_steps(1);
    assert_eq!(
        h.get_all_by_label("damaged").count(),
        2,
        "both bad files marked"
    );

    load(&mut h, &truncated);
    let err = h.state().llm.load_error.clone().expect("refused");
    assert!(err.contains("cut.cllm"), "{err}");
    assert!(h.state().llm.loaded.is_none());
    h.run_steps(1);
    h.get_by_label_contains("Cannot load:");
    // Picking another file in the list clears the error about the last one.
    let good_name = good.file_name().unwrap().to_string_lossy().into_owned();
    h.get_by_label(&good_name).click();
    h.run_steps(2);
    assert!(
        h.state().settings.llm.model_path.ends_with(&good_name),
        "{}",
        h.state().settings.llm.model_path
    );
    assert!(h.state().llm.load_error.is_none());
    assert!(h.query_by_label_contains("Cannot load:").is_none());

    load(&mut h, &dir.path().join("models/missing.cllm"));
    assert!(
        h.state()
            .llm
            .load_error
            .as_ref()
            .unwrap()
            .contains("missing.cllm")
    );

    load(&mut h, &good);
    assert!(h.state().llm.loaded.is_some());
    h.state_mut().settings.llm.prompt = "   ".into();
    h.run_steps(1);
    h.get_by_label("Generate").click();
    h.run_steps(2);
    assert!(h.state().llm.reply.is_none());
    h.get_by_label_contains("the prompt is empty");

    // A preset button fills the prompt; a bad stop string is named.
    h.get_by_label("// Calculate the nth prime number").click();
    h.run_steps(1);
    assert_eq!(
        h.state().settings.llm.prompt,
        "// Calculate the nth prime number"
    );
    h.state_mut().settings.llm.stop = "\\q".into();
    h.run_steps(1);
    h.get_by_label("Generate").click();
    h.run_steps(2);
    h.get_by_label_contains("unknown escape");
    assert!(h.state().llm.reply.is_none());
}

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

/// Generates in the tab until the reply is done and returns its text.
fn generate_reply(h: &mut Harness<'_, WorkbenchApp>) -> String {
    h.get_by_label("Generate").click();
    h.step();
    step_until(h, "the reply", |a| {
        a.llm.reply.as_ref().is_some_and(|r| r.is_done()) && !a.llm.is_generating()
    });
    h.state().llm.reply.clone().unwrap().text
}

/// Saves `model` (bytes as tokens) at `state` with `memory`, a saved
/// repository memory, when given.
fn save_byte_model(path: &Path, model: &Gpt, state: &TrainingState, memory: Option<&[u8]>) {
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &Tokenizer::bytes().to_json(),
            train_config: &TrainConfig::default(),
            state,
            memory,
        },
    )
    .unwrap();
}

/// A model saved with a repository memory: the tab says so with a checkbox
/// (on by default), the reply is exactly the library generator's with the
/// memory mixed in, and unticking it gives the transformer's own reply.
#[test]
fn the_repository_memory_is_used_and_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    let model = Gpt::new(cfg, 5).unwrap();
    let text = "int main() { return helper(42); }\n".repeat(40);
    let memory = cllm_memory::Memory::build(text.bytes().map(u32::from).collect(), 256);
    let path = dir.path().join("models/with_memory.cllm");
    save_byte_model(
        &path,
        &model,
        &TrainingState::start(),
        Some(&memory.to_bytes()),
    );
    let mut h = app_in(dir.path());
    h.step();
    load(&mut h, &path);
    assert!(h.state().llm.load_error.is_none());
    h.run_steps(1);
    h.get_by_label_contains("repository memory (1,360 training tokens)");
    assert!(h.state().settings.llm.use_memory);
    // Longer than the match generation needs before it copies.
    let prompt = "int main() { return helper(42); }\nint main() {";
    assert!(prompt.len() >= cllm_generate::generator::GENERATION_MIN_MATCH);
    h.state_mut().settings.llm.prompt = prompt.into();
    h.state_mut().settings.llm.max_tokens = 24;
    h.state_mut().settings.llm.temperature = 0.0;
    h.run_steps(1);

    let tok = Tokenizer::bytes();
    let sampling = h.state().settings.llm.sampling_config().unwrap();
    let reference = |with_memory: bool| {
        let mut g = Generator::new(&model, &tok, prompt, sampling.clone()).unwrap();
        if with_memory {
            g.use_memory(&memory).unwrap();
        }
        while g.next_token().is_some() {}
        g.text().to_string()
    };
    let with = generate_reply(&mut h);
    assert_eq!(with, reference(true));
    // Greedy over a memory that has seen this line forty times: it copies.
    assert!(with.starts_with(" return helper(42); }"), "{with:?}");

    h.get_by_label_contains("repository memory (").click();
    h.run_steps(1);
    assert!(!h.state().settings.llm.use_memory);
    let without = generate_reply(&mut h);
    assert_eq!(without, reference(false));
    assert_ne!(without, with);
}

/// The Balanced brackets checkbox (off by default): ticked, the reply is
/// exactly the library generator's with `balanced_brackets`, and a guard
/// reading the prompt and then the reply refuses none of its tokens, while
/// the same reply without it breaks the brackets somewhere.
#[test]
fn the_balanced_brackets_checkbox_keeps_the_reply_balanced() {
    use cllm_generate::bracket_guard::BracketGuard;
    let dir = tempfile::tempdir().unwrap();
    let path = write_checkpoint(dir.path());
    let mut h = app_in(dir.path());
    h.step();
    load(&mut h, &path);
    assert!(h.state().llm.load_error.is_none());
    assert!(!h.state().settings.llm.balanced_brackets);
    let prompt = "int f(int a){\n  if( g(a";
    h.state_mut().settings.llm.prompt = prompt.into();
    h.state_mut().settings.llm.max_tokens = 300;
    h.state_mut().settings.llm.temperature = 1.0;
    h.state_mut().settings.llm.top_k = 0;
    h.state_mut().settings.llm.top_p = 1.0;
    h.state_mut().settings.llm.repetition_penalty = 1.0;
    h.run_steps(1);
    h.get_by_label("Balanced brackets").click();
    h.run_steps(1);
    assert!(h.state().settings.llm.balanced_brackets);

    let ck = cllm_train::checkpoint::load(&path).unwrap();
    let model = Gpt::from_params(ck.model, ck.params).unwrap();
    let tok = Tokenizer::bytes();
    let sampling = h.state().settings.llm.sampling_config().unwrap();
    let reply_of = |balanced: bool| {
        let mut cfg = sampling.clone();
        cfg.balanced_brackets = balanced;
        let mut g = Generator::new(&model, &tok, prompt, cfg).unwrap();
        while g.next_token().is_some() {}
        (g.text().to_string(), g.generated_ids().to_vec())
    };
    let refused = |ids: &[u32]| {
        let mut guard = BracketGuard::after_prompt(prompt);
        let mut n = 0;
        for &id in ids {
            let bytes = tok.token_bytes(id);
            n += usize::from(!guard.allows(&bytes));
            guard.feed(&bytes);
        }
        n
    };
    let shown = generate_reply(&mut h);
    let (text, ids) = reply_of(true);
    assert_eq!(shown, text);
    assert_eq!(refused(&ids), 0);
    let (_, unguarded) = reply_of(false);
    assert!(refused(&unguarded) > 0, "the check can fail");
}

/// The Rewrite looping lines checkbox (off by default): ticked, the reply
/// shown is exactly the library generator's with `line_guard`, which took
/// lines back; unticked it is the plain reply.
#[test]
fn the_line_guard_checkbox_rewrites_lines_that_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_checkpoint(dir.path());
    let mut h = app_in(dir.path());
    h.step();
    load(&mut h, &path);
    assert!(h.state().llm.load_error.is_none());
    assert!(!h.state().settings.llm.line_guard);
    let prompt = "int f(int a){\n";
    h.state_mut().settings.llm.prompt = prompt.into();
    h.state_mut().settings.llm.max_tokens = 400;
    h.state_mut().settings.llm.temperature = 1.0;
    h.run_steps(1);
    let ck = cllm_train::checkpoint::load(&path).unwrap();
    let model = Gpt::from_params(ck.model, ck.params).unwrap();
    let tok = Tokenizer::bytes();
    let reply_of = |line_guard: bool, sampling: &cllm_generate::SamplingConfig| {
        let mut cfg = sampling.clone();
        cfg.line_guard = line_guard;
        let mut g = Generator::new(&model, &tok, prompt, cfg).unwrap();
        while g.next_token().is_some() {}
        (g.text().to_string(), g.stats().rewritten_lines)
    };
    let sampling = h.state().settings.llm.sampling_config().unwrap();
    let plain = generate_reply(&mut h);
    assert_eq!(plain, reply_of(false, &sampling).0);

    h.get_by_label("Rewrite looping lines").click();
    h.run_steps(1);
    assert!(h.state().settings.llm.line_guard);
    let sampling = h.state().settings.llm.sampling_config().unwrap();
    let shown = generate_reply(&mut h);
    let (text, rewritten) = reply_of(true, &sampling);
    assert_eq!(shown, text);
    assert!(
        rewritten > 0,
        "the check can fail: the model's lines run on"
    );
    assert_ne!(shown, plain);
}

/// "From your data" puts a function opening from the loaded model's own
/// training tokens (its repository memory) into the prompt, another on the
/// next click; it is disabled before a model is loaded and for a model
/// saved without a memory, and Generate then continues the drawn opening.
#[test]
fn a_prompt_can_be_drawn_from_the_models_training_data() {
    use egui_kittest::kittest::NodeT;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    // Room for an opening: half the context, 32 bytes, holds one.
    cfg.n_ctx = 64;
    let model = Gpt::new(cfg, 5).unwrap();
    let mut text = String::new();
    for i in 0..30 {
        text += &format!("static int add{i}(int a, int b){{\n  return a + b + {i};\n}}\n\n");
    }
    let memory = cllm_memory::Memory::build(text.bytes().map(u32::from).collect(), 256);
    let path = dir.path().join("models/with_memory.cllm");
    save_byte_model(
        &path,
        &model,
        &TrainingState::start(),
        Some(&memory.to_bytes()),
    );
    let plain = dir.path().join("models/plain.cllm");
    save_byte_model(&plain, &model, &TrainingState::start(), None);

    let mut h = app_in(dir.path());
    h.step();
    let button_disabled = |h: &Harness<'_, WorkbenchApp>| {
        h.get_by_label("From your data")
            .accesskit_node()
            .is_disabled()
    };
    assert!(button_disabled(&h), "no model loaded: nothing to draw from");

    load(&mut h, &plain);
    h.run_steps(1);
    assert!(
        button_disabled(&h),
        "a model without a memory keeps no training text"
    );

    load(&mut h, &path);
    assert!(h.state().llm.load_error.is_none());
    h.run_steps(1);
    assert!(!button_disabled(&h));
    let mut drawn = std::collections::BTreeSet::new();
    for _ in 0..6 {
        h.get_by_label("From your data").click();
        h.run_steps(1);
        let prompt = h.state().settings.llm.prompt.clone();
        assert!(
            prompt.starts_with("static int add") && prompt.ends_with('{'),
            "{prompt:?} ({:?})",
            h.state().llm.message
        );
        assert!(text.contains(&prompt), "{prompt:?} is not from the data");
        assert!(h.state().llm.message.is_none());
        drawn.insert(prompt);
    }
    assert!(drawn.len() > 1, "each click draws again: {drawn:?}");

    // The drawn opening is what Generate continues.
    h.state_mut().settings.llm.max_tokens = 8;
    let prompt = h.state().settings.llm.prompt.clone();
    generate_reply(&mut h);
    assert_eq!(h.state().llm.reply.as_ref().unwrap().prompt, prompt);
}

/// Settings persist between runs; Defaults puts the four sampling
/// controls back to the library's defaults and leaves the rest alone.
#[test]
fn defaults_restores_the_sampling_controls() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app_in(dir.path());
    {
        let s = &mut h.state_mut().settings.llm;
        (s.temperature, s.top_k, s.top_p, s.repetition_penalty) = (1.7, 3, 0.2, 1.9);
        (s.max_tokens, s.seed) = (77, 9);
    }
    h.run_steps(1);
    h.get_by_label("Defaults").click();
    h.run_steps(1);
    let s = &h.state().settings.llm;
    let d = cllm_generate::SamplingConfig::default();
    assert_eq!(
        (s.temperature, s.top_k, s.top_p, s.repetition_penalty),
        (d.temperature, d.top_k, d.top_p, d.repetition_penalty)
    );
    assert_eq!((s.max_tokens, s.seed), (77, 9));

    // Stopping where the prompt's braces close is on by default and
    // reaches the generator's settings; the checkbox turns it off.
    assert!(s.sampling_config().unwrap().stop_when_closed);
    h.get_by_label("Stop when the braces close").click();
    h.run_steps(1);
    assert!(
        !h.state()
            .settings
            .llm
            .sampling_config()
            .unwrap()
            .stop_when_closed
    );
}

/// At a narrow window every sampling control stays inside it: a wrapping
/// row placed each slider whole at the cursor, so the repetition penalty
/// once ran past the window's right edge at the default width.
#[test]
fn the_sampling_controls_wrap_inside_a_narrow_window() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().join("no_data").display().to_string(),
        ..Settings::default()
    };
    let mut state = WorkbenchApp::new_for_test(settings);
    state.tab = Tab::Llm;
    let width = 900.0;
    let mut app = Harness::builder()
        .with_size(egui::vec2(width, 800.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), state);
    app.run_steps(3);
    for name in [
        "Temperature",
        "Top-k",
        "Top-p",
        "Repetition penalty",
        "Max tokens",
        "Seed",
        "Stop string",
    ] {
        let nodes: Vec<_> = app.query_all_by_label(name).collect();
        assert!(!nodes.is_empty(), "no {name}");
        for n in nodes {
            let r = n.rect();
            assert!(
                r.max.x <= width + 0.5,
                "{name} ends at x = {} in a {width}-wide window",
                r.max.x
            );
        }
    }
}
