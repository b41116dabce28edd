//! Networks: a backbone plus the two UniSAL heads on its pooled feature h, a classifier `fc = Linear(h -> C)` with
//! bias and a projector `proj = Linear(h -> 128)` without bias.
//!
//! Backbones: [`Arch::SmallCnn`] (CPU and tests), [`Arch::ResNet18`] and [`Arch::ResNet50`] in torchvision's layout
//! and key names, so that torchvision/timm checkpoints load by name (`fc.*` is torchvision's classifier). Inputs
//! are `[N, 3, S, S]` with S >= 32; train-mode inputs must be square (candle's stride-2 convolution backward is only
//! correct on square inputs). Initialisation is deterministic from a seed on the host, so the same seed gives the
//! same weights on every device.

mod resnet;
mod small;

pub use resnet::{BlockKind, ResNet};
pub use small::SmallCnn;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Result, TrainError};
use crate::nn::{HasVars, Init, Linear, NamedVar, VarKind};

/// Size of the projector output.
pub const PROJ_DIM: usize = 128;

/// Smallest accepted input side.
pub const MIN_INPUT_SIZE: usize = 32;

/// Backbone architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Four conv-BN-ReLU blocks, h = 8 x width (256 by default).
    SmallCnn,
    /// torchvision's ResNet-18, h = 8 x width (512 by default).
    ResNet18,
    /// torchvision's ResNet-50, h = 32 x width (2048 by default).
    ResNet50,
}

impl Arch {
    /// The base width torchvision (or our small CNN) uses by default.
    pub fn default_width(self) -> usize {
        match self {
            Self::SmallCnn => 32,
            Self::ResNet18 | Self::ResNet50 => 64,
        }
    }

    /// The name used on the command line and in model cards.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SmallCnn => "small",
            Self::ResNet18 => "resnet18",
            Self::ResNet50 => "resnet50",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "small" | "smallcnn" => Ok(Self::SmallCnn),
            "resnet18" => Ok(Self::ResNet18),
            "resnet50" => Ok(Self::ResNet50),
            _ => Err(TrainError::InvalidModel(format!(
                "unknown model '{s}': expected small, resnet18 or resnet50"
            ))),
        }
    }
}

/// Everything needed to build a [`Network`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Backbone.
    pub arch: Arch,
    /// Number of classes C.
    pub num_classes: usize,
    /// Base width (ResNet stem channels; small-CNN first block); [`Arch::default_width`] normally.
    pub width: usize,
    /// Seed of the backbone initialisation.
    pub seed: u64,
    /// Seed of the heads (`fc`, `proj`); `None` uses `seed`. Two networks that share a pretrained backbone
    /// differ only in their heads.
    pub head_seed: Option<u64>,
    /// Mixed precision (CUDA only): the activations in bf16, the weights, their gradients and the outputs in f32
    /// (PyTorch's bf16 autocast). On an H200 (session 12) its errors were PyTorch autocast's, but it was not yet
    /// faster than fp32 (its steps wait on the host); off unless asked for.
    pub bf16: bool,
}

impl NetConfig {
    /// Default width, heads seeded like the backbone, f32.
    pub fn new(arch: Arch, num_classes: usize, seed: u64) -> Self {
        Self { arch, num_classes, width: arch.default_width(), seed, head_seed: None, bf16: false }
    }
}

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct NetOutput {
    /// Classifier logits `[N, C]`.
    pub logits: Tensor,
    /// Projector output `[N, 128]` (not normalised).
    pub proj: Tensor,
    /// Pooled backbone features `[N, h]`.
    pub feat: Tensor,
}

#[derive(Debug, Clone)]
enum Backbone {
    Small(SmallCnn),
    ResNet(ResNet),
}

/// Backbone + classifier + projector.
///
/// `clone()` gives a second handle to the same variables (candle `Var`s share storage); it does not copy the
/// weights. To copy, save with [`Network::save_safetensors`] and load into a new network.
#[derive(Debug, Clone)]
pub struct Network {
    config: NetConfig,
    device: Device,
    backbone: Backbone,
    fc: Linear,
    proj: Linear,
}

/// Build a network with the default width: `build_network(Arch::ResNet18, 5, &device, 0)`.
pub fn build_network(arch: Arch, num_classes: usize, device: &Device, seed: u64) -> Result<Network> {
    Network::new(&NetConfig::new(arch, num_classes, seed), device)
}

impl Network {
    /// Build and initialise a network on `device`.
    pub fn new(config: &NetConfig, device: &Device) -> Result<Self> {
        if config.num_classes < 2 {
            return Err(TrainError::InvalidModel(format!(
                "a classifier needs at least 2 classes, got {}",
                config.num_classes
            )));
        }
        if config.width == 0 {
            return Err(TrainError::InvalidModel("width must be positive".into()));
        }
        if config.bf16 && !device.is_cuda() {
            return Err(TrainError::InvalidModel(format!(
                "bf16 mixed precision needs a CUDA device, not {device:?}"
            )));
        }
        let init = Init::new(config.seed, device);
        let backbone = match config.arch {
            Arch::SmallCnn => Backbone::Small(SmallCnn::new(&init, "", config.width)?),
            Arch::ResNet18 => {
                Backbone::ResNet(ResNet::new(&init, "", BlockKind::Basic, [2, 2, 2, 2], config.width)?)
            }
            Arch::ResNet50 => {
                Backbone::ResNet(ResNet::new(&init, "", BlockKind::Bottleneck, [3, 4, 6, 3], config.width)?)
            }
        };
        let h = match &backbone {
            Backbone::Small(b) => b.feature_dim(),
            Backbone::ResNet(b) => b.feature_dim(),
        };
        let head_init = init.reseeded(config.head_seed.unwrap_or(config.seed));
        let fc = Linear::new(&head_init, "fc", h, config.num_classes, true)?;
        let proj = Linear::new(&head_init, "proj", h, PROJ_DIM, false)?;
        Ok(Self { config: config.clone(), device: device.clone(), backbone, fc, proj })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The device its variables live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Pooled feature size h.
    pub fn feature_dim(&self) -> usize {
        match &self.backbone {
            Backbone::Small(b) => b.feature_dim(),
            Backbone::ResNet(b) => b.feature_dim(),
        }
    }

    /// Forward `x: [N, 3, S, S]`. In train mode BatchNorm uses (and updates) batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<NetOutput> {
        let (n, c, h, w) = x.dims4()?;
        if c != 3 || h < MIN_INPUT_SIZE || w < MIN_INPUT_SIZE {
            return Err(TrainError::InvalidModel(format!(
                "input {n}x{c}x{h}x{w}: expected [N, 3, S, S] with S >= {MIN_INPUT_SIZE}"
            )));
        }
        if train && h != w {
            return Err(TrainError::InvalidModel(format!(
                "train-mode input {h}x{w} is not square: training crops must be square"
            )));
        }
        let x = if self.config.bf16 { x.to_dtype(DType::BF16)? } else { x.clone() };
        let feat = match &self.backbone {
            Backbone::Small(b) => b.forward(&x, train)?,
            Backbone::ResNet(b) => b.forward(&x, train)?,
        };
        let logits = self.fc.forward(&feat)?;
        let proj = self.proj.forward(&feat)?;
        if self.config.bf16 {
            let f32 = |t: Tensor| t.to_dtype(DType::F32);
            return Ok(NetOutput { logits: f32(logits)?, proj: f32(proj)?, feat: f32(feat)? });
        }
        Ok(NetOutput { logits, proj, feat })
    }

    /// All variables (parameters and buffers) with their state-dict names, in torchvision's order, heads last.
    pub fn named_vars(&self) -> Vec<NamedVar> {
        let mut out = Vec::new();
        self.visit_vars("", &mut out);
        out
    }

    /// The trainable parameters (BatchNorm running statistics excluded).
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().filter(|v| v.kind == VarKind::Param).map(|v| v.var).collect()
    }

    /// The buffers (BatchNorm running statistics) with their names.
    pub fn buffers(&self) -> Vec<NamedVar> {
        self.named_vars().into_iter().filter(|v| v.kind == VarKind::Buffer).collect()
    }

    /// Number of trainable scalars.
    pub fn num_params(&self) -> usize {
        self.trainable_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Current values of all parameters and buffers by name.
    pub fn state_dict(&self) -> HashMap<String, Tensor> {
        self.named_vars().into_iter().map(|v| (v.name, v.var.as_tensor().detach())).collect()
    }

    /// Write all parameters and buffers to a safetensors file.
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.state_dict(), path).map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Load every parameter and buffer from a safetensors file this network (same architecture, width and class
    /// count) wrote. Any missing, unexpected or mis-shaped key is an error and nothing is changed.
    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        crate::weights::load_exact(self, path)
    }
}

impl HasVars for Network {
    fn visit_vars(&self, prefix: &str, out: &mut Vec<NamedVar>) {
        match &self.backbone {
            Backbone::Small(b) => b.visit_vars(prefix, out),
            Backbone::ResNet(b) => b.visit_vars(prefix, out),
        }
        self.fc.visit_vars(&crate::nn::join_name(prefix, "fc"), out);
        self.proj.visit_vars(&crate::nn::join_name(prefix, "proj"), out);
    }
}
