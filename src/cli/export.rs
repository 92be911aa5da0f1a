//! `cllm export --model FILE [--format hf] [--output DIR] [--check-text TEXT]`:
//! write a Hugging Face GPT-2 folder from a checkpoint (by default beside it,
//! `<model dir>/<model stem>-hf/`); with `--check-text`, also cllm's logits
//! for that text, for `tools/compare_hf.py`. `cllm export FILE`, the old
//! form, still works.

use crate::checkpoint::{export_hf, export_hf::write_check_logits, load};
use std::path::PathBuf;

/// `cllm export` as typed on the command line.
#[derive(clap::Args, Debug, Clone)]
#[command(
    override_usage = "cllm export --model <FILE> [--format hf] [--output <DIR>] [--check-text <TEXT>]"
)]
pub struct ExportCommand {
    /// The `.cllm` checkpoint or model to export
    #[arg(long, value_name = "FILE", required_unless_present = "file")]
    pub model: Option<PathBuf>,
    /// The old positional form, `cllm export FILE` (hidden; still accepted)
    #[arg(hide = true, value_name = "FILE", conflicts_with = "model")]
    pub file: Option<PathBuf>,
    /// Target format (only `hf`: Hugging Face transformers GPT-2)
    #[arg(long, default_value = "hf")]
    pub format: String,
    /// Folder to write, created if missing [default: beside the model,
    /// <model dir>/<model stem>-hf/]
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Also write cllm's logits for this text to `cllm_logits.json`
    #[arg(long)]
    pub check_text: Option<String>,
}

impl ExportCommand {
    pub fn resolve(self) -> Result<ExportArgs, String> {
        let file = super::model_path(self.model, self.file)?;
        let output = self
            .output
            .unwrap_or_else(|| super::beside_model(&file, "-hf"));
        Ok(ExportArgs {
            file,
            format: self.format,
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
    /// Target format (only `hf`).
    pub format: String,
    /// Folder to write (created if missing).
    pub output: PathBuf,
    /// Also write cllm's logits for this text to `cllm_logits.json`.
    pub check_text: Option<String>,
}

pub fn run(args: ExportArgs) -> Result<(), String> {
    if args.format != "hf" {
        return Err(format!(
            "unknown export format '{}' (supported: hf)",
            args.format
        ));
    }
    let ckpt = load(&args.file).map_err(|e| e.to_string())?;
    let summary = export_hf(&ckpt, &args.output).map_err(|e| e.to_string())?;
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
        let path = write_check_logits(&ckpt, &args.output, text).map_err(|e| e.to_string())?;
        println!(
            "  {} (compare: python3 tools/compare_hf.py {})",
            path.display(),
            args.output.display()
        );
    }
    Ok(())
}
