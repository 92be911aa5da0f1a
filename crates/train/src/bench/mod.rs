//! Engine benchmarks that return plain figures (the CLI and `cargo bench`
//! print them): the machine's peaks (`peak.rs`: the matmul peak of the
//! kernel the model uses, the instructions' own in `instruction_peak.rs`),
//! one full training step on one thread with a per-operation profile
//! (`step.rs`), the same profile at several thread counts at once
//! (`threads.rs`), the model's f32 product shapes on `gemm` and on
//! OpenBLAS (`blas.rs`), and each operation's floor from its work, the bandwidth and
//! the peaks (`floors.rs`).

pub mod blas;
mod floors;
pub mod instruction_peak;
mod peak;
mod step;
mod threads;

pub use floors::{
    Bandwidth, OpLimit, bandwidth_at, floor_step_secs, floor_step_with, format_profile_limits,
    measure_bandwidth, op_limits, profile_limits,
};
pub use peak::{
    Clocks, Peaks, ceiling_instructions, gemm_isa, instruction_peaks, kernel_name, matmul_peak,
    matmul_peak_for, matmul_peak_gflops,
};
pub use step::{
    StepBench, TrainStepRig, bench_train_step, bench_train_step_in, bench_train_step_with_chunk,
    peaks_of,
};
pub use threads::{ThreadProfile, format_thread_profiles, profile_at_threads};
