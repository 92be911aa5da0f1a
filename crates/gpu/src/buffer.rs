//! f32 buffers on the device: upload, download, zeros.

use cubecl::prelude::*;
use cubecl::server::Handle;

use crate::device::Gpu;
use crate::error::GpuError;

/// A flat f32 buffer in device memory.
#[derive(Clone)]
pub struct DeviceBuffer {
    pub(crate) handle: Handle,
    len: usize,
}

impl DeviceBuffer {
    /// How many f32 values it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Gpu {
    /// Copies `data` to the device.
    pub fn upload(&self, data: &[f32]) -> DeviceBuffer {
        DeviceBuffer {
            handle: self.client.create_from_slice(f32::as_bytes(data)),
            len: data.len(),
        }
    }

    /// A buffer of `len` zeros.
    pub fn zeros(&self, len: usize) -> DeviceBuffer {
        self.upload(&vec![0.0; len])
    }

    /// Copies a buffer back to the host (waiting for the work on it).
    pub fn download(&self, buffer: &DeviceBuffer) -> Result<Vec<f32>, GpuError> {
        let bytes = self
            .client
            .read_one(buffer.handle.clone())
            .map_err(|e| GpuError::Read(format!("{e:?}")))?;
        Ok(f32::from_bytes(&bytes)[..buffer.len].to_vec())
    }
}

impl DeviceBuffer {
    pub(crate) fn from_handle(handle: Handle, len: usize) -> Self {
        DeviceBuffer { handle, len }
    }
}
