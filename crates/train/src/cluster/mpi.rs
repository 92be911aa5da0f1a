//! The collectives over MPI (rsmpi over the system's OpenMPI), for
//! `mpirun -np K cllm train`. Built only with the `mpi` cargo feature.

use super::Collective;
use super::polite_sum::sum_politely;
use super::shared_window::NodeReduce;
use crate::error::TrainError;
use mpi::environment::{Threading, Universe};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::Mutex;

/// True when this process was started by an MPI launcher (`mpirun`,
/// `srun`): only then is MPI initialised, so a build with the feature run
/// on its own is one machine and never starts MPI's runtime.
pub fn launched_by_mpirun() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// MPI initialised for this process. Keep it alive on the main thread for
/// the whole run: dropping it finalises MPI.
pub struct MpiWorld {
    _universe: Universe,
    cluster: std::sync::Arc<MpiCluster>,
}

/// This process's rank in `MPI_COMM_WORLD`.
pub struct MpiCluster {
    comms: Mutex<Comms>,
    rank: usize,
    size: usize,
    hosts: String,
}

/// The communicators, behind one lock.
struct Comms {
    world: SimpleCommunicator,
    /// Sums within a host through shared memory (`None`: MPI's all-reduce
    /// does all of it; see [`NodeReduce::new`]).
    node: Option<NodeReduce>,
}

// The communicators are handles to MPI objects and the shared window's
// segments are mapped for the whole run. MPI was initialised with at least
// MPI_THREAD_SERIALIZED, and every call goes through the mutex, so no two
// threads are ever inside MPI at once.
unsafe impl Send for MpiCluster {}
unsafe impl Sync for MpiCluster {}

impl MpiWorld {
    /// Initialises MPI. Calls from several threads (the trainer, the
    /// thread that all-reduces gradients while backward runs) need at least
    /// `MPI_THREAD_SERIALIZED`.
    pub fn init() -> Result<MpiWorld, TrainError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or(TrainError::MpiInitialised)?;
        if threading < Threading::Serialized {
            return Err(TrainError::MpiThreading(format!("{threading:?}")));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        // Every rank's host name, for the run's log and errors.
        let name = mpi::environment::processor_name().unwrap_or_else(|_| "?".into());
        let mut mine = [0u8; 64];
        let n = name.len().min(64);
        mine[..n].copy_from_slice(&name.as_bytes()[..n]);
        let mut all = vec![0u8; 64 * size];
        world.all_gather_into(&mine[..], &mut all[..]);
        let mut names: Vec<String> = all
            .chunks(64)
            .map(|c| {
                String::from_utf8_lossy(c)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        names.dedup();
        let node = NodeReduce::new(&world);
        let cluster = MpiCluster {
            comms: Mutex::new(Comms { world, node }),
            rank,
            size,
            hosts: names.join(", "),
        };
        Ok(MpiWorld {
            _universe: universe,
            cluster: std::sync::Arc::new(cluster),
        })
    }

    pub fn cluster(&self) -> std::sync::Arc<MpiCluster> {
        std::sync::Arc::clone(&self.cluster)
    }

    /// Ends every rank of the job at once (MPI_Abort): after an error on
    /// one rank the others must not wait for it in a collective.
    pub fn abort(&self, code: i32) -> ! {
        let comms = self.cluster.comms.lock().unwrap_or_else(|p| p.into_inner());
        comms.world.abort(code)
    }
}

impl Drop for MpiWorld {
    /// The shared window and the host's communicators go before MPI is
    /// finalised (when the universe drops, after this).
    fn drop(&mut self) {
        let mut comms = self.cluster.comms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut node) = comms.node.take() {
            node.free();
            node.free_shared_words();
        }
    }
}

impl Collective for MpiCluster {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sum_f32(&self, buf: &mut [f32]) {
        let mut comms = self.comms.lock().expect("MPI lock");
        let Comms { world, node } = &mut *comms;
        let through_memory = node.as_mut().is_some_and(|n| n.sum_f32(world, buf));
        if !through_memory {
            sum_politely(world, buf);
        }
    }
    fn shards(&self) -> bool {
        let comms = self.comms.lock().expect("MPI lock");
        comms.node.as_ref().is_some_and(NodeReduce::shards)
    }
    fn reduce_scatter_f32(&self, buf: &mut [f32]) {
        let mut comms = self.comms.lock().expect("MPI lock");
        let Comms { world, node } = &mut *comms;
        let through_memory = node
            .as_mut()
            .is_some_and(|n| n.reduce_scatter_f32(world, buf));
        if !through_memory {
            // The whole sum: every share final.
            sum_politely(world, buf);
        }
    }
    fn reduce_scatter_from_f32(&self, input: &[f32], out: &mut [f32]) {
        let mut comms = self.comms.lock().expect("MPI lock");
        let Comms { world, node } = &mut *comms;
        let through_memory = node
            .as_mut()
            .is_some_and(|n| n.reduce_scatter_from(world, input, out));
        if !through_memory {
            out.copy_from_slice(input);
            sum_politely(world, out);
        }
    }
    fn shared_words(&self, len: usize) -> Option<*mut u32> {
        let mut comms = self.comms.lock().expect("MPI lock");
        let Comms { world, node } = &mut *comms;
        node.as_mut().and_then(|n| n.shared_words(world, len))
    }
    fn all_gather_f32(&self, buf: &mut [f32]) {
        let mut comms = self.comms.lock().expect("MPI lock");
        let Comms { world, node } = &mut *comms;
        let through_memory = node.as_mut().is_some_and(|n| n.all_gather_f32(world, buf));
        if !through_memory {
            // Each rank's share and zeros, summed: exact.
            let mine = crate::tree::share(buf.len(), self.size, self.rank);
            buf[..mine.start].fill(0.0);
            buf[mine.end..].fill(0.0);
            sum_politely(world, buf);
        }
    }
    fn sum_f64(&self, buf: &mut [f64]) {
        let comms = self.comms.lock().expect("MPI lock");
        sum_politely(&comms.world, buf);
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) {
        let comms = self.comms.lock().expect("MPI lock");
        let root = comms.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root.broadcast_into(&mut bytes[..]);
    }
    fn describe(&self) -> String {
        let comms = self.comms.lock().expect("MPI lock");
        match &comms.node {
            Some(node) => format!(
                "MPI: {} ranks on {}; the {} ranks of a host sum through shared memory",
                self.size,
                self.hosts,
                node.local_ranks()
            ),
            None => format!("MPI: {} ranks on {}", self.size, self.hosts),
        }
    }
}

impl MpiCluster {
    /// This process's rank (for messages).
    pub fn rank_index(&self) -> usize {
        self.rank
    }
}
