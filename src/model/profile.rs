//! Per-operation timing for the benchmark's profile. The model's passes
//! take an `Option<&mut Profile>` and wrap each operation in [`timed`]; with
//! `None` (every real run) nothing is measured. It lives in `model` rather
//! than in `crate::bench` so the model never imports what benchmarks it.

/// Per-op time accumulated over calls, for the benchmark's profile: the
/// calling thread's CPU time (so other processes on a shared machine do not
/// inflate it). Pass `None` in normal use: timing is then skipped entirely.
pub type Profile = Vec<(&'static str, f64)>;

/// Seconds of CPU time the calling thread has used (wall-clock seconds
/// since an arbitrary start where the platform has no thread clock).
pub fn thread_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into the valid,
        // exclusively borrowed `ts`.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
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
