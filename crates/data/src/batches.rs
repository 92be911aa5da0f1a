//! Batches for training: windows of `seq_len + 1` tokens taken with stride
//! `seq_len` over a dataset, visited in an order shuffled per epoch from
//! (seed, epoch), with a position that can be saved and restored exactly.
//! With fill-in-the-middle on, a share of the windows is rearranged
//! ([`crate::fim`]), each choice drawn from (seed, epoch, index), so a
//! resumed run sees the same sequences.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dataset::TokenDataset;
use crate::error::DataError;
use crate::fim::FimTraining;
use cllm_core::rng::Rng;

/// Where a batcher is: the next window handed out is window `index` of the
/// shuffled order of `epoch`. Stored in checkpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BatchPosition {
    pub epoch: u64,
    pub index: u64,
}

#[derive(Clone, Debug)]
pub struct Batcher {
    tokens: Arc<[u32]>,
    seq_len: usize,
    seed: u64,
    /// Window numbers in this epoch's order; window w starts at w * seq_len.
    order: Vec<u32>,
    position: BatchPosition,
    fim: Option<FimTraining>,
    /// One window's `seq_len + 1` tokens, rearranged for FIM.
    window: Vec<u32>,
}

/// The stream of the per-window FIM choices in [`Rng::derive`].
const FIM_STREAM: u64 = 0x46_49_4D;

impl Batcher {
    /// Errors if the data holds fewer than `seq_len + 1` tokens.
    pub fn new(data: &TokenDataset, seq_len: usize, seed: u64) -> Result<Batcher, DataError> {
        if seq_len == 0 {
            return Err(DataError::ZeroSequenceLength);
        }
        if data.tokens.len() < seq_len + 1 {
            return Err(DataError::TooLittleData {
                tokens: data.tokens.len(),
                seq_len,
            });
        }
        let windows = (data.tokens.len() - 1) / seq_len;
        if windows > u32::MAX as usize {
            return Err(DataError::TooManyWindows { windows });
        }
        let mut batcher = Batcher {
            tokens: data.tokens.as_slice().into(),
            seq_len,
            seed,
            order: Vec::new(),
            position: BatchPosition::default(),
            fim: None,
            window: Vec::new(),
        };
        batcher.shuffle_for(0);
        Ok(batcher)
    }

    /// Rearranges windows for fill-in-the-middle training (`None`: all
    /// left to right).
    pub fn with_fim(mut self, fim: Option<FimTraining>) -> Batcher {
        self.fim = fim;
        self
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn windows_per_epoch(&self) -> usize {
        (self.tokens.len() - 1) / self.seq_len
    }

    pub fn position(&self) -> BatchPosition {
        self.position
    }

    /// Restores a saved position; an index past the end of an epoch carries
    /// into the following epochs.
    pub fn set_position(&mut self, p: BatchPosition) {
        let per_epoch = self.windows_per_epoch() as u64;
        let epoch = p.epoch + p.index / per_epoch;
        if epoch != self.position.epoch {
            self.shuffle_for(epoch);
        }
        self.position = BatchPosition {
            epoch,
            index: p.index % per_epoch,
        };
    }

    /// Fills one sequence (`inputs` and `targets` both `seq_len` long) and
    /// advances; rolls into the next epoch (reshuffled) at the end.
    pub fn next_into(&mut self, inputs: &mut [u32], targets: &mut [u32]) {
        assert_eq!(
            inputs.len(),
            self.seq_len,
            "inputs must hold seq_len tokens"
        );
        assert_eq!(
            targets.len(),
            self.seq_len,
            "targets must hold seq_len tokens"
        );
        let window = self.order[self.position.index as usize] as usize;
        let start = window * self.seq_len;
        let tokens = &self.tokens[start..start + self.seq_len + 1];
        if let Some(fim) = &self.fim {
            let p = self.position;
            let mut rng = Rng::derive(self.seed, &[FIM_STREAM, p.epoch, p.index]);
            self.window.clear();
            self.window.extend_from_slice(tokens);
            fim.apply(&mut self.window, &mut rng);
            inputs.copy_from_slice(&self.window[..self.seq_len]);
            targets.copy_from_slice(&self.window[1..]);
        } else {
            inputs.copy_from_slice(&tokens[..self.seq_len]);
            targets.copy_from_slice(&tokens[1..]);
        }
        self.position.index += 1;
        if self.position.index as usize == self.order.len() {
            let next = self.position.epoch + 1;
            self.shuffle_for(next);
            self.position = BatchPosition {
                epoch: next,
                index: 0,
            };
        }
    }

    /// Fills `inputs.len() / seq_len` sequences back to back, `(B, T)`.
    pub fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) {
        assert_eq!(
            inputs.len(),
            targets.len(),
            "inputs and targets differ in size"
        );
        assert_eq!(
            inputs.len() % self.seq_len,
            0,
            "batch is not a whole number of sequences"
        );
        let t = self.seq_len;
        for (inp, tgt) in inputs.chunks_mut(t).zip(targets.chunks_mut(t)) {
            self.next_into(inp, tgt);
        }
    }

    fn shuffle_for(&mut self, epoch: u64) {
        self.order = (0..self.windows_per_epoch() as u32).collect();
        Rng::derive(self.seed, &[epoch]).shuffle(&mut self.order);
    }
}
