//! `cllm eval-gen`: the model's "syntax accuracy". N completions per prompt
//! (the four presets unless `--prompts` gives a file with one prompt per
//! line), each checked as C together with its prompt; prints the share that
//! parses per prompt and overall, and writes every sample as one JSON line.

use super::generate::{SamplingArgs, load_model};
use crate::generate::{Generator, check_c};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The LLM tab's presets, used when no prompts file is given.
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
    /// Text file with one prompt per line (`\n` in a line stands for a newline)
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Completions per prompt
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Where the samples go, one JSON object per line [default: beside the
    /// model, <model dir>/<model stem>-eval-gen.jsonl]
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
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

pub fn run(args: EvalGenArgs) -> Result<(), String> {
    if args.samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    let base = args.sampling.to_config();
    base.validate()?;
    let prompts = match &args.prompts {
        Some(p) => read_prompts(p)?,
        None => DEFAULT_PROMPTS.iter().map(|s| s.to_string()).collect(),
    };
    let (model, tok) = load_model(&args.model)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| super::beside_model(&args.model, "-eval-gen.jsonl"));
    let file = std::fs::File::create(&output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let write_err = |e: std::io::Error| format!("cannot write {}: {e}", output.display());

    println!(
        "{} completions per prompt, up to {} tokens each, temperature {}",
        args.samples, base.max_new_tokens, base.temperature
    );
    let (mut total_ok, mut total) = (0usize, 0usize);
    for (p, prompt) in prompts.iter().enumerate() {
        let mut ok = 0usize;
        for s in 0..args.samples {
            // One seed per sample, so every sample differs yet reruns agree.
            let mut cfg = base.clone();
            cfg.seed = base.seed.wrapping_add(s as u64);
            let mut generator = Generator::new(&model, &tok, prompt, cfg.clone())
                .map_err(|e| format!("prompt {}: {e}", p + 1))?;
            while generator.next_token().is_some() {}
            let completion = generator.text().to_string();
            let report = check_c(&format!("{prompt}{completion}"))?;
            ok += usize::from(report.parses);
            let stats = generator.stats();
            let line = json!({
                "prompt": prompt,
                "sample": s,
                "seed": cfg.seed,
                "completion": completion,
                "parses": report.parses,
                "first_error": report.first_error,
                "tokens": stats.generated_tokens,
                "finish": stats.finish,
            });
            writeln!(out, "{line}").map_err(write_err)?;
        }
        println!(
            "  {:>5.1}%  ({ok}/{})  {}",
            100.0 * ok as f64 / args.samples as f64,
            args.samples,
            prompt.replace('\n', "⏎")
        );
        total_ok += ok;
        total += args.samples;
    }
    out.flush().map_err(write_err)?;
    println!(
        "syntax accuracy {:.1}% ({total_ok}/{total}); samples in {}",
        100.0 * total_ok as f64 / total as f64,
        output.display()
    );
    Ok(())
}
