//! The all-reduce both MPI paths fall back on (`mpi.rs` for the whole sum,
//! `shared_window.rs` across hosts). Built only with the `mpi` cargo feature.

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// An all-reduce (sum) that waits without spinning. A blocking MPI
/// collective busy-polls while the other ranks are still in backward, and
/// that poll takes a core from this rank's own sphere threads. So: a
/// non-blocking all-reduce, tested with a yield and then short sleeps
/// between tests (MPI progresses it inside each test).
pub(super) fn sum_politely<T>(world: &SimpleCommunicator, buf: &mut [T])
where
    T: Copy + mpi::datatype::Equivalence,
{
    let send = buf.to_vec();
    mpi::request::scope(|scope| {
        let mut request =
            world.immediate_all_reduce_into(scope, &send[..], &mut *buf, SystemOperation::sum());
        let mut tries = 0u32;
        loop {
            match request.test() {
                Ok(_) => break,
                Err(pending) => request = pending,
            }
            tries += 1;
            if tries < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    });
}
