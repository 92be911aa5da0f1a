//! What keeps the ranks of a distributed run one run: the same data, the
//! same weights, the same plan, and stopping at the same step.

use super::Run;
use crate::cluster::{Cluster, params_checksum};
use crate::error::TrainError;
use crate::events::{Event, Summary};
use crate::plan::Plan;

/// Steps between the cross-rank checks of the weights (and at the end).
pub const CHECK_EVERY: u64 = 50;

impl Run {
    /// Stops the run with an error when any rank's weights differ from
    /// rank 0's (they get the same gradient and the same update, so they
    /// must be identical to the bit).
    pub(super) fn check_replicas(&self) -> Result<(), TrainError> {
        let sums = self
            .cluster
            .gather_u64(params_checksum(&self.learner.model.params));
        match ranks_unlike_rank_zero(&sums) {
            None => Ok(()),
            Some(ranks) => Err(TrainError::ReplicasDiffer {
                ranks,
                step: self.progress.state.step,
            }),
        }
    }

    /// After each step, every rank learns whether any rank was asked to stop
    /// and what rank 0 decided (early stop, the length a time budget fixed
    /// or changed), so all ranks leave the loop at the same step with the
    /// same schedule. One machine: `stop`.
    pub fn agree_to_stop(&mut self, stop: bool, emit: &mut dyn FnMut(Event)) -> bool {
        if !self.cluster.is_distributed() {
            return stop;
        }
        let writer = self.cluster.is_writer();
        let plan = self.progress.plan;
        let mut v = [0.0f64; 4];
        v[0] = f64::from(u8::from(stop));
        if writer {
            v[1] = f64::from(u8::from(self.measures.summary.stopped_early));
            if !plan.is_pending() {
                v[2] = plan.last_step as f64;
                v[3] = plan.horizon as f64;
            }
        }
        self.cluster.sum_f64(&mut v);
        if !writer {
            self.measures.summary.stopped_early = v[1] > 0.0;
            let heard = (v[2] as u64, v[3] as u64);
            if v[2] > 0.0 && heard != (plan.last_step, plan.horizon) {
                let taken = Plan {
                    last_step: heard.0,
                    horizon: heard.1,
                    ..plan
                };
                self.take_plan(taken, emit);
            }
        }
        v[0] > 0.0
    }

    /// The run stopped on `error`: the log's end line says why.
    pub fn log_failure(&mut self, error: &TrainError) {
        if let Some(log) = self.outputs.log.as_mut() {
            log.fail(&error.to_string());
        }
    }

    /// A rank other than 0 ends without saving: its summary is what it
    /// trained.
    pub(super) fn replica_summary(&self) -> Summary {
        let mut s = self.measures.summary.clone();
        s.steps = self.progress.state.step;
        s.sphere_sequences = self.spheres.sequences();
        s.total_secs = self.outputs.saver.started.elapsed().as_secs_f64();
        s.tokens_per_sec = self.measures.tokens_done as f64
            / self
                .measures
                .train_started
                .elapsed()
                .as_secs_f64()
                .max(1e-9);
        s
    }
}

/// Every rank must train on the same tokenizer and the same tokens: the
/// ranks compare a hash of them, and a rank that differs stops them all.
pub(super) fn check_same_data(
    cluster: &Cluster,
    tokenizer_json: &str,
    train: &[u32],
    val: &[u32],
) -> Result<(), TrainError> {
    if !cluster.is_distributed() {
        return Ok(());
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(tokenizer_json.as_bytes());
    for t in train.iter().chain(val) {
        eat(&t.to_le_bytes());
    }
    eat(&(train.len() as u64).to_le_bytes());
    match ranks_unlike_rank_zero(&cluster.gather_u64(h)) {
        None => Ok(()),
        Some(ranks) => Err(TrainError::RanksDataDiffer { ranks }),
    }
}

/// The ranks whose value differs from rank 0's ("1, 3"), if any.
fn ranks_unlike_rank_zero(values: &[u64]) -> Option<String> {
    let differ: Vec<String> = (0..values.len())
        .filter(|&r| values[r] != values[0])
        .map(|r| r.to_string())
        .collect();
    (!differ.is_empty()).then(|| differ.join(", "))
}
