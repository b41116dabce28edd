//! The training configuration of a round: the backbone, input sizes, batch sizes, schedule, optimiser and loss
//! hyper-parameters, seed, device and validation choice, with the method's reference values as `Default` and
//! named presets (`reference`, `gpu-sim`, `cpu-small`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The backbone of both networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelArch {
    /// A small CNN for CPU-only machines and tests.
    Small,
    /// ResNet-18 (torchvision layout).
    Resnet18,
    /// ResNet-50 (torchvision layout), the reference's backbone.
    Resnet50,
}

impl ModelArch {
    /// The name used in configs and on the command line: `small`, `resnet18`, `resnet50`.
    pub fn name(self) -> &'static str {
        match self {
            ModelArch::Small => "small",
            ModelArch::Resnet18 => "resnet18",
            ModelArch::Resnet50 => "resnet50",
        }
    }

    /// Parses a name as typed by a user: case, `-` and `_` are ignored (`ResNet-18` = `resnet18`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "small" => Some(ModelArch::Small),
            "resnet18" => Some(ModelArch::Resnet18),
            "resnet50" => Some(ModelArch::Resnet50),
            _ => None,
        }
    }
}

/// How the learning rate changes over the iterations of a round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum LrSchedule {
    /// Multiply the learning rate by `factor` from the iteration equivalent of epoch `at_epoch` (reference: x0.1 at 150).
    Step { at_epoch: f64, factor: f64 },
    /// Cosine decay from `lr` to 0 over the round's iterations (the GPU simulation of UNISAL.md section 5).
    Cosine,
    /// A constant learning rate.
    Constant,
}

/// The full effective training configuration of one round; recorded with the round so it can be reproduced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The preset this config started from (informational).
    pub preset: String,
    /// Backbone of both networks.
    pub arch: ModelArch,
    /// Base width of the backbone (small CNN: channels of its first block; ResNet: stem channels); `None` = the
    /// architecture's default (32 for the small CNN, 64 for ResNets, which pretrained weights need).
    pub width: Option<usize>,
    /// Shorter side of every image after resizing (reference 256); the evaluation view is this, uncropped.
    pub resize: u32,
    /// Side of the random square training crop (reference 224).
    pub crop: u32,
    /// Labeled images per iteration (reference 64).
    pub batch_labeled: usize,
    /// Unlabeled images per iteration (reference 64).
    pub batch_unlabeled: usize,
    /// Images per forward pass when predicting.
    pub batch_eval: usize,
    /// Round length in epochs of the labeled set (reference 201); an epoch is max(1, floor(N_labeled / batch_labeled))
    /// iterations. Ignored when `iterations` is set.
    pub epochs: f64,
    /// An explicit iteration count per round; epoch-based milestones then scale to it (epoch e -> e / epochs of it).
    pub iterations: Option<u64>,
    /// Initial learning rate (reference 1e-3).
    pub lr: f64,
    /// SGD momentum (reference 0.9), no Nesterov.
    pub momentum: f64,
    /// Weight decay on all parameters (reference 8e-4).
    pub weight_decay: f64,
    /// Learning-rate schedule (reference: x0.1 at epoch 150).
    pub lr_schedule: LrSchedule,
    /// Confidence gate of the pseudo-labels (reference 0.7).
    pub tau: f64,
    /// Temperature of the contrastive loss (reference 0.15).
    pub temperature: f64,
    /// Weight of the cross pseudo-supervision after the step (reference 0.5; 0 before).
    pub lambda: f64,
    /// Epoch at which lambda steps from 0 to `lambda` (reference 15).
    pub lambda_step_epoch: f64,
    /// Weight of the class-wise contrastive loss (reference 0.1).
    pub contrastive_weight: f64,
    /// Reproduce the reference's contrastive quirks (negatives only j > i, last image unused).
    pub faithful: bool,
    /// Seed of everything random in the round (head init: seed and seed+1, sampling, augmentation).
    pub seed: u64,
    /// `auto`, `cpu`, `cuda`, `cuda:N` or `metal`.
    pub device: String,
    /// bf16 mixed precision on CUDA (bf16 activations, f32 weights; PyTorch's bf16 autocast). Off by default.
    pub bf16: bool,
    /// Local safetensors file with backbone weights (torchvision/timm names); `None` = random init.
    pub pretrained: Option<PathBuf>,
    /// Fraction of the labeled set held out to choose the checkpoint; `None` = keep the last iteration.
    pub validation_fraction: Option<f64>,
    /// Evaluate on the validation set every this many iterations (only with a validation set).
    pub validation_every: u64,
    /// Decoding/augmentation worker threads (0 = number of cores).
    pub workers: usize,
    /// Batches prepared ahead of the device.
    pub prefetch: usize,
    /// Report progress every this many iterations.
    pub progress_every: u64,
}

impl Default for TrainConfig {
    /// The method's reference values (UNISAL.md section 1).
    fn default() -> Self {
        Self {
            preset: "reference".into(),
            arch: ModelArch::Resnet50,
            width: None,
            resize: 256,
            crop: 224,
            batch_labeled: 64,
            batch_unlabeled: 64,
            batch_eval: 128,
            epochs: 201.0,
            iterations: None,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 8e-4,
            lr_schedule: LrSchedule::Step { at_epoch: 150.0, factor: 0.1 },
            tau: 0.7,
            temperature: 0.15,
            lambda: 0.5,
            lambda_step_epoch: 15.0,
            contrastive_weight: 0.1,
            faithful: false,
            seed: 0,
            device: "auto".into(),
            bf16: false,
            pretrained: None,
            validation_fraction: None,
            validation_every: 50,
            workers: 0,
            prefetch: 3,
            progress_every: 5,
        }
    }
}

/// The names [`TrainConfig::preset`] accepts.
pub const PRESETS: [&str; 3] = ["reference", "gpu-sim", "cpu-small"];

impl TrainConfig {
    /// A named preset: `reference` (UNISAL.md section 1), `gpu-sim` (section 5: ResNet-18 from scratch, 150 px
    /// pool, 128 crop, 400 iterations, lr 0.03 cosine, wd 5e-4) or `cpu-small` (2-core CPUs: small CNN of width 16,
    /// 64 px images with 56 px training crops, 16 + 16 a batch, 300 iterations, lr 0.05 cosine).
    pub fn preset(name: &str) -> Option<Self> {
        let reference = Self::default();
        match name {
            "reference" => Some(reference),
            "gpu-sim" => Some(Self {
                preset: name.into(),
                arch: ModelArch::Resnet18,
                resize: 150,
                crop: 128,
                iterations: Some(400),
                lr: 0.03,
                weight_decay: 5e-4,
                lr_schedule: LrSchedule::Cosine,
                ..reference
            }),
            "cpu-small" => Some(Self {
                preset: name.into(),
                arch: ModelArch::Small,
                width: Some(16),
                resize: 64,
                crop: 56,
                batch_labeled: 16,
                batch_unlabeled: 16,
                batch_eval: 64,
                iterations: Some(300),
                lr: 0.05,
                weight_decay: 5e-4,
                lr_schedule: LrSchedule::Cosine,
                ..reference
            }),
            _ => None,
        }
    }

    /// Sets the training crop side to `size` pixels and the resize side to 9/8 of it (64 -> 72, 224 -> 252).
    pub fn set_input_size(&mut self, size: u32) {
        self.crop = size;
        self.resize = size.saturating_mul(9).div_ceil(8);
    }

    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("batch_labeled", self.batch_labeled as f64),
            ("batch_unlabeled", self.batch_unlabeled as f64),
            ("batch_eval", self.batch_eval as f64),
            ("resize", self.resize as f64),
            ("crop", self.crop as f64),
            ("epochs", self.epochs),
            ("lr", self.lr),
            ("temperature", self.temperature),
            ("prefetch", self.prefetch as f64),
            ("progress_every", self.progress_every as f64),
            ("validation_every", self.validation_every as f64),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("training config: `{name}` must be a positive number, got {v}"));
            }
        }
        let non_negative = [
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("lambda", self.lambda),
            ("lambda_step_epoch", self.lambda_step_epoch),
            ("contrastive_weight", self.contrastive_weight),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("training config: `{name}` must be >= 0, got {v}"));
            }
        }
        if self.crop > self.resize {
            return Err(format!(
                "training config: `crop` ({}) must not exceed `resize` ({})",
                self.crop, self.resize
            ));
        }
        if !(self.tau > 0.0 && self.tau < 1.0) {
            return Err(format!("training config: `tau` must be in (0, 1), got {}", self.tau));
        }
        if self.width == Some(0) {
            return Err("training config: `width` must be at least 1".into());
        }
        if self.iterations == Some(0) {
            return Err("training config: `iterations` must be at least 1".into());
        }
        if self.bf16 && !self.device.starts_with("cuda") {
            return Err(format!("training config: `bf16` needs a CUDA device, got device {:?}", self.device));
        }
        if let Some(f) = self.validation_fraction {
            if !(f > 0.0 && f < 1.0) {
                return Err(format!("training config: `validation_fraction` must be in (0, 1), got {f}"));
            }
        }
        if let LrSchedule::Step { at_epoch, factor } = self.lr_schedule {
            if !(at_epoch >= 0.0 && factor.is_finite() && factor >= 0.0) {
                return Err(format!("training config: `lr_schedule` step needs at_epoch >= 0 and factor >= 0, got {at_epoch}, {factor}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_defaults_match_the_method() {
        let c = TrainConfig::default();
        assert_eq!((c.resize, c.crop, c.batch_labeled, c.batch_unlabeled), (256, 224, 64, 64));
        assert_eq!((c.lr, c.momentum, c.weight_decay), (1e-3, 0.9, 8e-4));
        assert_eq!((c.tau, c.temperature, c.lambda, c.lambda_step_epoch), (0.7, 0.15, 0.5, 15.0));
        assert_eq!(c.contrastive_weight, 0.1);
        assert_eq!(c.lr_schedule, LrSchedule::Step { at_epoch: 150.0, factor: 0.1 });
        assert!(c.validate().is_ok());
    }

    #[test]
    fn presets_validate_and_roundtrip_through_json() {
        for name in PRESETS {
            let c = TrainConfig::preset(name).unwrap();
            c.validate().unwrap();
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), c);
        }
        assert!(TrainConfig::preset("nope").is_none());
        let partial: TrainConfig = serde_json::from_str(r#"{"arch":"small","lr":0.5}"#).unwrap();
        assert_eq!((partial.arch, partial.lr, partial.crop), (ModelArch::Small, 0.5, 224));
    }

    #[test]
    fn model_names_parse_loosely_and_input_size_sets_resize() {
        assert_eq!(ModelArch::parse("ResNet-18"), Some(ModelArch::Resnet18));
        assert_eq!(ModelArch::parse("resnet_50"), Some(ModelArch::Resnet50));
        assert_eq!(ModelArch::parse("SMALL"), Some(ModelArch::Small));
        assert_eq!(ModelArch::parse("vit"), None);
        let mut c = TrainConfig::default();
        c.set_input_size(64);
        assert_eq!((c.crop, c.resize), (64, 72));
        c.set_input_size(150);
        assert_eq!((c.crop, c.resize), (150, 169));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = TrainConfig { crop: 300, ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`crop`"));
        let bad = TrainConfig { bf16: true, device: "cpu".into(), ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`bf16`"));
        assert!(TrainConfig { bf16: true, device: "cuda:0".into(), ..TrainConfig::default() }
            .validate()
            .is_ok());
        let bad = TrainConfig { tau: 1.5, ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`tau`"));
        let bad = TrainConfig { batch_labeled: 0, ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`batch_labeled`"));
        let bad = TrainConfig { validation_fraction: Some(1.0), ..TrainConfig::default() };
        assert!(bad.validate().unwrap_err().contains("`validation_fraction`"));
    }
}
