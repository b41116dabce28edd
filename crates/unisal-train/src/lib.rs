//! unisal-train: candle models, data pipeline and the UniSAL dual-network trainer.
//!
//! The crate knows tensors and images but not SQL or Tauri. Modules:
//! - `device`: device choice (`auto|cpu|cuda[:N]|metal[:N]`) and its display name.
//! - `nn`: layers written from differentiable candle ops, correct in train mode on every backend.
//! - `models`: the small CNN, ResNet-18 and ResNet-50 (torchvision layout) with classifier and projector.
//! - `weights`: loading pretrained torchvision/timm `.safetensors` into a `models::Network`.
//! - `bench`: the training/inference throughput benchmark behind `unisal bench`.
//! - `memory`: the allocator's settings for training (keeps step-sized buffers on the heap).

pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod device;
pub mod error;
pub mod loss;
mod loss_device;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod optim;
pub mod pipeline;
pub mod predict;
pub mod schedule;
pub mod trainer;
pub mod upload;
pub mod weights;

pub use error::{Result, TrainError};
