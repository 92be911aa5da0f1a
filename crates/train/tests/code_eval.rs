//! Code-aware generation metrics end to end: the generator's brace stop on
//! models built to emit one byte forever, `evaluate_completions` on those
//! (where every figure is known in advance) and on a random tiny model
//! (where the figures must agree with the records and the checker), and
//! prompts drawn from C text.

use cllm_core::{Gpt, ModelConfig, ParamLayout};
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::braces::CloseWatch;
use cllm_generate::code_eval::{
    CodeEvalReport, PeriodicCodeCheck, TRAINER_MAX_TOKENS, TRAINER_PROMPTS, function_prompts,
    texts_of_dataset, trainer_sampling,
};
use cllm_generate::{
    FinishReason, Generator, SamplingConfig, check_c, evaluate_completions, extract_openings,
};
use std::sync::atomic::AtomicBool;

fn byte_config() -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 64;
    cfg.dropout = 0.0;
    cfg
}

/// A model over bytes whose next token is always `byte`: every weight is
/// zero, so the final LayerNorm outputs its bias, e_0, and the tied head
/// scores each token by its embedding's first entry, 10 for `byte` and 0
/// for the rest (probability ~0.99 at temperature 1; greedy always).
fn forced_model(byte: u8) -> Gpt {
    let cfg = byte_config();
    let layout = ParamLayout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    params[layout.ln_f_bias] = 1.0;
    params[layout.wte + byte as usize * cfg.n_embd] = 10.0;
    Gpt::from_params(cfg, params).unwrap()
}

/// Greedy decoding of the raw logits (no repetition penalty).
fn greedy(max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_new_tokens,
        ..SamplingConfig::default()
    }
}

fn run(model: &Gpt, prompt: &str, cfg: SamplingConfig, watch: bool) -> (String, FinishReason) {
    let tok = Tokenizer::bytes();
    let mut g = Generator::new(model, &tok, prompt, cfg).unwrap();
    if watch {
        g.stop_when_closed(prompt);
    }
    let mut pieces = String::new();
    while let Some(t) = g.next_token() {
        pieces.push_str(&t.text_piece);
    }
    assert_eq!(pieces, g.text(), "the pieces are the text");
    assert_eq!(g.stats().finish, g.finish_reason());
    (g.text().to_string(), g.finish_reason().unwrap())
}

#[test]
fn generation_stops_when_the_prompts_braces_close() {
    let closer = forced_model(b'}');
    // One brace open: one `}` and it ends.
    assert_eq!(
        run(&closer, "int f(void) {", greedy(50), true),
        ("}".to_string(), FinishReason::Closed)
    );
    // Two open (a brace in a string and one in a comment do not count).
    let prompt = "int g(int x) {\n  char *s = \"{\"; /* { */\n  if (x) {";
    assert_eq!(
        run(&closer, prompt, greedy(50), true),
        ("}}".to_string(), FinishReason::Closed)
    );
    // Without the watch, the same model runs to the limit.
    assert_eq!(
        run(&closer, "int f(void) {", greedy(5), false),
        ("}}}}}".to_string(), FinishReason::MaxTokens)
    );
    // A prompt ending in a comment: its `}`s never close anything.
    assert_eq!(
        run(&closer, "int f(void) { // {", greedy(4), true),
        ("}}}}".to_string(), FinishReason::MaxTokens)
    );
    // A stop string earlier than the close wins; a later one does not.
    let mut cfg = greedy(50);
    cfg.stop = vec!["}}".into()];
    assert_eq!(
        run(&closer, "{{{", cfg.clone(), true),
        (String::new(), FinishReason::StopString)
    );
    assert_eq!(
        run(&closer, "{", cfg, true),
        ("}".to_string(), FinishReason::Closed)
    );
    // A model that only opens never closes.
    let opener = forced_model(b'{');
    assert_eq!(
        run(&opener, "int f(void) {", greedy(6), true),
        ("{{{{{{".to_string(), FinishReason::MaxTokens)
    );
}

/// `SamplingConfig::stop_when_closed` (what the LLM tab's checkbox and
/// `generate --stop-when-closed` set) stops where the method does.
#[test]
fn the_sampling_setting_stops_like_the_method() {
    let closer = forced_model(b'}');
    let prompt = "int g(int x) {\n  if (x) {";
    let mut cfg = greedy(50);
    cfg.stop_when_closed = true;
    assert_eq!(
        run(&closer, prompt, cfg.clone(), false),
        ("}}".to_string(), FinishReason::Closed)
    );
    assert_eq!(
        run(&closer, prompt, cfg, false),
        run(&closer, prompt, greedy(50), true)
    );
    // Off (the default), the same model runs to the limit.
    assert_eq!(
        run(&closer, prompt, greedy(3), false),
        ("}}}".to_string(), FinishReason::MaxTokens)
    );
}

fn assert_consistent(report: &CodeEvalReport, prompts: &[String], samples: usize) {
    let s = &report.summary;
    assert_eq!(s.prompts, prompts.len());
    assert_eq!(s.samples, prompts.len() * samples);
    assert_eq!(report.records.len(), s.samples);
    assert!(s.closed <= s.samples);
    assert!(s.parsed_when_closed <= s.closed);
    assert!(s.parsed_when_closed <= s.parsed && s.parsed <= s.samples);
    assert_eq!(s.first_errors.values().sum::<usize>(), s.samples - s.parsed);
    assert_eq!(s.finish.values().sum::<usize>(), s.samples);
    let ratio = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    assert_eq!(s.syntax_accuracy, ratio(s.parsed_when_closed, s.samples));
    assert_eq!(s.closed_rate, ratio(s.closed, s.samples));
    assert_eq!(
        s.parse_rate_when_closed,
        ratio(s.parsed_when_closed, s.closed)
    );
    let tokens: usize = report.records.iter().map(|r| r.tokens).sum();
    assert_eq!(s.mean_generated_tokens, ratio(tokens, s.samples));
    for (i, r) in report.records.iter().enumerate() {
        assert_eq!((r.prompt_index, r.sample), (i / samples, i % samples));
        assert_eq!(r.prompt, prompts[r.prompt_index]);
        // The verdict is the checker's on prompt + completion.
        let check = check_c(&format!("{}{}", r.prompt, r.completion)).unwrap();
        assert_eq!(r.parses, check.parses, "{r:?}");
        assert_eq!(r.first_error, check.first_error);
        assert_eq!(r.closed, r.finish == FinishReason::Closed);
        // Replaying the completion: a closed one closes exactly at its end,
        // any other never closes.
        let mut watch = CloseWatch::after_prompt(&r.prompt);
        let at = watch.feed_reply(&r.completion, r.completion.len());
        if r.closed {
            assert_eq!(at, Some(r.completion.len()), "{r:?}");
        } else {
            assert_eq!(at, None, "{r:?}");
        }
    }
}

#[test]
fn evaluate_completions_counts_what_a_forced_model_does() {
    let closer = forced_model(b'}');
    let tok = Tokenizer::bytes();
    let prompts: Vec<String> = [
        "int f(void) {",                   // closes, parses
        "int g(int x) {\n  while (x) {",   // closes after two, parses
        "// comment",                      // `}`s inside the comment: parses, never closes
        "int x = 1;",                      // a stray `}` closes nothing, does not parse
        "struct s { int a; };\nint h() {", // closes, parses
    ]
    .map(String::from)
    .to_vec();
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_k: 0,
        repetition_penalty: 1.0,
        max_new_tokens: 6,
        ..SamplingConfig::default()
    };
    let never = AtomicBool::new(false);
    let report = evaluate_completions(&closer, &tok, &prompts, &cfg, 2, &never).unwrap();
    assert_consistent(&report, &prompts, 2);
    let s = &report.summary;
    // At temperature 1 the forced byte has probability ~0.99; the seeds
    // used here draw it every time (checked by the completions below).
    let completions: Vec<&str> = report
        .records
        .iter()
        .map(|r| r.completion.as_str())
        .collect();
    assert_eq!(
        completions,
        vec![
            "}", "}", "}}", "}}", "}}}}}}", "}}}}}}", "}}}}}}", "}}}}}}", "}", "}"
        ]
    );
    assert_eq!(s.closed, 6);
    assert_eq!(s.parsed, 8);
    assert_eq!(s.parsed_when_closed, 6);
    assert_eq!(s.syntax_accuracy, 0.6);
    assert_eq!(s.first_errors.values().sum::<usize>(), 2);
    assert!(
        s.first_errors.keys().all(|k| k.starts_with("ERROR")),
        "{:?}",
        s.first_errors
    );
    assert_eq!(s.finish["Closed"], 6);
    assert_eq!(s.finish["MaxTokens"], 4);
    assert_eq!(
        report.records.iter().map(|r| r.seed).collect::<Vec<_>>(),
        vec![42, 43, 42, 43, 42, 43, 42, 43, 42, 43]
    );

    // A model that writes empty statements forever never closes: nothing
    // is correct, and the first error is the brace the parser had to
    // assume.
    let opener = forced_model(b';');
    let report = evaluate_completions(&opener, &tok, &prompts[..2], &greedy(4), 1, &never).unwrap();
    assert_consistent(&report, &prompts[..2], 1);
    assert_eq!(report.summary.closed, 0);
    assert_eq!(report.summary.syntax_accuracy, 0.0);
    assert_eq!(report.summary.first_errors.values().sum::<usize>(), 2);
    assert!(
        report.summary.first_errors.contains_key("MISSING }"),
        "{:?}",
        report.summary.first_errors
    );

    // Cancelled: an error, not a partial report.
    let stop = AtomicBool::new(true);
    let err = evaluate_completions(&closer, &tok, &prompts, &cfg, 1, &stop).unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    // A prompt that cannot start is named.
    let err = evaluate_completions(&closer, &tok, &[String::new()], &cfg, 1, &never).unwrap_err();
    assert!(err.to_string().contains("prompt 1"), "{err}");
}

const C_TEXT: &str = r#"/* A small C file. */
#include <string.h>

static int count_braces(const char *s) {
  int n = 0;
  for (; *s; s++) { if (*s == '{') n++; }
  return n;
}

int max2(int a, int b) {
  return a > b ? a : b;
}

void swap(int *a, int *b) {
  int t = *a; *a = *b; *b = t;
}

int sum(int *v, int n) {
  int s = 0;
  while (n--) s += v[n];
  return s;
}
"#;

#[test]
fn evaluate_completions_on_a_random_model_agrees_with_its_records() {
    let model = Gpt::new(byte_config(), 3).unwrap();
    let tok = Tokenizer::bytes();
    let texts = vec![("small.c".to_string(), C_TEXT.to_string())];
    let (openings, found) = function_prompts(&texts, &tok, 64, 3, 9).unwrap();
    assert_eq!(found, 4);
    assert_eq!(openings.len(), 3);
    for o in &openings {
        assert!(tok.encode(&o.text).len() <= 32, "{o:?}");
        assert!(o.text.ends_with('{'));
    }
    let prompts: Vec<String> = openings.iter().map(|o| o.text.clone()).collect();
    let mut cfg = trainer_sampling();
    cfg.temperature = 1.0;
    cfg.max_new_tokens = 40;
    let never = AtomicBool::new(false);
    let report = evaluate_completions(&model, &tok, &prompts, &cfg, 3, &never).unwrap();
    assert_consistent(&report, &prompts, 3);
    // Reruns agree.
    assert_eq!(
        report,
        evaluate_completions(&model, &tok, &prompts, &cfg, 3, &never).unwrap()
    );
    // Greedy, and the trainer's setting.
    let mut greedy_cfg = trainer_sampling();
    greedy_cfg.temperature = 0.0;
    for cfg in [greedy_cfg, trainer_sampling()] {
        let report = evaluate_completions(&model, &tok, &prompts, &cfg, 1, &never).unwrap();
        assert_consistent(&report, &prompts, 1);
        assert!(
            report
                .records
                .iter()
                .all(|r| r.tokens <= cfg.max_new_tokens)
        );
    }
}

#[test]
fn function_prompts_from_a_prepared_split_and_from_text_without_c() {
    let tok = Tokenizer::bytes();
    let files = vec![
        ("a.c".to_string(), C_TEXT.to_string()),
        (
            "b.rs".to_string(),
            "fn main() {\n    let v: Vec<u8> = vec![1];\n    println!(\"{}\", \"é}\");\n}\n"
                .to_string(),
        ),
    ];
    let data = TokenDataset::from_texts(&tok, &files);
    assert_eq!(texts_of_dataset(&data, &tok), files);
    // `fn main() {` is a clean C opening (`fn` could be a typedef), but its
    // body is not C, so it is not a usable one.
    let (chosen, found) = function_prompts(&files, &tok, 128, 10, 1).unwrap();
    assert_eq!((chosen.len(), found), (4, 4));
    assert!(chosen.iter().all(|o| o.source == "a.c"));
    // A small context keeps only the openings whose tokens fit in half.
    let (short, _) = function_prompts(&files, &tok, 56, 10, 1).unwrap();
    let texts: Vec<&str> = short.iter().map(|o| o.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "int max2(int a, int b) {",
            "void swap(int *a, int *b) {",
            "int sum(int *v, int n) {"
        ]
    );
    // Rust only: nothing, and no error.
    let (none, found) = function_prompts(&files[1..], &tok, 128, 10, 1).unwrap();
    assert!(none.is_empty());
    assert_eq!(found, 0);
    let rust = "impl Foo for Bar {\n    fn x(&self) -> u8 { 1 }\n}\n";
    assert!(
        extract_openings(&[("c.rs".into(), rust.into())])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_trainers_periodic_check_uses_the_validation_split() {
    let tok = Tokenizer::bytes();
    let never = AtomicBool::new(false);
    let c_val = TokenDataset::from_texts(&tok, &[("small.c".into(), C_TEXT.into())]);
    let check = PeriodicCodeCheck::new(&c_val, &tok, 64, TRAINER_PROMPTS, 5).unwrap();
    assert_eq!(check.openings_found, 4);
    assert_eq!(
        check.prompts.len(),
        3,
        "the 40-byte opening does not fit 32 tokens"
    );
    assert_eq!(check.sampling, trainer_sampling());
    let closer = forced_model(b'}');
    let summary = check.run(&closer, &tok, None, &never).unwrap().unwrap();
    assert_eq!((summary.samples, summary.parsed_when_closed), (3, 3));
    let random = Gpt::new(byte_config(), 8).unwrap();
    let a = check.run(&random, &tok, None, &never).unwrap().unwrap();
    assert_eq!(
        a,
        check.run(&random, &tok, None, &never).unwrap().unwrap(),
        "same weights, same figures"
    );
    assert!(a.mean_generated_tokens <= TRAINER_MAX_TOKENS as f64);
    // Not C: no prompts, no figures, no error.
    let rust = TokenDataset::from_texts(&tok, &[("a.rs".into(), "fn f() -> u8 { 1 }\n".into())]);
    let none = PeriodicCodeCheck::new(&rust, &tok, 64, TRAINER_PROMPTS, 5).unwrap();
    assert!(none.prompts.is_empty());
    assert_eq!(none.run(&closer, &tok, None, &never).unwrap(), None);
}

#[test]
fn validation_texts_are_the_prepared_validation_split() {
    use cllm_train::TrainConfig;
    use cllm_train::prepare::{prepare, validation_texts};
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("a.c", C_TEXT.to_string()),
        ("b.c", C_TEXT.replace("max2", "max_of_two").repeat(3)),
        ("c.md", "# Notes — ünïcödé\n".repeat(40)),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let never = AtomicBool::new(false);
    for val_fraction in [0.1, 0.5] {
        let mut cfg = TrainConfig::default();
        cfg.corpus.data = vec![dir.path().to_path_buf()];
        cfg.corpus.tokenizer = cllm_train::TokenizerKind::Bytes;
        cfg.corpus.val_fraction = val_fraction;
        let tok = Tokenizer::bytes();
        let prepared = prepare(&cfg, Some(tok.clone()), &never, &mut |_| {}).unwrap();
        let texts = validation_texts(&cfg, &never).unwrap();
        assert!(!texts.is_empty());
        assert_eq!(
            texts,
            texts_of_dataset(&prepared.val, &tok),
            "{val_fraction}"
        );
    }
}
