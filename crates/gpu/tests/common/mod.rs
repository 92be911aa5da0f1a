//! What the device tests share: the one device they open, the skip rule,
//! random inputs and the comparison with the CPU ops.

#![allow(dead_code)]

use std::sync::OnceLock;

use cllm_core::rng::Rng;
use cllm_gpu::{Gpu, GpuError};

/// The device every test in this binary runs on, opened once; `None` (the
/// test then skips) where there is no adapter, unless `CLLM_REQUIRE_GPU=1`,
/// under which a missing adapter fails the test.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    let gpu = GPU.get_or_init(|| match Gpu::open() {
        Ok(gpu) => Some(gpu),
        Err(GpuError::NoAdapter) => None,
        Err(e) => panic!("opening the device failed: {e}"),
    });
    if gpu.is_none() {
        assert!(
            std::env::var("CLLM_REQUIRE_GPU").as_deref() != Ok("1"),
            "CLLM_REQUIRE_GPU=1 but no Vulkan adapter was found (install mesa-vulkan-drivers)"
        );
        println!("skipped: no Vulkan adapter");
    }
    gpu.as_ref()
}

pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.normal()).collect()
}

/// Every element of `got` within 1e-4 of `want`, relative to the larger of
/// |want| and 1 (an output near zero is held to 1e-4 absolute).
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{what}: element {i} is {g} on the device, {w} on the CPU"
        );
    }
}
