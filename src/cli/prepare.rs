//! `cllm prepare`: scan folders, clean the kept files and consolidate them
//! into one training text with file markers, then print a summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use indicatif::ProgressBar;

use cllm_data::clean::count_lines;
use cllm_data::consolidate::write_consolidated;
use cllm_data::scan::{FileStatus, ScanOptions, parse_extensions, scan_with_text};

#[derive(clap::Args, Debug, Clone)]
pub struct PrepareArgs {
    /// Folders (or single files) to scan; .gitignore and .ignore are honoured.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Extensions to keep: `--ext c h md`, `--ext .c,.h` or `--ext "c, h"`;
    /// default: common source and text types.
    #[arg(long, num_args = 1..)]
    pub ext: Vec<String>,
    /// Where to write the consolidated text. An existing file is replaced
    /// only with --force.
    #[arg(long, default_value = DEFAULT_OUTPUT)]
    pub output: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Skip files larger than this many bytes.
    #[arg(long)]
    pub max_file_bytes: Option<u64>,
    /// Leave out paths matching these .gitignore patterns (relative to each
    /// input): `--exclude 'tree-sitter-*' 'libffi*'` keeps projects out of a
    /// base corpus so they stay unseen for measuring.
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// List every skipped file with its reason.
    #[arg(long)]
    pub verbose: bool,
}

/// The corpus the trainer reads by default (shipped with the project).
pub const DEFAULT_OUTPUT: &str = "training_data/repo_code.txt";

pub fn run(args: PrepareArgs) -> Result<(), String> {
    // Refuse before scanning, so a long scan is not wasted.
    refuse_overwrite(&args.output, args.force)?;
    let extensions = parse_extensions(&args.ext);
    if extensions.is_empty() && !args.ext.is_empty() {
        return Err(format!(
            "--ext {:?}: no extensions in it",
            args.ext.join(" ")
        ));
    }
    let opts = ScanOptions {
        roots: args.input.clone(),
        extensions,
        max_file_bytes: args.max_file_bytes,
        exclude: args.exclude.clone(),
    };
    // The output of an earlier run, inside a scanned folder, is not input.
    let output_real = std::fs::canonicalize(&args.output).ok();
    let is_output = |path: &Path| {
        output_real.is_some()
            && path.file_name() == args.output.file_name()
            && std::fs::canonicalize(path).ok() == output_real
    };
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    let mut kept: Vec<(String, String)> = Vec::new();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut skipped_lines = Vec::new();
    let mut seen = 0usize;
    let never = AtomicBool::new(false);
    scan_with_text(&opts, &never, &mut |file, text| {
        if is_output(&file.path) {
            return;
        }
        seen += 1;
        spinner.set_message(format!("{seen} files: {}", file.relative.display()));
        match (&file.status, text) {
            (FileStatus::Kept, Some(text)) => {
                kept.push((file.relative.to_string_lossy().into_owned(), text));
            }
            (FileStatus::Skipped(reason), _) => {
                *skipped.entry(reason.label()).or_default() += 1;
                skipped_lines.push(format!("  skipped {}: {reason:?}", file.path.display()));
            }
            (FileStatus::Kept, None) => {}
        }
    })?;
    spinner.finish_and_clear();
    if kept.is_empty() {
        return Err(format!(
            "no files kept under {} (wrong folder or extensions?)",
            show_paths(&args.input)
        ));
    }
    let bytes = write_atomically(&args.output, &kept)?;
    let lines: usize = kept.iter().map(|(_, t)| count_lines(t)).sum();
    if args.verbose {
        for line in &skipped_lines {
            println!("{line}");
        }
    }
    let skipped_total: usize = skipped.values().sum();
    let reasons: Vec<String> = skipped.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!(
        "kept {} files ({} lines), skipped {skipped_total}{}; wrote {bytes} bytes to {}",
        kept.len(),
        lines,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        args.output.display()
    );
    Ok(())
}

/// An existing output is replaced only when the user said so: the default
/// output is the shipped corpus, and silently replacing it (or any file
/// named by mistake) loses work.
fn refuse_overwrite(output: &Path, force: bool) -> Result<(), String> {
    match std::fs::metadata(output) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "{}: is a folder; --output needs a file name",
            output.display()
        )),
        Ok(meta) if !force => Err(format!(
            "{}: already exists ({} bytes); pass --force to replace it, or --output to write another file",
            output.display(),
            meta.len()
        )),
        _ => Ok(()),
    }
}

/// Writes to a temporary name then renames, so an interrupted run never
/// leaves a half-written corpus under the real name.
fn write_atomically(output: &Path, files: &[(String, String)]) -> Result<u64, String> {
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create folder: {e}", dir.display()))?;
    }
    let tmp = output.with_extension("txt.tmp");
    let fail = |e: std::io::Error| format!("{}: cannot write: {e}", tmp.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
    let bytes = write_consolidated(&mut out, files).map_err(fail)?;
    let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, output)
        .map_err(|e| format!("{}: cannot rename into place: {e}", output.display()))?;
    Ok(bytes)
}

fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
