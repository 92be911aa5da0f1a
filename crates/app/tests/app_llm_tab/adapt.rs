//! "Learn from the prompt first": the reply is the library generator's
//! from the weights adapted to the prompt, and differs from the plain one.

use super::*;

#[test]
fn the_reply_continues_from_weights_adapted_to_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_checkpoint(dir.path());
    let mut h = app_in(dir.path());
    load(&mut h, &path);
    let prompt = "int add(int a, int b) { return a + b; }\n".repeat(3);
    {
        let s = &mut h.state_mut().settings.llm;
        s.prompt = prompt.clone();
        s.max_tokens = 24;
        s.seed = 3;
        s.stop_when_closed = false;
    }
    h.run_steps(1);
    let plain = generate_reply(&mut h);

    let label = "learn from the prompt first (lr 0.01)";
    h.get_by_label(label).click();
    h.run_steps(1);
    assert!(h.state().settings.llm.adapt_to_prompt);
    let adapted_reply = generate_reply(&mut h);

    let ckpt = cllm_train::checkpoint::load(&path).unwrap();
    let settings = ckpt.train_config.evaluation.adapt;
    let model = Gpt::from_params(ckpt.model, ckpt.params).unwrap();
    let tok = Tokenizer::from_json(&ckpt.tokenizer_json).unwrap();
    let adapted =
        cllm_train::adapt::adapt_to_prompt(&model, &tok.encode(&prompt), settings).unwrap();
    let cfg = h.state().settings.llm.sampling_config().unwrap();
    let mut reference = Generator::new(&adapted, &tok, &prompt, cfg.clone()).unwrap();
    while reference.next_token().is_some() {}
    assert_eq!(adapted_reply, reference.text());
    let mut unadapted = Generator::new(&model, &tok, &prompt, cfg).unwrap();
    while unadapted.next_token().is_some() {}
    assert_eq!(plain, unadapted.text());
    assert_ne!(adapted_reply, plain, "the steps changed nothing");
}
