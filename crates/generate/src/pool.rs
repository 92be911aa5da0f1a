//! [`DecodePool`]: a few threads that stay up for a whole reply and split
//! each matrix-vector product of a decoding step between them.
//!
//! A cached decoding step is a chain of short matrix-vector products, one
//! after another. Spawning threads for each
//! would cost more than the work; so the pool's workers are started once and
//! wait, parked on a condition variable (no spinning: the cores are shared
//! with whatever else runs), for the next piece of work. The caller's own
//! thread takes part as worker 0, so a pool of N threads has N - 1
//! workers, and a pool of one runs everything inline.
//!
//! [`DecodePool::run`] hands every thread the same closure with its index;
//! the closure decides which rows are its own (see [`split_rows`]), so the
//! result of each row never depends on how many threads there are.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// The job of one dispatch, seen by the workers as a raw pointer: `run`
/// does not return before every worker has finished with it, so the
/// borrow it erases outlives every use.
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync));
// SAFETY: the pointee is `Sync` and is only called while `run` keeps it
// alive (see `DecodePool::run`).
unsafe impl Send for JobPtr {}

struct State {
    /// Counts dispatches; a worker runs the job once per new value.
    epoch: u64,
    job: Option<JobPtr>,
    /// Workers still busy with the current job.
    pending: usize,
    /// A worker's job panicked during the current dispatch.
    panicked: bool,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    start: Condvar,
    done: Condvar,
}

pub struct DecodePool {
    threads: usize,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl DecodePool {
    /// A pool of `threads` threads in all (0 is taken as 1): the caller's
    /// and `threads - 1` workers.
    pub fn new(threads: usize) -> DecodePool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                epoch: 0,
                job: None,
                pending: 0,
                panicked: false,
                shutdown: false,
            }),
            start: Condvar::new(),
            done: Condvar::new(),
        });
        let workers = (1..threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("cllm-decode-{index}"))
                    .spawn(move || worker(index, &shared))
                    .expect("cannot start a decoding thread")
            })
            .collect();
        DecodePool {
            threads,
            shared,
            workers,
        }
    }

    /// Threads taking part in each dispatch, the caller's included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job(i)` once on each thread i in 0..threads (0 on the
    /// caller's) and returns when all have finished. A panic in any of
    /// them is raised again here, after all have finished.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            job(0);
            return;
        }
        // SAFETY: erasing the lifetime is sound because this function waits
        // below until `pending` is 0, i.e. until no worker can touch the
        // job any more, and clears it before returning.
        let ptr = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
                job as *const _,
            )
        });
        {
            let mut s = self.shared.state.lock().unwrap();
            s.job = Some(ptr);
            s.pending = self.threads - 1;
            s.panicked = false;
            s.epoch += 1;
        }
        self.shared.start.notify_all();
        let mine = catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut s = self.shared.state.lock().unwrap();
        while s.pending > 0 {
            s = self.shared.done.wait(s).unwrap();
        }
        s.job = None;
        let theirs = s.panicked;
        drop(s);
        if let Err(payload) = mine {
            std::panic::resume_unwind(payload);
        }
        assert!(!theirs, "a decoding thread panicked");
    }
}

fn worker(index: usize, shared: &Shared) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut s = shared.state.lock().unwrap();
            while s.epoch == seen && !s.shutdown {
                s = shared.start.wait(s).unwrap();
            }
            if s.shutdown {
                return;
            }
            seen = s.epoch;
            s.job.expect("a dispatch without a job")
        };
        // SAFETY: `run` keeps the job alive until `pending` drops to 0,
        // which happens only after this call (see `DecodePool::run`).
        let ok = catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)(index) })).is_ok();
        let mut s = shared.state.lock().unwrap();
        if !ok {
            s.panicked = true;
        }
        s.pending -= 1;
        if s.pending == 0 {
            shared.done.notify_one();
        }
    }
}

impl Drop for DecodePool {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().shutdown = true;
        self.shared.start.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The rows of `rows` that thread `index` of `threads` owns: contiguous
/// ranges of whole multiples of `granule` rows (the last takes the rest),
/// as even as that allows.
pub fn split_rows(
    rows: usize,
    granule: usize,
    index: usize,
    threads: usize,
) -> std::ops::Range<usize> {
    let granule = granule.max(1);
    let blocks = rows.div_ceil(granule);
    let per = blocks / threads;
    let extra = blocks % threads;
    let first = index * per + index.min(extra);
    let count = per + usize::from(index < extra);
    let start = (first * granule).min(rows);
    let end = ((first + count) * granule).min(rows);
    start..end
}

/// A pointer to an output that the threads of one dispatch write in
/// disjoint row ranges.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut {
    ptr: *mut f32,
    len: usize,
}
// SAFETY: used only so that each thread writes rows no other thread
// touches (`rows`'s callers pass disjoint ranges from `split_rows`).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    pub(crate) fn new(out: &mut [f32]) -> SharedOut {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    /// The rows `range` of the output.
    ///
    /// # Safety
    /// No two live slices from one `SharedOut` may overlap, and the
    /// output it was made from must outlive them and not be used otherwise
    /// meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn rows(&self, range: std::ops::Range<usize>) -> &mut [f32] {
        assert!(range.start <= range.end && range.end <= self.len);
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn split_covers_every_row_once_in_order() {
        for rows in [0, 1, 5, 16, 17, 100, 50_000] {
            for threads in 1..6 {
                for granule in [1, 4, 16] {
                    let mut next = 0;
                    for i in 0..threads {
                        let r = split_rows(rows, granule, i, threads);
                        assert_eq!(r.start, next, "rows {rows} threads {threads}");
                        if r.end < rows {
                            assert_eq!(r.len() % granule, 0);
                        }
                        next = r.end;
                    }
                    assert_eq!(next, rows);
                }
            }
        }
    }

    #[test]
    fn every_thread_runs_each_dispatch_once() {
        for threads in [1, 2, 3] {
            let pool = DecodePool::new(threads);
            let counts: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..200 {
                pool.run(&|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            for c in &counts {
                assert_eq!(c.load(Ordering::Relaxed), 200);
            }
        }
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_and_the_pool_still_works() {
        let pool = DecodePool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("worker fails");
                }
            })
        }));
        assert!(r.is_err());
        let hits = AtomicUsize::new(0);
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
