//! The model's own f32 product shapes through the kernel `cllm` runs
//! (the `gemm` crate, or the AVX-512 `matmul_tn` for the head's dwte) and
//! through the system's OpenBLAS (`cblas_sgemm`, loaded at run time, so a
//! build or a machine without it still works), one thread each, with
//! each one's share of the multiply-add instruction's register peak.

use cllm_core::ModelConfig;
use cllm_core::ops::crossentropy::VOCAB_TILE;
use cllm_core::ops::matmul::{MatMut, MatRef, matmul};
use cllm_core::ops::matmul_tn::matmul_tn_acc;
use cllm_core::profile::thread_cpu_seconds;
use cllm_core::rng::Rng;

/// How the product reads its operands: out (m, n) = A · B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A (m, k), B (k, n): a linear layer's forward, the head's dx.
    Plain,
    /// A (m, k), B stored (n, k): the head's logits (x · wteᵀ).
    BTransposed,
    /// A stored (k, m), B (k, n), accumulated: the head's dwte
    /// (dlogitsᵀ · x).
    ATransposed,
}

/// One product shape of the model.
#[derive(Clone, Debug)]
pub struct ProductShape {
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub layout: Layout,
}

impl ProductShape {
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

/// The products of a training step on `rows` tokens: the linear layers'
/// forwards and the head's three tile products (a chunk of `chunk` rows
/// against one vocabulary tile).
pub fn model_shapes(cfg: &ModelConfig, rows: usize, chunk: usize) -> Vec<ProductShape> {
    let (c, inner) = (cfg.n_embd, cfg.n_inner);
    let tile = VOCAB_TILE.min(cfg.vocab_size);
    let chunk = chunk.min(rows);
    let shape = |name: &str, m, k, n, layout| ProductShape {
        name: name.to_string(),
        m,
        k,
        n,
        layout,
    };
    vec![
        shape("c_attn forward", rows, c, 3 * c, Layout::Plain),
        shape("attn.c_proj forward", rows, c, c, Layout::Plain),
        shape("mlp.c_fc forward", rows, c, inner, Layout::Plain),
        shape("mlp.c_proj forward", rows, inner, c, Layout::Plain),
        shape("head logits tile", chunk, c, tile, Layout::BTransposed),
        shape("head dx tile", chunk, tile, c, Layout::Plain),
        shape("head dwte tile", tile, chunk, c, Layout::ATransposed),
    ]
}

/// `cblas_sgemm` from the system's OpenBLAS, opened at run time.
pub struct Blas {
    sgemm: CblasSgemm,
    /// The library's name, as opened.
    pub library: &'static str,
}

type CblasSgemm = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    f32,
    *const f32,
    i32,
    *const f32,
    i32,
    f32,
    *mut f32,
    i32,
);

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

/// The libraries tried, in order (Debian's `libopenblas0` provides the
/// first).
const LIBRARIES: [&str; 2] = ["libopenblas.so.0", "libopenblas.so"];

impl Blas {
    /// Opens OpenBLAS and sets it to one thread; why not where it cannot.
    pub fn load() -> Result<Blas, String> {
        #[cfg(unix)]
        for library in LIBRARIES {
            let name = std::ffi::CString::new(library).expect("no NUL in a library name");
            // SAFETY: dlopen with a NUL-terminated name; the handle is kept
            // open for the process's life (never closed), so the symbols
            // stay valid.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                continue;
            }
            // SAFETY: dlsym on a live handle with NUL-terminated names.
            let (sgemm, threads) = unsafe {
                (
                    libc::dlsym(handle, c"cblas_sgemm".as_ptr()),
                    libc::dlsym(handle, c"openblas_set_num_threads".as_ptr()),
                )
            };
            if sgemm.is_null() {
                return Err(format!("{library} has no cblas_sgemm"));
            }
            if !threads.is_null() {
                // SAFETY: OpenBLAS's `void openblas_set_num_threads(int)`.
                unsafe {
                    let set: unsafe extern "C" fn(i32) = std::mem::transmute(threads);
                    set(1);
                }
            }
            // SAFETY: cblas_sgemm has the CBLAS signature of `CblasSgemm`
            // (32-bit integers: Debian's OpenBLAS is not the ILP64 build).
            let sgemm = unsafe { std::mem::transmute::<*mut libc::c_void, CblasSgemm>(sgemm) };
            return Ok(Blas { sgemm, library });
        }
        Err(format!(
            "no OpenBLAS found ({}; Debian: apt install libopenblas0)",
            LIBRARIES.join(", ")
        ))
    }

    /// `out = A · B` (or `+=` for [`Layout::ATransposed`]) in `shape`.
    pub fn product(&self, out: &mut [f32], a: &[f32], b: &[f32], s: &ProductShape) {
        let (m, k, n) = (s.m, s.k, s.n);
        assert!(out.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
        let (ta, lda, tb, ldb, beta) = match s.layout {
            Layout::Plain => (NO_TRANS, k, NO_TRANS, n, 0.0),
            Layout::BTransposed => (NO_TRANS, k, TRANS, k, 0.0),
            Layout::ATransposed => (TRANS, m, NO_TRANS, n, 1.0),
        };
        let int = |v: usize| i32::try_from(v).expect("a product side fits in 32 bits");
        // SAFETY: the slices hold the (m, k), (k, n) and (m, n) operands
        // (checked above) in the row-major layouts the arguments describe.
        unsafe {
            (self.sgemm)(
                ROW_MAJOR,
                ta,
                tb,
                int(m),
                int(n),
                int(k),
                1.0,
                a.as_ptr(),
                int(lda),
                b.as_ptr(),
                int(ldb),
                beta,
                out.as_mut_ptr(),
                int(n),
            )
        }
    }
}

/// `out = A · B` (or `+=`) in `shape` as the model runs it.
pub fn model_product(out: &mut [f32], a: &[f32], b: &[f32], s: &ProductShape) {
    let (m, k, n) = (s.m, s.k, s.n);
    match s.layout {
        Layout::Plain => matmul(
            MatMut::new(&mut out[..m * n], m, n),
            MatRef::new(&a[..m * k], m, k),
            MatRef::new(&b[..k * n], k, n),
            false,
        ),
        Layout::BTransposed => matmul(
            MatMut::new(&mut out[..m * n], m, n),
            MatRef::new(&a[..m * k], m, k),
            MatRef::new(&b[..k * n], n, k).t(),
            false,
        ),
        Layout::ATransposed => matmul_tn_acc(out, a, b, k, m, n),
    }
}

/// One shape's rates, GFLOP/s of thread CPU time, best of the repeats.
#[derive(Clone, Debug)]
pub struct ProductRates {
    pub shape: ProductShape,
    pub model: f64,
    /// `None` without OpenBLAS.
    pub blas: Option<f64>,
    /// The largest difference between the two results, over the largest
    /// magnitude (a check that both computed the same product).
    pub difference: Option<f32>,
}

/// Times each shape on both kernels (`blas` where given), best of
/// `repeats`, each run long enough to time (at least `min_secs`).
pub fn compare_products(
    shapes: &[ProductShape],
    blas: Option<&Blas>,
    repeats: usize,
    min_secs: f64,
) -> Vec<ProductRates> {
    let mut rng = Rng::new(3);
    shapes
        .iter()
        .map(|s| {
            let a: Vec<f32> = (0..s.m * s.k).map(|_| rng.normal()).collect();
            let b: Vec<f32> = (0..s.k * s.n).map(|_| rng.normal()).collect();
            let mut out = vec![0.0f32; s.m * s.n];
            let model = rate(s, repeats, min_secs, &mut || {
                model_product(&mut out, &a, &b, s)
            });
            let (blas, difference) = match blas {
                None => (None, None),
                Some(lib) => {
                    let mut theirs = vec![0.0f32; s.m * s.n];
                    let mut ours = vec![0.0f32; s.m * s.n];
                    lib.product(&mut theirs, &a, &b, s);
                    model_product(&mut ours, &a, &b, s);
                    let size = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let worst = ours
                        .iter()
                        .zip(&theirs)
                        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
                    let r = rate(s, repeats, min_secs, &mut || {
                        lib.product(&mut out, &a, &b, s)
                    });
                    (Some(r), Some(worst / size.max(f32::MIN_POSITIVE)))
                }
            };
            ProductRates {
                shape: s.clone(),
                model,
                blas,
                difference,
            }
        })
        .collect()
}

/// Best-of-`repeats` GFLOP/s of `f` (thread CPU time), each timing
/// running `f` as often as `min_secs` takes.
fn rate(s: &ProductShape, repeats: usize, min_secs: f64, f: &mut dyn FnMut()) -> f64 {
    f();
    let start = thread_cpu_seconds();
    f();
    let once = (thread_cpu_seconds() - start).max(1e-7);
    let calls = ((min_secs / once).ceil() as usize).max(1);
    let mut best = 0.0f64;
    for _ in 0..repeats.max(1) {
        let start = thread_cpu_seconds();
        for _ in 0..calls {
            f();
        }
        let secs = (thread_cpu_seconds() - start).max(1e-9);
        best = best.max(s.flops() * calls as f64 / secs / 1e9);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout through the model's kernel against a plain triple
    /// loop, and OpenBLAS (where the machine has it) agreeing with it.
    #[test]
    fn both_kernels_compute_each_layout() {
        let shape = |layout| ProductShape {
            name: "t".into(),
            m: 13,
            k: 7,
            n: 9,
            layout,
        };
        let blas = Blas::load().ok();
        // CI installs OpenBLAS so that its path is tested, not skipped.
        if std::env::var_os("CLLM_REQUIRE_OPENBLAS").is_some() {
            assert!(
                blas.is_some(),
                "CLLM_REQUIRE_OPENBLAS: {:?}",
                Blas::load().err()
            );
        }
        for layout in [Layout::Plain, Layout::BTransposed, Layout::ATransposed] {
            let s = shape(layout);
            let a: Vec<f32> = (0..s.m * s.k).map(|i| (i % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..s.k * s.n).map(|i| (i % 3) as f32 * 0.5).collect();
            let start = if layout == Layout::ATransposed {
                1.0
            } else {
                0.0
            };
            let mut want = vec![start; s.m * s.n];
            for i in 0..s.m {
                for j in 0..s.n {
                    for p in 0..s.k {
                        let x = match layout {
                            Layout::ATransposed => a[p * s.m + i],
                            _ => a[i * s.k + p],
                        };
                        let y = match layout {
                            Layout::BTransposed => b[j * s.k + p],
                            _ => b[p * s.n + j],
                        };
                        want[i * s.n + j] += x * y;
                    }
                }
            }
            let mut got = vec![start; s.m * s.n];
            model_product(&mut got, &a, &b, &s);
            assert_eq!(got, want, "{layout:?} through the model's kernel");
            if let Some(lib) = &blas {
                let mut got = vec![start; s.m * s.n];
                lib.product(&mut got, &a, &b, &s);
                assert_eq!(got, want, "{layout:?} through {}", lib.library);
            }
        }
        let cfg = ModelConfig::preset("tiny").unwrap();
        let rates = compare_products(&model_shapes(&cfg, 16, 8), blas.as_ref(), 1, 0.0);
        assert_eq!(rates.len(), 7);
        for r in &rates {
            assert!(r.model > 0.0 && r.model.is_finite(), "{r:?}");
            assert_eq!(r.blas.is_some(), blas.is_some());
            assert!(r.difference.is_none_or(|d| d < 1e-4), "{r:?}");
        }
    }
}
