//! Elementwise `exp` and `tanh` written so the compiler vectorises them.
//!
//! The softmax over a 50,000-token vocabulary evaluates ~50 M exponentials
//! per training step; `f32::exp` is a scalar library call, which alone would
//! cost a quarter of the step. These versions use only operations that map
//! to SIMD instructions (multiply-add, round-by-magic-number, integer shift),
//! and a loop over a slice of them becomes vector code. Relative error is a
//! few ulp (checked against `f64::exp` in the tests).
//!
//! [`simd_fn!`] compiles a hot loop three times (AVX-512, AVX2+FMA and the
//! portable baseline) and picks one at run time, since the crate is built
//! for baseline x86-64. Only plain IEEE adds, multiplies and divides are
//! used (no fused multiply-add contraction), so all three give the same
//! bits and runs stay reproducible.

/// Defines `fn name(args) -> ret { body }` that runs `body` compiled for the
/// best instruction set the CPU has (AVX-512F, else AVX2 + FMA, else the
/// baseline; see [`simd_path`]). The body should be a simple loop the
/// compiler can vectorise.
#[macro_export]
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { portable($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { portable($($arg),*) }
                match $crate::ops::fast_math::simd_path() {
                    // SAFETY: `simd_path` names a path only when the CPU
                    // has the features it was compiled for.
                    $crate::ops::fast_math::SimdPath::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::ops::fast_math::SimdPath::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::ops::fast_math::SimdPath::Portable => {}
                }
            }
            portable($($arg),*)
        }
    };
}
pub use simd_fn;

/// The code paths a [`simd_fn!`] function is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdPath {
    Avx512,
    Avx2,
    Portable,
}

impl SimdPath {
    /// Wider paths rank higher.
    fn rank(self) -> u8 {
        match self {
            SimdPath::Avx512 => 2,
            SimdPath::Avx2 => 1,
            SimdPath::Portable => 0,
        }
    }
}

/// The widest path the environment allows: `CLLM_CPU=avx2` or
/// `CLLM_CPU=portable` keeps every kernel chosen at run time (these
/// `simd_fn!`s, attention's, the head's, the bf16 and decoding kernels) off
/// the wider instructions, so that one machine can run and measure what a
/// CPU without AVX-512 runs. Unset (or `avx512`): no cap. Read once.
pub fn path_cap() -> SimdPath {
    static CAP: std::sync::OnceLock<SimdPath> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("CLLM_CPU") {
        Err(_) => SimdPath::Avx512,
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "avx512" => SimdPath::Avx512,
            "avx2" => SimdPath::Avx2,
            "portable" => SimdPath::Portable,
            other => {
                eprintln!(
                    "warning: CLLM_CPU={other} is not one of avx512, avx2, portable; ignored"
                );
                SimdPath::Avx512
            }
        },
    })
}

/// A line saying the kernels are capped below what the CPU has (for the
/// bench's figures), or None.
pub fn cap_note() -> Option<String> {
    let cap = path_cap();
    (cap.rank() < hardware_path().rank()).then(|| {
        format!(
            "kernels capped to {} by CLLM_CPU (the CPU has {})",
            cap.name(),
            hardware_path().name()
        )
    })
}

impl SimdPath {
    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Avx512 => "AVX-512",
            SimdPath::Avx2 => "AVX2 + FMA",
            SimdPath::Portable => "portable code",
        }
    }
}

/// The best path this CPU runs, detected at run time (cached by std), no
/// wider than [`path_cap`].
#[inline]
pub fn detected_path() -> SimdPath {
    let hw = hardware_path();
    if hw.rank() > path_cap().rank() {
        path_cap()
    } else {
        hw
    }
}

/// The best path the CPU itself runs.
fn hardware_path() -> SimdPath {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return SimdPath::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdPath::Avx2;
        }
    }
    SimdPath::Portable
}

/// Every path this CPU can run, best first (the portable one always).
pub fn available_paths() -> Vec<SimdPath> {
    match detected_path() {
        SimdPath::Avx512 => {
            let mut v = vec![SimdPath::Avx512];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(SimdPath::Avx2);
            }
            v.push(SimdPath::Portable);
            v
        }
        SimdPath::Avx2 => vec![SimdPath::Avx2, SimdPath::Portable],
        SimdPath::Portable => vec![SimdPath::Portable],
    }
}

#[cfg(test)]
thread_local! {
    static FORCED: std::cell::Cell<Option<SimdPath>> = const { std::cell::Cell::new(None) };
}

/// The path [`simd_fn!`] functions take on this thread: the detected one,
/// or in tests one forced by [`with_path`].
#[inline(always)]
pub fn simd_path() -> SimdPath {
    #[cfg(test)]
    if let Some(p) = FORCED.with(|f| f.get()) {
        return p;
    }
    detected_path()
}

/// Runs `f` with every [`simd_fn!`] function on this thread taking `path`
/// (tests only, so that each path is tested on the machine that has it).
/// Panics if the CPU cannot run `path`.
#[cfg(test)]
pub(crate) fn with_path<R>(path: SimdPath, f: impl FnOnce() -> R) -> R {
    assert!(
        available_paths().contains(&path),
        "this CPU cannot run {path:?}"
    );
    let before = FORCED.with(|c| c.replace(Some(path)));
    let r = f();
    FORCED.with(|c| c.set(before));
    r
}

const LOG2_E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in a high part with few mantissa bits and a low remainder, so
// that `x - n * LN2_HI` is exact (Cody–Waite range reduction).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
// 1.5 * 2^23: adding then subtracting it rounds to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x for x in roughly [-87, 88]; inputs outside are clamped (so very
/// negative inputs give ~1e-38 instead of 0, which no softmax notices).
#[inline(always)]
// max/min rather than clamp: clamp's NaN and bounds handling keeps the loop
// from vectorising, max/min map straight to vector instructions.
#[allow(clippy::manual_clamp)]
pub fn exp(x: f32) -> f32 {
    let x = x.max(-87.0).min(88.0);
    // x = n ln2 + r with |r| <= ln2 / 2, so e^x = 2^n e^r.
    let shifted = x * LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor series of e^r to degree 7: truncation error < 2e-9 on |r| <= 0.347.
    // Evaluated in Estrin's scheme (pairs of terms, joined by r² and r⁴)
    // rather than Horner's: six dependent operations instead of fourteen.
    // A vector loop of exponentials is bound by that chain, not by the
    // count of operations (the scheduler fills with waiting instructions).
    let r2 = r * r;
    let r4 = r2 * r2;
    let low = (1.0 + r) + r2 * (0.5 + r * (1.0 / 6.0));
    let high = (1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5040.0));
    let p = low + r4 * high;
    // 2^n from the integer n held in the low mantissa bits of `shifted`
    // (its bits are those of 1.5 * 2^23 plus n, and 1.5 * 2^23's low 9 bits
    // are zero, so the shift leaves (n + 127) << 23). The same value as
    // `(n as i32 + 127) << 23`, but `as i32` saturates and LLVM turns that
    // into one scalar conversion per lane, which multiplied GELU's time.
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    p * scale
}

/// Vector slots one [`tanh`] takes (for the profile's floor): 2x 1, exp 25,
/// 1 - 2 / (e + 1) 3, the series 6, the select 3.
pub const TANH_OPS: f64 = 38.0;

/// tanh(x) = 1 - 2 / (e^{2x} + 1), within 3e-7 absolute everywhere; near 0
/// (|x| < 0.01) the odd series x - x³/3 + 2x⁵/15 avoids the cancellation.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp(2.0 * x);
    let far = 1.0 - 2.0 / (e + 1.0);
    let x2 = x * x;
    let near = x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
    if x.abs() < 0.01 { near } else { far }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
    }

    /// The exponent bits from the shifted value equal the old saturating
    /// conversion's, so exp gives the same bits as before.
    #[test]
    fn exp_exponent_bits_match_the_integer_conversion() {
        let mut x = -200.0f32;
        while x < 200.0 {
            let c = x.clamp(-87.0, 88.0);
            let shifted = c * LOG2_E + ROUND_MAGIC;
            let n = shifted - ROUND_MAGIC;
            let want = ((n as i32).wrapping_add(127) as u32) << 23;
            assert_eq!(shifted.to_bits().wrapping_add(127) << 23, want, "x = {x}");
            x += 0.0173;
        }
        for x in [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            0.0,
            -0.0,
        ] {
            assert!(exp(x).is_finite() && exp(x) > 0.0, "exp({x}) = {}", exp(x));
        }
    }

    simd_fn! {
        fn tanh_slice(out: &mut [f32], x: &[f32]) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = tanh(v);
            }
        }
    }

    simd_fn! {
        fn exp_slice(out: &mut [f32], x: &[f32]) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = exp(v);
            }
        }
    }

    /// Every compiled path (vectorised or not) gives the portable path's
    /// bits: no fused multiply-add contraction, same order of operations.
    #[test]
    fn every_path_gives_the_same_bits() {
        let x: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.013).collect();
        let run = |path| {
            with_path(path, || {
                let (mut t, mut e) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                tanh_slice(&mut t, &x);
                exp_slice(&mut e, &x);
                (t, e)
            })
        };
        let want = run(SimdPath::Portable);
        for (i, &v) in x.iter().enumerate() {
            assert_eq!(want.0[i].to_bits(), tanh(v).to_bits());
            assert_eq!(want.1[i].to_bits(), exp(v).to_bits());
        }
        for path in available_paths() {
            let got = run(path);
            assert!(got == want, "{path:?} differs from the portable path");
        }
    }

    #[test]
    fn tanh_matches_f64() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let want = (x as f64).tanh();
            let err = (tanh(x) as f64 - want).abs();
            // Absolute error is what GELU sees: 0.5 x (1 + tanh(..)).
            assert!(err < 3e-7, "tanh({x}) = {} vs {want}", tanh(x));
            x += 0.00731;
        }
        assert_eq!(tanh(0.0), 0.0);
        // Beyond: saturated to ±1 out to the largest floats and infinity.
        for x in [12.5f32, 20.0, 88.0, 1e3, 1e10, f32::MAX, f32::INFINITY] {
            assert!((tanh(x) - 1.0).abs() < 3e-7, "tanh({x}) = {}", tanh(x));
            assert!((tanh(-x) + 1.0).abs() < 3e-7, "tanh(-{x}) = {}", tanh(-x));
        }
    }
}
