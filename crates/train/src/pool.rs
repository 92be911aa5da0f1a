//! The sphere threads: started once for a run, parked between phases.
//!
//! A training step has several parallel phases (compute, the sliced tree
//! reduction, the AdamW update; evaluations between steps), each with one
//! job per sphere. Starting threads for every phase costs tens of
//! microseconds a thread, which many spheres and small presets pay every
//! step. A [`SpherePool`] keeps one thread per sphere for as long as its
//! owner lives; worker `i` always runs job `i` (so a sphere's workspace stays
//! with one thread), and sleeps on its own condition variable between jobs:
//! an idle pool takes no CPU time.
//!
//! [`SpherePool::scope`] hands each worker a borrowed job, runs the caller's
//! own work on the calling thread meanwhile, and returns only once every job
//! has finished, whether it returned or panicked; so, as with
//! `std::thread::scope`, the jobs may borrow from the caller's stack. A job
//! that panics does not kill its worker: the first panic is re-raised on the
//! calling thread once all jobs are done (the trainer turns it into an
//! error event). Dropping the pool stops and joins its threads.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A job with its lifetime erased: only ever dereferenced while
/// [`SpherePool::scope`], which holds the real borrow, waits for it.
#[derive(Clone, Copy)]
struct JobPtr(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync`, and `scope` keeps it alive until every
// worker has finished calling it.
unsafe impl Send for JobPtr {}

enum Message {
    Run(JobPtr),
    Stop,
}

/// One worker's mailbox.
#[derive(Default)]
struct Mailbox {
    message: Mutex<Option<Message>>,
    posted: Condvar,
}

/// The jobs of the current phase not yet finished, and the first panic.
#[derive(Default)]
struct Tally {
    pending: usize,
    panic: Option<Box<dyn Any + Send>>,
}

#[derive(Default)]
struct Finished {
    tally: Mutex<Tally>,
    all_done: Condvar,
}

/// Locks, ignoring poison: the pool's own critical sections never panic,
/// and a job's panic is caught outside them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Worker {
    mailbox: Arc<Mailbox>,
    thread: Option<JoinHandle<()>>,
}

/// Threads that stay up for a run (see the module docs).
#[derive(Default)]
pub struct SpherePool {
    workers: Vec<Worker>,
    finished: Arc<Finished>,
}

impl SpherePool {
    /// A pool with no threads yet; [`scope`](Self::scope) starts them as
    /// needed.
    pub fn new() -> SpherePool {
        SpherePool::default()
    }

    /// Threads started so far.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Starts threads until there are at least `n`.
    pub fn ensure(&mut self, n: usize) {
        while self.workers.len() < n {
            let id = self.workers.len();
            let mailbox = Arc::new(Mailbox::default());
            let finished = Arc::clone(&self.finished);
            let inbox = Arc::clone(&mailbox);
            let thread = std::thread::Builder::new()
                .name(format!("cllm-sphere-{id}"))
                .spawn(move || work(id, &inbox, &finished))
                .expect("starting a sphere thread");
            self.workers.push(Worker {
                mailbox,
                thread: Some(thread),
            });
        }
    }

    /// Runs `job(i, &mut items[i])` on worker `i` for every item, and
    /// `caller()` on this thread meanwhile; returns `caller`'s result once
    /// every job has finished. If a job or `caller` panicked, the panic is
    /// raised here after all jobs have finished (a job's first).
    pub fn scope<T: Send, R>(
        &mut self,
        items: &mut [T],
        job: impl Fn(usize, &mut T) + Sync,
        caller: impl FnOnce() -> R,
    ) -> R {
        let n = items.len();
        self.ensure(n);
        let base = SendPtr(items.as_mut_ptr());
        let job = move |i: usize| {
            let base = base;
            // SAFETY: worker i alone is given index i, i < n, and `items`
            // stays mutably borrowed by this call until all jobs finish.
            let item = unsafe { &mut *base.0.add(i) };
            job(i, item)
        };
        let job: &(dyn Fn(usize) + Sync) = &job;
        // SAFETY (lifetime erasure): `Dispatch` waits for every job it
        // posted before this frame can be left, by return or by unwinding.
        let ptr = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
                job,
            )
        });
        let mut dispatch = Dispatch {
            pool: self,
            asked: n,
            posted: 0,
        };
        lock(&dispatch.pool.finished.tally).pending = n;
        for w in &dispatch.pool.workers[..n] {
            *lock(&w.mailbox.message) = Some(Message::Run(ptr));
            w.mailbox.posted.notify_one();
            dispatch.posted += 1;
        }
        let mine = catch_unwind(AssertUnwindSafe(caller));
        let job_panic = dispatch.wait();
        match (mine, job_panic) {
            (_, Some(p)) => resume_unwind(p),
            (Err(p), None) => resume_unwind(p),
            (Ok(r), None) => r,
        }
    }

    /// [`scope`](Self::scope) with nothing to do on this thread.
    pub fn for_each<T: Send>(&mut self, items: &mut [T], job: impl Fn(usize, &mut T) + Sync) {
        self.scope(items, job, || ())
    }
}

struct SendPtr<T>(*mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: used only to hand worker i its own item (`T: Send`).
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// The jobs of one `scope` call in flight: waits for them even when the
/// dispatching thread unwinds.
struct Dispatch<'p> {
    pool: &'p mut SpherePool,
    /// Jobs counted in `pending`.
    asked: usize,
    /// Jobs handed to workers so far.
    posted: usize,
}

impl Dispatch<'_> {
    /// Waits until every posted job has finished; the first job panic.
    fn wait(&mut self) -> Option<Box<dyn Any + Send>> {
        let finished = &self.pool.finished;
        let mut tally = lock(&finished.tally);
        // Jobs never posted (a dispatch cut short) will not report.
        let unposted = self.asked - self.posted;
        tally.pending -= unposted.min(tally.pending);
        while tally.pending > 0 {
            tally = finished
                .all_done
                .wait(tally)
                .unwrap_or_else(|p| p.into_inner());
        }
        self.asked = 0;
        self.posted = 0;
        tally.panic.take()
    }
}

impl Drop for Dispatch<'_> {
    fn drop(&mut self) {
        if self.asked > 0 {
            let _ = self.wait();
        }
    }
}

fn work(id: usize, mailbox: &Mailbox, finished: &Finished) {
    loop {
        let message = {
            let mut slot = lock(&mailbox.message);
            loop {
                if let Some(m) = slot.take() {
                    break m;
                }
                slot = mailbox.posted.wait(slot).unwrap_or_else(|p| p.into_inner());
            }
        };
        let JobPtr(job) = match message {
            Message::Run(job) => job,
            Message::Stop => return,
        };
        // SAFETY: the dispatcher waits for this job before its borrow ends.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(id) }));
        let mut tally = lock(&finished.tally);
        if let Err(p) = outcome
            && tally.panic.is_none()
        {
            tally.panic = Some(p);
        }
        tally.pending -= 1;
        if tally.pending == 0 {
            finished.all_done.notify_all();
        }
    }
}

impl Drop for SpherePool {
    fn drop(&mut self) {
        for w in &self.workers {
            *lock(&w.mailbox.message) = Some(Message::Stop);
            w.mailbox.posted.notify_one();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                // Jobs' panics are caught in the worker, so a join error
                // cannot happen; nothing to report if it did.
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_worker_runs_its_own_item_while_the_caller_works() {
        let mut pool = SpherePool::new();
        for round in 0..50usize {
            let n = 1 + round % 13;
            let mut items: Vec<(usize, String)> = (0..n).map(|i| (i * 10, String::new())).collect();
            let calls = AtomicUsize::new(0);
            let from_caller = pool.scope(
                &mut items,
                |i, (x, name)| {
                    *x += i + round;
                    *name = std::thread::current().name().unwrap_or("").to_string();
                    calls.fetch_add(1, Ordering::Relaxed);
                },
                || round * 2,
            );
            assert_eq!(from_caller, round * 2);
            assert_eq!(calls.load(Ordering::Relaxed), n);
            for (i, (x, name)) in items.iter().enumerate() {
                assert_eq!(*x, i * 11 + round);
                // Worker i always runs item i: the same thread every time.
                assert_eq!(name, &format!("cllm-sphere-{i}"));
            }
        }
        // Threads were started once, for the most items asked at a time.
        assert_eq!(pool.threads(), 13);
    }

    #[test]
    fn a_panicking_job_is_raised_to_the_caller_after_the_others_finish() {
        let mut pool = SpherePool::new();
        let finished = AtomicUsize::new(0);
        let mut items = vec![0u8; 6];
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.for_each(&mut items, |i, x| {
                if i == 3 {
                    panic!("job {i} broke");
                }
                *x = 1;
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        let payload = caught.expect_err("the job's panic reaches the caller");
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert_eq!(text, "job 3 broke");
        assert_eq!(finished.load(Ordering::Relaxed), 5);
        assert_eq!(items, vec![1, 1, 1, 0, 1, 1]);
        // The pool still works, on the same threads.
        let mut again = vec![0usize; 6];
        pool.for_each(&mut again, |i, x| *x = i);
        assert_eq!(again, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(pool.threads(), 6);
    }

    #[test]
    fn a_panicking_caller_still_waits_for_the_jobs() {
        let mut pool = SpherePool::new();
        let mut items = vec![0u64; 4];
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.scope(
                &mut items,
                |_, x| {
                    // Busy long enough that an early return would be seen.
                    let mut acc = 0u64;
                    for k in 0..200_000u64 {
                        acc = acc.wrapping_add(std::hint::black_box(k));
                    }
                    *x = acc;
                },
                || panic!("caller broke"),
            )
        }));
        assert!(caught.is_err());
        let want: u64 = (0..200_000u64).sum();
        assert!(items.iter().all(|&x| x == want));
    }

    #[test]
    fn dropping_the_pool_joins_its_threads() {
        let mut pool = SpherePool::new();
        let mut items = vec![0u8; 5];
        pool.for_each(&mut items, |_, x| *x = 1);
        let finished = Arc::clone(&pool.finished);
        // The pool, this test and every worker hold the shared tally; a
        // worker until its thread ends.
        assert_eq!(Arc::strong_count(&finished), 2 + 5);
        drop(pool);
        assert_eq!(Arc::strong_count(&finished), 1);
        // An empty pool drops at once, too.
        drop(SpherePool::new());
    }
}
