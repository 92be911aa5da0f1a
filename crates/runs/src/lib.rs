//! Runs read back: every training run writes `runs/<name>/config.json` and
//! `runs/<name>/metrics.jsonl` (`train::runlog`); this crate lists them,
//! parses their logs tolerantly (a damaged line is skipped and counted),
//! follows a log that is still growing, and exports and reports them. The
//! app's Runs tab, `cllm runs` and `cllm report` are front ends over it.
//!
//! - [`follow`]: a growing log read by offset; [`record`]: one of its lines.
//! - [`run`]: a run's folder read back ([`RunData`], [`RunReader`]).
//! - [`scan`]: every run under a folder, watched on a thread.
//! - [`table`], [`csv`], [`diff`]: the runs as a table, CSV, differing settings.
//! - [`report`]: `report.md` with its figures.
//! - [`error`]: what keeps a run from being read or reported ([`RunsError`]).

pub mod csv;
pub mod diff;
pub mod error;
pub mod follow;
pub mod record;
pub mod report;
pub mod run;
pub mod scan;
pub mod table;

pub use error::RunsError;
pub use run::{RunData, RunReader, Status, load_run};
pub use scan::{RunsWatch, RunsWatcher, load_runs};
