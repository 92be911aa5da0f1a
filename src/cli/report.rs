//! `cllm report RUN`: writes `runs/<name>/report.md` and its PNG plots.

use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// The run: its name under --runs-dir, or its folder
    pub run: String,
    /// The folder the runs are in
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub runs_dir: PathBuf,
}

pub fn run(args: ReportArgs) -> Result<(), String> {
    let _dir = super::runs::run_dir(&args.runs_dir, &args.run)?;
    Err("not yet".into())
}
