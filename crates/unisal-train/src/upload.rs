//! Uploads a training batch's images to the device.
//!
//! On CUDA the copy goes through page-locked (pinned) host buffers, used in turn: the batch is written into one,
//! and the copy to the device is enqueued asynchronously. A copy from ordinary (pageable) memory waits for the
//! stream's earlier work, the previous iteration's backward, so the host could not enqueue the next iteration while
//! the GPU ran the last. A buffer is written again only after its last copy ran (cudarc's pinned slice waits for
//! that); with four buffers and two uploads an iteration the host may run an iteration ahead. Where pinned memory
//! cannot be had, or with `UNISAL_PINNED_UPLOAD=0`, and on other devices, it is `Tensor::from_vec`.

use candle_core::{Device, Shape, Tensor};

use crate::error::Result;

/// Buffers in turn: two uploads (the two views) an iteration, for two iterations.
#[cfg(feature = "cuda")]
const SLOTS: usize = 4;

/// The uploader of one training loop (its pinned buffers live as long as it does).
#[derive(Default)]
pub struct Uploader {
    #[cfg(feature = "cuda")]
    slots: Vec<Option<candle_core::cuda_backend::cudarc::driver::PinnedHostSlice<f32>>>,
    #[cfg(feature = "cuda")]
    next: usize,
    #[cfg(feature = "cuda")]
    off: bool,
}

impl Uploader {
    /// An uploader with no buffers yet (they are made at the first upload to a CUDA device).
    pub fn new() -> Self {
        Self::default()
    }

    /// `data` as a tensor of `shape` on `device`.
    pub fn tensor(&mut self, data: Vec<f32>, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.elem_count() {
            let n = data.len();
            return Err(candle_core::Error::Msg(format!("upload: {n} values for shape {shape:?}")).into());
        }
        #[cfg(feature = "cuda")]
        if let Device::Cuda(cuda) = device {
            if !self.off && crate::nn::env_not_off("UNISAL_PINNED_UPLOAD") {
                match self.pinned(&data, &shape, cuda) {
                    Ok(t) => return Ok(t),
                    Err(e) => {
                        eprintln!("unisal: pinned upload unavailable ({e}); uploading from pageable memory");
                        self.off = true;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(data, shape, device)?)
    }

    /// The upload through the next pinned buffer.
    #[cfg(feature = "cuda")]
    fn pinned(&mut self, data: &[f32], shape: &Shape, cuda: &candle_core::CudaDevice) -> Result<Tensor> {
        use candle_core::cuda_backend::cudarc::driver::PinnedHostSlice;
        use candle_core::CudaStorage;
        let msg = |what: &str, e: &dyn std::fmt::Debug| {
            candle_core::Error::Msg(format!("pinned upload: {what}: {e:?}"))
        };
        let stream = cuda.cuda_stream();
        if self.slots.len() < SLOTS {
            self.slots.resize_with(SLOTS, || None);
        }
        let slot = &mut self.slots[self.next];
        self.next = (self.next + 1) % SLOTS;
        if slot.as_ref().is_none_or(|b: &PinnedHostSlice<f32>| b.len() != data.len()) {
            // The old buffer waits for its copy as it is freed.
            *slot = None;
            // SAFETY: every value is written below before the copy reads it.
            *slot = Some(
                unsafe { stream.context().alloc_pinned::<f32>(data.len()) }
                    .map_err(|e| msg("allocate", &e))?,
            );
        }
        let buf = slot.as_mut().expect("slot filled above");
        // Waits for this buffer's previous copy to have run.
        buf.as_mut_slice().map_err(|e| msg("wait", &e))?.copy_from_slice(data);
        let dst = stream.clone_htod(&*buf).map_err(|e| msg("copy", &e))?;
        let storage = CudaStorage::wrap_cuda_slice(dst, cuda.clone());
        Ok(crate::device::tensor_of_storage(storage, shape.clone(), cuda)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_cpu_it_is_the_values_in_their_shape() {
        let mut up = Uploader::new();
        for round in 0..3 {
            let data: Vec<f32> = (0..24).map(|i| (i * (round + 1)) as f32).collect();
            let t = up.tensor(data.clone(), (2, 3, 2, 2), &Device::Cpu).unwrap();
            assert_eq!(t.dims(), &[2, 3, 2, 2]);
            assert_eq!(t.flatten_all().unwrap().to_vec1::<f32>().unwrap(), data);
        }
        assert!(up.tensor(vec![0.0; 5], (2, 3), &Device::Cpu).is_err());
    }
}
