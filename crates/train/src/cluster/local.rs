//! The collectives between threads of one process: each thread is a rank.
//! It runs the distributed trainer's exact code path without MPI, so the
//! tests of data parallelism (agreement with one rank, reproducibility,
//! resume on another rank count) run on every machine.

use super::Collective;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a rank waits for the others before it gives up: a rank that
/// died must not hang the rest (what MPI's runtime does for processes).
const PATIENCE: Duration = Duration::from_secs(120);

/// One rank of a cluster of threads. Make all of them with [`LocalCluster::ranks`].
pub struct LocalCluster {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    /// Ranks update only their share of the weights (as the ranks of one
    /// MPI host do).
    sharded: bool,
    /// Memory handed out by `shared_words`, alive as long as the ranks.
    words: Mutex<Vec<Box<[u32]>>>,
    state: Mutex<Round>,
    changed: Condvar,
}

/// One collective call: what each rank brought, then the result every rank
/// copies out before the next call may begin.
#[derive(Default)]
struct Round {
    generation: u64,
    brought: Vec<Option<Vec<u8>>>,
    arrived: usize,
    result: Option<Arc<Vec<u8>>>,
    readers_left: usize,
}

impl LocalCluster {
    /// `size` ranks that talk to each other; hand one to each thread. Each
    /// updates only its share of the weights, as the ranks of one MPI host
    /// do.
    pub fn ranks(size: usize) -> Vec<LocalCluster> {
        Self::make(size, true)
    }

    /// [`ranks`](Self::ranks) that update every weight on every rank, as
    /// ranks summing through MPI's all-reduce do.
    pub fn ranks_unsharded(size: usize) -> Vec<LocalCluster> {
        Self::make(size, false)
    }

    fn make(size: usize, sharded: bool) -> Vec<LocalCluster> {
        assert!(size >= 1);
        let shared = Arc::new(Shared {
            size,
            sharded,
            words: Mutex::new(Vec::new()),
            state: Mutex::new(Round {
                brought: vec![None; size],
                ..Round::default()
            }),
            changed: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalCluster {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    /// Every rank brings `mine`; the last to arrive combines them (in rank
    /// order) and every rank gets the combination.
    fn exchange(&self, mine: Vec<u8>, combine: fn(Vec<Vec<u8>>) -> Vec<u8>) -> Arc<Vec<u8>> {
        let sh = &*self.shared;
        let deadline = Instant::now() + PATIENCE;
        let wait = |guard| {
            let left = deadline.saturating_duration_since(Instant::now());
            let (guard, timeout) = sh.changed.wait_timeout(guard, left).expect("cluster lock");
            if timeout.timed_out() && Instant::now() >= deadline {
                panic!(
                    "rank {}: the other ranks did not answer within {} s",
                    self.rank,
                    PATIENCE.as_secs()
                );
            }
            guard
        };
        let mut st = sh.state.lock().expect("cluster lock");
        // The previous round's result must be read by all before reuse.
        while st.readers_left > 0 {
            st = wait(st);
        }
        st.brought[self.rank] = Some(mine);
        st.arrived += 1;
        if st.arrived == sh.size {
            let inputs = st.brought.iter_mut().map(|b| b.take().unwrap()).collect();
            st.result = Some(Arc::new(combine(inputs)));
            st.arrived = 0;
            st.readers_left = sh.size;
            st.generation += 1;
            sh.changed.notify_all();
        } else {
            let g = st.generation;
            while st.generation == g {
                st = wait(st);
            }
        }
        let result = st.result.clone().expect("a round's result");
        st.readers_left -= 1;
        if st.readers_left == 0 {
            st.result = None;
            sh.changed.notify_all();
        }
        result
    }
}

fn sum_f32_bytes(inputs: Vec<Vec<u8>>) -> Vec<u8> {
    let mut acc: Vec<f32> = decode(&inputs[0]);
    for other in &inputs[1..] {
        for (a, b) in acc.iter_mut().zip(decode::<f32>(other)) {
            *a += b;
        }
    }
    acc.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn sum_f64_bytes(inputs: Vec<Vec<u8>>) -> Vec<u8> {
    let mut acc: Vec<f64> = decode(&inputs[0]);
    for other in &inputs[1..] {
        for (a, b) in acc.iter_mut().zip(decode::<f64>(other)) {
            *a += b;
        }
    }
    acc.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn first(mut inputs: Vec<Vec<u8>>) -> Vec<u8> {
    inputs.swap_remove(0)
}

trait Le: Sized {
    fn from_le(bytes: &[u8]) -> Self;
}
impl Le for f32 {
    fn from_le(b: &[u8]) -> f32 {
        f32::from_le_bytes(b.try_into().unwrap())
    }
}
impl Le for f64 {
    fn from_le(b: &[u8]) -> f64 {
        f64::from_le_bytes(b.try_into().unwrap())
    }
}

fn decode<T: Le>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(size_of::<T>()).map(T::from_le).collect()
}

impl Collective for LocalCluster {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn sum_f32(&self, buf: &mut [f32]) {
        let mine = buf.iter().flat_map(|x| x.to_le_bytes()).collect();
        let sum = self.exchange(mine, sum_f32_bytes);
        for (b, x) in buf.iter_mut().zip(decode::<f32>(&sum)) {
            *b = x;
        }
    }
    fn shards(&self) -> bool {
        self.shared.sharded
    }
    /// Threads share the process's memory: rank 0 allocates, every rank
    /// gets its address. Sharded clusters only, as MPI shares a host's.
    fn shared_words(&self, len: usize) -> Option<*mut u32> {
        if !self.shared.sharded {
            return None;
        }
        let mut address = Vec::new();
        if self.rank == 0 {
            let mut words = vec![0u32; len].into_boxed_slice();
            address = (words.as_mut_ptr().expose_provenance() as u64)
                .to_le_bytes()
                .to_vec();
            self.shared.words.lock().expect("cluster lock").push(words);
        }
        self.broadcast(&mut address);
        let address = u64::from_le_bytes(address[..8].try_into().expect("an address"));
        Some(std::ptr::with_exposed_provenance_mut(address as usize))
    }
    fn sum_f64(&self, buf: &mut [f64]) {
        let mine = buf.iter().flat_map(|x| x.to_le_bytes()).collect();
        let sum = self.exchange(mine, sum_f64_bytes);
        for (b, x) in buf.iter_mut().zip(decode::<f64>(&sum)) {
            *b = x;
        }
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let from_zero = self.exchange(std::mem::take(bytes), first);
        *bytes = from_zero.as_ref().clone();
    }
    fn describe(&self) -> String {
        format!("{} ranks as threads of one process", self.shared.size)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Cluster;
    use super::*;

    fn on_ranks<T: Send + 'static>(
        k: usize,
        f: impl Fn(Cluster) -> T + Send + Sync + Clone + 'static,
    ) -> Vec<T> {
        let handles: Vec<_> = LocalCluster::ranks(k)
            .into_iter()
            .map(|r| {
                let f = f.clone();
                std::thread::spawn(move || f(Cluster::new(Arc::new(r))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn sums_broadcasts_and_gathers_across_three_ranks_many_times() {
        let out = on_ranks(3, |c| {
            let mut last = Vec::new();
            for round in 0..50 {
                let r = c.rank() as f32;
                let mut v = vec![r, 10.0 * r + round as f32];
                c.sum_f32(&mut v);
                let mut b = if c.rank() == 0 {
                    format!("round {round}").into_bytes()
                } else {
                    b"not mine".to_vec()
                };
                c.broadcast(&mut b);
                assert_eq!(b, format!("round {round}").into_bytes());
                let g = c.gather_u64(u64::MAX - c.rank() as u64);
                assert_eq!(g, vec![u64::MAX, u64::MAX - 1, u64::MAX - 2]);
                last = v;
            }
            last
        });
        for v in out {
            assert_eq!(v, vec![3.0, 30.0 + 3.0 * 49.0]);
        }
    }

    #[test]
    fn ranks_share_a_step_in_order_covering_it_once() {
        let shares = on_ranks(3, |c| c.share(10));
        assert_eq!(shares, vec![0..4, 4..7, 7..10]);
    }
}
