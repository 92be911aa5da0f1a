//! `cllm export --model FILE [--format hf] [--output DIR] [--check-text TEXT]`:
//! write a Hugging Face GPT-2 folder from a checkpoint (by default beside it,
//! `<model dir>/<model stem>-hf/`); with `--check-text`, also cllm's logits
//! for that text, for `tools/compare_hf.py`. `--format gguf` writes one GGUF
//! file and an Ollama Modelfile beside it. `cllm export FILE`, the old form,
//! still works.

use super::choice::choice;
use super::error_text;
use cllm_train::checkpoint::export_gguf::{GgufType, export_gguf};
use cllm_train::checkpoint::export_ollama::write_modelfile;
use cllm_train::checkpoint::special_tokens::{SpecialTokens, fim_named};
use cllm_train::checkpoint::{export_hf, export_hf::write_check_logits, load};
use std::path::PathBuf;

/// What `cllm export` writes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A Hugging Face transformers GPT-2 folder
    Hf,
    /// One GGUF file for llama.cpp and Ollama
    Gguf,
}

/// `cllm export` as typed on the command line.
#[derive(clap::Args, Debug, Clone)]
#[command(
    override_usage = "cllm export --model <FILE> [--format hf|gguf] [--outtype f32|f16] [--output <DIR or FILE>] [--check-text <TEXT>]"
)]
pub struct ExportCommand {
    /// The `.cllm` checkpoint or model to export
    #[arg(long, value_name = "FILE", required_unless_present = "file")]
    pub model: Option<PathBuf>,
    /// The old positional form, `cllm export FILE` (hidden; still accepted)
    #[arg(hide = true, value_name = "FILE", conflicts_with = "model")]
    pub file: Option<PathBuf>,
    /// Target format: `hf` (Hugging Face transformers GPT-2 folder) or
    /// `gguf` (one file for llama.cpp and Ollama)
    #[arg(long, value_enum, default_value_t = ExportFormat::Hf)]
    pub format: ExportFormat,
    /// GGUF tensor type: f32, or f16 for the matrices (norms and biases stay f32)
    #[arg(long, default_value = "f32", value_parser = choice::<GgufType>())]
    pub outtype: GgufType,
    /// Folder (hf) or file (gguf) to write [default: beside the model,
    /// <model dir>/<model stem>-hf/ or <model dir>/<model stem>.gguf]
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Also write cllm's logits for this text to `cllm_logits.json`
    #[arg(long)]
    pub check_text: Option<String>,
}

impl ExportCommand {
    pub fn resolve(self) -> Result<ExportArgs, String> {
        let file = super::model_path(self.model, self.file)?;
        let suffix = match self.format {
            ExportFormat::Gguf => ".gguf",
            ExportFormat::Hf => "-hf",
        };
        let output = self
            .output
            .unwrap_or_else(|| super::beside_model(&file, suffix));
        Ok(ExportArgs {
            file,
            format: self.format,
            outtype: self.outtype,
            output,
            check_text: self.check_text,
        })
    }
}

/// What `cllm export` does.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    /// The `.cllm` checkpoint to export.
    pub file: PathBuf,
    pub format: ExportFormat,
    /// GGUF tensor type (`--format gguf`).
    pub outtype: GgufType,
    /// Folder to write (created if missing).
    pub output: PathBuf,
    /// Also write cllm's logits for this text to `cllm_logits.json`.
    pub check_text: Option<String>,
}

pub fn run(args: ExportArgs) -> Result<(), String> {
    if args.format == ExportFormat::Gguf {
        return run_gguf(args);
    }
    let ckpt = load(&args.file).map_err(|e| error_text(&e))?;
    let summary = export_hf(&ckpt, &args.output).map_err(|e| error_text(&e))?;
    println!(
        "exported {} tensors from {} to {}",
        summary.tensors,
        args.file.display(),
        summary.dir.display()
    );
    for f in &summary.files {
        println!("  {}", f.display());
    }
    if let Some(text) = &args.check_text {
        let path = write_check_logits(&ckpt, &args.output, text).map_err(|e| error_text(&e))?;
        println!(
            "  {} (compare: python3 tools/compare_hf.py {})",
            path.display(),
            args.output.display()
        );
    }
    Ok(())
}

/// `--format gguf`: one file for llama.cpp and Ollama, and the Ollama
/// Modelfile beside it.
fn run_gguf(args: ExportArgs) -> Result<(), String> {
    let ty = args.outtype;
    if args.check_text.is_some() {
        return Err("--check-text goes with --format hf".into());
    }
    let ckpt = load(&args.file).map_err(|e| error_text(&e))?;
    let summary = export_gguf(&ckpt, &args.output, ty).map_err(|e| error_text(&e))?;
    println!(
        "exported {} tensors and {} metadata keys ({}, {} bytes) from {} to {}",
        summary.tensors,
        summary.metadata,
        ty.name(),
        summary.bytes,
        args.file.display(),
        args.output.display()
    );
    let special = SpecialTokens::of(&ckpt.tokenizer_json).map_err(|e| error_text(&e))?;
    match &special.fim {
        Some(fim) => {
            let ids: Vec<String> = fim_named(fim)
                .iter()
                .map(|(text, id)| format!("{text}={id}"))
                .collect();
            println!("  infill: FIM token ids written ({})", ids.join(" "));
        }
        None => println!("  infill: none (the tokenizer has no FIM tokens)"),
    }
    let modelfile = write_modelfile(&ckpt, &args.output).map_err(|e| error_text(&e))?;
    println!(
        "  Ollama Modelfile: {} (ollama create NAME -f {})",
        modelfile.display(),
        modelfile.display()
    );
    Ok(())
}
