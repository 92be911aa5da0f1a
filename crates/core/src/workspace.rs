//! A worker's scratch memory for the model: every activation the forward
//! pass keeps for the backward, their gradients, the attention tiles and the
//! head's logits tile, sized once and reused from step to step. One size
//! table serves both the allocation and the memory estimate
//! ([`Workspace::bytes_for`]), so the two never disagree.

use super::ModelConfig;
use super::ops::{attention, crossentropy};

/// Per-worker scratch memory (activations and their gradients) for up to
/// `max_batch x max_seq` tokens, reused from step to step: a training step
/// allocates nothing. Buffers sized "(N, ·)" hold N = max_batch · max_seq
/// rows; a smaller batch uses their beginning, packed as (B, T, ·).
pub struct Workspace {
    pub max_batch: usize,
    pub max_seq: usize,
    /// The config the buffers were sized for (checked on every call).
    pub(super) config: ModelConfig,
    /// Rows of logits the head holds at once.
    pub(super) head_chunk: usize,
    // ---- forward activations, kept for the backward pass
    /// (2L + 1, N, C): x_0, mid_0, x_1, mid_1, ..., x_L.
    pub(super) residual: Vec<f32>,
    /// (L, N, C) ln_1 output, (L, N) its mean and 1/std.
    pub(super) ln1: Vec<f32>,
    pub(super) ln1_mean: Vec<f32>,
    pub(super) ln1_rstd: Vec<f32>,
    /// (L, N, 3C) queries, keys, values.
    pub(super) qkv: Vec<f32>,
    /// (L, N, C) attention output before c_proj.
    pub(super) attn: Vec<f32>,
    /// (L, B, H, T) softmax log-sum-exp per attention row.
    pub(super) attn_lse: Vec<f32>,
    /// (L, N, C) ln_2 output, (L, N) its statistics.
    pub(super) ln2: Vec<f32>,
    pub(super) ln2_mean: Vec<f32>,
    pub(super) ln2_rstd: Vec<f32>,
    /// (L, N, I) MLP pre-activation and GELU output.
    pub(super) fc: Vec<f32>,
    pub(super) fc_gelu: Vec<f32>,
    /// (N, C) ln_f output, (N) its statistics.
    pub(super) lnf: Vec<f32>,
    pub(super) lnf_mean: Vec<f32>,
    pub(super) lnf_rstd: Vec<f32>,
    /// Dropout masks (0 or 1/(1-p)); empty when the config's dropout is 0.
    /// (N, C) embeddings; (L, N, C) attention and MLP outputs.
    pub(super) emb_mask: Vec<f32>,
    pub(super) attn_mask: Vec<f32>,
    pub(super) mlp_mask: Vec<f32>,
    // ---- scratch and gradients of activations
    /// (N, C) a branch's projection output (forward) or its gradient (backward).
    pub(super) branch: Vec<f32>,
    /// (N, C) gradient of the residual stream.
    pub(super) d_residual: Vec<f32>,
    /// (N, C) gradient of a LayerNorm output.
    pub(super) d_ln: Vec<f32>,
    /// (N, C) gradient of the attention output.
    pub(super) d_attn: Vec<f32>,
    /// (N, 3C) gradient of qkv.
    pub(super) d_qkv: Vec<f32>,
    /// (N, I) gradients of the GELU output and of the MLP pre-activation.
    pub(super) d_gelu: Vec<f32>,
    pub(super) d_fc: Vec<f32>,
    /// (2, T, T) attention tiles.
    pub(super) attn_scratch: Vec<f32>,
    /// (chunk, V) logits tile of the head.
    pub(super) logits: Vec<f32>,
    /// Whether the last forward pass drew dropout masks.
    pub(super) masks_live: bool,
}

impl Workspace {
    pub fn new(cfg: &ModelConfig, max_batch: usize, max_seq: usize) -> Workspace {
        Self::with_head_chunk(cfg, max_batch, max_seq, crossentropy::DEFAULT_CHUNK_ROWS)
    }

    /// As [`Workspace::new`] with a chosen number of logits rows per head
    /// chunk (memory `chunk x V` floats; used by the benchmark to compare).
    pub fn with_head_chunk(
        cfg: &ModelConfig,
        max_batch: usize,
        max_seq: usize,
        head_chunk: usize,
    ) -> Workspace {
        let s = Sizes::of(cfg, max_batch, max_seq, head_chunk)
            .unwrap_or_else(|| panic!("workspace for {max_batch} x {max_seq} tokens overflows"));
        let zeros = |len: usize| vec![0.0f32; len];
        Workspace {
            max_batch: s.max_batch,
            max_seq: s.max_seq,
            config: cfg.clone(),
            head_chunk: s.head_chunk,
            residual: zeros(s.residual),
            ln1: zeros(s.ln1),
            ln1_mean: zeros(s.ln1_mean),
            ln1_rstd: zeros(s.ln1_rstd),
            qkv: zeros(s.qkv),
            attn: zeros(s.attn),
            attn_lse: zeros(s.attn_lse),
            ln2: zeros(s.ln2),
            ln2_mean: zeros(s.ln2_mean),
            ln2_rstd: zeros(s.ln2_rstd),
            fc: zeros(s.fc),
            fc_gelu: zeros(s.fc_gelu),
            lnf: zeros(s.lnf),
            lnf_mean: zeros(s.lnf_mean),
            lnf_rstd: zeros(s.lnf_rstd),
            emb_mask: zeros(s.emb_mask),
            attn_mask: zeros(s.attn_mask),
            mlp_mask: zeros(s.mlp_mask),
            branch: zeros(s.branch),
            d_residual: zeros(s.d_residual),
            d_ln: zeros(s.d_ln),
            d_attn: zeros(s.d_attn),
            d_qkv: zeros(s.d_qkv),
            d_gelu: zeros(s.d_gelu),
            d_fc: zeros(s.d_fc),
            attn_scratch: zeros(s.attn_scratch),
            logits: zeros(s.logits),
            masks_live: false,
        }
    }

    /// Bytes [`Workspace::new`] would allocate for `batch x seq` tokens,
    /// without allocating: the same size table, summed. Saturates at
    /// `u64::MAX` for shapes whose sizes overflow.
    pub fn bytes_for(config: &ModelConfig, batch: usize, seq: usize) -> u64 {
        Sizes::of(config, batch, seq, crossentropy::DEFAULT_CHUNK_ROWS)
            .and_then(|s| s.total_floats())
            .map_or(u64::MAX, |floats| {
                (floats as u64).saturating_mul(std::mem::size_of::<f32>() as u64)
            })
    }

    /// Bytes held by the buffers' contents (their lengths, as allocated).
    pub fn allocated_bytes(&self) -> u64 {
        self.buffers()
            .iter()
            .map(|b| (b.len() * std::mem::size_of::<f32>()) as u64)
            .sum()
    }

    fn buffers(&self) -> [&Vec<f32>; 27] {
        [
            &self.residual,
            &self.ln1,
            &self.ln1_mean,
            &self.ln1_rstd,
            &self.qkv,
            &self.attn,
            &self.attn_lse,
            &self.ln2,
            &self.ln2_mean,
            &self.ln2_rstd,
            &self.fc,
            &self.fc_gelu,
            &self.lnf,
            &self.lnf_mean,
            &self.lnf_rstd,
            &self.emb_mask,
            &self.attn_mask,
            &self.mlp_mask,
            &self.branch,
            &self.d_residual,
            &self.d_ln,
            &self.d_attn,
            &self.d_qkv,
            &self.d_gelu,
            &self.d_fc,
            &self.attn_scratch,
            &self.logits,
        ]
    }

    /// Bytes of memory the workspace holds (capacities).
    pub fn bytes(&self) -> usize {
        self.buffers()
            .iter()
            .map(|b| b.capacity() * std::mem::size_of::<f32>())
            .sum()
    }
}

/// The length in floats of every buffer a [`Workspace`] holds, for
/// `max_batch x max_seq` tokens: the one table both [`Workspace::new`] and
/// [`Workspace::bytes_for`] read. `None` when a size overflows `usize`.
struct Sizes {
    max_batch: usize,
    max_seq: usize,
    head_chunk: usize,
    residual: usize,
    ln1: usize,
    ln1_mean: usize,
    ln1_rstd: usize,
    qkv: usize,
    attn: usize,
    attn_lse: usize,
    ln2: usize,
    ln2_mean: usize,
    ln2_rstd: usize,
    fc: usize,
    fc_gelu: usize,
    lnf: usize,
    lnf_mean: usize,
    lnf_rstd: usize,
    emb_mask: usize,
    attn_mask: usize,
    mlp_mask: usize,
    branch: usize,
    d_residual: usize,
    d_ln: usize,
    d_attn: usize,
    d_qkv: usize,
    d_gelu: usize,
    d_fc: usize,
    attn_scratch: usize,
    logits: usize,
}

/// The product of `factors`, or `None` on overflow.
fn product(factors: &[usize]) -> Option<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
}

impl Sizes {
    fn of(cfg: &ModelConfig, max_batch: usize, max_seq: usize, head_chunk: usize) -> Option<Sizes> {
        let max_batch = max_batch.max(1);
        let max_seq = max_seq.clamp(1, cfg.n_ctx.max(1));
        let n = product(&[max_batch, max_seq])?;
        let (c, l, inner) = (cfg.n_embd, cfg.n_layer, cfg.n_inner);
        let head_chunk = head_chunk.clamp(1, n);
        let masks = cfg.dropout > 0.0;
        let lnc = product(&[l, n, c])?;
        let ln = product(&[l, n])?;
        let nc = product(&[n, c])?;
        let mask = |len: usize| if masks { len } else { 0 };
        // The attention op says how much scratch it needs (at most two
        // (T, T) tiles); check that size cannot overflow before asking.
        product(&[2, max_seq, max_seq])?;
        let attn_scratch =
            attention::backward_scratch_len(max_seq).max(attention::forward_scratch_len(max_seq));
        Some(Sizes {
            max_batch,
            max_seq,
            head_chunk,
            residual: product(&[l.checked_mul(2)?.checked_add(1)?, n, c])?,
            ln1: lnc,
            ln1_mean: ln,
            ln1_rstd: ln,
            qkv: product(&[l, n, 3, c])?,
            attn: lnc,
            attn_lse: product(&[l, n, cfg.n_head])?,
            ln2: lnc,
            ln2_mean: ln,
            ln2_rstd: ln,
            fc: product(&[l, n, inner])?,
            fc_gelu: product(&[l, n, inner])?,
            lnf: nc,
            lnf_mean: n,
            lnf_rstd: n,
            emb_mask: mask(nc),
            attn_mask: mask(lnc),
            mlp_mask: mask(lnc),
            branch: nc,
            d_residual: nc,
            d_ln: nc,
            d_attn: nc,
            d_qkv: product(&[n, 3, c])?,
            d_gelu: product(&[n, inner])?,
            d_fc: product(&[n, inner])?,
            attn_scratch,
            logits: product(&[head_chunk, cfg.vocab_size])
                .map(|_| crossentropy::scratch_len(head_chunk, cfg.vocab_size))?,
        })
    }

    fn total_floats(&self) -> Option<usize> {
        [
            self.residual,
            self.ln1,
            self.ln1_mean,
            self.ln1_rstd,
            self.qkv,
            self.attn,
            self.attn_lse,
            self.ln2,
            self.ln2_mean,
            self.ln2_rstd,
            self.fc,
            self.fc_gelu,
            self.lnf,
            self.lnf_mean,
            self.lnf_rstd,
            self.emb_mask,
            self.attn_mask,
            self.mlp_mask,
            self.branch,
            self.d_residual,
            self.d_ln,
            self.d_attn,
            self.d_qkv,
            self.d_gelu,
            self.d_fc,
            self.attn_scratch,
            self.logits,
        ]
        .iter()
        .try_fold(0usize, |acc, &len| acc.checked_add(len))
    }
}
