//! The GPU path: find a device and run the model's operations on it, each
//! the same contract (shapes, layout, accumulation) as its CPU op in
//! `cllm_core::ops`, through CubeCL's wgpu runtime (Vulkan, Metal, DX12) and
//! its tuned matrix products (`cubek-matmul`).
//!
//! Built only with the `cubecl` feature (the root package's `gpu` feature):
//! without it this crate is empty, so the default build needs nothing
//! beyond Rust. See docs/gpu.md.

#[cfg(feature = "cubecl")]
mod buffer;
#[cfg(feature = "cubecl")]
mod device;
#[cfg(feature = "cubecl")]
mod elementwise;
#[cfg(feature = "cubecl")]
mod error;
#[cfg(feature = "cubecl")]
mod products;

#[cfg(feature = "cubecl")]
pub use buffer::DeviceBuffer;
#[cfg(feature = "cubecl")]
pub use device::{AdapterSummary, Gpu, adapters};
#[cfg(feature = "cubecl")]
pub use error::GpuError;
#[cfg(feature = "cubecl")]
pub use products::DeviceMat;
