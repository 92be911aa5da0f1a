//! What can go wrong on the device, typed at the crate's boundary.

/// An error of the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No Vulkan, Metal or DX12 adapter was found (not even a software one).
    #[error(
        "no GPU adapter found (Vulkan, Metal or DX12); on Linux, Mesa's lavapipe (mesa-vulkan-drivers) provides a software one"
    )]
    NoAdapter,
    /// A kernel could not be set up for the given problem.
    #[error("{op}: the device could not run it: {reason}")]
    Launch { op: &'static str, reason: String },
    /// Reading a buffer back from the device failed.
    #[error("reading a buffer back from the device failed: {0}")]
    Read(String),
    /// Operands whose sizes do not agree with the shapes given.
    #[error("{op}: {problem}")]
    Shape { op: &'static str, problem: String },
}
