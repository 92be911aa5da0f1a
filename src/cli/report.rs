//! `cllm report RUN`: writes `runs/<name>/report.md` and its PNG plots
//! (`runs/<name>/figures/`): see [`cllm_runs::report`].

use cllm_runs::report::{ReportOptions, write_report};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The run: its name under --runs-dir, or its folder
    pub run: String,
    /// The folder the runs are in
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Function openings of the validation split for the syntax accuracy
    /// (as `cllm eval-gen --functions`)
    #[arg(long, default_value_t = 40)]
    pub functions: usize,
    /// Completions per opening
    #[arg(long, default_value_t = 2)]
    pub samples: usize,
    /// Leave out the model section (no checkpoint is loaded)
    #[arg(long)]
    pub no_model: bool,
}

pub fn run(args: ReportArgs) -> Result<(), String> {
    let dir = super::runs::run_dir(&args.runs_dir, &args.run)?;
    let opts = ReportOptions {
        model: !args.no_model,
        functions: args.functions,
        samples: args.samples.max(1),
    };
    let out = write_report(&dir, &opts).map_err(|e| e.to_string())?;
    println!("wrote {}", out.path.display());
    for f in &out.figures {
        println!("  {}", f.display());
    }
    Ok(())
}
