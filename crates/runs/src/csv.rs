//! A run's metrics as CSV (`cllm runs --csv`): one row per step, with the
//! validation figures on the rows of the steps that were evaluated.

use super::run::RunData;
use std::fmt::Write;

pub const CSV_HEADER: &str = "run,step,epoch,tokens,elapsed_secs,loss,lr,grad_norm,tokens_per_sec,val_loss,val_bits_per_byte,syntax_accuracy";

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn quoted(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The rows of one run (no header line).
pub fn csv_rows(run: &RunData) -> String {
    let mut out = String::new();
    for s in &run.steps {
        let eval = run.evals.iter().rev().find(|e| e.step == s.step);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            quoted(&run.name),
            s.step,
            s.epoch,
            run.tokens_at(s).map(|t| t.to_string()).unwrap_or_default(),
            num(s.elapsed_secs),
            num(s.loss),
            num(s.lr),
            num(s.grad_norm),
            num(s.tokens_per_sec),
            eval.map(|e| num(e.loss)).unwrap_or_default(),
            eval.map(|e| num(e.bits_per_byte)).unwrap_or_default(),
            eval.and_then(|e| e.syntax_accuracy)
                .map(num)
                .unwrap_or_default(),
        );
    }
    out
}
