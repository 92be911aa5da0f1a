//! Per-operation timing for the benchmark's profile. The model's passes
//! take an `Option<&mut Profile>` and wrap each operation in [`timed`]; with
//! `None` (every real run) nothing is measured. It lives in cllm-core rather
//! than in `cllm_train::bench` so the model never imports what benchmarks it.

/// Per-op time accumulated over calls, for the benchmark's profile: the
/// calling thread's CPU time (so other processes on a shared machine do not
/// inflate it). Pass `None` in normal use: timing is then skipped entirely.
pub type Profile = Vec<(&'static str, f64)>;

/// Seconds of CPU time the calling thread has used (wall-clock seconds
/// since an arbitrary start where the platform has no thread clock).
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds(Clock::Thread)
}

/// Seconds of CPU time all threads of the process have used (wall-clock
/// seconds since an arbitrary start where the platform has no process
/// clock).
pub fn process_cpu_seconds() -> f64 {
    cpu_seconds(Clock::Process)
}

/// Whose CPU time [`cpu_seconds`] reads.
#[derive(Clone, Copy)]
enum Clock {
    Thread,
    Process,
}

fn cpu_seconds(clock: Clock) -> f64 {
    #[cfg(unix)]
    {
        let id = match clock {
            Clock::Thread => libc::CLOCK_THREAD_CPUTIME_ID,
            Clock::Process => libc::CLOCK_PROCESS_CPUTIME_ID,
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the valid,
        // exclusively borrowed `ts`.
        if unsafe { libc::clock_gettime(id, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    #[cfg(not(unix))]
    let _ = clock;
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

/// Runs `f`, adding its thread CPU time to `name` when profiling.
pub(crate) fn timed<R>(
    profile: &mut Option<&mut Profile>,
    name: &'static str,
    f: impl FnOnce() -> R,
) -> R {
    match profile {
        None => f(),
        Some(p) => {
            let start = thread_cpu_seconds();
            let r = f();
            add_time(p, name, thread_cpu_seconds() - start);
            r
        }
    }
}

/// Adds `secs` to `name`'s entry in the profile (creating it).
pub fn add_time(profile: &mut Profile, name: &'static str, secs: f64) {
    match profile.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 += secs,
        None => profile.push((name, secs)),
    }
}

/// What one profiled operation must move and compute over a training step
/// (forward and backward together), counted from the model's shapes: the
/// floor under its measured time.
///
/// Counting rules (f32 = 4 bytes):
/// - `bytes`: every array a call reads plus every array it writes, each
///   once per call (an array both read and written counts twice). Scratch
///   tiles that stay in L1/L2 inside a call (attention's (T, T) tile, the
///   head's logits chunk) are not counted.
/// - `flops`: FMA-equivalent operations. A matrix product counts 2 per
///   multiply-add, as usual. An elementwise add, multiply, divide, min/max
///   or compare takes one vector FMA slot just as an FMA does, so it counts
///   2: then `flops / (measured FMA or matmul peak)` is the time if every
///   slot were busy. Elementwise counts are those of the kernels as written
///   (see the `*_OPS` constants), so a cheaper formula lowers the floor too.
/// - `call_bytes`: the distinct bytes the largest single call touches. It
///   picks the memory level whose bandwidth bounds the op: a call whose
///   arrays fit in L2 (or L3) is bounded by that cache's bandwidth,
///   assuming its inputs are still there (they were just written by the op
///   before, except in the backward pass, which reads activations the
///   forward wrote long before; for those the floor is optimistic).
/// - `in_matmul_kernel`: the FLOPs run in the precision's matrix kernel (the
///   linear layers and the tied head), so their peak is that kernel's (bf16:
///   `vdpbf16ps`, two multiply-adds a lane); every other op computes in f32
///   whatever the precision, so its peak is the f32 one.
#[derive(Clone, Debug, PartialEq)]
pub struct OpWork {
    pub name: &'static str,
    pub bytes: f64,
    pub flops: f64,
    pub call_bytes: f64,
    pub in_matmul_kernel: bool,
}

/// Elementwise slot counts per element, of the kernels as written.
pub mod ops_per_element {
    /// `fast_math::exp`: clamp 2, range reduction 6, degree-7 polynomial
    /// 14, exponent bits 2, scale 1.
    pub const EXP: f64 = 25.0;
    /// GELU forward: u = s (x + k x³) 4, tanh, 0.5 x (1 + t) 3.
    pub const GELU_FWD: f64 = 7.0 + TANH;
    /// GELU backward: u and tanh as forward, gelu' 10, times dout 1.
    pub const GELU_BWD: f64 = 15.0 + TANH;
    /// `fast_math::tanh`: see its documentation.
    pub const TANH: f64 = crate::ops::fast_math::TANH_OPS;
    /// LayerNorm forward: sum 1, variance 3, normalise and affine 4.
    pub const LAYERNORM_FWD: f64 = 8.0;
    /// LayerNorm backward: the two sums 6, dx 8, dw 2, db 1.
    pub const LAYERNORM_BWD: f64 = 17.0;
    /// Attention, per live (i, j <= i) score, besides the products: forward
    /// scale, max, exp, sum, normalise; backward exp from the lse (scale,
    /// subtract, exp) and the softmax backward (dot 2, dS 3).
    pub const ATTENTION_SCORE: f64 = 4.0 + EXP + 2.0 + EXP + 5.0;
    /// AdamW per parameter: moments 7, bias corrections 2, sqrt, add,
    /// divide, decay and step 5.
    pub const ADAMW: f64 = 17.0;
}

/// The profile's name for re-packing the weights in bf16 after each
/// update (wall time: it runs on rayon's threads).
pub const BF16_PACKING: &str = "bf16 weight packing (wall)";

/// The work of each operation the training step's profile names, for
/// `batch` sequences of `seq` tokens (forward and backward together).
pub fn op_work(cfg: &crate::ModelConfig, batch: usize, seq: usize) -> Vec<OpWork> {
    use ops_per_element as e;
    const F: f64 = 4.0;
    let n = (batch * seq) as f64;
    let c = cfg.n_embd as f64;
    let inner = cfg.n_inner as f64;
    let l = cfg.n_layer as f64;
    let v = cfg.vocab_size as f64;
    let heads = cfg.n_head as f64;
    let hs = c / heads;
    let t = seq as f64;
    let p = cfg.num_params() as f64;
    let nc = n * c;
    let mut ops = Vec::new();
    let mut push = |name: &'static str, bytes: f64, flops: f64, call_bytes: f64| {
        ops.push(OpWork {
            name,
            bytes,
            flops,
            call_bytes,
            in_matmul_kernel: name.starts_with("matmul ") || name.starts_with("head"),
        })
    };
    // LayerNorm: 2L + 1 calls each way. Forward reads x, writes out (and
    // n means and rstds); backward reads dout, x, the stats, and reads and
    // writes dx (added into the residual gradient).
    let ln_calls = 2.0 * l + 1.0;
    push(
        "layernorm",
        ln_calls * F * (2.0 * nc + 2.0 * n + 4.0 * nc + 2.0 * n + 2.0 * c),
        ln_calls * nc * 2.0 * (e::LAYERNORM_FWD + e::LAYERNORM_BWD),
        F * 3.0 * nc,
    );
    // A linear layer (n, i) -> (n, o): forward 2 n i o, backward dx and dW
    // 4 n i o. Bytes: x, W, out; then dout, x, W, dW (read and written), dx.
    let mut linear = |name, i: f64, o: f64| {
        let w = i * o;
        push(
            name,
            l * F * ((n * i + w + n * o) + (n * o + n * i + w + 2.0 * w + n * i)),
            l * 6.0 * n * i * o,
            F * (n * i + w + n * o),
        )
    };
    linear("matmul c_attn", c, 3.0 * c);
    linear("matmul attn.c_proj", c, c);
    linear("matmul mlp.c_fc", c, inner);
    linear("matmul mlp.c_proj", inner, c);
    // Attention over live scores only (j <= i: T (T + 1) / 2 per head and
    // sequence): forward Q Kᵀ and P V (4 hs each), backward recomputes
    // Q Kᵀ and forms dP, dV, dQ, dK (10 hs). Bytes: forward reads qkv and
    // writes out and lse; backward reads dout, qkv, lse and writes dqkv.
    let live = batch as f64 * heads * t * (t + 1.0) / 2.0;
    push(
        "attention",
        l * F * ((3.0 * nc + nc + n * heads) + (nc + 3.0 * nc + n * heads + 3.0 * nc)),
        l * live * (14.0 * hs + 2.0 * e::ATTENTION_SCORE),
        F * 7.0 * nc,
    );
    // GELU: forward reads fc, writes its output; backward reads dout and
    // fc, writes dfc.
    let ni = n * inner;
    push(
        "gelu",
        l * F * 5.0 * ni,
        l * ni * 2.0 * (e::GELU_FWD + e::GELU_BWD),
        F * 3.0 * ni,
    );
    // Residual adds (forward, two a layer): read two, write one.
    push(
        "residual",
        2.0 * l * F * 3.0 * nc,
        2.0 * l * nc * 2.0,
        F * 3.0 * nc,
    );
    // Embedding: forward reads the tokens' wte rows and wpe rows, writes
    // (n, C); backward reads dout and reads and writes the same rows of
    // dwte and dwpe.
    push(
        "embedding",
        F * ((2.0 * nc + nc) + (nc + 2.0 * nc + 2.0 * nc)),
        2.0 * (nc + 2.0 * nc),
        F * 5.0 * nc,
    );
    if cfg.dropout > 0.0 {
        // 2L + 1 masks drawn (read and write the branch, write the mask)
        // and applied backward (read the mask, read and write the gradient).
        let calls = 2.0 * l + 1.0;
        push(
            "dropout",
            calls * F * 6.0 * nc,
            calls * nc * 2.0 * 2.0,
            F * 3.0 * nc,
        );
    }
    // Tied head: logits x wteᵀ (2 n V C), dx and dwte (4 n V C), softmax and
    // cross-entropy on n V logits (exp and about 5 more per logit, twice:
    // max/sum pass and gradient pass). Bytes: x, wte, dx, dwte read and
    // written; a tile of logits stays in cache. Storing its exponentials
    // (the head's mode, as it will run) writes and reads back n V of them
    // (f32; the bf16 head's are half that); recomputing multiplies and
    // exponentiates the logits a second time instead.
    let (stored, recomputed) = match crate::ops::crossentropy::head_mode() {
        crate::ops::crossentropy::HeadMode::Store => (2.0 * F * n * v, 0.0),
        crate::ops::crossentropy::HeadMode::Recompute => {
            (0.0, 2.0 * n * v * c + n * v * 2.0 * e::EXP)
        }
    };
    push(
        "head+softmax+cross-entropy (fwd+bwd)",
        F * (nc + v * c + nc + 2.0 * v * c) + stored,
        6.0 * n * v * c + n * v * 2.0 * (e::EXP + 5.0) + recomputed,
        F * (2.0 * nc + 2.0 * v * c),
    );
    // AdamW reads parameters, gradients and both moments and writes
    // parameters and moments.
    push("adamw", F * 7.0 * p, p * 2.0 * e::ADAMW, F * 4.0 * p);
    // A bf16 step re-packs every matmul weight after the update: reads the
    // f32 master once and writes both bf16 layouts (2 bytes each). Only a
    // bf16 profile has this row.
    let weights = v * c + l * (4.0 * c * c + 2.0 * c * inner);
    push(BF16_PACKING, weights * (F + 2.0 * 2.0), 0.0, weights * F);
    push("zero gradients", F * p, 0.0, F * p);
    ops
}
