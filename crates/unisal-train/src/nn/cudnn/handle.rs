//! cuDNN plumbing for the GPU layers: one handle per thread and device, bound to candle's stream; descriptors that
//! free themselves; cuDNN statuses as candle errors; device pointers of candle's CUDA storages.
//!
//! Every call is enqueued on the device's one candle stream, so cuDNN's work is ordered with candle's own kernels
//! and no synchronisation is needed. Only f32 is described here (the layers check the dtype before they come).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::cudnn::{result, sys};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::DeviceId;
use candle_core::{CudaDevice, CudaStorage, Layout};

use super::tf32_allowed;

/// cuDNN's scaling factors: `out = ONE * op + ZERO * out`.
pub(crate) const ONE: f32 = 1.0;
pub(crate) const ZERO: f32 = 0.0;

/// A scaling factor as cuDNN's `const void*`.
pub(crate) fn scale(v: &f32) -> *const std::ffi::c_void {
    v as *const f32 as *const std::ffi::c_void
}

/// A cuDNN failure as a candle error naming the call.
pub(crate) fn cudnn_err(what: &str, e: impl std::fmt::Debug) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuDNN {what}: {e:?}"))
}

/// `Ok` for `CUDNN_STATUS_SUCCESS`, else an error naming `what`.
pub(crate) fn check(status: sys::cudnnStatus_t, what: &str) -> candle_core::Result<()> {
    status.result().map_err(|e| cudnn_err(what, e))
}

struct Handle(sys::cudnnHandle_t);

impl Drop for Handle {
    fn drop(&mut self) {
        // At thread exit; a failure here cannot be reported and leaks only the handle.
        let _ = unsafe { result::destroy_handle(self.0) };
    }
}

thread_local! {
    // cuDNN handles are neither Send nor Sync: one per thread and device, like candle's own.
    static HANDLES: RefCell<HashMap<DeviceId, Rc<Handle>>> = RefCell::new(HashMap::new());
}

/// Runs `f` with this thread's cuDNN handle for `dev` (created on first use, bound to the device's stream), timed
/// as `what` by the GPU profile when it is on.
pub(crate) fn with_handle<R>(
    dev: &CudaDevice,
    what: &'static str,
    f: impl FnOnce(sys::cudnnHandle_t, &Arc<CudaStream>) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let stream = dev.cuda_stream();
    stream.context().bind_to_thread().map_err(|e| cudnn_err("bind context", e))?;
    let handle = HANDLES.with(|map| -> candle_core::Result<Rc<Handle>> {
        if let Some(h) = map.borrow().get(&dev.id()) {
            return Ok(h.clone());
        }
        let raw = result::create_handle().map_err(|e| cudnn_err("create handle", e))?;
        let h = Rc::new(Handle(raw));
        unsafe { result::set_stream(raw, stream.cu_stream() as *mut _) }
            .map_err(|e| cudnn_err("set stream", e))?;
        map.borrow_mut().insert(dev.id(), h.clone());
        Ok(h)
    })?;
    crate::nn::gpu_profile::timed(what, &stream, || f(handle.0, &stream))
}

fn dims_i32<const N: usize>(dims: [usize; N], what: &str) -> candle_core::Result<[c_int; N]> {
    let mut out = [0; N];
    for (o, &d) in out.iter_mut().zip(&dims) {
        *o = c_int::try_from(d)
            .map_err(|_| candle_core::Error::Msg(format!("cuDNN {what}: {d} is too large")))?;
    }
    Ok(out)
}

/// An f32 tensor descriptor.
pub(crate) struct TensorDesc(pub sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    /// A contiguous `[n, c, h, w]` f32 tensor.
    pub fn nchw(dims: [usize; 4]) -> candle_core::Result<Self> {
        let d = Self(result::create_tensor_descriptor().map_err(|e| cudnn_err("tensor descriptor", e))?);
        let fmt = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        unsafe { result::set_tensor4d_descriptor(d.0, fmt, F32, dims_i32(dims, "tensor")?) }
            .map_err(|e| cudnn_err("tensor descriptor", e))?;
        Ok(d)
    }

    /// The `[1, c, 1, 1]` descriptor of per-channel parameters and statistics.
    pub fn channels(c: usize) -> candle_core::Result<Self> {
        Self::nchw([1, c, 1, 1])
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        let _ = unsafe { result::destroy_tensor_descriptor(self.0) };
    }
}

const F32: sys::cudnnDataType_t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;

/// An f32 `[out, in, k, k]` filter descriptor.
pub(crate) struct FilterDesc(pub sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    pub fn new(dims: [usize; 4]) -> candle_core::Result<Self> {
        let d = Self(result::create_filter_descriptor().map_err(|e| cudnn_err("filter descriptor", e))?);
        let fmt = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
        unsafe { result::set_filter4d_descriptor(d.0, F32, fmt, dims_i32(dims, "filter")?) }
            .map_err(|e| cudnn_err("filter descriptor", e))?;
        Ok(d)
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        let _ = unsafe { result::destroy_filter_descriptor(self.0) };
    }
}

/// A 2-D cross-correlation (what torch calls convolution) with square padding and stride, f32 accumulation;
/// tensor-core TF32 math only where [`super::set_tf32`] allowed it.
pub(crate) struct ConvDesc(pub sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    pub fn new(pad: usize, stride: usize) -> candle_core::Result<Self> {
        let d = Self(
            result::create_convolution_descriptor().map_err(|e| cudnn_err("convolution descriptor", e))?,
        );
        let [p, s] = dims_i32([pad, stride], "convolution")?;
        let mode = sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION;
        let math = if tf32_allowed() {
            sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
        } else {
            sys::cudnnMathType_t::CUDNN_FMA_MATH
        };
        unsafe {
            result::set_convolution2d_descriptor(d.0, p, p, s, s, 1, 1, mode, F32)
                .and_then(|()| result::set_convolution_math_type(d.0, math))
        }
        .map_err(|e| cudnn_err("convolution descriptor", e))?;
        Ok(d)
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        let _ = unsafe { result::destroy_convolution_descriptor(self.0) };
    }
}

/// A square max-pooling window; padded cells never win (cuDNN's `CUDNN_POOLING_MAX`), NaN propagates (torch).
pub(crate) struct PoolDesc(pub sys::cudnnPoolingDescriptor_t);

impl PoolDesc {
    pub fn max(kernel: usize, stride: usize, pad: usize) -> candle_core::Result<Self> {
        let d = Self(result::create_pooling_descriptor().map_err(|e| cudnn_err("pooling descriptor", e))?);
        let [k, s, p] = dims_i32([kernel, stride, pad], "pooling")?;
        let mode = sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX;
        let nan = sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN;
        unsafe { result::set_pooling_descriptor(d.0, mode, nan, 2, &[k, k], &[p, p], &[s, s]) }
            .map_err(|e| cudnn_err("pooling descriptor", e))?;
        Ok(d)
    }
}

impl Drop for PoolDesc {
    fn drop(&mut self) {
        let _ = unsafe { sys::cudnnDestroyPoolingDescriptor(self.0) };
    }
}

/// The f32 slice of a storage, checked to be contiguous, from the layout's offset.
pub(crate) fn input<'a>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    if !l.is_contiguous() {
        candle_core::bail!(
            "{what}: the cuDNN layer expects a contiguous input, got strides {:?}",
            l.stride()
        );
    }
    let n = l.shape().elem_count();
    Ok(s.as_cuda_slice::<f32>()?.slice(l.start_offset()..l.start_offset() + n))
}

/// An uninitialised f32 buffer of `n` values on `stream` (every cuDNN call here writes all of its output).
pub(crate) fn output(stream: &Arc<CudaStream>, n: usize) -> candle_core::Result<CudaSlice<f32>> {
    // SAFETY: the buffer is fully written by the cuDNN call it is made for before anything reads it.
    unsafe { stream.alloc::<f32>(n.max(1)) }.map_err(|e| cudnn_err("allocate", e))
}

/// A workspace of `bytes` for a cuDNN call (none when 0).
pub(crate) fn workspace(
    stream: &Arc<CudaStream>,
    bytes: usize,
) -> candle_core::Result<Option<CudaSlice<u8>>> {
    if bytes == 0 {
        return Ok(None);
    }
    // SAFETY: cuDNN's scratch space; its contents are never read by us.
    Ok(Some(unsafe { stream.alloc::<u8>(bytes) }.map_err(|e| cudnn_err("allocate workspace", e))?))
}

/// Raw device addresses (as cuDNN's `void*`) of read-only and written buffers, valid while the guards live.
pub(crate) fn ptr<'a, T>(
    x: &'a impl DevicePtr<T>,
    stream: &'a CudaStream,
) -> (*const std::ffi::c_void, impl Drop + 'a) {
    let (p, guard) = x.device_ptr(stream);
    (p as *const std::ffi::c_void, guard)
}

/// See [`ptr`].
pub(crate) fn ptr_mut<'a, T>(
    x: &'a mut impl DevicePtrMut<T>,
    stream: &'a CudaStream,
) -> (*mut std::ffi::c_void, impl Drop + 'a) {
    let (p, guard) = x.device_ptr_mut(stream);
    (p as *mut std::ffi::c_void, guard)
}

/// Wraps a finished output as candle storage.
pub(crate) fn storage(slice: CudaSlice<f32>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}
