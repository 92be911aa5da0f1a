//! Models that can fill in the middle, made at run time: a small BPE
//! tokenizer (with the FIM tokens) trained on a few C functions written
//! here, and tiny GPTs over it with random weights or one that always says
//! the same token.

use super::*;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::{GenerationStats, Infill};
use std::sync::OnceLock;

/// C to train the test tokenizer on and to take prefixes and suffixes from.
pub const C_TEXT: &str = r#"static int count_lines(const char *text, int len) {
    int lines = 0;
    for (int i = 0; i < len; i++) {
        if (text[i] == '\n') {
            lines++;
        }
    }
    return lines;
}

int sum(const int *values, int n) {
    int total = 0;
    while (n-- > 0) {
        total += *values++;
    }
    return total;
}

struct point { int x; int y; };

static void move_point(struct point *p, int dx, int dy) {
    p->x += dx;
    p->y += dy;
}
"#;

/// The context of the FIM test models.
pub const FIM_CTX: usize = 64;

pub fn fim_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let text = C_TEXT.repeat(4);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        let tok = Tokenizer::train_bpe(&[&text], 300, &mut |_, _| {}, &cancel).unwrap();
        assert!(tok.fim_tokens().is_some(), "a new tokenizer has FIM tokens");
        tok
    })
}

fn fim_config() -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = fim_tokenizer().vocab_size();
    cfg.n_ctx = FIM_CTX;
    cfg
}

/// Random weights large enough that sampling varies.
pub fn lively_fim_model() -> Gpt {
    lively_fim_model_ctx(FIM_CTX)
}

pub fn lively_fim_model_ctx(n_ctx: usize) -> Gpt {
    let mut cfg = fim_config();
    cfg.n_ctx = n_ctx;
    let layout = ParamLayout::new(&cfg);
    let mut rng = Rng::new(9);
    let params = (0..layout.total).map(|_| rng.normal() * 0.3).collect();
    Gpt::from_params(cfg, params).unwrap()
}

/// A model whose next token is always `text` (one token of the test
/// tokenizer), `n_ctx` positions long.
pub fn always_model(text: &str, n_ctx: usize) -> Gpt {
    let ids = fim_tokenizer().encode(text);
    assert_eq!(ids.len(), 1, "{text:?} is one token");
    always_id(ids[0], n_ctx)
}

pub fn always_id(id: u32, n_ctx: usize) -> Gpt {
    let mut cfg = fim_config();
    cfg.n_ctx = n_ctx;
    always_with(id, cfg)
}

/// As [`always_model`], as wide and deep as the `small` preset: each
/// token takes a while.
pub fn always_model_slow(text: &str, n_ctx: usize) -> Gpt {
    let small = ModelConfig::preset("small").unwrap();
    let mut cfg = fim_config();
    (cfg.n_ctx, cfg.n_embd, cfg.n_inner) = (n_ctx, small.n_embd, small.n_inner);
    (cfg.n_layer, cfg.n_head) = (small.n_layer, small.n_head);
    always_with(fim_tokenizer().encode(text)[0], cfg)
}

fn always_with(id: u32, cfg: ModelConfig) -> Gpt {
    let layout = ParamLayout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    params[layout.ln_f_bias] = 1.0;
    params[layout.wte + id as usize * cfg.n_embd] = 10.0;
    Gpt::from_params(cfg, params).unwrap()
}

pub fn start_fim(model: Gpt, adjust: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    start_model(model, fim_tokenizer().clone(), adjust)
}

/// What the engine fills between `prefix` and `suffix` (greedy, at most
/// `n` tokens): the text and its stats.
pub fn library_middle(
    model: &Gpt,
    prefix: &str,
    suffix: &str,
    n: usize,
) -> (String, GenerationStats) {
    let hole = Infill {
        prefix: prefix.into(),
        suffix: suffix.into(),
        extra: Vec::new(),
    };
    library_fill(model, &hole, n)
}

/// The greedy middle the library writes for `hole`, up to `n` tokens.
pub fn library_fill(model: &Gpt, hole: &Infill, n: usize) -> (String, GenerationStats) {
    let cfg = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: n,
        repetition_penalty: 1.0,
        ..SamplingConfig::default()
    };
    let tok = fim_tokenizer();
    let (mut g, _) = Generator::infill(model, tok, hole, cfg, DecodeOptions::default()).unwrap();
    while g.next_token().is_some() {}
    (g.text().to_string(), g.stats())
}

/// llama.vim's check of a raw answer before it decodes it: it starts with
/// `{` and has `"content"`, spaces, `:"` (the `\v"content"\s*:"` match).
pub fn llama_vim_accepts(raw: &str) -> bool {
    raw.trim_start().starts_with('{')
        && raw.match_indices("\"content\"").any(|(at, m)| {
            raw[at + m.len()..]
                .trim_start_matches([' ', '\t'])
                .starts_with(":\"")
        })
}
