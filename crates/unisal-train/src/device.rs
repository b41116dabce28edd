//! Device choice: parse `auto|cpu|cuda|cuda:N|metal|metal:N`, resolve it to a candle [`Device`] and name it.
//!
//! A CUDA or Metal choice fails with [`TrainError::DeviceUnavailable`] when the cargo feature was not compiled in
//! or no such device is present; `auto` prefers CUDA, then Metal, then the CPU.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Result, TrainError};

/// Which device the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA 0 if compiled in and present, else Metal 0 if compiled in and present, else the CPU.
    #[default]
    Auto,
    /// The CPU (always available).
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
    /// The Metal device with this ordinal.
    Metal(usize),
}

impl FromStr for DeviceChoice {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let ordinal = |rest: &str| -> Result<usize> {
            rest.parse::<usize>().map_err(|_| TrainError::InvalidDevice(s.to_string()))
        };
        match t.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            "metal" | "mps" => Ok(Self::Metal(0)),
            _ => {
                if let Some(rest) = t.strip_prefix("cuda:") {
                    Ok(Self::Cuda(ordinal(rest)?))
                } else if let Some(rest) = t.strip_prefix("metal:") {
                    Ok(Self::Metal(ordinal(rest)?))
                } else {
                    Err(TrainError::InvalidDevice(s.to_string()))
                }
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Metal(i) => write!(f, "metal:{i}"),
        }
    }
}

impl DeviceChoice {
    /// Resolve to a candle device.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(i) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(TrainError::DeviceUnavailable {
                        device: self.to_string(),
                        reason: "this build has no CUDA support (rebuild with `--features cuda`)".into(),
                    });
                }
                new_cuda(i).map_err(|e| TrainError::DeviceUnavailable {
                    device: self.to_string(),
                    reason: format!("no usable CUDA device {i}: {e}"),
                })
            }
            Self::Metal(i) => {
                if !candle_core::utils::metal_is_available() {
                    return Err(TrainError::DeviceUnavailable {
                        device: self.to_string(),
                        reason: "this build has no Metal support (rebuild with `--features metal`)".into(),
                    });
                }
                Device::new_metal(i).map_err(|e| TrainError::DeviceUnavailable {
                    device: self.to_string(),
                    reason: format!("no usable Metal device {i}: {e}"),
                })
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// A new CUDA device set up for training loops (see `tune_cuda`, feature `cuda`).
fn new_cuda(ordinal: usize) -> candle_core::Result<Device> {
    let device = Device::new_cuda(ordinal)?;
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = &device {
        tune_cuda(d);
    }
    Ok(device)
}

/// Two settings of the CUDA driver layer that cost a training step host time without doing anything for it:
/// - cudarc creates two CUDA events with every buffer and destroys them with it (four driver calls an
///   allocation, hundreds of allocations a step), for a synchronisation between streams that only runs with
///   several streams; candle runs a device's ops on one stream, so the events are never used.
/// - The stream-ordered allocator hands free memory back to the driver at every synchronisation (its release
///   threshold is 0), so every step, which ends by reading its loss, maps its activations anew. The memory is
///   kept instead, as PyTorch's caching allocator does; [`release_device_memory`] hands it back after a round.
#[cfg(feature = "cuda")]
fn tune_cuda(d: &candle_core::CudaDevice) {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    // SAFETY: the events only order work between streams, and candle enqueues all of a device's work on one.
    unsafe { d.disable_event_tracking() };
    let stream = d.cuda_stream();
    let mut keep = u64::MAX;
    // SAFETY: the device is the context's own; the attribute takes a u64, as passed.
    let set = unsafe {
        result::device::get_mem_pool(stream.context().cu_device()).and_then(|pool| {
            result::mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut keep as *mut u64).cast(),
            )
        })
    };
    if let Err(e) = set {
        // Only slower: the allocator keeps its default.
        eprintln!("unisal: could not keep freed GPU memory for reuse ({e}); training steps allocate anew");
    }
}

/// With `UNISAL_HTOD_CACHE=1` on a CUDA device, candle's cache of small host-to-device uploads for the calling
/// thread, on while the returned guard lives; `None` otherwise.
///
/// candle uploads the shape and strides of every non-contiguous op from pageable host memory, and small constants
/// too. The cache (candle 0.11's `enable_cuda_graph_htod_cache`, up to 4 KB an upload) serves them from device
/// memory by content after their first use. It keeps every distinct upload for the life of the process, so it is
/// an experiment for `unisal bench` (does a pageable upload make a step wait for the GPU?), not for the trainer.
pub fn htod_cache_guard(device: &Device) -> Option<Box<dyn std::any::Any>> {
    let on = std::env::var("UNISAL_HTOD_CACHE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "on"));
    #[cfg(feature = "cuda")]
    if let (true, Device::Cuda(d)) = (on, device) {
        return Some(Box::new(d.enable_cuda_graph_htod_cache()));
    }
    let _ = (on, device);
    None
}

/// Hands the GPU memory that the allocator keeps for reuse back to the driver (after a round, so that an idle
/// app does not hold a round's peak); nothing on other devices.
pub fn release_device_memory(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        use candle_core::cuda_backend::cudarc::driver::result;
        // This thread's cuDNN scratch buffer, kept between calls, goes back to the pool too.
        crate::nn::release_cudnn_workspaces();
        let stream = d.cuda_stream();
        // Buffers freed on the stream return to the pool when their work is done.
        let _ = stream.synchronize();
        // SAFETY: trimming frees only memory that no buffer holds.
        let _ = unsafe {
            result::device::get_mem_pool(stream.context().cu_device())
                .and_then(|pool| result::mem_pool::trim_to(pool, 0))
        };
    }
    #[cfg(not(feature = "cuda"))]
    let _ = device;
}

/// A short human-readable name of a device, recorded with each round: "CUDA 0 (NVIDIA H200, cuDNN 9.10.2)" when
/// the driver names the card ("no cuDNN" where it could not be loaded), otherwise "cuda:0"; "metal:0";
/// "cpu (N threads)".
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => {
            format!("cpu ({} threads)", candle_core::utils::get_num_threads())
        }
        candle_core::DeviceLocation::Cuda { gpu_id } => match cuda_card_name(device) {
            Some(name) => format!("CUDA {gpu_id} ({name})"),
            None => format!("cuda:{gpu_id}"),
        },
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Wait until all work queued on the device has finished (a no-op on the CPU).
pub fn synchronize(device: &Device) -> Result<()> {
    device.synchronize()?;
    Ok(())
}

#[cfg(feature = "cuda")]
fn cuda_card_name(device: &Device) -> Option<String> {
    let cuda = device.as_cuda_device().ok()?;
    let stream = cuda.cuda_stream();
    let name = stream.context().name().ok()?;
    let cudnn = crate::nn::cudnn_version().unwrap_or_else(|| "no cuDNN".into());
    Some(format!("{name}, {cudnn}"))
}

#[cfg(not(feature = "cuda"))]
fn cuda_card_name(_device: &Device) -> Option<String> {
    None
}

/// A tensor of `shape` holding `storage`, which is already on `cuda` (candle makes tensors from storages only
/// inside its ops, so a one-value op on the device hands it over): the pinned upload's copies and the
/// convolution + batch norm op's kept output become tensors this way.
#[cfg(feature = "cuda")]
pub(crate) fn tensor_of_storage(
    storage: candle_core::CudaStorage,
    shape: candle_core::Shape,
    cuda: &candle_core::CudaDevice,
) -> candle_core::Result<candle_core::Tensor> {
    // The op's input is only a carrier, read by nothing: one a thread and device, not an allocation and a fill
    // each call (the block op's backward makes about a hundred such tensors a ResNet-50).
    thread_local! {
        static CARRIER: std::cell::RefCell<Option<candle_core::Tensor>> = const { std::cell::RefCell::new(None) };
    }
    let device = Device::Cuda(cuda.clone());
    let dummy = CARRIER.with(|c| -> candle_core::Result<candle_core::Tensor> {
        let mut c = c.borrow_mut();
        match &*c {
            Some(t) if t.device().same_device(&device) => Ok(t.clone()),
            _ => {
                let t = candle_core::Tensor::zeros(1, candle_core::DType::F32, &device)?;
                *c = Some(t.clone());
                Ok(t)
            }
        }
    })?;
    dummy.apply_op1_no_bwd(&Handover { storage: std::sync::Mutex::new(Some(storage)), shape })
}

/// The op of [`tensor_of_storage`]: its output is the storage it holds.
#[cfg(feature = "cuda")]
struct Handover {
    storage: std::sync::Mutex<Option<candle_core::CudaStorage>>,
    shape: candle_core::Shape,
}

#[cfg(feature = "cuda")]
impl candle_core::CustomOp1 for Handover {
    fn name(&self) -> &'static str {
        "storage-handover"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        candle_core::bail!("storage-handover runs on CUDA devices only")
    }

    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
        let taken = self
            .storage
            .lock()
            .map_err(|_| candle_core::Error::Msg("storage handover: poisoned".into()))?
            .take();
        let storage = taken.ok_or_else(|| candle_core::Error::Msg("storage handover: taken twice".into()))?;
        Ok((storage, self.shape.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!("auto".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(0));
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("metal".parse::<DeviceChoice>().unwrap(), DeviceChoice::Metal(0));
        assert_eq!("metal:2".parse::<DeviceChoice>().unwrap(), DeviceChoice::Metal(2));
        for bad in ["", "tpu", "cuda:", "cuda:x", "cuda:-1", "metal:1.5"] {
            let err = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(matches!(err, TrainError::InvalidDevice(ref s) if s == bad), "{bad}: {err}");
        }
        assert_eq!(DeviceChoice::Cuda(3).to_string(), "cuda:3");
    }

    #[test]
    fn cpu_resolves_and_is_named() {
        let d = DeviceChoice::Cpu.resolve().unwrap();
        assert!(d.is_cpu());
        assert!(device_name(&d).starts_with("cpu ("), "{}", device_name(&d));
        synchronize(&d).unwrap();
    }

    #[test]
    fn missing_backend_is_a_clear_error() {
        if !candle_core::utils::cuda_is_available() {
            let err = DeviceChoice::Cuda(0).resolve().unwrap_err();
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
        if !candle_core::utils::metal_is_available() {
            let err = DeviceChoice::Metal(0).resolve().unwrap_err();
            assert!(err.to_string().contains("--features metal"), "{err}");
        }
        // Auto always yields some device.
        DeviceChoice::Auto.resolve().unwrap();
    }
}
