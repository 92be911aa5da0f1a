//! Load, generate, stream and stop: the reply is the library generator's,
//! and damaged files and empty prompts are refused with a message.

use super::*;

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
    // The tab's limit is 4,096 tokens, which the `tiny` model decodes
    // within a few frames of this test: a reply that long from `small`
    // takes well over the frames between its first tokens and Stop.
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
