//! Device discovery: the adapters this machine offers, and the one the GPU
//! path opens (CubeCL's choice: a real GPU before a software one).

use cubecl::prelude::Client;
use cubecl::wgpu::{AutoGraphicsApi, RuntimeOptions, WgpuDevice, init_device, init_setup, wgpu};

use crate::error::GpuError;

/// What an adapter is and the limits the ops have to fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// The graphics API it is reached through: Vulkan, Metal, Dx12, Gl.
    pub backend: String,
    /// Discrete, integrated, virtual GPU, or CPU (a software rasterizer).
    pub device_type: String,
    /// The driver and its version as the adapter reports them.
    pub driver: String,
    /// The largest buffer, in bytes.
    pub max_buffer_size: u64,
    /// The largest storage buffer one kernel may bind, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// The most invocations in one workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// The most workgroup-shared memory, in bytes.
    pub max_compute_workgroup_storage_size: u32,
}

impl AdapterSummary {
    fn new(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        }
    }

    /// Whether this is a software device (lavapipe, WARP): correct, not fast.
    pub fn is_software(&self) -> bool {
        self.device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {}, driver {}; max buffer {} MiB, storage binding {} MiB, {} invocations/workgroup, {} KiB shared)",
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.max_buffer_size >> 20,
            self.max_storage_buffer_binding_size >> 20,
            self.max_compute_invocations_per_workgroup,
            self.max_compute_workgroup_storage_size >> 10,
        )
    }
}

/// Every adapter the Vulkan, Metal and DX12 backends offer on this machine.
pub fn adapters() -> Vec<AdapterSummary> {
    let backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    cubecl::future::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(|a| AdapterSummary::new(&a.get_info(), &a.limits()))
        .collect()
}

/// An opened device: the adapter it is and the CubeCL client that runs
/// kernels on it.
pub struct Gpu {
    pub(crate) client: Client,
    adapter: AdapterSummary,
}

impl Gpu {
    /// Opens the device CubeCL picks (a real GPU before a software one), or
    /// [`GpuError::NoAdapter`] where there is none.
    pub fn open() -> Result<Gpu, GpuError> {
        if adapters().is_empty() {
            return Err(GpuError::NoAdapter);
        }
        let setup =
            init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), RuntimeOptions::default());
        let adapter = AdapterSummary::new(&setup.adapter.get_info(), &setup.adapter.limits());
        let device = init_device(setup, RuntimeOptions::default());
        let client = cubecl::Device::Wgpu(device).client();
        Ok(Gpu { client, adapter })
    }

    /// The adapter this device is.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }
}
