//! `cllm runs [--runs-dir D] [--json] [--csv RUN...]`: the runs under the
//! runs folder as a table (or JSON), or the named runs' metrics as CSV.

use cllm_runs::csv::{CSV_HEADER, csv_rows};
use cllm_runs::table::{format_table, rows};
use cllm_runs::{load_run, load_runs};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(clap::Args, Debug, Clone)]
#[command(
    override_usage = "cllm runs [--runs-dir DIR] [--json]\n       cllm runs --csv RUN...",
    after_help = "Status: running (the log grows and has no end line), finished, stopped \
                  (before its last step; resumable), failed (an error, or the log ends \
                  without an end line). Damaged log lines are skipped and counted."
)]
pub struct RunsArgs {
    /// The folder the runs are in
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Print a JSON array instead of the table
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print these runs' metrics as CSV (one row per step; names or folders)
    #[arg(long, value_name = "RUN", num_args = 1..)]
    pub csv: Vec<String>,
}

/// A run named on the command line: a folder, or a name under the runs folder.
pub fn run_dir(runs_dir: &Path, run: &str) -> Result<PathBuf, String> {
    let as_path = PathBuf::from(run);
    let dir = if as_path.join("metrics.jsonl").is_file() {
        as_path
    } else {
        runs_dir.join(run)
    };
    if dir.join("metrics.jsonl").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "no run '{run}': {} has no metrics.jsonl (see `cllm runs --runs-dir {}`)",
            dir.display(),
            runs_dir.display()
        ))
    }
}

/// Prints `text`; a closed pipe (`cllm runs --csv R | head`) is not an
/// error.
fn print_all(text: &str) -> Result<(), String> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

pub fn run(args: RunsArgs) -> Result<(), String> {
    if !args.csv.is_empty() {
        let mut out = format!("{CSV_HEADER}\n");
        for name in &args.csv {
            let dir = run_dir(&args.runs_dir, name)?;
            let data = load_run(&dir).map_err(|e| e.to_string())?;
            out.push_str(&csv_rows(&data));
        }
        return print_all(&out);
    }
    if !args.runs_dir.is_dir() {
        return Err(format!(
            "no runs folder {} (training writes runs/<name>/metrics.jsonl)",
            args.runs_dir.display()
        ));
    }
    let rows = rows(&load_runs(&args.runs_dir), SystemTime::now());
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        print_all(&(text + "\n"))
    } else if rows.is_empty() {
        print_all(&format!("no runs in {}\n", args.runs_dir.display()))
    } else {
        print_all(&format_table(&rows))
    }
}
