//! Each profiled operation's floor: the larger of its bytes over the
//! bandwidth of the memory level it runs from and its FLOPs over the FMA
//! peak it may use; and a step with every operation at its floor.

use super::peak::Peaks;
use super::step::{StepBench, peaks_of};
use cllm_core::ModelConfig;
use cllm_core::profile::thread_cpu_seconds;

cllm_core::simd_fn! {
    /// y = y · a + x: reads two arrays and writes one (12 bytes a float).
    fn scale_add(y: &mut [f32], x: &[f32], a: f32) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = *o * a + v;
        }
    }
}

/// One thread's sustained bandwidth in bytes per second (thread CPU time,
/// like the profile), measured with `y = y · a + x` at a working set that
/// fits each level: a quarter of L2, a quarter of L3, and at least eight
/// times L3 for main memory. Cache sizes come from Linux's sysfs (else
/// 1 MiB and 32 MiB are assumed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bandwidth {
    pub l2_bytes: usize,
    pub l3_bytes: usize,
    pub l2: f64,
    pub l3: f64,
    pub dram: f64,
}

impl Bandwidth {
    /// The memory level a call touching `call_bytes` distinct bytes runs
    /// from (it fits in half of the cache), and that level's bandwidth.
    pub fn level_for(&self, call_bytes: f64) -> (&'static str, f64) {
        if call_bytes <= self.l2_bytes as f64 / 2.0 {
            ("L2", self.l2)
        } else if call_bytes <= self.l3_bytes as f64 / 2.0 {
            ("L3", self.l3)
        } else {
            ("DRAM", self.dram)
        }
    }
}

fn cache_bytes(index: usize, default: usize) -> usize {
    std::fs::read_to_string(format!(
        "/sys/devices/system/cpu/cpu0/cache/index{index}/size"
    ))
    .ok()
    .and_then(|s| {
        let s = s.trim();
        let (digits, mult) = match s.strip_suffix('K') {
            Some(d) => (d, 1024),
            None => match s.strip_suffix('M') {
                Some(d) => (d, 1024 * 1024),
                None => (s, 1),
            },
        };
        digits.parse::<usize>().ok().map(|v| v * mult)
    })
    .filter(|&b| b > 0)
    .unwrap_or(default)
}

/// Best-of bandwidth (bytes/s, thread CPU time) of `scale_add` over a
/// working set of `bytes` (two arrays of half each), moving at least
/// `min_total` bytes per timed repeat.
pub fn bandwidth_at(bytes: usize, min_total: usize, repeats: usize) -> f64 {
    let len = (bytes / 8).max(16);
    let mut y = vec![1.0f32; len];
    let x = vec![0.5f32; len];
    let per_pass = 12 * len;
    let passes = min_total.div_ceil(per_pass).max(1);
    scale_add(&mut y, &x, 0.5);
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = thread_cpu_seconds();
        for _ in 0..passes {
            scale_add(&mut y, &x, 0.5);
        }
        best = best.min(thread_cpu_seconds() - start);
        std::hint::black_box(&mut y);
    }
    (per_pass * passes) as f64 / best.max(1e-9)
}

/// Measures [`Bandwidth`] on the calling thread (a fraction of a second).
pub fn measure_bandwidth() -> Bandwidth {
    let l2_bytes = cache_bytes(2, 1 << 20);
    let l3_bytes = cache_bytes(3, 32 << 20);
    let dram_set = (8 * l3_bytes).max(256 << 20);
    Bandwidth {
        l2_bytes,
        l3_bytes,
        l2: bandwidth_at(l2_bytes / 4, 64 << 20, 5),
        l3: bandwidth_at(l3_bytes / 4, 128 << 20, 5),
        dram: bandwidth_at(dram_set, dram_set, 3),
    }
}

/// One row of the profile with its floor.
#[derive(Clone, Debug, PartialEq)]
pub struct OpLimit {
    pub name: String,
    /// Thread CPU seconds per step, and the share of the profile's total.
    pub secs: f64,
    pub share: f64,
    /// Bytes moved and FMA-equivalent FLOPs per step (see
    /// [`cllm_core::profile::OpWork`]); `None` for an op not counted.
    pub bytes: Option<f64>,
    pub flops: Option<f64>,
    /// The memory level whose bandwidth bounds it ("L2", "L3", "DRAM").
    pub level: &'static str,
    /// bytes / bandwidth and flops / peak, seconds; floor = the larger.
    pub memory_secs: f64,
    pub compute_secs: f64,
    pub floor_secs: f64,
    /// secs / floor_secs (1 = at the limit).
    pub ratio: f64,
}

impl OpLimit {
    /// "memory" or "FMA": which of the two floors is the larger.
    pub fn bound(&self) -> &'static str {
        if self.memory_secs >= self.compute_secs {
            "memory"
        } else {
            "FMA"
        }
    }
}

/// Joins a per-op profile (seconds a step) with each op's work: its floor
/// is max(bytes / bandwidth of its level, flops / peak), the peak being
/// the matrix kernel's for the products and the f32 one for the rest.
pub fn op_limits(
    profile: &[(String, f64)],
    work: &[cllm_core::profile::OpWork],
    bw: &Bandwidth,
    peaks: Peaks,
) -> Vec<OpLimit> {
    let total: f64 = profile.iter().map(|(_, s)| s).sum();
    profile
        .iter()
        .map(|(name, secs)| {
            let w = work.iter().find(|w| w.name == name);
            let (level, rate) = w.map_or(("-", f64::NAN), |w| bw.level_for(w.call_bytes));
            let memory_secs = w.map_or(f64::NAN, |w| w.bytes / rate);
            let compute_secs = w.map_or(f64::NAN, |w| {
                let peak = if w.in_matmul_kernel {
                    peaks.matmul
                } else {
                    peaks.f32
                };
                w.flops / (peak * 1e9)
            });
            let floor_secs = memory_secs.max(compute_secs);
            OpLimit {
                name: name.clone(),
                secs: *secs,
                share: secs / total,
                bytes: w.map(|w| w.bytes),
                flops: w.map(|w| w.flops),
                level,
                memory_secs,
                compute_secs,
                floor_secs,
                ratio: secs / floor_secs,
            }
        })
        .collect()
}

/// A step with every op at its floor, seconds: the sum of the floors (an
/// op without counted work at its measured time). With the kernels'
/// measured peaks ([`peaks_of`]) it is what these kernels allow; with the
/// instructions' own ([`instruction_peaks`](super::instruction_peaks))
/// about what no code can beat on this machine short of doing less work:
/// the bench compares the run with both, and a speed target well above the
/// second cannot be met here. About: the FMA floors count an op's
/// arithmetic as written (GELU's tanh, the exponentials), so an op the
/// compiler does in fewer instructions can run below its floor.
pub fn floor_step_secs(rows: &[OpLimit]) -> f64 {
    rows.iter()
        .map(|r| {
            if r.floor_secs.is_finite() {
                r.floor_secs
            } else {
                r.secs
            }
        })
        .sum()
}

/// The profile of `r` with each op's floor, from a bandwidth measured now
/// and the peaks measured in `r`'s run: `cfg` must be the preset `r` ran.
pub fn profile_limits(cfg: &ModelConfig, r: &StepBench) -> (Bandwidth, Vec<OpLimit>) {
    let bw = measure_bandwidth();
    let work = cllm_core::profile::op_work(cfg, r.batch, r.seq);
    let rows = op_limits(&r.per_op_profile, &work, &bw, peaks_of(r));
    (bw, rows)
}

/// [`floor_step_secs`] of `r`'s profile with `peaks` in place of the
/// kernels' (`bw` as measured for [`profile_limits`]).
pub fn floor_step_with(cfg: &ModelConfig, r: &StepBench, bw: &Bandwidth, peaks: Peaks) -> f64 {
    let work = cllm_core::profile::op_work(cfg, r.batch, r.seq);
    floor_step_secs(&op_limits(&r.per_op_profile, &work, bw, peaks))
}

/// The profile table with floors, one line per op, for the terminal.
pub fn format_profile_limits(bw: &Bandwidth, peaks: Peaks, rows: &[OpLimit]) -> String {
    let peak_line = if peaks.matmul == peaks.f32 {
        format!(
            "FMA peak {:.1} GFLOP/s (the matmul peak above, CPU time)",
            peaks.matmul
        )
    } else {
        format!(
            "FMA peak {:.1} GFLOP/s for the products (the matmul peak above), {:.1} for the \
             ops that compute in f32 (CPU time)",
            peaks.matmul, peaks.f32
        )
    };
    let mut out = format!(
        "  floors: {peak_line};\n          one-thread bandwidth L2 {:.0} GB/s ({} KiB), \
         L3 {:.0} GB/s ({} MiB), DRAM {:.0} GB/s\n",
        bw.l2 / 1e9,
        bw.l2_bytes >> 10,
        bw.l3 / 1e9,
        bw.l3_bytes >> 20,
        bw.dram / 1e9
    );
    out.push_str(
        "    op                                      ms  share     MB  GFLOP  level  bound   floor ms  time/floor\n",
    );
    for r in rows {
        match (r.bytes, r.flops) {
            (Some(b), Some(f)) => out.push_str(&format!(
                "    {:<36} {:>6.2} {:>5.1}% {:>6.1} {:>6.3}  {:<5}  {:<6} {:>8.2}  {:>8.2}x\n",
                r.name,
                r.secs * 1e3,
                100.0 * r.share,
                b / 1e6,
                f / 1e9,
                r.level,
                r.bound(),
                r.floor_secs * 1e3,
                r.ratio
            )),
            _ => out.push_str(&format!(
                "    {:<36} {:>6.2} {:>5.1}%   (not counted)\n",
                r.name,
                r.secs * 1e3,
                100.0 * r.share
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::step::{bench_train_step, bench_train_step_in};
    use cllm_core::ops::bf16::Precision;

    /// A made-up machine: L2 100 GB/s (1 MiB), L3 50 (32 MiB), DRAM 10.
    fn test_bandwidth() -> Bandwidth {
        Bandwidth {
            l2_bytes: 1 << 20,
            l3_bytes: 32 << 20,
            l2: 100e9,
            l3: 50e9,
            dram: 10e9,
        }
    }

    #[test]
    fn every_profiled_op_has_counted_work_and_a_floor() {
        // With dropout on, so that every op the step can run shows up.
        let mut cfg = ModelConfig::preset("tiny").unwrap();
        cfg.dropout = 0.1;
        let r = bench_train_step(&cfg, 2, 8, 1, 0).unwrap();
        let work = cllm_core::profile::op_work(&cfg, 2, 8);
        let bw = test_bandwidth();
        let rows = op_limits(
            &r.per_op_profile,
            &work,
            &bw,
            Peaks {
                matmul: 100.0,
                f32: 100.0,
            },
        );
        assert!(rows.iter().any(|r| r.name == "dropout"));
        for row in &rows {
            assert!(row.bytes.is_some(), "{} has no counted work", row.name);
            assert!(row.floor_secs > 0.0 && row.ratio.is_finite(), "{row:?}");
        }
        let share: f64 = rows.iter().map(|r| r.share).sum();
        assert!((share - 1.0).abs() < 1e-9);
        let floors: f64 = rows.iter().map(|r| r.floor_secs).sum();
        assert_eq!(floor_step_secs(&rows), floors);
        // An op without counted work stands at its measured time.
        let mut uncounted = rows.clone();
        uncounted[0].floor_secs = f64::NAN;
        let want = floors - rows[0].floor_secs + rows[0].secs;
        assert!((floor_step_secs(&uncounted) - want).abs() < 1e-15);
        let text = format_profile_limits(
            &bw,
            Peaks {
                matmul: 100.0,
                f32: 100.0,
            },
            &rows,
        );
        assert!(text.contains("time/floor") && text.contains("adamw"));
    }

    #[test]
    fn a_bf16_profile_counts_the_packing_of_its_weights() {
        // The model kernel where the CPU lacks AVX512_BF16: packing runs
        // either way, and its row must have a memory floor like the rest.
        let cfg = ModelConfig::preset("tiny").unwrap();
        let r = bench_train_step_in(&cfg, 2, 8, 1, 0, 8, Precision::Bf16).unwrap();
        let work = cllm_core::profile::op_work(&cfg, 2, 8);
        let bw = test_bandwidth();
        let peaks = Peaks {
            matmul: 200.0,
            f32: 100.0,
        };
        let rows = op_limits(&r.per_op_profile, &work, &bw, peaks);
        let pack = rows
            .iter()
            .find(|r| r.name == cllm_core::profile::BF16_PACKING)
            .expect("a bf16 step packs its weights");
        // wte (37 x 16) and two layers of 4·16² + 2·16·64 weights, read
        // as f32 and written twice as bf16: 8 bytes each, from L2.
        let weights = 37.0 * 16.0 + 2.0 * (4.0 * 256.0 + 2.0 * 16.0 * 64.0);
        assert_eq!(pack.bytes, Some(8.0 * weights));
        assert!((pack.floor_secs - 8.0 * weights / 100e9).abs() < 1e-15);
        assert!(rows.iter().all(|r| r.floor_secs.is_finite()));
    }

    #[test]
    fn the_products_use_the_kernel_peak_and_the_rest_the_f32_one() {
        // A bf16 run: the kernel peak twice the f32 one. The products' FMA
        // floor halves with it; attention, GELU and LayerNorm, which
        // compute in f32 either way, keep the f32 floor.
        let cfg = ModelConfig::preset("small").unwrap();
        let work = cllm_core::profile::op_work(&cfg, 8, 128);
        let profile: Vec<(String, f64)> = work.iter().map(|w| (w.name.to_string(), 1.0)).collect();
        let bw = Bandwidth {
            l2_bytes: 1 << 20,
            l3_bytes: 32 << 20,
            l2: 1e15,
            l3: 1e15,
            dram: 1e15,
        };
        let peaks = Peaks {
            matmul: 200.0,
            f32: 100.0,
        };
        let rows = op_limits(&profile, &work, &bw, peaks);
        for (row, w) in rows.iter().zip(&work) {
            let kernel = w.name.starts_with("matmul ") || w.name.starts_with("head");
            assert_eq!(w.in_matmul_kernel, kernel, "{}", w.name);
            let peak = if kernel { 200.0 } else { 100.0 };
            let want = w.flops / (peak * 1e9);
            assert!(
                (row.compute_secs - want).abs() <= 1e-12 * want.max(1e-30),
                "{}: {} against {want}",
                w.name,
                row.compute_secs
            );
        }
        assert!(
            work.iter()
                .any(|w| w.name == "attention" && !w.in_matmul_kernel)
        );
        let text = format_profile_limits(&bw, peaks, &rows);
        assert!(text.contains("200.0") && text.contains("100.0 for the ops that compute in f32"));
    }

    #[test]
    fn op_work_counts_the_matmuls_and_levels() {
        let cfg = ModelConfig::preset("small").unwrap();
        let (b, t) = (8, 128);
        let work = cllm_core::profile::op_work(&cfg, b, t);
        let get = |name: &str| work.iter().find(|w| w.name == name).unwrap();
        // The four linear layers and the head are the model's matmul FLOPs.
        let matmul: f64 = ["c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
            .iter()
            .map(|n| get(&format!("matmul {n}")).flops)
            .sum();
        let (n, c, i, l) = ((b * t) as f64, 128.0, 512.0, 4.0);
        assert_eq!(matmul, 6.0 * n * l * (3.0 * c * c + c * c + 2.0 * c * i));
        // GELU: five (N, I) arrays moved a layer.
        assert_eq!(get("gelu").bytes, l * 4.0 * 5.0 * n * i);
        let bw = Bandwidth {
            l2_bytes: 1 << 20,
            l3_bytes: 32 << 20,
            l2: 3.0,
            l3: 2.0,
            dram: 1.0,
        };
        assert_eq!(bw.level_for(100e3), ("L2", 3.0));
        assert_eq!(bw.level_for(get("gelu").call_bytes), ("L3", 2.0));
        assert_eq!(bw.level_for(1e9), ("DRAM", 1.0));
    }

    #[test]
    fn bandwidth_is_measured_positive() {
        let b = bandwidth_at(64 << 10, 1 << 20, 1);
        assert!(b.is_finite() && b > 0.0);
    }
}
