//! How `cllm train` was launched: on its own (one machine), or as one rank
//! of `mpirun -np K cllm train ...` (with the `mpi` cargo feature).

use cllm_train::cluster::Cluster;

pub enum Launch {
    Solo,
    #[cfg(feature = "mpi")]
    Mpi(cllm_train::cluster::mpi::MpiWorld),
}

/// Ranks `mpirun` says this job has (1 when not under MPI).
fn ranks_from_launcher() -> usize {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1)
}

impl Launch {
    pub fn detect() -> Result<Launch, String> {
        #[cfg(feature = "mpi")]
        if cllm_train::cluster::mpi::launched_by_mpirun() {
            return Ok(Launch::Mpi(cllm_train::cluster::mpi::MpiWorld::init()?));
        }
        let ranks = ranks_from_launcher();
        if ranks > 1 {
            // K copies that do not talk would each train alone and all
            // write the same files.
            return Err(format!(
                "started as one of {ranks} MPI processes, but this cllm was built without MPI: \
                 build it with `cargo build --release --features mpi` (needs OpenMPI: \
                 apt-get install openmpi-bin libopenmpi-dev libclang-dev)"
            ));
        }
        Ok(Launch::Solo)
    }

    pub fn cluster(&self) -> Cluster {
        match self {
            Launch::Solo => Cluster::solo(),
            #[cfg(feature = "mpi")]
            Launch::Mpi(world) => Cluster::new(world.cluster()),
        }
    }

    /// After an error on this rank: the others are waiting in a collective
    /// for it, so the whole job ends now (MPI_Abort), with `code`.
    pub fn end_all_ranks(&self, message: &str, code: u8) {
        match self {
            Launch::Solo => {}
            #[cfg(feature = "mpi")]
            Launch::Mpi(world) => {
                eprintln!(
                    "error on rank {}: {message}\nending every rank of the job",
                    world.cluster().rank_index()
                );
                world.abort(i32::from(code))
            }
        }
        let _ = (message, code);
    }
}

/// Sizes rayon's global pool (weight packing for bf16, data preparation) to
/// the `threads` this process computes with when it is one rank of several:
/// K ranks on one machine, each with rayon's default of one thread per
/// core, would run K times the cores' worth of threads at every weight
/// refresh, and rayon's idle threads spin before they sleep, taking cycles
/// from the other ranks' spheres. Alone, rayon keeps every core.
pub fn size_rayon_for_rank(cluster: &Cluster, threads: usize) {
    if cluster.is_distributed() {
        // Fails only when the pool already exists (nothing in a rank's
        // start uses rayon before this); it then keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build_global();
    }
}
