//! cuDNN plumbing for the GPU layers: one handle per thread and device, bound to candle's stream; descriptors that
//! free themselves; cuDNN statuses as candle errors; device pointers of candle's CUDA storages. cuDNN itself is
//! loaded at run time (`ffi.rs`).
//!
//! Every call is enqueued on the device's one candle stream, so cuDNN's work is ordered with candle's own kernels
//! and no synchronisation is needed. Only f32 is described here (the layers check the dtype before they come).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr,
};
use candle_core::cuda_backend::CudaDType;
use candle_core::{CudaDevice, CudaStorage, Layout};

use super::ffi::{self, api, status_text, Api, Ptr, Status};

/// The element types of the cuDNN layers' activations: f32, and bf16 for mixed precision (the per-channel
/// parameters and statistics of batch norm stay f32).
pub(crate) trait CudnnElem: CudaDType + DeviceRepr {
    /// cuDNN's `cudnnDataType_t`.
    const DATA: c_int;
    /// candle's.
    const DTYPE: candle_core::DType;
}

impl CudnnElem for f32 {
    const DATA: c_int = ffi::DATA_FLOAT;
    const DTYPE: candle_core::DType = candle_core::DType::F32;
}

impl CudnnElem for half::bf16 {
    const DATA: c_int = ffi::DATA_BFLOAT16;
    const DTYPE: candle_core::DType = candle_core::DType::BF16;
}

/// `$body` with the type `$t` standing for the [`CudnnElem`] of `$dtype` (f32 or bf16); any other element type is
/// an error naming `$what`.
macro_rules! by_elem {
    ($dtype:expr, $what:literal, $t:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $t = f32;
                $body
            }
            candle_core::DType::BF16 => {
                type $t = half::bf16;
                $body
            }
            dt => candle_core::bail!(concat!("cuDNN ", $what, ": {:?} is not supported"), dt),
        }
    };
}
pub(crate) use by_elem;

/// cuDNN's scaling factors: `out = ONE * op + ZERO * out`.
pub(crate) const ONE: f32 = 1.0;
pub(crate) const ZERO: f32 = 0.0;

/// A scaling factor as cuDNN's `const void*`.
pub(crate) fn scale(v: &f32) -> *const std::ffi::c_void {
    v as *const f32 as *const std::ffi::c_void
}

/// The loaded cuDNN, or an error saying why there is none (the layers check [`super::usable`] first).
pub(crate) fn lib() -> candle_core::Result<&'static Api> {
    api().map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// `Ok` for success, else an error naming the call and cuDNN's words for the status.
pub(crate) fn check(status: Status, what: &str) -> candle_core::Result<()> {
    if status == ffi::STATUS_SUCCESS {
        return Ok(());
    }
    let text = api().map(|a| status_text(a, status)).unwrap_or_else(|_| format!("status {status}"));
    Err(candle_core::Error::Msg(format!("cuDNN {what}: {text}")))
}

/// A cuDNN handle and the CUDA context it was made in, kept alive as long as the handle: a context released by
/// every device (and destroyed) could otherwise come back at the same address with the handle no longer valid.
struct Handle(Ptr, #[allow(dead_code)] Arc<CudaContext>);

impl Drop for Handle {
    fn drop(&mut self) {
        // At thread exit; a failure here cannot be reported and leaks only the handle.
        if let Ok(a) = api() {
            let _ = unsafe { (a.cudnnDestroy)(self.0) };
        }
    }
}

/// What a handle is bound to: the CUDA context it was made in and the stream it enqueues on (as addresses).
/// Keyed so, every candle device of one GPU on one thread shares a handle (each training round makes a new
/// `CudaDevice` on the same primary context and per-thread stream); keyed by candle's device id, each round left a
/// handle behind until the thread ended.
type Binding = (usize, usize);

thread_local! {
    // cuDNN handles are neither Send nor Sync: one per thread and binding.
    static HANDLES: RefCell<HashMap<Binding, Rc<Handle>>> = RefCell::new(HashMap::new());
}

thread_local! {
    // One scratch buffer for cuDNN's convolutions per thread and binding, grown to the largest workspace asked for.
    // A workspace allocated and freed at every call cost two driver calls a pass; the calls on one stream run in
    // order, so one buffer serves them all.
    static WORKSPACES: RefCell<HashMap<Binding, CudaSlice<u8>>> = RefCell::new(HashMap::new());
}

/// Runs `f` with the device address of at least `bytes` (and at least one) bytes of scratch memory on `stream`,
/// for a cuDNN call enqueued there; the buffer is kept for the next call.
pub(crate) fn with_workspace<R>(
    stream: &Arc<CudaStream>,
    bytes: usize,
    f: impl FnOnce(*mut std::ffi::c_void) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let binding: Binding = (stream.context().cu_ctx() as usize, stream.cu_stream() as usize);
    let reuse = super::reuse();
    WORKSPACES.with(|map| {
        let mut map = map.borrow_mut();
        let need = bytes.max(1);
        if map.get(&binding).is_none_or(|ws| ws.len() < need || !reuse) {
            // The old buffer is freed in stream order, after the calls that used it.
            map.remove(&binding);
            // Rounded up to a MiB, so that a few slightly larger requests do not each allocate anew.
            let size = if reuse { need.div_ceil(1 << 20) << 20 } else { need };
            // SAFETY: cuDNN's scratch space; its contents are never read by us.
            let ws = unsafe { stream.alloc::<u8>(size) }.map_err(|e| {
                candle_core::Error::Msg(format!("cuDNN: allocate a workspace of {size} bytes: {e:?}"))
            })?;
            map.insert(binding, ws);
        }
        let Some(ws) = map.get_mut(&binding) else {
            candle_core::bail!("cuDNN: the workspace went missing");
        };
        let (p, guard) = ptr_mut(ws, stream);
        let result = f(p);
        drop(guard);
        if !reuse {
            // Freed after the call, in stream order, as a per-call buffer was.
            map.remove(&binding);
        }
        result
    })
}

/// Frees this thread's cuDNN workspaces (after a round, so that an idle app does not hold them).
pub(crate) fn release_workspaces() {
    WORKSPACES.with(|map| map.borrow_mut().clear());
}

/// Runs `f` with cuDNN and this thread's handle for `dev` (created on first use, bound to the device's stream),
/// timed as `what` by the GPU profile when it is on.
pub(crate) fn with_handle<R>(
    dev: &CudaDevice,
    what: &'static str,
    f: impl FnOnce(&'static Api, Ptr, &Arc<CudaStream>) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let a = lib()?;
    let stream = dev.cuda_stream();
    stream
        .context()
        .bind_to_thread()
        .map_err(|e| candle_core::Error::Msg(format!("cuDNN: bind the CUDA context: {e:?}")))?;
    let binding: Binding = (stream.context().cu_ctx() as usize, stream.cu_stream() as usize);
    let handle = HANDLES.with(|map| -> candle_core::Result<Rc<Handle>> {
        if let Some(h) = map.borrow().get(&binding) {
            return Ok(h.clone());
        }
        let mut raw: Ptr = std::ptr::null_mut();
        check(unsafe { (a.cudnnCreate)(&mut raw) }, "create a handle")?;
        let h = Rc::new(Handle(raw, stream.context().clone()));
        check(unsafe { (a.cudnnSetStream)(raw, stream.cu_stream() as *mut _) }, "set the stream")?;
        map.borrow_mut().insert(binding, h.clone());
        Ok(h)
    })?;
    crate::nn::op_profile::timed(what, &stream, || f(a, handle.0, &stream))
}

fn dims_i32<const N: usize>(dims: [usize; N], what: &str) -> candle_core::Result<[c_int; N]> {
    let mut out = [0; N];
    for (o, &d) in out.iter_mut().zip(&dims) {
        *o = c_int::try_from(d)
            .map_err(|_| candle_core::Error::Msg(format!("cuDNN {what}: {d} is too large")))?;
    }
    Ok(out)
}

/// A cuDNN descriptor that destroys itself.
pub(crate) struct Desc {
    pub ptr: Ptr,
    destroy: unsafe extern "C" fn(Ptr) -> Status,
}

/// The value `make` makes for `key`, made once per thread and kept in `cache` (descriptors never change), or made
/// anew at each call with `UNISAL_CUDNN_REUSE=0`: the convolutions' descriptors (`conv.rs`) and the batch norms'.
pub(crate) fn kept<K: std::hash::Hash + Eq, V>(
    cache: &'static std::thread::LocalKey<RefCell<HashMap<K, Rc<V>>>>,
    key: K,
    make: impl FnOnce() -> candle_core::Result<V>,
) -> candle_core::Result<Rc<V>> {
    if !super::reuse() {
        return Ok(Rc::new(make()?));
    }
    if let Some(v) = cache.with(|m| m.borrow().get(&key).cloned()) {
        return Ok(v);
    }
    let v = Rc::new(make()?);
    cache.with(|m| m.borrow_mut().insert(key, v.clone()));
    Ok(v)
}

impl Drop for Desc {
    fn drop(&mut self) {
        let _ = unsafe { (self.destroy)(self.ptr) };
    }
}

impl Desc {
    fn new(
        what: &str,
        create: unsafe extern "C" fn(*mut Ptr) -> Status,
        destroy: unsafe extern "C" fn(Ptr) -> Status,
    ) -> candle_core::Result<Self> {
        let mut ptr: Ptr = std::ptr::null_mut();
        check(unsafe { create(&mut ptr) }, what)?;
        Ok(Self { ptr, destroy })
    }

    /// A contiguous `[n, c, h, w]` f32 tensor.
    pub fn nchw(dims: [usize; 4]) -> candle_core::Result<Self> {
        Self::nchw_of(dims, ffi::DATA_FLOAT)
    }

    /// A contiguous `[n, c, h, w]` tensor of cuDNN's data type `data`.
    pub fn nchw_of(dims: [usize; 4], data: c_int) -> candle_core::Result<Self> {
        Self::tensor4(dims, data, false)
    }

    /// A contiguous tensor of cuDNN's data type `data` and logical dims `[n, c, h, w]`, stored in that order or,
    /// with `nhwc`, channels last (`[n, h, w, c]` in memory).
    pub fn tensor4(dims: [usize; 4], data: c_int, nhwc: bool) -> candle_core::Result<Self> {
        let a = lib()?;
        let what = "tensor descriptor";
        let d = Self::new(what, a.cudnnCreateTensorDescriptor, a.cudnnDestroyTensorDescriptor)?;
        let [n, c, h, w] = dims_i32(dims, what)?;
        let format = if nhwc { ffi::TENSOR_NHWC } else { ffi::TENSOR_NCHW };
        check(unsafe { (a.cudnnSetTensor4dDescriptor)(d.ptr, format, data, n, c, h, w) }, what)?;
        Ok(d)
    }

    /// The `[1, c, 1, 1]` descriptor of per-channel parameters and statistics.
    pub fn channels(c: usize) -> candle_core::Result<Self> {
        Self::nchw([1, c, 1, 1])
    }

    /// [`Desc::tensor4`], made once per thread, shape, type and layout and kept (unless `UNISAL_CUDNN_REUSE=0`):
    /// the batch norms' descriptors, three driver calls each fewer a call (the convolutions keep theirs in
    /// `conv.rs`).
    pub fn tensor4_kept(dims: [usize; 4], data: c_int, nhwc: bool) -> candle_core::Result<Rc<Self>> {
        type Kept = HashMap<([usize; 4], c_int, bool), Rc<Desc>>;
        thread_local! {
            static KEPT: RefCell<Kept> = RefCell::new(HashMap::new());
        }
        kept(&KEPT, (dims, data, nhwc), || Self::tensor4(dims, data, nhwc))
    }

    /// [`Desc::channels`], kept as [`Desc::tensor4_kept`] keeps its descriptors.
    pub fn channels_kept(c: usize) -> candle_core::Result<Rc<Self>> {
        Self::tensor4_kept([1, c, 1, 1], ffi::DATA_FLOAT, false)
    }

    /// An `[out, in, k, k]` filter of cuDNN's data type `data`, stored in that order or, with `nhwc`, as
    /// `[out, k, k, in]` (KRSC, what channels-last convolutions take).
    pub fn filter_in(dims: [usize; 4], data: c_int, nhwc: bool) -> candle_core::Result<Self> {
        let a = lib()?;
        let what = "filter descriptor";
        let d = Self::new(what, a.cudnnCreateFilterDescriptor, a.cudnnDestroyFilterDescriptor)?;
        let [k, c, h, w] = dims_i32(dims, what)?;
        let format = if nhwc { ffi::TENSOR_NHWC } else { ffi::TENSOR_NCHW };
        check(unsafe { (a.cudnnSetFilter4dDescriptor)(d.ptr, data, format, k, c, h, w) }, what)?;
        Ok(d)
    }

    /// A 2-D cross-correlation (what torch calls convolution) with square padding and stride, f32 accumulation;
    /// tensor-core TF32 math only where `UNISAL_TF32=1` allowed it.
    pub fn conv(pad: usize, stride: usize) -> candle_core::Result<Self> {
        let a = lib()?;
        let what = "convolution descriptor";
        let d = Self::new(what, a.cudnnCreateConvolutionDescriptor, a.cudnnDestroyConvolutionDescriptor)?;
        let [p, s] = dims_i32([pad, stride], what)?;
        let mode = ffi::CROSS_CORRELATION;
        check(
            unsafe { (a.cudnnSetConvolution2dDescriptor)(d.ptr, p, p, s, s, 1, 1, mode, ffi::DATA_FLOAT) },
            what,
        )?;
        check(unsafe { (a.cudnnSetConvolutionMathType)(d.ptr, super::allowed_math(ffi::DATA_FLOAT)) }, what)?;
        Ok(d)
    }

    /// The activation of the fused convolution: ReLU (NaN propagates, as in our ReLU kernel) or identity.
    pub fn activation(relu: bool) -> candle_core::Result<Self> {
        let a = lib()?;
        let what = "activation descriptor";
        let d = Self::new(what, a.cudnnCreateActivationDescriptor, a.cudnnDestroyActivationDescriptor)?;
        let mode = if relu { ffi::ACTIVATION_RELU } else { ffi::ACTIVATION_IDENTITY };
        check(unsafe { (a.cudnnSetActivationDescriptor)(d.ptr, mode, ffi::PROPAGATE_NAN, 0.0) }, what)?;
        Ok(d)
    }

    /// A square max-pooling window; padded cells never win (cuDNN's `CUDNN_POOLING_MAX`), NaN propagates (torch).
    pub fn max_pool(kernel: usize, stride: usize, pad: usize) -> candle_core::Result<Self> {
        let a = lib()?;
        let what = "pooling descriptor";
        let d = Self::new(what, a.cudnnCreatePoolingDescriptor, a.cudnnDestroyPoolingDescriptor)?;
        let [k, s, p] = dims_i32([kernel, stride, pad], what)?;
        let (mode, nan) = (ffi::POOLING_MAX, ffi::PROPAGATE_NAN);
        check(unsafe { (a.cudnnSetPooling2dDescriptor)(d.ptr, mode, nan, k, k, p, p, s, s) }, what)?;
        Ok(d)
    }
}

/// The `T` slice of a storage, checked to be contiguous, from the layout's offset.
pub(crate) fn input<'a, T: CudnnElem>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    if !l.is_contiguous() {
        candle_core::bail!(
            "{what}: the cuDNN layer expects a contiguous input, got strides {:?}",
            l.stride()
        );
    }
    let n = l.shape().elem_count();
    Ok(s.as_cuda_slice::<T>()?.slice(l.start_offset()..l.start_offset() + n))
}

/// An uninitialised buffer of `n` values on `stream` (every cuDNN call here writes all of its output).
pub(crate) fn output<T: CudnnElem>(stream: &Arc<CudaStream>, n: usize) -> candle_core::Result<CudaSlice<T>> {
    // SAFETY: the buffer is fully written by the cuDNN call it is made for before anything reads it.
    unsafe { stream.alloc::<T>(n.max(1)) }
        .map_err(|e| candle_core::Error::Msg(format!("cuDNN: allocate: {e:?}")))
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
pub(crate) fn storage<T: CudnnElem>(slice: CudaSlice<T>, dev: &CudaDevice) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}
