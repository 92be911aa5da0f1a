//! One line of a run's `metrics.jsonl`, read back tolerantly: every field
//! has a default (version 1 lines lack most of the newer ones), a `null`
//! where a number belongs is NaN (serde_json writes a non-finite float as
//! `null`), and a line that is not JSON is reported, not fatal.

use serde::{Deserialize, Deserializer};

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Header {
    pub version: u32,
    pub run: String,
    pub started_unix: f64,
    pub program_version: String,
    pub preset: String,
    pub threads: usize,
    /// MPI ranks (0 in logs written before ranks existed: one machine).
    pub ranks: usize,
    pub data: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Resume {
    pub step: u64,
    pub started_unix: Option<f64>,
    pub threads: Option<usize>,
}

/// The `info` line: what the run trains.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Info {
    pub files: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub vocab_size: usize,
    pub params: usize,
    pub threads: usize,
    pub total_steps: u64,
    pub first_step: u64,
    pub workspace_bytes: u64,
    pub time: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Step {
    pub epoch: usize,
    pub epochs: usize,
    pub step: u64,
    pub total_steps: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    pub clipped: bool,
    #[serde(deserialize_with = "nan_if_null")]
    pub tokens_per_sec: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub elapsed_secs: f64,
    /// Version 2; a version 1 reader fills it from the config.
    pub tokens: Option<u64>,
    pub time: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Eval {
    pub epoch: usize,
    pub step: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub perplexity: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub bits_per_byte: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    pub loss_with_memory: Option<f64>,
    pub bits_per_byte_with_memory: Option<f64>,
    pub syntax_accuracy: Option<f64>,
    pub closed_rate: Option<f64>,
    pub time: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Sphere {
    pub id: usize,
    pub sequences: u64,
    /// Mean busy share over the session's steps, 0..1.
    #[serde(deserialize_with = "nan_if_null")]
    pub busy: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub avg_loss: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spheres {
    pub step: u64,
    pub time: Option<f64>,
    pub spheres: Vec<Sphere>,
}

/// The trainer's summary as the `end` line carries it (the fields a reader
/// uses; see `train::events::Summary`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndSummary {
    pub steps: u64,
    pub epochs_done: usize,
    pub total_secs: f64,
    pub epoch_secs: Vec<f64>,
    pub secs_per_sequence: f64,
    pub tokens_per_sec: f64,
    pub initial_loss: Option<f64>,
    pub final_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub best_bits_per_byte: Option<f64>,
    pub sphere_sequences: Vec<u64>,
    pub load_imbalance: f64,
    pub peak_memory_bytes: u64,
    pub skipped_updates: u64,
    pub stopped_early: bool,
    pub final_model: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct End {
    pub status: String,
    pub reason: String,
    pub step: u64,
    pub time: Option<f64>,
    pub summary: Option<EndSummary>,
    pub spheres: Vec<Sphere>,
}

/// A parsed line.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Header(Header),
    Resume(Resume),
    Info(Info),
    Step(Step),
    Eval(Eval),
    Spheres(Spheres),
    End(End),
}

/// What one line turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Record(Box<Record>),
    /// Valid JSON of a kind this version does not know (a newer writer):
    /// skipped, not damage.
    Unknown,
    /// Not a log line: truncated, overwritten or not JSON; what is wrong.
    Damaged(String),
}

pub fn parse_line(line: &str) -> Parsed {
    let line = line.trim();
    if line.is_empty() {
        return Parsed::Unknown;
    }
    match serde_json::from_str::<Record>(line) {
        Ok(r) => Parsed::Record(Box::new(r)),
        Err(e) => match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.get("kind").is_some_and(|k| k.is_string()) && known(&v) => Parsed::Damaged(
                format!("a line of kind {} that does not read ({e})", v["kind"]),
            ),
            Ok(v) if v.get("kind").is_some_and(|k| k.is_string()) => Parsed::Unknown,
            Ok(_) => Parsed::Damaged("JSON without a \"kind\"".into()),
            Err(e) => Parsed::Damaged(format!("not JSON ({e})")),
        },
    }
}

/// A known kind that failed to parse has a field of the wrong type: damage.
fn known(v: &serde_json::Value) -> bool {
    matches!(
        v["kind"].as_str(),
        Some("header" | "resume" | "info" | "step" | "eval" | "spheres" | "end")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_old_new_and_damaged() {
        assert!(matches!(
            parse_line(r#"{"kind":"step","step":3,"loss":null,"lr":0.1}"#),
            Parsed::Record(r) if matches!(*r, Record::Step(ref s) if s.step == 3 && s.loss.is_nan())
        ));
        assert!(matches!(
            parse_line(r#"{"kind":"step","step":3,"lo"#),
            Parsed::Damaged(why) if why.starts_with("not JSON")
        ));
        assert!(matches!(parse_line("garbage"), Parsed::Damaged(_)));
        assert!(matches!(
            parse_line(r#"{"kind":"step","step":"x"}"#),
            Parsed::Damaged(why) if why.contains("kind \"step\"")
        ));
        assert!(matches!(
            parse_line(r#"{"kind":"future","x":1}"#),
            Parsed::Unknown
        ));
    }
}
