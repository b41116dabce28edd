//! The pseudo-labels, confidence gates and contrastive masks of [`crate::loss::dual_losses`] computed on the device,
//! from the same detached probabilities as the host path, so that an iteration on a GPU never waits for its forward
//! pass to reach the host: the host path reads the probabilities back (a device sync) in the middle of each
//! iteration, after which the host builds the backward graph while the GPU idles.
//!
//! The results are the host path's: the same probabilities, the first maximum as the pseudo-label (the smallest
//! index whose probability equals the row's maximum), the gate `p > tau` compared exactly (in f64 for f64 data,
//! else in f32 against the smallest f32 above `tau`), and the same weights. Only the contrastive loss's final
//! scale may differ in its last bit (the anchor count's reciprocal is taken in the data type). The counts for the
//! progress report stay on the device until asked for.

use candle_core::{DType, Tensor, D};

use crate::error::Result;
use crate::loss::{log_softmax, per_anchor_loss, DualOutputs, LossConfig};

/// Pseudo-labels of the (detached) rows of `logits`: `(label [n, 1] u32, gate [n, 1] in f32)`.
fn pseudo(logits: &Tensor, tau: f64) -> Result<(Tensor, Tensor)> {
    let p = log_softmax(&logits.detach())?.exp()?;
    let (n, c) = p.dims2()?;
    let max = p.max_keepdim(D::Minus1)?;
    // The first maximum: the smallest index whose probability equals the maximum (c where it does not).
    let index = Tensor::arange(0u32, c as u32, p.device())?.to_dtype(DType::F32)?.reshape((1, c))?;
    let beyond = Tensor::full(c as f32, (n, c), p.device())?;
    let at_max = p.broadcast_eq(&max)?;
    let label = at_max.where_cond(&index.broadcast_as((n, c))?, &beyond)?.min_keepdim(D::Minus1)?;
    let gate = if p.dtype() == DType::F64 {
        max.gt(tau)?
    } else {
        max.to_dtype(DType::F32)?.ge(smallest_f32_above(tau))?
    };
    Ok((label.to_dtype(DType::U32)?, gate.to_dtype(DType::F32)?))
}

/// The smallest f32 strictly above `tau` (for `tau >= 0`): an f32 `p` has `p > tau` exactly when `p >=` it.
fn smallest_f32_above(tau: f64) -> f32 {
    let t = tau as f32;
    if f64::from(t) > tau {
        t
    } else {
        f32::from_bits(t.to_bits() + 1)
    }
}

/// `(1/n) * sum_u gate_u * CE(student_u, label_u)` and the number of gated rows (an f32 scalar on the device).
fn gated_pseudo_ce(student: &Tensor, (label, gate): (&Tensor, &Tensor)) -> Result<(Tensor, Tensor)> {
    let (n, c) = student.dims2()?;
    let dt = student.dtype();
    let classes = Tensor::arange(0u32, c as u32, student.device())?.reshape((1, c))?;
    let one_hot = label.broadcast_eq(&classes)?.to_dtype(dt)?;
    let w = one_hot.broadcast_mul(&gate.to_dtype(dt)?)?.affine(1.0 / n as f64, 0.0)?;
    let loss = (log_softmax(student)? * w)?.sum_all()?.neg()?;
    Ok((loss, gate.sum_all()?))
}

/// The contrastive loss with labels `label` (`[n]` f32 class numbers) valid where `valid` (`[n]` f32) is 1, and the
/// number of anchors (an f32 scalar on the device); see [`crate::loss::contrastive_loss`].
fn contrastive(
    out: &DualOutputs<'_>,
    (label, valid): (&Tensor, &Tensor),
    cfg: &LossConfig,
) -> Result<(Tensor, Tensor)> {
    let (za, zb) = (out.proj_a, out.proj_b);
    let (n, _) = za.dims2()?;
    let (dev, dt) = (za.device(), za.dtype());
    let col = |t: &Tensor| t.reshape((n, 1));
    let row = |t: &Tensor| t.reshape((1, n));
    // Negatives: both valid, different labels (which leaves out j == i).
    let mut mask = col(label)?.broadcast_ne(&row(label)?)?.to_dtype(DType::F32)?;
    mask = mask.broadcast_mul(&col(valid)?)?.broadcast_mul(&row(valid)?)?;
    if cfg.faithful {
        // The reference: only j > i, and the batch's last image unused.
        let i = Tensor::arange(0u32, n as u32, dev)?;
        let upper = row(&i)?.broadcast_gt(&col(&i)?)?.to_dtype(DType::F32)?;
        let usable = i.lt(n.saturating_sub(1) as u32)?.to_dtype(DType::F32)?;
        mask = (mask * upper)?.broadcast_mul(&col(&usable)?)?.broadcast_mul(&row(&usable)?)?;
    }
    let anchor = mask.sum(D::Minus1)?.gt(0f32)?.to_dtype(DType::F32)?;
    let anchors = anchor.sum_all()?;
    let per_anchor = per_anchor_loss((za, zb), &mask.to_dtype(dt)?, cfg.temperature)?;
    let scale = (anchors.affine(1.0, 1.0)?.recip()?).to_dtype(dt)?;
    let loss = (per_anchor * anchor.to_dtype(dt)?)?.sum_all()?.mul(&scale)?;
    Ok((loss, anchors))
}

/// The unlabeled rows' terms of [`crate::loss::dual_losses`], `[pseudo_a, pseudo_b, contrastive]`, with the
/// pseudo-labels, gates and masks on the device, and the counts `[gated for A, gated for B, anchors]` as a `[3]`
/// tensor there; `(ua, ub)` are the networks' logits of the unlabeled rows (inputs already checked).
pub(crate) fn unlabeled_terms(
    out: &DualOutputs<'_>,
    (ua, ub): (&Tensor, &Tensor),
    labels: &[u32],
    cfg: &LossConfig,
) -> Result<([Tensor; 3], Tensor)> {
    let (nl, nu, dev) = (labels.len(), ua.dims2()?.0, ua.device());
    let (label_a, gate_a) = pseudo(ua, cfg.tau)?;
    let (label_b, gate_b) = pseudo(ub, cfg.tau)?;
    let (pseudo_a, gated_for_a) = gated_pseudo_ce(ua, (&label_b, &gate_b))?;
    let (pseudo_b, gated_for_b) = gated_pseudo_ce(ub, (&label_a, &gate_a))?;
    // Contrastive labels: the true ones, then the shared pseudo-label where both gates pass and they agree.
    let agree = label_a.eq(&label_b)?.to_dtype(DType::F32)?;
    let valid_u = ((gate_a * gate_b)? * agree)?.reshape(nu)?;
    let known = Tensor::from_vec(labels.iter().map(|&y| y as f32).collect::<Vec<_>>(), nl, dev)?;
    let label = Tensor::cat(&[&known, &label_a.to_dtype(DType::F32)?.reshape(nu)?], 0)?;
    let valid = Tensor::cat(&[&Tensor::ones(nl, DType::F32, dev)?, &valid_u], 0)?;
    let (contrastive, anchors) = contrastive(out, (&label, &valid), cfg)?;
    let counts = Tensor::stack(&[&gated_for_a, &gated_for_b, &anchors], 0)?;
    Ok(([pseudo_a, pseudo_b, contrastive], counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{dual_losses_with, LossPath};
    use candle_core::{Device, Var};

    #[test]
    fn the_gate_threshold_is_the_smallest_f32_above_tau() {
        for tau in [0.0, 0.7, 0.95, 0.5, 1.0 / 3.0, 0.999_999_9] {
            let v = smallest_f32_above(tau);
            assert!(f64::from(v) > tau, "{tau}");
            let below = f32::from_bits(v.to_bits() - 1);
            assert!(f64::from(below) <= tau, "{tau}: {below} is above too");
        }
    }

    /// Logits of `n` rows and 5 classes in f32: seeded values, some rows tied at their maximum, some confident.
    fn logits(n: usize, seed: u32) -> Var {
        let v: Vec<f32> = (0..n * 5)
            .map(|k| {
                let (i, j) = (k / 5, k % 5);
                let h = ((k as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(40_503)) >> 8)
                    as f32;
                match i % 4 {
                    0 => 1.5,                                             // every class tied
                    1 if j < 2 => 3.0,                                    // two classes tied at the maximum
                    2 if j == (i + seed as usize) % 5 => 6.0 + (h % 7.0), // confident
                    _ => (h % 1000.0) / 250.0 - 2.0,
                }
            })
            .collect();
        Var::from_vec(v, (n, 5), &Device::Cpu).unwrap()
    }

    fn projections(n: usize, seed: u32) -> Var {
        let v: Vec<f32> =
            (0..n * 8).map(|k| (((k as u32 * 7 + seed * 13) % 17) as f32 - 8.0) / 5.0).collect();
        Var::from_vec(v, (n, 8), &Device::Cpu).unwrap()
    }

    #[test]
    fn the_device_path_gives_the_host_paths_losses_counts_and_gradients() {
        let labels: Vec<u32> = vec![0, 1, 2, 3, 4, 0, 1, 2];
        for (tau, faithful, seed) in
            [(0.7, false, 1), (0.7, true, 2), (0.0, false, 3), (0.999, false, 4), (0.3, true, 5)]
        {
            let (la, lb) = (logits(24, seed), logits(24, seed + 9));
            let (za, zb) = (projections(24, seed), projections(24, seed + 3));
            let cfg = LossConfig { tau, temperature: 0.15, faithful };
            let out = DualOutputs {
                logits_a: la.as_tensor(),
                logits_b: lb.as_tensor(),
                proj_a: za.as_tensor(),
                proj_b: zb.as_tensor(),
            };
            let host = dual_losses_with(out, &labels, &cfg, LossPath::Host).unwrap();
            let dev = dual_losses_with(out, &labels, &cfg, LossPath::Device).unwrap();
            let what = format!("tau {tau}, faithful {faithful}");
            assert_eq!(host.counts().unwrap(), dev.counts().unwrap(), "{what}: counts");
            let (h, d) = (host.total(0.5, 0.3).unwrap(), dev.total(0.5, 0.3).unwrap());
            let (hv, dv) = (h.to_scalar::<f32>().unwrap(), d.to_scalar::<f32>().unwrap());
            assert!((hv - dv).abs() <= 1e-6 * hv.abs().max(1.0), "{what}: total {hv} vs {dv}");
            let (gh, gd) = (h.backward().unwrap(), d.backward().unwrap());
            for v in [&la, &lb, &za, &zb] {
                let g = |s: &candle_core::backprop::GradStore| {
                    s.get(v.as_tensor()).map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                };
                let (a, b) = (g(&gh).unwrap_or_default(), g(&gd).unwrap_or_default());
                let scale = a.iter().chain(&b).fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
                let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-5 * scale, "{what}: gradient differs by {worst} of {scale}");
            }
        }
    }
}
