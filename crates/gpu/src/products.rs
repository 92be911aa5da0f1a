//! The model's matrix products on the device, with the contracts of
//! `cllm_core::ops::matmul` (`matmul`, `linear_forward`, `linear_backward`)
//! and `cllm_core::ops::matmul_tn` (`matmul_tn_acc`): the same shapes,
//! row-major layouts and accumulation. The products run through
//! `cubek-matmul` (CubeCL's tuned, autotuned matmul); `+=` adds the product
//! onto the output in a second kernel.

use cubecl::prelude::*;
use cubecl::zspace::{Shape, Strides};
use cubek_matmul::definition::{MatmulElems, MatmulGlobalElems};
use cubek_matmul::strategy::Strategy;
use cubek_std::InputBinding;

use crate::buffer::DeviceBuffer;
use crate::device::Gpu;
use crate::error::GpuError;

/// A read-only (rows, cols) view of a device buffer: element (r, c) is
/// `buffer[r * row_stride + c * col_stride]`, like `cllm_core`'s `MatRef`.
#[derive(Clone, Copy)]
pub struct DeviceMat<'a> {
    buffer: &'a DeviceBuffer,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> DeviceMat<'a> {
    /// A dense row-major (rows, cols) matrix at the start of `buffer`.
    pub fn new(buffer: &'a DeviceBuffer, rows: usize, cols: usize) -> Self {
        DeviceMat {
            buffer,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        DeviceMat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element the view addresses lies in its buffer.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.buffer.len()
    }

    fn binding(&self) -> TensorBinding {
        // SAFETY: `fits` was checked by the caller, so the shape and strides
        // address only elements inside the buffer.
        unsafe {
            TensorBinding::from_raw_parts(
                self.buffer.handle.clone(),
                Strides::from(vec![self.row_stride, self.col_stride]),
                Shape::from(vec![self.rows, self.cols]),
            )
        }
    }
}

fn shape_error(op: &'static str, problem: String) -> GpuError {
    GpuError::Shape { op, problem }
}

impl Gpu {
    /// `out = a · b` (or `out += a · b` when `accumulate`): a (m, k), b (k, n),
    /// out a dense (m, n) buffer.
    pub fn matmul(
        &self,
        out: &mut DeviceBuffer,
        a: DeviceMat,
        b: DeviceMat,
        accumulate: bool,
    ) -> Result<(), GpuError> {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        if b.rows != k {
            return Err(shape_error(
                "matmul",
                format!("inner dimensions {k} and {} differ", b.rows),
            ));
        }
        if !a.fits() || !b.fits() || out.len() < m * n {
            return Err(shape_error(
                "matmul",
                format!(
                    "a ({m}, {k}) in {} values, b ({k}, {n}) in {}, out ({m}, {n}) in {}",
                    a.buffer.len(),
                    b.buffer.len(),
                    out.len()
                ),
            ));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 {
            if !accumulate {
                *out = self.zeros(out.len());
            }
            return Ok(());
        }
        let product = if accumulate {
            DeviceBuffer::from_handle(self.client.empty(m * n * 4), m * n)
        } else {
            out.clone()
        };
        let f = f32::elem_type_native();
        let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
            lhs: f,
            rhs: f,
            out: f,
        });
        let out_binding = DeviceMat::new(&product, m, n).binding();
        cubek_matmul::launch::launch_ref(
            &Strategy::Auto,
            &self.client,
            InputBinding::Normal(a.binding(), f),
            InputBinding::Normal(b.binding(), f),
            out_binding,
            &mut dtypes,
        )
        .map_err(|e| GpuError::Launch {
            op: "matmul",
            reason: format!("{e:?}"),
        })?;
        if accumulate {
            self.add_into(out, &product, m * n);
        }
        Ok(())
    }

    /// The linear layer forward: out (n, o) = x (n, i) · wᵀ + bias, with w
    /// stored (o, i) like torch.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_forward(
        &self,
        out: &mut DeviceBuffer,
        x: &DeviceBuffer,
        w: &DeviceBuffer,
        bias: Option<&DeviceBuffer>,
        n: usize,
        i: usize,
        o: usize,
    ) -> Result<(), GpuError> {
        self.matmul(
            out,
            DeviceMat::new(x, n, i),
            DeviceMat::new(w, o, i).t(),
            false,
        )?;
        if let Some(b) = bias {
            if b.len() < o {
                return Err(shape_error(
                    "linear_forward",
                    format!("bias has {} values for {o} outputs", b.len()),
                ));
            }
            self.add_bias(out, b, n, o);
        }
        Ok(())
    }

    /// The linear layer backward, given dout (n, o): dx (n, i) `=` dout · w
    /// when `dx` is given, dw (o, i) `+=` doutᵀ · x, dbias (o) `+=` the
    /// column sums of dout.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_backward(
        &self,
        dx: Option<&mut DeviceBuffer>,
        dw: &mut DeviceBuffer,
        dbias: Option<&mut DeviceBuffer>,
        dout: &DeviceBuffer,
        x: &DeviceBuffer,
        w: &DeviceBuffer,
        n: usize,
        i: usize,
        o: usize,
    ) -> Result<(), GpuError> {
        if let Some(dx) = dx {
            self.matmul(
                dx,
                DeviceMat::new(dout, n, o),
                DeviceMat::new(w, o, i),
                false,
            )?;
        }
        self.matmul(
            dw,
            DeviceMat::new(dout, n, o).t(),
            DeviceMat::new(x, n, i),
            true,
        )?;
        if let Some(db) = dbias {
            if db.len() < o || dout.len() < n * o {
                return Err(shape_error(
                    "linear_backward",
                    format!("dbias has {} values for {o} outputs", db.len()),
                ));
            }
            self.add_column_sums(db, dout, n, o);
        }
        Ok(())
    }

    /// `out (m, n) += aᵀ · b` for a (k, m) and b (k, n), all row-major: the
    /// tied head's dwte product.
    pub fn matmul_tn_acc(
        &self,
        out: &mut DeviceBuffer,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        k: usize,
        m: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        self.matmul(
            out,
            DeviceMat::new(a, k, m).t(),
            DeviceMat::new(b, k, n),
            true,
        )
    }
}
