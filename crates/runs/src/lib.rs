//! Runs read back: every training run writes `runs/<name>/config.json` and
//! `runs/<name>/metrics.jsonl` (`train::runlog`); this module lists them,
//! parses their logs tolerantly (a damaged line is skipped and counted),
//! follows a log that is still growing, and exports and reports them. The
//! app's Runs tab, `cllm runs` and `cllm report` are front ends over it.

pub mod csv;
pub mod diff;
pub mod follow;
pub mod record;
pub mod report;
pub mod run;
pub mod scan;
pub mod table;

pub use run::{RunData, RunReader, Status, load_run};
pub use scan::{RunsWatch, RunsWatcher, load_runs};
