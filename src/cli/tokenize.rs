//! `cllm tokenize`: train a tokenizer on files or folders, encode them, and
//! write `tokenizer.json`, `tokens.bin` and a stats line.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use cllm_data::clean::read_clean;
use cllm_data::consolidate::split_consolidated;
use cllm_data::dataset::TokenDataset;
use cllm_data::scan::{FileStatus, ScanOptions, parse_extensions, scan_with_text};
use cllm_data::token_file::write_tokens;
use cllm_data::tokenizer::{DEFAULT_VOCAB_SIZE, MAX_BPE_VOCAB_SIZE, MIN_BPE_VOCAB_SIZE, Tokenizer};

#[derive(clap::Args, Debug, Clone)]
pub struct TokenizeArgs {
    /// Files (a consolidated corpus is split at its file markers) or folders
    /// (scanned like `cllm prepare`).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Extensions to keep when scanning folders: `--ext c h md`,
    /// `--ext .c,.h` or `--ext "c, h"`; default: common source and text types.
    #[arg(long, num_args = 1..)]
    pub ext: Vec<String>,
    /// Folder for tokenizer.json and tokens.bin.
    #[arg(long)]
    pub output: PathBuf,
    /// Vocabulary size (as `cllm train`): 260 to 1,000,000 for BPE, or 256
    /// for the plain byte tokenizer.
    #[arg(long, default_value_t = DEFAULT_VOCAB_SIZE)]
    pub vocab_size: usize,
}

pub fn run(args: TokenizeArgs) -> Result<(), String> {
    if args.vocab_size != 256
        && !(MIN_BPE_VOCAB_SIZE..=MAX_BPE_VOCAB_SIZE).contains(&args.vocab_size)
    {
        return Err(format!(
            "--vocab-size {}: must be between {MIN_BPE_VOCAB_SIZE} and {MAX_BPE_VOCAB_SIZE} for BPE, or 256 for the byte tokenizer",
            args.vocab_size
        ));
    }
    let extensions = parse_extensions(&args.ext);
    if extensions.is_empty() && !args.ext.is_empty() {
        return Err(format!(
            "--ext {:?}: no extensions in it",
            args.ext.join(" ")
        ));
    }
    let files = load_inputs(&args.input, &extensions)?;
    if files.is_empty() {
        return Err("no text found in the inputs".to_string());
    }
    let started = Instant::now();
    let tokenizer = if args.vocab_size == 256 {
        Tokenizer::bytes()
    } else {
        let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        let bar = ProgressBar::new(1);
        if let Ok(style) = ProgressStyle::with_template("training BPE {wide_bar} {percent}%") {
            bar.set_style(style);
        }
        let never = AtomicBool::new(false);
        let trained = Tokenizer::train_bpe(
            &texts,
            args.vocab_size,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
            &never,
        );
        bar.finish_and_clear();
        trained?
    };
    let trained_s = started.elapsed().as_secs_f64();
    let data = TokenDataset::from_texts(&tokenizer, &files);
    std::fs::create_dir_all(&args.output)
        .map_err(|e| format!("{}: cannot create folder: {e}", args.output.display()))?;
    let json_path = args.output.join("tokenizer.json");
    std::fs::write(&json_path, tokenizer.to_json())
        .map_err(|e| format!("{}: cannot write: {e}", json_path.display()))?;
    let tokens_path = args.output.join("tokens.bin");
    write_tokens(&tokens_path, tokenizer.vocab_size() as u32, &data.tokens)?;
    println!(
        "{} files, {} bytes -> {} tokens ({:.3} bytes/token), vocab {}, tokenizer {:.1}s, total {:.1}s; wrote {} and {}",
        files.len(),
        data.bytes,
        data.tokens.len(),
        data.bytes as f64 / data.tokens.len().max(1) as f64,
        tokenizer.vocab_size(),
        trained_s,
        started.elapsed().as_secs_f64(),
        json_path.display(),
        tokens_path.display()
    );
    Ok(())
}

/// (name, cleaned text) of every input file, in order.
fn load_inputs(inputs: &[PathBuf], extensions: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let opts = ScanOptions {
                roots: vec![input.clone()],
                extensions: extensions.to_vec(),
                ..ScanOptions::default()
            };
            let never = AtomicBool::new(false);
            scan_with_text(&opts, &never, &mut |file, text| {
                if let (FileStatus::Kept, Some(text)) = (&file.status, text) {
                    files.push((file.relative.to_string_lossy().into_owned(), text));
                }
            })?;
        } else {
            let text = read_clean(input)?;
            for (name, body) in split_consolidated(&text) {
                let name = if name == "unnamed" {
                    input.display().to_string()
                } else {
                    name
                };
                files.push((name, body));
            }
        }
    }
    Ok(files)
}
