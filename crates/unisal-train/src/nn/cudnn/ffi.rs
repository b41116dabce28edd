//! cuDNN's C interface, loaded at run time: the library (`libcudnn.so.9`, found like any shared library, e.g. in
//! `LD_LIBRARY_PATH`) is opened on first use, and where it is absent the layers fall back to candle's ops with one
//! clear message instead of a binary that cannot start. Only the legacy calls the layers use are declared, with
//! cuDNN's enums as `c_int` (their C size) and the values of cuDNN 9's headers.

use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// An opaque cuDNN object (handle or descriptor).
pub(crate) type Ptr = *mut c_void;
/// `cudnnStatus_t`.
pub(crate) type Status = c_int;

pub(crate) const STATUS_SUCCESS: Status = 0;
pub(crate) const DATA_FLOAT: c_int = 0;
pub(crate) const DATA_BFLOAT16: c_int = 9;
pub(crate) const TENSOR_NCHW: c_int = 0;
pub(crate) const TENSOR_NHWC: c_int = 1;
pub(crate) const CROSS_CORRELATION: c_int = 1;
pub(crate) const DEFAULT_MATH: c_int = 0;
pub(crate) const TENSOR_OP_MATH: c_int = 1;
pub(crate) const TENSOR_OP_MATH_ALLOW_CONVERSION: c_int = 2;
pub(crate) const FMA_MATH: c_int = 3;
pub(crate) const BATCHNORM_SPATIAL: c_int = 1;
pub(crate) const BATCHNORM_SPATIAL_PERSISTENT: c_int = 2;
/// `CUDNN_BATCHNORM_OPS_BN`: the `...Ex` batch norm calls without a fused addition or activation.
pub(crate) const BATCHNORM_OPS_BN: c_int = 0;
/// `CUDNN_BATCHNORM_OPS_BN_ACTIVATION`: the batch norm, then its activation, in one call.
pub(crate) const BATCHNORM_OPS_BN_ACTIVATION: c_int = 1;
pub(crate) const POOLING_MAX: c_int = 0;
pub(crate) const PROPAGATE_NAN: c_int = 1;
pub(crate) const ACTIVATION_RELU: c_int = 1;
pub(crate) const ACTIVATION_IDENTITY: c_int = 5;
/// `CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM`: the one algorithm the fused convolution takes with an
/// identity activation.
pub(crate) const FWD_ALGO_IMPLICIT_PRECOMP_GEMM: c_int = 1;

/// `cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t`: the three have this one layout.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AlgoPerf {
    pub algo: c_int,
    pub status: Status,
    pub time: f32,
    pub memory: usize,
    pub determinism: c_int,
    pub math_type: c_int,
    pub reserved: [c_int; 3],
}

macro_rules! api {
    ($api:ident; $($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {
        /// The loaded library and its entry points (names as in cuDNN).
        #[allow(non_snake_case)]
        pub(crate) struct $api {
            _lib: libloading::Library,
            _parts: Vec<libloading::Library>,
            $(pub $name: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }

        impl $api {
            /// # Safety
            /// `lib` must be cuDNN 9, whose entry points have the signatures declared here.
            #[allow(non_snake_case)]
            unsafe fn load(lib: libloading::Library, parts: Vec<libloading::Library>) -> Result<Self, String> {
                $(
                    let $name = unsafe { lib.get::<unsafe extern "C" fn($($arg),*) -> $ret>(stringify!($name)) }
                        .map(|s| *s)
                        .map_err(|e| format!("{}: {e}", stringify!($name)))?;
                )*
                Ok(Self { _lib: lib, _parts: parts, $($name,)* })
            }
        }
    };
}

api! {
    Api;
    cudnnGetVersion: fn() -> usize;
    cudnnGetErrorString: fn(Status) -> *const c_char;
    cudnnCreate: fn(*mut Ptr) -> Status;
    cudnnDestroy: fn(Ptr) -> Status;
    cudnnSetStream: fn(Ptr, *mut c_void) -> Status;
    cudnnCreateTensorDescriptor: fn(*mut Ptr) -> Status;
    cudnnSetTensor4dDescriptor: fn(Ptr, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnDestroyTensorDescriptor: fn(Ptr) -> Status;
    cudnnCreateFilterDescriptor: fn(*mut Ptr) -> Status;
    cudnnSetFilter4dDescriptor: fn(Ptr, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnDestroyFilterDescriptor: fn(Ptr) -> Status;
    cudnnCreateConvolutionDescriptor: fn(*mut Ptr) -> Status;
    cudnnSetConvolution2dDescriptor: fn(Ptr, c_int, c_int, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnSetConvolutionMathType: fn(Ptr, c_int) -> Status;
    cudnnDestroyConvolutionDescriptor: fn(Ptr) -> Status;
    cudnnGetConvolutionForwardAlgorithm_v7: fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> Status;
    cudnnFindConvolutionForwardAlgorithm: fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> Status;
    cudnnGetConvolutionForwardWorkspaceSize: fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut usize) -> Status;
    cudnnConvolutionForward: fn(
        Ptr, *const c_void, Ptr, *const c_void, Ptr, *const c_void, Ptr, c_int, *mut c_void, usize, *const c_void,
        Ptr, *mut c_void
    ) -> Status;
    cudnnGetConvolutionBackwardDataAlgorithm_v7:
        fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> Status;
    cudnnFindConvolutionBackwardDataAlgorithm:
        fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> Status;
    cudnnGetConvolutionBackwardDataWorkspaceSize: fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut usize) -> Status;
    cudnnConvolutionBackwardData: fn(
        Ptr, *const c_void, Ptr, *const c_void, Ptr, *const c_void, Ptr, c_int, *mut c_void, usize, *const c_void,
        Ptr, *mut c_void
    ) -> Status;
    cudnnGetConvolutionBackwardFilterAlgorithm_v7:
        fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> Status;
    cudnnFindConvolutionBackwardFilterAlgorithm:
        fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut c_int, *mut AlgoPerf) -> Status;
    cudnnGetConvolutionBackwardFilterWorkspaceSize: fn(Ptr, Ptr, Ptr, Ptr, Ptr, c_int, *mut usize) -> Status;
    cudnnConvolutionBackwardFilter: fn(
        Ptr, *const c_void, Ptr, *const c_void, Ptr, *const c_void, Ptr, c_int, *mut c_void, usize, *const c_void,
        Ptr, *mut c_void
    ) -> Status;
    cudnnCreateActivationDescriptor: fn(*mut Ptr) -> Status;
    cudnnSetActivationDescriptor: fn(Ptr, c_int, c_int, f64) -> Status;
    cudnnDestroyActivationDescriptor: fn(Ptr) -> Status;
    cudnnConvolutionBiasActivationForward: fn(
        Ptr, *const c_void, Ptr, *const c_void, Ptr, *const c_void, Ptr, c_int, *mut c_void, usize, *const c_void,
        Ptr, *const c_void, Ptr, *const c_void, Ptr, Ptr, *mut c_void
    ) -> Status;
    cudnnBatchNormalizationForwardTraining: fn(
        Ptr, c_int, *const c_void, *const c_void, Ptr, *const c_void, Ptr, *mut c_void, Ptr, *const c_void,
        *const c_void, f64, *mut c_void, *mut c_void, f64, *mut c_void, *mut c_void
    ) -> Status;
    cudnnBatchNormalizationBackward: fn(
        Ptr, c_int, *const c_void, *const c_void, *const c_void, *const c_void, Ptr, *const c_void, Ptr,
        *const c_void, Ptr, *mut c_void, Ptr, *const c_void, *mut c_void, *mut c_void, f64, *const c_void,
        *const c_void
    ) -> Status;
    cudnnBatchNormalizationForwardInference: fn(
        Ptr, c_int, *const c_void, *const c_void, Ptr, *const c_void, Ptr, *mut c_void, Ptr, *const c_void,
        *const c_void, *const c_void, *const c_void, f64
    ) -> Status;
    cudnnCreatePoolingDescriptor: fn(*mut Ptr) -> Status;
    cudnnSetPooling2dDescriptor: fn(Ptr, c_int, c_int, c_int, c_int, c_int, c_int, c_int, c_int) -> Status;
    cudnnDestroyPoolingDescriptor: fn(Ptr) -> Status;
    cudnnPoolingForward: fn(Ptr, Ptr, *const c_void, Ptr, *const c_void, *const c_void, Ptr, *mut c_void) -> Status;
    cudnnPoolingBackward: fn(
        Ptr, Ptr, *const c_void, Ptr, *const c_void, Ptr, *const c_void, Ptr, *const c_void, *const c_void, Ptr,
        *mut c_void
    ) -> Status;
}

api! {
    GraphApi;
    cudnnBackendCreateDescriptor: fn(c_int, *mut Ptr) -> Status;
    cudnnBackendDestroyDescriptor: fn(Ptr) -> Status;
    cudnnBackendFinalize: fn(Ptr) -> Status;
    cudnnBackendSetAttribute: fn(Ptr, c_int, c_int, i64, *const c_void) -> Status;
    cudnnBackendGetAttribute: fn(Ptr, c_int, c_int, i64, *mut i64, *mut c_void) -> Status;
    cudnnBackendExecute: fn(Ptr, Ptr, Ptr) -> Status;
}

api! {
    BnExApi;
    cudnnGetBatchNormalizationForwardTrainingExWorkspaceSize:
        fn(Ptr, c_int, c_int, Ptr, Ptr, Ptr, Ptr, Ptr, *mut usize) -> Status;
    cudnnGetBatchNormalizationBackwardExWorkspaceSize:
        fn(Ptr, c_int, c_int, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, *mut usize) -> Status;
    cudnnGetBatchNormalizationTrainingExReserveSpaceSize: fn(Ptr, c_int, c_int, Ptr, Ptr, *mut usize) -> Status;
    cudnnBatchNormalizationForwardTrainingEx: fn(
        Ptr, c_int, c_int, *const c_void, *const c_void, Ptr, *const c_void, Ptr, *const c_void, Ptr, *mut c_void,
        Ptr, *const c_void, *const c_void, f64, *mut c_void, *mut c_void, f64, *mut c_void, *mut c_void, Ptr,
        *mut c_void, usize, *mut c_void, usize
    ) -> Status;
    cudnnBatchNormalizationBackwardEx: fn(
        Ptr, c_int, c_int, *const c_void, *const c_void, *const c_void, *const c_void, Ptr, *const c_void, Ptr,
        *const c_void, Ptr, *const c_void, Ptr, *mut c_void, Ptr, *mut c_void, Ptr, *const c_void, *const c_void,
        *mut c_void, *mut c_void, f64, *const c_void, *const c_void, Ptr, *mut c_void, usize, *mut c_void, usize
    ) -> Status;
}

// SAFETY: the entry points are plain C functions of a library that stays loaded for the process's life; cuDNN's
// own rules (one handle per thread, `handle.rs`) are kept by the callers.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}
// SAFETY: as for `Api`.
unsafe impl Send for GraphApi {}
unsafe impl Sync for GraphApi {}

/// cuDNN's graph (backend) API, loaded apart from [`api`] on first use (`graph.rs`): a library without it leaves
/// the legacy calls working.
pub(crate) fn graph_api() -> Result<&'static GraphApi, &'static str> {
    static API: OnceLock<Result<GraphApi, String>> = OnceLock::new();
    // SAFETY: cuDNN 9 (checked by `api`), whose backend entry points have these signatures.
    unsafe { load_apart(&API, "libcudnn_graph.so.9", GraphApi::load) }
}

// SAFETY: as for `Api`.
unsafe impl Send for BnExApi {}
unsafe impl Sync for BnExApi {}

/// cuDNN's `...Ex` batch norm calls (`batchnorm_ex.rs`), loaded apart from [`api`] on first use: a library without
/// them leaves the plain calls working.
pub(crate) fn bn_ex_api() -> Result<&'static BnExApi, &'static str> {
    static API: OnceLock<Result<BnExApi, String>> = OnceLock::new();
    // SAFETY: cuDNN 9 (checked by `api`), whose `...Ex` batch norm entry points have these signatures.
    unsafe { load_apart(&API, NAMES[1], BnExApi::load) }
}

/// Entry points loaded apart from [`api`], once (`cell`): from the main library, else from `fallback`, by `load`;
/// an error if cuDNN itself is not usable.
///
/// # Safety
/// `load` must read entry points whose signatures are cuDNN 9's.
unsafe fn load_apart<T>(
    cell: &'static OnceLock<Result<T, String>>,
    fallback: &str,
    load: unsafe fn(libloading::Library, Vec<libloading::Library>) -> Result<T, String>,
) -> Result<&'static T, &'static str> {
    cell.get_or_init(|| {
        api().map_err(str::to_string)?;
        let lib = open(NAMES[0]).or_else(|_| open(fallback))?;
        // SAFETY: the function's contract; `api` checked that the library is cuDNN 9.
        unsafe { load(lib, Vec::new()) }.map_err(|e| format!("cuDNN lacks {e}"))
    })
    .as_ref()
    .map_err(String::as_str)
}

/// The library's names, tried in order.
const NAMES: [&str; 2] = ["libcudnn.so.9", "libcudnn.so"];
/// The parts cuDNN 9's library opens by name for the calls used here (the graph library in turn opens the
/// precompiled engines and the heuristics); opened first, so that an incomplete install is refused here rather than
/// by cuDNN, which ends the process when a part is missing.
const PARTS: [&str; 5] = [
    "libcudnn_graph.so.9",
    "libcudnn_ops.so.9",
    "libcudnn_cnn.so.9",
    "libcudnn_engines_precompiled.so.9",
    "libcudnn_heuristic.so.9",
];

fn open(name: &str) -> Result<libloading::Library, String> {
    // SAFETY: opening cuDNN runs only its own initialisers.
    unsafe { libloading::Library::new(name) }.map_err(|e| {
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
        if why.contains(name) {
            why
        } else {
            format!("{name}: {why}")
        }
    })
}

/// cuDNN, loaded on first use; the error says why it is not available.
pub(crate) fn api() -> Result<&'static Api, &'static str> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        let lib = open(NAMES[0])
            .or_else(|e| open(NAMES[1]).map_err(|e2| format!("cuDNN 9 was not found ({e}; {e2})")))?;
        let parts = PARTS
            .iter()
            .map(|n| open(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cuDNN 9 is incomplete ({e})"))?;
        // SAFETY: a library of this name is cuDNN; its version is checked next.
        let api = unsafe { Api::load(lib, parts) }.map_err(|e| format!("cuDNN lacks {e}"))?;
        // SAFETY: no arguments.
        let version = unsafe { (api.cudnnGetVersion)() };
        if !(90_000..100_000).contains(&version) {
            return Err(format!("the cuDNN found is version {version}, not 9.x"));
        }
        Ok(api)
    })
    .as_ref()
    .map_err(String::as_str)
}

/// cuDNN's words for a status.
pub(crate) fn status_text(api: &Api, status: Status) -> String {
    // SAFETY: cuDNN returns a static, NUL-terminated string for any status value.
    let text = unsafe { (api.cudnnGetErrorString)(status) };
    if text.is_null() {
        return format!("status {status}");
    }
    // SAFETY: see above.
    unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::cudnn::handle::Desc;

    /// Where cuDNN 9 is installed (a CUDA machine, or the build machine's toolkit in `LD_LIBRARY_PATH`), every
    /// entry point resolves and the descriptors the layers use (host-side calls: no GPU needed) are accepted.
    #[test]
    fn cudnn_loads_and_takes_the_layers_descriptors() {
        let a = match api() {
            Ok(a) => a,
            Err(why) => {
                eprintln!("skipped: {why}");
                assert!(why.contains("libcudnn"), "the reason names the library: {why}");
                return;
            }
        };
        let v = unsafe { (a.cudnnGetVersion)() };
        assert!((90_000..100_000).contains(&v), "{v}");
        assert_eq!(status_text(a, STATUS_SUCCESS), "CUDNN_STATUS_SUCCESS");
        Desc::nchw([8, 64, 56, 56]).unwrap();
        Desc::channels(64).unwrap();
        Desc::filter_in([128, 64, 3, 3], DATA_FLOAT, false).unwrap();
        Desc::nchw_of([8, 64, 56, 56], DATA_BFLOAT16).unwrap();
        Desc::tensor4([8, 64, 56, 56], DATA_BFLOAT16, true).unwrap();
        Desc::filter_in([128, 64, 3, 3], DATA_BFLOAT16, true).unwrap();
        Desc::conv(1, 2).unwrap();
        Desc::max_pool(3, 2, 1).unwrap();
        Desc::activation(true).unwrap();
        Desc::activation(false).unwrap();
        // A bad descriptor is refused with cuDNN's words (cuDNN 9 numbers its statuses anew; only success is 0).
        let err = Desc::nchw([0, 64, 56, 56]).err().expect("a zero batch is refused").to_string();
        assert!(err.contains("BAD_PARAM"), "{err}");
    }
}
