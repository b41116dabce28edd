//! Loading weights from `.safetensors` files into a [`Network`].
//!
//! - [`load_pretrained`]: a torchvision or timm ResNet checkpoint (timm's ResNet uses torchvision's key names).
//!   A `module.` prefix (DataParallel) is stripped and `*.num_batches_tracked` is ignored. The classifier `fc.*` is
//!   loaded only when its shape matches (same class count); otherwise the network keeps its random head and the
//!   report says so. The projector `proj.weight` is ours: loaded when present, otherwise kept random.
//! - [`load_exact`]: a checkpoint this crate wrote: every parameter and buffer must be present with its shape.
//!
//! Any missing backbone key, unexpected key or shape mismatch fails with one error listing all of them, and the
//! network is left unchanged.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};
use crate::models::Network;
use crate::nn::NamedVar;

/// What [`load_pretrained`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PretrainedReport {
    /// Number of tensors copied into the network.
    pub loaded: usize,
    /// Whether the classifier `fc.*` came from the file.
    pub head_loaded: bool,
    /// Whether the projector `proj.weight` came from the file.
    pub proj_loaded: bool,
    /// Human-readable notes (e.g. why the head stayed random).
    pub notes: Vec<String>,
}

/// Read all tensors of a safetensors file onto the CPU.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if let Err(source) = std::fs::metadata(path) {
        return Err(TrainError::Io { path: path.to_path_buf(), source });
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| TrainError::WeightsMismatch {
        path: path.to_path_buf(),
        details: format!("not a readable safetensors file: {e}"),
    })
}

/// Load a torchvision/timm checkpoint into `net` (see the module docs for the rules).
pub fn load_pretrained(net: &Network, path: &Path) -> Result<PretrainedReport> {
    let raw = read_safetensors(path)?;
    let mut file: BTreeMap<String, Tensor> = BTreeMap::new();
    for (k, v) in raw {
        if k.ends_with("num_batches_tracked") {
            continue;
        }
        let k = k.strip_prefix("module.").map(str::to_string).unwrap_or(k);
        file.insert(k, v);
    }
    let vars = net.named_vars();
    let mut plan: Vec<(&NamedVar, Tensor)> = Vec::new();
    let mut problems = Problems::default();
    let mut notes = Vec::new();
    let (mut head_loaded, mut proj_loaded) = (true, false);
    for nv in &vars {
        let is_fc = nv.name.starts_with("fc.");
        let is_proj = nv.name.starts_with("proj.");
        match file.remove(&nv.name) {
            Some(t) if t.dims() == nv.var.dims() => {
                if is_proj {
                    proj_loaded = true;
                }
                plan.push((nv, t));
            }
            Some(t) if is_fc || is_proj => {
                if is_fc {
                    head_loaded = false;
                }
                notes.push(format!(
                    "{} has shape {:?} in the file but {:?} here (class count differs): kept the random head",
                    nv.name,
                    t.dims(),
                    nv.var.dims()
                ));
            }
            Some(t) => problems.mismatched.push(format!(
                "{}: file {:?}, network {:?}",
                nv.name,
                t.dims(),
                nv.var.dims()
            )),
            None if is_fc => {
                head_loaded = false;
                notes.push(format!("{} is not in the file: kept the random classifier", nv.name));
            }
            None if is_proj => {
                notes.push(format!("{} is not in the file: kept the random projector", nv.name))
            }
            None => problems.missing.push(nv.name.clone()),
        }
    }
    // A half-loaded classifier (weight but not bias) would be inconsistent: keep it random as a whole.
    if !head_loaded {
        plan.retain(|(nv, _)| !nv.name.starts_with("fc."));
    }
    problems.unexpected = file.into_keys().collect();
    problems.check(path)?;
    let loaded = apply(&plan)?;
    Ok(PretrainedReport { loaded, head_loaded, proj_loaded, notes })
}

/// Load a checkpoint that must match `net` exactly (every parameter and buffer, same shapes).
pub fn load_exact(net: &Network, path: &Path) -> Result<()> {
    let mut file: BTreeMap<String, Tensor> = read_safetensors(path)?.into_iter().collect();
    let vars = net.named_vars();
    let mut plan = Vec::with_capacity(vars.len());
    let mut problems = Problems::default();
    for nv in &vars {
        match file.remove(&nv.name) {
            Some(t) if t.dims() == nv.var.dims() => plan.push((nv, t)),
            Some(t) => problems.mismatched.push(format!(
                "{}: file {:?}, network {:?}",
                nv.name,
                t.dims(),
                nv.var.dims()
            )),
            None => problems.missing.push(nv.name.clone()),
        }
    }
    problems.unexpected = file.into_keys().collect();
    problems.check(path)?;
    apply(&plan)?;
    Ok(())
}

/// Copy every planned tensor into its variable (converted to the variable's dtype and device).
fn apply(plan: &[(&NamedVar, Tensor)]) -> Result<usize> {
    // Convert everything first, so that a conversion failure changes nothing.
    let mut converted = Vec::with_capacity(plan.len());
    for (nv, t) in plan {
        converted.push(t.to_dtype(nv.var.dtype())?.to_device(nv.var.device())?);
    }
    for ((nv, _), t) in plan.iter().zip(&converted) {
        nv.var.set(t)?;
    }
    Ok(plan.len())
}

#[derive(Debug, Default)]
struct Problems {
    missing: Vec<String>,
    unexpected: Vec<String>,
    mismatched: Vec<String>,
}

impl Problems {
    fn check(&self, path: &Path) -> Result<()> {
        if self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::new();
        for (what, list) in [
            ("missing keys", &self.missing),
            ("unexpected keys", &self.unexpected),
            ("shape mismatches", &self.mismatched),
        ] {
            if !list.is_empty() {
                parts.push(format!("{} {what}: {}", list.len(), abbreviate(list)));
            }
        }
        Err(TrainError::WeightsMismatch { path: path.to_path_buf(), details: parts.join("; ") })
    }
}

/// At most 12 names, then a count of the rest.
fn abbreviate(list: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut s = list.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if list.len() > SHOWN {
        s.push_str(&format!(", ... and {} more", list.len() - SHOWN));
    }
    s
}
