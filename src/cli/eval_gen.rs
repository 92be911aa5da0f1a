//! `cllm eval-gen`: code-aware generation metrics. Two prompt sets are
//! completed, each completion stopping when the braces its prompt opened
//! close again (or at end-of-text or the token limit), and prompt +
//! completion is checked as C with tree-sitter:
//!
//! - `functions`: up to `--functions` C function openings (signature and
//!   `{`) drawn from the data: the checkpoint's own validation split, or
//!   the files given with `--data`; or, with `--prompts FILE`, the prompts
//!   in that file (one per line) instead;
//! - `seed`: the four preset prompts of the LLM tab, always, on their own
//!   line so that runs compare across data.
//!
//! Per set: closed rate, parse rate of the closed ones, syntax accuracy
//! (closed and parses) and the first errors' kinds (see
//! [`cllm_generate::code_eval`]). Every sample is written as one JSON
//! line; `--json` prints one JSON object instead of the table.

use super::error_text;
use super::generate::SamplingArgs;
use clap::Args;
use cllm_core::Gpt;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::code_eval::{self, CodeEvalSummary, SampleRecord};
use cllm_generate::{Opening, SamplingConfig};
use cllm_train::TrainConfig;
use cllm_train::checkpoint;
use cllm_train::prepare::{gather_files, read_texts, validation_texts};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The LLM tab's presets: the `seed` prompt set.
pub const DEFAULT_PROMPTS: [&str; 4] = [
    "int main() {",
    "// Calculate the nth prime number",
    "void cllm_",
    "// Convert to lattice coordinates",
];

#[derive(Args, Debug, Clone)]
pub struct EvalGenArgs {
    /// The `.cllm` checkpoint or model to evaluate
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Files or folders to take function openings from [default: the
    /// checkpoint's own validation split]
    #[arg(long, num_args = 1.., conflicts_with = "prompts")]
    pub data: Vec<PathBuf>,
    /// Extensions of the files read from --data folders [default: the
    /// usual source and text types]
    #[arg(long, num_args = 1.., requires = "data")]
    pub ext: Vec<String>,
    /// Function openings to draw from the data (seeded by --seed, spread
    /// over the text)
    #[arg(long, default_value_t = 40)]
    pub functions: usize,
    /// Text file with one prompt per line (`\n` in a line stands for a
    /// newline), used instead of function openings
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Completions per prompt (sample s uses seed --seed + s)
    #[arg(long, default_value_t = 2)]
    pub samples: usize,
    /// Where the samples go, one JSON object per line [default: beside the
    /// model, <model dir>/<model stem>-eval-gen.jsonl]
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print one JSON object (the figures of both prompt sets)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Reads a prompts file: one prompt per non-empty line, `\n` unescaped.
pub fn read_prompts(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read prompts file {}: {e}", path.display()))?;
    let prompts: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace("\\n", "\n"))
        .collect();
    if prompts.is_empty() {
        return Err(format!(
            "prompts file {} has no prompts (one per line)",
            path.display()
        ));
    }
    Ok(prompts)
}

/// The first prompt set and where it came from.
struct PromptSet {
    prompts: Vec<String>,
    /// Per prompt: (file, line) for a function opening.
    origins: Vec<Option<(String, usize)>>,
    /// In words, for the table.
    source: String,
    /// Function openings found before sampling (None for a prompts file).
    found: Option<usize>,
}

fn from_openings(chosen: Vec<Opening>, found: usize, source: String) -> PromptSet {
    PromptSet {
        origins: chosen
            .iter()
            .map(|o| Some((o.file.clone(), o.line)))
            .collect(),
        prompts: chosen.into_iter().map(|o| o.text).collect(),
        source,
        found: Some(found),
    }
}

fn prompt_set(
    args: &EvalGenArgs,
    train_config: &TrainConfig,
    tok: &Tokenizer,
    n_ctx: usize,
) -> Result<PromptSet, String> {
    if let Some(path) = &args.prompts {
        let prompts = read_prompts(path)?;
        return Ok(PromptSet {
            origins: vec![None; prompts.len()],
            prompts,
            source: format!("prompts file {}", path.display()),
            found: None,
        });
    }
    let cancel = AtomicBool::new(false);
    let (texts, source) = if args.data.is_empty() {
        let cfg = train_config;
        let texts = validation_texts(cfg, &cancel).map_err(|e| {
            let data = if cfg.corpus.files.is_empty() {
                &cfg.corpus.data
            } else {
                &cfg.corpus.files
            };
            let data: Vec<String> = data.iter().map(|p| p.display().to_string()).collect();
            format!(
                "cannot read the validation split of {} (its data: {}): {e}; \
                 give --data PATH or --prompts FILE",
                args.model.display(),
                data.join(", ")
            )
        })?;
        (texts, "its validation split".to_string())
    } else {
        let mut cfg = train_config.clone();
        cfg.corpus.data = args.data.clone();
        cfg.corpus.files.clear();
        cfg.corpus.extensions = args.ext.clone();
        let files = gather_files(&cfg, &cancel, &mut |_| {}).map_err(|e| format!("--data: {e}"))?;
        let texts = read_texts(&files)?;
        let n = texts.len();
        (texts, format!("{n} file{}", if n == 1 { "" } else { "s" }))
    };
    let (chosen, found) =
        code_eval::function_prompts(&texts, tok, n_ctx, args.functions, args.sampling.seed)?;
    Ok(from_openings(chosen, found, source))
}

pub fn run(args: EvalGenArgs) -> Result<(), String> {
    if args.samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    let base = args
        .sampling
        .to_config(code_eval::EVAL_GEN_MAX_TOKENS, true);
    base.validate()?;
    let ck = checkpoint::load(&args.model).map_err(|e| error_text(&e))?;
    let context = cllm_train::checkpoint::trained_context(&ck);
    let memory = match args.sampling.memory {
        super::eval::Switch::On => ck.repository_memory(&args.model)?,
        super::eval::Switch::Off => None,
    };
    let checkpoint::Checkpoint {
        model,
        params,
        tokenizer_json,
        train_config,
        ..
    } = ck;
    let tok = Tokenizer::from_json(&tokenizer_json)
        .map_err(|e| format!("{}: its tokenizer: {e}", args.model.display()))?;
    let model = Gpt::from_params(model, params)
        .and_then(|m| m.with_context(context))
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let set = prompt_set(&args, &train_config, &tok, model.config.n_ctx)?;
    let seed_prompts: Vec<String> = DEFAULT_PROMPTS.iter().map(|s| s.to_string()).collect();

    let output = args
        .output
        .clone()
        .unwrap_or_else(|| super::beside_model(&args.model, "-eval-gen.jsonl"));
    let file = std::fs::File::create(&output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);

    let first_name = if args.prompts.is_some() {
        "prompts"
    } else {
        "functions"
    };
    if !args.json {
        println!(
            "{}",
            header(&args, &base, &set, model.config.n_ctx, memory.is_some())
        );
    }
    let progress = std::io::stderr().is_terminal();
    let cancel = AtomicBool::new(false);
    let mut summaries: Vec<(&str, CodeEvalSummary)> = Vec::new();
    for (name, prompts, origins) in [
        (first_name, &set.prompts, &set.origins),
        ("seed", &seed_prompts, &vec![None; seed_prompts.len()]),
    ] {
        let total = prompts.len() * args.samples;
        let mut done = 0usize;
        let mut write = |r: &SampleRecord| -> Result<(), String> {
            done += 1;
            if progress {
                eprint!("\r\x1b[K{name}: {done}/{total} completions");
            }
            let mut line = serde_json::to_value(r).map_err(|e| e.to_string())?;
            line["set"] = json!(name);
            if let Some(Some((file, at))) = origins.get(r.prompt_index) {
                line["file"] = json!(file);
                line["line"] = json!(at);
            }
            writeln!(out, "{line}").map_err(|e| format!("cannot write {}: {e}", output.display()))
        };
        let report = code_eval::evaluate_completions_with(
            &model,
            &tok,
            prompts,
            &base,
            args.samples,
            &cancel,
            memory.as_ref(),
            &mut write,
        )?;
        if progress {
            eprint!("\r\x1b[K");
        }
        summaries.push((name, report.summary));
    }
    out.flush()
        .map_err(|e| format!("cannot write {}: {e}", output.display()))?;

    if args.json {
        let sets: BTreeMap<&str, &CodeEvalSummary> =
            summaries.iter().map(|(n, s)| (*n, s)).collect();
        let object = json!({
            "model": args.model.display().to_string(),
            "source": set.source,
            "openings_found": set.found,
            "samples_per_prompt": args.samples,
            "memory": memory.is_some(),
            "sampling": base,
            "sets": sets,
            "samples_file": output.display().to_string(),
        });
        println!("{object}");
    } else {
        print!("{}", table(&summaries));
        println!("samples in {}", output.display());
    }
    Ok(())
}

fn header(
    args: &EvalGenArgs,
    base: &SamplingConfig,
    set: &PromptSet,
    n_ctx: usize,
    memory: bool,
) -> String {
    let what = match set.found {
        Some(_) if args.functions == 0 => {
            "--functions 0: only the seed prompts are measured".to_string()
        }
        Some(0) => format!(
            "no C function openings in {}: only the seed prompts are measured",
            set.source
        ),
        Some(found) if set.prompts.is_empty() => format!(
            "none of the {found} C functions in {} has an opening short enough (at most {} \
             bytes and {} tokens, half the context): only the seed prompts are measured",
            set.source,
            cllm_generate::openings::DEFAULT_MAX_OPENING_BYTES,
            (n_ctx / 2).max(1)
        ),
        Some(found) => format!(
            "{} function openings from {} ({found} C functions found)",
            set.prompts.len(),
            set.source
        ),
        None => format!("{} prompts from {}", set.prompts.len(), set.source),
    };
    let temperature = if base.is_greedy() {
        "greedy".to_string()
    } else {
        let nucleus = if base.top_p < 1.0 {
            format!(", top-p {}", base.top_p)
        } else {
            String::new()
        };
        format!("temperature {}{nucleus}", base.temperature)
    };
    format!(
        "{}: {what}\n{} completion{} per prompt, up to {} tokens, {temperature}, \
         stopping when the prompt's braces close{}{}; {}",
        args.model.display(),
        args.samples,
        if args.samples == 1 { "" } else { "s" },
        base.max_new_tokens,
        if base.balanced_brackets {
            ", brackets kept balanced"
        } else {
            ""
        },
        if base.line_guard {
            ", looping lines sampled again"
        } else {
            ""
        },
        if memory {
            "with the repository memory"
        } else {
            "model only (no memory)"
        }
    )
}

fn percent(n: usize, of: usize) -> String {
    if of == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / of as f64)
    }
}

/// The compact table: one line per set, then each set's most common first
/// errors.
fn table(summaries: &[(&str, CodeEvalSummary)]) -> String {
    let mut s = format!(
        "{:<10} {:>7} {:>7} {:>14} {:>20} {:>28} {:>7}\n",
        "set", "prompts", "samples", "closed", "parses when closed", "syntax accuracy", "tokens"
    );
    for (name, m) in summaries {
        s += &format!(
            "{:<10} {:>7} {:>7} {:>14} {:>20} {:>28} {:>7.1}\n",
            name,
            m.prompts,
            m.samples,
            format!("{} ({})", percent(m.closed, m.samples), m.closed),
            format!(
                "{} ({}/{})",
                percent(m.parsed_when_closed, m.closed),
                m.parsed_when_closed,
                m.closed
            ),
            format!(
                "{} ±{:.1} ({}/{})",
                percent(m.parsed_when_closed, m.samples),
                100.0 * m.syntax_accuracy_stderr,
                m.parsed_when_closed,
                m.samples
            ),
            m.mean_generated_tokens,
        );
    }
    for (name, m) in summaries {
        if m.rewritten_lines > 0 {
            s += &format!(
                "{name}: the line guard sampled {} line{} again\n",
                m.rewritten_lines,
                if m.rewritten_lines == 1 { "" } else { "s" }
            );
        }
    }
    for (name, m) in summaries {
        if m.first_errors.is_empty() {
            continue;
        }
        let mut kinds: Vec<(&String, &usize)> = m.first_errors.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = kinds
            .iter()
            .take(5)
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        let more = if kinds.len() > 5 { ", …" } else { "" };
        s += &format!("first errors, {name}: {}{more}\n", shown.join(", "));
    }
    s
}
