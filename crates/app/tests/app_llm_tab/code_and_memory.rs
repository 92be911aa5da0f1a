//! The repository memory, the code guards (balanced brackets, looping
//! lines) and prompts drawn from the model's own training data.

use super::*;

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
