//! The code guards in a real reply: balanced brackets never emit a token the
//! bracket guard refuses, and the line guard takes back long and repeated
//! lines while the text, the stream and the KV cache stay exact.

mod common;

use cllm_core::{Gpt, KvCache};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{Generator, SamplingConfig};
use common::{byte_config, lively_model, rel_diff};

// ----------------------------------------------------------------------------
// Balanced brackets

/// The tokens of each reply that a guard reading the prompt and then the
/// reply refuses, over several seeds, with and without
/// `balanced_brackets`.
fn refused_tokens(balanced_brackets: bool) -> usize {
    use cllm_generate::bracket_guard::BracketGuard;
    let model = lively_model(byte_config("baby"), 31);
    let tok = Tokenizer::bytes();
    let prompt = "int f(int a){\n  if( g(a";
    let mut refused = 0;
    for seed in 0..6 {
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            max_new_tokens: 150,
            seed,
            balanced_brackets,
            ..SamplingConfig::default()
        };
        let mut generator = Generator::new(&model, &tok, prompt, cfg).unwrap();
        while generator.next_token().is_some() {}
        let mut guard = BracketGuard::after_prompt(prompt);
        for &id in generator.generated_ids() {
            let bytes = tok.token_bytes(id);
            if !guard.allows(&bytes) {
                refused += 1;
            }
            guard.feed(&bytes);
        }
    }
    refused
}

#[test]
fn balanced_brackets_never_emit_a_token_the_guard_refuses() {
    // A random model over bytes writes brackets, semicolons and line ends
    // at random: without the guard some of them break the rules.
    assert!(refused_tokens(false) > 0, "the check can fail");
    assert_eq!(refused_tokens(true), 0);
}

// ----------------------------------------------------------------------------
// Line guard

/// Runs a reply to its end; returns the pieces it streamed, joined.
fn run_to_end(generator: &mut Generator) -> String {
    let mut pieces = String::new();
    while let Some(t) = generator.next_token() {
        pieces.push_str(&t.text_piece);
    }
    pieces
}

/// Checks what going back over rejected lines must leave intact: the text
/// is the decoded kept tokens, the stream sent nothing that was taken back,
/// and the KV cache (through rewinds and window slides) holds exactly the
/// kept tokens: its next logits equal a fresh prefill's.
fn check_reply_state(
    model: &Gpt,
    tok: &Tokenizer,
    prompt: &str,
    generator: &Generator,
    streamed: &str,
) {
    assert_eq!(generator.text(), tok.decode(generator.generated_ids()));
    assert_eq!(streamed, generator.text(), "the stream is the reply");
    let seen = generator.context_tokens();
    let mut all = tok.encode(prompt);
    all.extend_from_slice(generator.generated_ids());
    // The token that ended the reply never ran through the cache.
    all.pop();
    assert!(
        all.ends_with(seen),
        "the context is the reply's last tokens"
    );
    let mut cache = KvCache::new(&model.config);
    let fresh = cache.append(model, seen).unwrap();
    let d = rel_diff(generator.next_logits(), fresh);
    assert!(d < 1e-4, "the cache holds other tokens than the reply: {d}");
}

/// Lines of `text` that repeat the non-blank line before them (8 or more
/// characters, trimmed), and lines longer than `limit` characters.
fn line_faults(text: &str, limit: usize) -> (usize, usize) {
    let mut prev = "";
    let (mut repeats, mut long) = (0, 0);
    for line in text.split('\n') {
        let t = line.trim();
        if t.chars().count() >= 8 && t == prev {
            repeats += 1;
        }
        if line.chars().count() > limit {
            long += 1;
        }
        if !t.is_empty() {
            prev = t;
        }
    }
    (repeats, long)
}

#[test]
fn the_line_guard_samples_long_lines_again_and_keeps_the_cache_exact() {
    use cllm_generate::line_guard::{MAX_LINE_CHARS, RETRIES_PER_LINE, RETRIES_PER_REPLY};
    // A random model over bytes rarely writes a line end: its lines run
    // past the limit, each attempt again, so every long line is taken back
    // RETRIES_PER_LINE times before it stands. A line is longer than the
    // context (64), so going back crosses window slides.
    let model = lively_model(byte_config("baby"), 7);
    let tok = Tokenizer::bytes();
    let prompt = "int f(int a){\n  a++;\n";
    let mut long_lines = 0;
    for seed in 0..3 {
        let cfg = |line_guard| SamplingConfig {
            temperature: 0.8,
            max_new_tokens: 500,
            seed,
            line_guard,
            ..SamplingConfig::default()
        };
        let mut plain = Generator::new(&model, &tok, prompt, cfg(false)).unwrap();
        let streamed = run_to_end(&mut plain);
        check_reply_state(&model, &tok, prompt, &plain, &streamed);
        let long = line_faults(plain.text(), MAX_LINE_CHARS).1;
        long_lines += long;

        let mut guarded = Generator::new(&model, &tok, prompt, cfg(true)).unwrap();
        let streamed = run_to_end(&mut guarded);
        check_reply_state(&model, &tok, prompt, &guarded, &streamed);
        let rewritten = guarded.stats().rewritten_lines;
        if long > 0 {
            assert!(
                rewritten >= RETRIES_PER_LINE,
                "seed {seed}: {rewritten} lines taken back"
            );
        }
        assert!(rewritten <= RETRIES_PER_REPLY);
    }
    assert!(long_lines > 0, "the check can fail");
}

#[test]
fn the_line_guard_breaks_a_repeated_line_and_changes_nothing_else() {
    use cllm_memory::Memory;
    let tok = Tokenizer::bytes();
    // A context longer than the reply: going back truncates the cache,
    // which no window slide rebuilds before the final check.
    let mut config = byte_config("baby");
    config.n_ctx = 512;
    let model = lively_model(config, 3);
    // A memory of one line over and over copies it near-deterministically
    // once the prompt matches it: the reply repeats the line.
    let line = "  total += step;\n";
    let memory = Memory::build(line.repeat(60).bytes().map(u32::from).collect(), 256);
    let prompt = format!("int f(int step){{\n{}", line.repeat(2));
    let cfg = |line_guard| SamplingConfig {
        temperature: 0.5,
        repetition_penalty: 1.0,
        max_new_tokens: 200,
        line_guard,
        ..SamplingConfig::default()
    };
    let mut plain = Generator::new(&model, &tok, &prompt, cfg(false)).unwrap();
    plain.use_memory(&memory).unwrap();
    let streamed = run_to_end(&mut plain);
    check_reply_state(&model, &tok, &prompt, &plain, &streamed);
    let repeats_without = line_faults(&format!("{prompt}{}", plain.text()), usize::MAX).0;
    assert!(
        repeats_without > 1,
        "the check can fail: {:?}",
        plain.text()
    );

    let mut guarded = Generator::new(&model, &tok, &prompt, cfg(true)).unwrap();
    guarded.use_memory(&memory).unwrap();
    let streamed = run_to_end(&mut guarded);
    check_reply_state(&model, &tok, &prompt, &guarded, &streamed);
    // The prompt's own repeat stands (it is the user's); the reply's first
    // line does not repeat the prompt's last.
    let reply_first_line = guarded.text().split('\n').next().unwrap_or("");
    assert_ne!(reply_first_line.trim(), line.trim(), "{:?}", guarded.text());
    assert!(guarded.stats().rewritten_lines > 0);
    let repeats_with = line_faults(&format!("{prompt}{}", guarded.text()), usize::MAX).0;
    assert!(
        repeats_with < repeats_without,
        "{repeats_with} repeated lines with the guard, {repeats_without} without"
    );

    // A reply with nothing to take back is the same token for token.
    for seed in 0..4 {
        let short = |line_guard| SamplingConfig {
            max_new_tokens: 40,
            temperature: 0.8,
            seed,
            line_guard,
            ..SamplingConfig::default()
        };
        let mut plain = Generator::new(&model, &tok, "int f(int a){\n", short(false)).unwrap();
        run_to_end(&mut plain);
        let mut guarded = Generator::new(&model, &tok, "int f(int a){\n", short(true)).unwrap();
        run_to_end(&mut guarded);
        assert_eq!(line_faults(plain.text(), 200), (0, 0));
        assert_eq!(plain.generated_ids(), guarded.generated_ids());
    }
}
