//! Elementwise kernels, one thread per element (or per column for the
//! bias gradient), with the contracts of their CPU ops in `cllm_core::ops`:
//! GELU (tanh form) and the residual connection forward and backward, and
//! the linear layer's bias forward and backward.

use cubecl::prelude::*;

use crate::buffer::DeviceBuffer;
use crate::device::Gpu;
use crate::error::GpuError;

/// Threads per workgroup for the elementwise kernels.
const WORKGROUP: u32 = 256;

const S: f32 = 0.797_884_6; // sqrt(2 / pi)
const K: f32 = 0.044_715;

#[cube(launch)]
fn add_into_kernel(out: &mut [f32], x: &[f32]) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        out[i] += x[i];
    }
}

#[cube(launch)]
fn add_bias_kernel(out: &mut [f32], bias: &[f32]) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        out[i] += bias[i % bias.len()];
    }
}

/// db (o) += the column sums of dout (n, o), summed in row order.
#[cube(launch)]
fn column_sums_kernel(db: &mut [f32], dout: &[f32]) {
    let c = ABSOLUTE_POS;
    let o = db.len();
    if c < o {
        let n = dout.len() / o;
        let mut acc = 0.0f32;
        for r in 0..n {
            acc += dout[r * o + c];
        }
        db[c] += acc;
    }
}

#[cube(launch)]
fn gelu_forward_kernel(out: &mut [f32], x: &[f32]) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let v = x[i];
        let t = f32::tanh(S * (v + K * v * v * v));
        out[i] = 0.5 * v * (1.0 + t);
    }
}

#[cube(launch)]
fn gelu_backward_kernel(dx: &mut [f32], dout: &[f32], x: &[f32]) {
    let i = ABSOLUTE_POS;
    if i < dx.len() {
        let v = x[i];
        let t = f32::tanh(S * (v + K * v * v * v));
        let local = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * S * (1.0 + 3.0 * K * v * v);
        dx[i] = dout[i] * local;
    }
}

#[cube(launch)]
fn residual_forward_kernel(out: &mut [f32], a: &[f32], b: &[f32]) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        out[i] = a[i] + b[i];
    }
}

fn count(n: usize) -> CubeCount {
    CubeCount::Static((n as u32).div_ceil(WORKGROUP).max(1), 1, 1)
}

fn arg(buffer: &DeviceBuffer, len: usize) -> BufferArg {
    debug_assert!(len <= buffer.len());
    // SAFETY: `len` is at most the buffer's length (checked by every caller).
    unsafe { BufferArg::from_raw_parts(buffer.handle.clone(), len) }
}

fn check_len(
    op: &'static str,
    what: &str,
    buffer: &DeviceBuffer,
    len: usize,
) -> Result<(), GpuError> {
    if buffer.len() < len {
        return Err(GpuError::Shape {
            op,
            problem: format!("{what} has {} values, {len} needed", buffer.len()),
        });
    }
    Ok(())
}

impl Gpu {
    /// out[..len] += x[..len].
    pub(crate) fn add_into(&self, out: &mut DeviceBuffer, x: &DeviceBuffer, len: usize) {
        add_into_kernel::launch(
            &self.client,
            count(len),
            CubeDim::new_1d(WORKGROUP),
            arg(out, len),
            arg(x, len),
        );
    }

    /// Every row of out (n, o) += bias (o).
    pub(crate) fn add_bias(&self, out: &mut DeviceBuffer, bias: &DeviceBuffer, n: usize, o: usize) {
        add_bias_kernel::launch(
            &self.client,
            count(n * o),
            CubeDim::new_1d(WORKGROUP),
            arg(out, n * o),
            arg(bias, o),
        );
    }

    /// db (o) += the column sums of dout (n, o).
    pub(crate) fn add_column_sums(
        &self,
        db: &mut DeviceBuffer,
        dout: &DeviceBuffer,
        n: usize,
        o: usize,
    ) {
        column_sums_kernel::launch(
            &self.client,
            count(o),
            CubeDim::new_1d(WORKGROUP),
            arg(db, o),
            arg(dout, n * o),
        );
    }

    /// GELU forward: out = gelu(x), over x's length.
    pub fn gelu_forward(&self, out: &mut DeviceBuffer, x: &DeviceBuffer) -> Result<(), GpuError> {
        let len = x.len();
        check_len("gelu_forward", "out", out, len)?;
        gelu_forward_kernel::launch(
            &self.client,
            count(len),
            CubeDim::new_1d(WORKGROUP),
            arg(out, len),
            arg(x, len),
        );
        Ok(())
    }

    /// GELU backward: dx `=` dout ⊙ gelu'(x), over x's length.
    pub fn gelu_backward(
        &self,
        dx: &mut DeviceBuffer,
        dout: &DeviceBuffer,
        x: &DeviceBuffer,
    ) -> Result<(), GpuError> {
        let len = x.len();
        check_len("gelu_backward", "dx", dx, len)?;
        check_len("gelu_backward", "dout", dout, len)?;
        gelu_backward_kernel::launch(
            &self.client,
            count(len),
            CubeDim::new_1d(WORKGROUP),
            arg(dx, len),
            arg(dout, len),
            arg(x, len),
        );
        Ok(())
    }

    /// Residual forward: out = a + b, over a's length.
    pub fn residual_forward(
        &self,
        out: &mut DeviceBuffer,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
    ) -> Result<(), GpuError> {
        let len = a.len();
        check_len("residual_forward", "out", out, len)?;
        check_len("residual_forward", "b", b, len)?;
        residual_forward_kernel::launch(
            &self.client,
            count(len),
            CubeDim::new_1d(WORKGROUP),
            arg(out, len),
            arg(a, len),
            arg(b, len),
        );
        Ok(())
    }

    /// Residual backward: da `+=` dout, db `+=` dout, over dout's length.
    pub fn residual_backward(
        &self,
        da: &mut DeviceBuffer,
        db: &mut DeviceBuffer,
        dout: &DeviceBuffer,
    ) -> Result<(), GpuError> {
        let len = dout.len();
        check_len("residual_backward", "da", da, len)?;
        check_len("residual_backward", "db", db, len)?;
        self.add_into(da, dout, len);
        self.add_into(db, dout, len);
        Ok(())
    }
}
