//! The pair of networks A and B: built from the initial weights every round, snapshot/restore for the
//! validation-based checkpoint choice.
//!
//! Initialisation: A uses seed `s` for backbone and heads, B uses `s + 1`. With a pretrained backbone file both
//! backbones are then overwritten by the same weights, so A and B differ only in their heads (UNISAL.md 1.1);
//! from random weights their backbones differ too, as two independently constructed networks would.

use crate::error::{Result, TrainError};
use crate::models::{Arch, NetConfig, Network};
use candle_core::{Device, Tensor};
use unisal_core::learner::{ModelArch, TrainConfig};

/// The model architecture of a config's arch.
pub fn arch_of(arch: ModelArch) -> Arch {
    match arch {
        ModelArch::Small => Arch::SmallCnn,
        ModelArch::Resnet18 => Arch::ResNet18,
        ModelArch::Resnet50 => Arch::ResNet50,
    }
}

/// Networks A and B.
#[derive(Debug, Clone)]
pub struct Pair {
    pub a: Network,
    pub b: Network,
}

/// A deep copy of every parameter and buffer of both networks.
#[derive(Debug)]
pub struct PairSnapshot {
    a: Vec<Tensor>,
    b: Vec<Tensor>,
}

impl Pair {
    /// Builds A and B from the initial weights of `config` for `num_classes` classes on `device`.
    pub fn initial(config: &TrainConfig, num_classes: usize, device: &Device) -> Result<Self> {
        let arch = arch_of(config.arch);
        let build = |seed: u64| -> Result<Network> {
            let base = NetConfig::new(arch, num_classes, seed);
            let width = config.width.unwrap_or(base.width);
            let nc = NetConfig { head_seed: Some(seed), width, bf16: config.bf16, ..base };
            let net = Network::new(&nc, device)?;
            if let Some(path) = &config.pretrained {
                crate::weights::load_pretrained(&net, path)?;
            }
            Ok(net)
        };
        Ok(Self { a: build(config.seed)?, b: build(config.seed.wrapping_add(1))? })
    }

    /// Copies every parameter and buffer (the live variables are updated in place by training).
    pub fn snapshot(&self) -> Result<PairSnapshot> {
        let copy = |n: &Network| -> Result<Vec<Tensor>> {
            n.named_vars().iter().map(|v| Ok(v.var.as_tensor().copy()?)).collect()
        };
        Ok(PairSnapshot { a: copy(&self.a)?, b: copy(&self.b)? })
    }

    /// Writes a snapshot back into the networks.
    pub fn restore(&self, snap: &PairSnapshot) -> Result<()> {
        for (net, saved) in [(&self.a, &snap.a), (&self.b, &snap.b)] {
            let vars = net.named_vars();
            if vars.len() != saved.len() {
                return Err(TrainError::InvalidInput("snapshot does not match the networks".into()));
            }
            for (v, t) in vars.iter().zip(saved) {
                v.var.set(t)?;
            }
        }
        Ok(())
    }
}
