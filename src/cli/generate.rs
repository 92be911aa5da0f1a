//! `cllm generate`: load a checkpoint and stream a completion of a prompt to
//! stdout as it is produced; the stats line (tokens, tokens/s) goes to
//! stderr so the completion can be piped on its own. With `--suffix` (or
//! `--suffix-file`) the prompt is the text before a hole and the reply is
//! the middle that fills it (a model trained with FIM tokens only).

use super::choice::choice;
use super::error_text;
use clap::Args;
use cllm_core::Gpt;
use cllm_core::ops::bf16_gemv;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::decoder::{DecodeOptions, Precision};
use cllm_generate::{FinishReason, Generator, Infill, SamplingConfig};
use cllm_memory::Memory;
use cllm_train::adapt::AdaptSettings;
use cllm_train::checkpoint;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Sampling flags shared by `generate` and `eval-gen`.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most new tokens per completion [default: 200 for generate, 1024 for
    /// eval-gen]
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// 0 = greedy; higher = more varied
    #[arg(long, default_value_t = SamplingConfig::default().temperature)]
    pub temperature: f32,
    /// Keep only the K most probable tokens (0 = off)
    #[arg(long, default_value_t = SamplingConfig::default().top_k)]
    pub top_k: usize,
    /// Keep the most probable tokens up to this total probability (1 = off)
    #[arg(long, default_value_t = SamplingConfig::default().top_p)]
    pub top_p: f32,
    /// Above 1 discourages repeating tokens already in the context (1 = off)
    #[arg(long, default_value_t = SamplingConfig::default().repetition_penalty)]
    pub repetition_penalty: f32,
    /// Stop before this text (may be given several times)
    #[arg(long)]
    pub stop: Vec<String>,
    /// Random seed: same seed, same output
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Mix in the repository memory saved with the model, when it has one
    #[arg(long, value_enum, default_value_t = super::eval::Switch::On)]
    pub memory: super::eval::Switch,
    /// For code: never sample a token that leaves the brackets impossible
    /// to balance (a `)` that closes a `{`, a `;` inside parentheses, a line
    /// end inside a string) [default: on for eval-gen, off for generate]
    #[arg(long, value_enum)]
    pub brackets: Option<super::eval::Switch>,
    /// For code: sample again a line that repeats a recent line or runs past
    /// 200 characters (the reply then arrives a line at a time) [default: on
    /// for eval-gen, off for generate]
    #[arg(long, value_enum)]
    pub line_guard: Option<super::eval::Switch>,
    /// For code: end the reply at the `}` that closes the braces the prompt
    /// left open (or the first block the reply opens) [always for eval-gen]
    #[arg(long)]
    pub stop_when_closed: bool,
}

/// `generate`'s token limit unless given.
pub const GENERATE_MAX_TOKENS: usize = 200;

impl SamplingArgs {
    /// The sampling asked for, with `default_max_tokens` when no
    /// `--max-tokens` was given and `code` (the code guards on) when no
    /// `--brackets` or `--line-guard`.
    pub fn to_config(&self, default_max_tokens: usize, code: bool) -> SamplingConfig {
        let on = |switch: Option<super::eval::Switch>| {
            switch.map_or(code, |b| b == super::eval::Switch::On)
        };
        SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            max_new_tokens: self.max_tokens.unwrap_or(default_max_tokens),
            stop: self.stop.clone(),
            seed: self.seed,
            balanced_brackets: on(self.brackets),
            stop_when_closed: self.stop_when_closed,
            line_guard: on(self.line_guard),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct GenerateArgs {
    /// The `.cllm` checkpoint or model to run
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Text to continue (with --suffix: the text before the hole)
    #[arg(long)]
    pub prompt: String,
    /// Fill in the middle: the text after the hole, which the reply leads
    /// into (the model needs FIM tokens; `cllm inspect` says)
    #[arg(long, conflicts_with = "suffix_file")]
    pub suffix: Option<String>,
    /// Like --suffix, the text read from this file
    #[arg(long, value_name = "FILE")]
    pub suffix_file: Option<PathBuf>,
    /// Print only the completion (the middle), not the prompt before it
    /// (nor the suffix after it)
    #[arg(long)]
    pub no_echo: bool,
    /// Threads for each token's products (0 = every core); the reply is
    /// the same at any count
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Weights' precision for decoding: auto = bf16 where the CPU has
    /// AVX512_BF16, else fp32
    #[arg(long, default_value = "auto", value_parser = choice::<Precision>())]
    pub precision: Precision,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub adapt: super::eval::AdaptArgs,
}

/// A checkpoint's model, its tokenizer, its repository memory when asked
/// for and saved with it, and its adaptation setting.
pub type Loaded = (Gpt, Tokenizer, Option<Memory>, AdaptSettings);

/// Loads the model and tokenizer of a checkpoint; errors name the file.
pub fn load_model(path: &Path, memory: super::eval::Switch) -> Result<Loaded, String> {
    let ckpt = checkpoint::load(path).map_err(|e| error_text(&e))?;
    let repo_memory = match memory {
        super::eval::Switch::On => ckpt.repository_memory(path)?,
        super::eval::Switch::Off => None,
    };
    let tok = Tokenizer::from_json(&ckpt.tokenizer_json)
        .map_err(|e| format!("{}: its tokenizer: {e}", path.display()))?;
    let context = cllm_train::checkpoint::trained_context(&ckpt);
    let model = Gpt::from_params(ckpt.model, ckpt.params)
        .and_then(|m| m.with_context(context))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((model, tok, repo_memory, ckpt.train_config.evaluation.adapt))
}

impl GenerateArgs {
    /// The text after the hole, from --suffix or --suffix-file; `None`
    /// for a plain completion.
    fn suffix_text(&self) -> Result<Option<String>, String> {
        match (&self.suffix, &self.suffix_file) {
            (Some(text), _) => Ok(Some(text.clone())),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(Some)
                .map_err(|e| format!("--suffix-file {}: cannot read it: {e}", path.display())),
            (None, None) => Ok(None),
        }
    }
}

pub fn run(args: GenerateArgs) -> Result<(), String> {
    let cfg = args.sampling.to_config(GENERATE_MAX_TOKENS, false);
    cfg.validate()?;
    let suffix = args.suffix_text()?;
    if args.precision == Precision::Bf16 && !bf16_gemv::has_avx512_bf16() {
        return Err(match cllm_core::ops::fast_math::cap_note() {
            Some(note) => format!("--precision bf16: AVX512_BF16 is off, {note}; use auto or fp32"),
            None => "--precision bf16: this CPU lacks AVX512_BF16 (use auto or fp32)".into(),
        });
    }
    let (mut model, tok, memory, saved_adapt) = load_model(&args.model, args.sampling.memory)?;
    let adapt = args
        .adapt
        .resolve(saved_adapt)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    if let Some(settings) = adapt {
        model = cllm_train::adapt::adapt_to_prompt(&model, &tok.encode(&args.prompt), settings)
            .map_err(|e| e.to_string())?;
    }
    let options = DecodeOptions {
        threads: args.threads,
        precision: args.precision,
        ..DecodeOptions::default()
    };
    let (mut generator, truncated) = match &suffix {
        Some(suffix) => {
            let hole = Infill {
                prefix: args.prompt.clone(),
                suffix: suffix.clone(),
                extra: Vec::new(),
            };
            let (generator, fit) = Generator::infill(&model, &tok, &hole, cfg, options)
                .map_err(|e| format!("{}: {e}", args.model.display()))?;
            (generator, fit.truncated)
        }
        None => (
            Generator::with_options(&model, &tok, &args.prompt, cfg, options)?,
            false,
        ),
    };
    if let Some(memory) = &memory {
        generator.use_memory(memory)?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let write_err = |e: std::io::Error| format!("cannot write to stdout: {e}");
    if !args.no_echo {
        write!(out, "{}", args.prompt).map_err(write_err)?;
        out.flush().map_err(write_err)?;
    }
    while let Some(token) = generator.next_token() {
        if !token.text_piece.is_empty() {
            write!(out, "{}", token.text_piece).map_err(write_err)?;
            out.flush().map_err(write_err)?;
        }
    }
    if let (Some(suffix), false) = (&suffix, args.no_echo) {
        write!(out, "{suffix}").map_err(write_err)?;
    }
    writeln!(out).map_err(write_err)?;
    out.flush().map_err(write_err)?;
    let stats = generator.stats();
    let why = match stats.finish {
        Some(FinishReason::MaxTokens) => "max tokens",
        Some(FinishReason::StopString) => "stop string",
        Some(FinishReason::EndOfText) => "end of text",
        Some(FinishReason::Cancelled) => "cancelled",
        Some(FinishReason::Closed) => "braces closed",
        None => "unfinished",
    };
    let (threads, precision) = generator.decoding();
    let what = match (&suffix, truncated) {
        (None, _) => "",
        (Some(_), false) => "infill, ",
        (Some(_), true) => "infill, prefix or suffix cut to fit the context, ",
    };
    let adapted = match adapt {
        Some(a) => format!(", adapted to the prompt at lr {}", a.lr),
        None => String::new(),
    };
    eprintln!(
        "{} tokens in {:.2} s, {:.1} tokens/s ({what}prompt {} tokens, prefill {:.3} s; stopped by {why}; {}{}{}{adapted}; {threads} thread{}, {})",
        stats.generated_tokens,
        stats.generate_secs,
        stats.tokens_per_sec,
        stats.prompt_tokens,
        stats.prefill_secs,
        if generator.has_memory() {
            "with the repository memory"
        } else {
            "model only"
        },
        if generator.config().balanced_brackets {
            ", brackets kept balanced"
        } else {
            ""
        },
        match (generator.config().line_guard, stats.rewritten_lines) {
            (false, _) => String::new(),
            (true, 1) => ", 1 line sampled again".to_string(),
            (true, n) => format!(", {n} lines sampled again"),
        },
        if threads == 1 { "" } else { "s" },
        precision.name()
    );
    Ok(())
}
