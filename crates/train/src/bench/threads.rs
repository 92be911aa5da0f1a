//! The per-operation profile at several thread counts, so that a scaling
//! loss names its op: at N threads, N workers each run the forward and
//! backward of their share of the batch (the spheres' split) at the same
//! time, sharing the caches and the memory bus as the spheres do, each
//! timing its ops by its own thread's CPU clock.

use super::step::TrainStepRig;
use crate::error::TrainError;
use crate::tree::share;
use cllm_core::ModelConfig;
use cllm_core::ops::bf16::Precision;
use cllm_core::profile::{Profile, op_work};
use std::sync::Barrier;

/// One thread count's profile of a step's gradients (zero gradients,
/// forward, backward: the reduction and AdamW are not in it).
#[derive(Clone, Debug)]
pub struct ThreadProfile {
    /// Workers that ran (fewer than asked where the batch has fewer
    /// sequences).
    pub threads: usize,
    /// Each op's thread CPU seconds per step, the mean over the workers;
    /// largest first.
    pub ops: Vec<(String, f64)>,
    /// Each op's bytes per step summed over the workers (counted from the
    /// shapes, [`op_work`]); `None` for an op not counted.
    pub bytes: Vec<Option<f64>>,
}

impl ThreadProfile {
    /// The mean worker's seconds per step over all ops.
    pub fn total_secs(&self) -> f64 {
        self.ops.iter().map(|(_, s)| s).sum()
    }

    /// `op`'s mean worker seconds per step.
    pub fn secs(&self, op: &str) -> Option<f64> {
        self.ops.iter().find(|(n, _)| n == op).map(|(_, s)| *s)
    }

    /// `op`'s bytes per step over all workers, divided by its time: the
    /// memory traffic it achieved (bytes per second), all workers together.
    pub fn traffic(&self, op: &str) -> Option<f64> {
        let i = self.ops.iter().position(|(n, _)| n == op)?;
        self.bytes[i].map(|b| b / self.ops[i].1)
    }
}

/// [`ThreadProfile`]s at each count in `thread_counts`, in order: `warmup`
/// untimed and `steps` profiled steps of `batch` x `seq` random tokens,
/// the workers starting each step together.
pub fn profile_at_threads(
    cfg: &ModelConfig,
    batch: usize,
    seq: usize,
    thread_counts: &[usize],
    (warmup, steps): (usize, usize),
    head_chunk: usize,
    precision: Precision,
) -> Result<Vec<ThreadProfile>, TrainError> {
    let steps = steps.max(1);
    thread_counts
        .iter()
        .map(|&threads| {
            let workers = threads.clamp(1, batch.max(1));
            let seqs: Vec<usize> = (0..workers)
                .map(|i| share(batch, workers, i).len())
                .collect();
            let mut rigs = seqs
                .iter()
                .map(|&b| {
                    TrainStepRig::new(cfg, b, seq, head_chunk).map(|r| r.with_precision(precision))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let start = Barrier::new(workers);
            let profiles: Vec<Profile> = std::thread::scope(|scope| {
                let handles: Vec<_> = rigs
                    .iter_mut()
                    .map(|rig| {
                        let start = &start;
                        scope.spawn(move || {
                            let mut profile = Profile::new();
                            for step in 0..warmup + steps {
                                start.wait();
                                let p = (step >= warmup).then_some(&mut profile);
                                rig.gradients(p);
                            }
                            profile
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a profiling worker panicked"))
                    .collect()
            });
            Ok(join_workers(cfg, &seqs, seq, &profiles, steps))
        })
        .collect()
}

/// The workers' profiles as one: each op's mean seconds per step, and its
/// bytes over all workers.
fn join_workers(
    cfg: &ModelConfig,
    seqs: &[usize],
    seq: usize,
    profiles: &[Profile],
    steps: usize,
) -> ThreadProfile {
    let workers = profiles.len();
    let mut ops: Vec<(String, f64)> = Vec::new();
    for p in profiles {
        for (name, secs) in p {
            let per_step = secs / (steps * workers) as f64;
            match ops.iter_mut().find(|(n, _)| n == name) {
                Some(op) => op.1 += per_step,
                None => ops.push((name.to_string(), per_step)),
            }
        }
    }
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    let works: Vec<_> = seqs.iter().map(|&b| op_work(cfg, b, seq)).collect();
    let bytes = ops
        .iter()
        .map(|(name, _)| {
            works
                .iter()
                .map(|w| w.iter().find(|o| o.name == name).map(|o| o.bytes))
                .sum::<Option<f64>>()
        })
        .collect();
    ThreadProfile {
        threads: workers,
        ops,
        bytes,
    }
}

/// The profiles side by side: per op, milliseconds and share of the
/// step's gradients at each thread count, its speedup from the first
/// count to each other (its time on the whole batch against a worker's
/// on its share: the thread count at perfect scaling), and the memory
/// traffic it achieved; `bandwidth` (bytes per second, one per profile)
/// the machine's measured read bandwidth at that thread count.
pub fn format_thread_profiles(profiles: &[ThreadProfile], bandwidth: &[f64]) -> String {
    let Some(first) = profiles.first() else {
        return String::new();
    };
    let mut out = String::new();
    let mut head = format!("  {:<38}", "op (ms per step, share)");
    for p in profiles {
        head += &format!(
            " {:>16}",
            format!("{} thread{}", p.threads, plural(p.threads))
        );
    }
    for p in &profiles[1..] {
        head += &format!(" {:>9}", format!("1->{}", p.threads));
    }
    head += "  GB/s at each count";
    out += &head;
    out.push('\n');
    let mut names: Vec<&str> = first.ops.iter().map(|(n, _)| n.as_str()).collect();
    for p in &profiles[1..] {
        for (n, _) in &p.ops {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("-".to_string(), f);
    for name in names {
        let mut line = format!("  {:<38}", truncate(name, 38));
        for p in profiles {
            let s = p.secs(name);
            let text = cell(s, &|s| {
                format!("{:.1} {:>4.1}%", s * 1e3, 100.0 * s / p.total_secs())
            });
            line += &format!(" {text:>16}");
        }
        for p in &profiles[1..] {
            let speedup = first.secs(name).zip(p.secs(name)).map(|(a, b)| a / b);
            line += &format!(" {:>9}", cell(speedup, &|x| format!("{x:.2}x")));
        }
        let traffic: Vec<String> = profiles
            .iter()
            .map(|p| cell(p.traffic(name), &|b| format!("{:.1}", b / 1e9)))
            .collect();
        line += &format!("  {}", traffic.join(" / "));
        out += line.trim_end();
        out.push('\n');
    }
    let mut line = format!("  {:<38}", "all of the gradients");
    for p in profiles {
        line += &format!(" {:>16}", format!("{:.1} 100%", p.total_secs() * 1e3));
    }
    for p in &profiles[1..] {
        line += &format!(
            " {:>9}",
            format!("{:.2}x", first.total_secs() / p.total_secs())
        );
    }
    out += &line;
    out.push('\n');
    let bw: Vec<String> = profiles
        .iter()
        .zip(bandwidth)
        .map(|(p, b)| {
            format!(
                "{} thread{} {:.1} GB/s",
                p.threads,
                plural(p.threads),
                b / 1e9
            )
        })
        .collect();
    if !bw.is_empty() {
        out += &format!("  the machine's read bandwidth: {}\n", bw.join(", "));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two workers on a tiny model: every op of the one-thread profile is
    /// there at two, a batch of one runs one worker, the bytes are the
    /// workers' shares summed, and the table names each op with its
    /// speedup.
    #[test]
    fn profiles_at_two_thread_counts_line_up() {
        let cfg = ModelConfig::preset("tiny").unwrap();
        let got = profile_at_threads(&cfg, 3, 8, &[1, 2], (1, 1), 4, Precision::Fp32).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].threads, got[1].threads), (1, 2));
        for p in &got {
            assert!(p.ops.iter().any(|(n, _)| n.starts_with("head")));
            assert!(p.ops.iter().all(|(_, s)| s.is_finite() && *s >= 0.0));
            assert!(!p.ops.iter().any(|(n, _)| n == "adamw"), "gradients only");
            assert_eq!(p.ops.len(), p.bytes.len());
        }
        for (n, _) in &got[0].ops {
            assert!(got[1].secs(n).is_some(), "{n} at two threads");
        }
        // The bytes at two workers: their shares (2 and 1 sequences).
        let gelu = |b| op_work(&cfg, b, 8).into_iter().find(|o| o.name == "gelu");
        let i = got[1].ops.iter().position(|(n, _)| n == "gelu").unwrap();
        assert_eq!(
            got[1].bytes[i],
            Some(gelu(2).unwrap().bytes + gelu(1).unwrap().bytes)
        );
        let one = profile_at_threads(&cfg, 1, 8, &[2], (0, 1), 4, Precision::Fp32).unwrap();
        assert_eq!(one[0].threads, 1, "a batch of one has one worker");
        let text = format_thread_profiles(&got, &[10e9, 18e9]);
        assert!(
            text.contains("1 thread") && text.contains("2 threads"),
            "{text}"
        );
        assert!(text.contains("1->2") && text.contains("gelu"), "{text}");
        assert!(text.contains("2 threads 18.0 GB/s"), "{text}");
    }
}
