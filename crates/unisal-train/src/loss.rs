//! The three UniSAL losses of one iteration (UNISAL.md section 1.3): supervised cross-entropy, cross pseudo
//! supervision with a confidence gate, and the class-wise contrastive loss (clean symmetric form, or the
//! reference's quirks with `faithful`).
//!
//! Batches are laid out as the trainer feeds them: the `labels.len()` labeled images first, then the unlabeled
//! ones, in the same order for both networks. Pseudo-labels, gates and contrastive masks are computed from detached
//! probabilities, so no gradient flows through them: on the host, or for data on a GPU on the device
//! (`loss_device.rs`, the same results without the device sync).

use crate::error::{Result, TrainError};
use candle_core::{DType, Tensor, D};
use unisal_core::learner::LossTerms;

/// The loss hyper-parameters that shape the terms (the weights are applied by [`LossParts::total`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// Confidence gate of the pseudo-labels (reference 0.7).
    pub tau: f64,
    /// Temperature of the contrastive loss (reference 0.15).
    pub temperature: f64,
    /// Reproduce the reference's contrastive quirks: negatives only j > i, last image of the batch unused.
    pub faithful: bool,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self { tau: 0.7, temperature: 0.15, faithful: false }
    }
}

/// Both networks' outputs on one mixed batch (labeled first, then unlabeled).
#[derive(Debug, Clone, Copy)]
pub struct DualOutputs<'a> {
    pub logits_a: &'a Tensor,
    pub logits_b: &'a Tensor,
    pub proj_a: &'a Tensor,
    pub proj_b: &'a Tensor,
}

/// The loss terms of one iteration as scalar tensors, plus counts for the progress report.
#[derive(Debug, Clone)]
pub struct LossParts {
    pub supervised: Tensor,
    /// A trained on B's confident pseudo-labels.
    pub pseudo_a: Tensor,
    /// B trained on A's confident pseudo-labels.
    pub pseudo_b: Tensor,
    pub contrastive: Tensor,
    /// See [`LossParts::counts`].
    counts: Counts,
}

/// The counts of [`LossParts::counts`]: on the host, or a `[3]` tensor left on the device until asked for.
#[derive(Debug, Clone)]
enum Counts {
    Host([usize; 3]),
    Device(Tensor),
}

/// Counts of one iteration for the progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossCounts {
    /// Unlabeled images whose B pseudo-label passed the gate (used for A).
    pub gated_for_a: usize,
    /// Unlabeled images whose A pseudo-label passed the gate (used for B).
    pub gated_for_b: usize,
    /// Anchors of the contrastive loss (images with a contrastive label and at least one negative).
    pub anchors: usize,
}

impl LossParts {
    /// `L_sup + lambda * (L_psA + L_psB) + contrastive_weight * L_cl`.
    pub fn total(&self, lambda: f64, contrastive_weight: f64) -> Result<Tensor> {
        let pseudo = (&self.pseudo_a + &self.pseudo_b)?.affine(lambda, 0.0)?;
        let cl = self.contrastive.affine(contrastive_weight, 0.0)?;
        Ok(((&self.supervised + pseudo)? + cl)?)
    }

    /// The gated and anchor counts (a device sync where they were computed on the device).
    pub fn counts(&self) -> Result<LossCounts> {
        let [gated_for_a, gated_for_b, anchors] = match &self.counts {
            Counts::Host(c) => *c,
            Counts::Device(t) => {
                let v = t.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                [0, 1, 2].map(|i| v.get(i).map_or(0, |x| x.round() as usize))
            }
        };
        Ok(LossCounts { gated_for_a, gated_for_b, anchors })
    }

    /// The terms as numbers (a device sync), with the total for the given weights.
    pub fn terms(&self, lambda: f64, contrastive_weight: f64) -> Result<LossTerms> {
        let v = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let (supervised, pseudo_a, pseudo_b, contrastive) =
            (v(&self.supervised)?, v(&self.pseudo_a)?, v(&self.pseudo_b)?, v(&self.contrastive)?);
        let total = supervised + lambda * (pseudo_a + pseudo_b) + contrastive_weight * contrastive;
        Ok(LossTerms { total, supervised, pseudo_a, pseudo_b, contrastive })
    }
}

/// Row-wise log-softmax over the last dimension, with the (detached) row maximum subtracted for stability.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// `-sum(weights * log_softmax(logits))`: cross-entropy with per-row, per-class target weights.
fn weighted_ce(logits: &Tensor, weights: Vec<f64>) -> Result<Tensor> {
    let w = Tensor::from_vec(weights, logits.dims(), logits.device())?.to_dtype(logits.dtype())?;
    Ok((log_softmax(logits)? * w)?.sum_all()?.neg()?)
}

fn zero(like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::zeros((), like.dtype(), like.device())?)
}

/// Mean cross-entropy of `logits` (N x C) against class indices `labels` (length N).
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let (n, c) = logits.dims2()?;
    if n != labels.len() {
        return Err(TrainError::InvalidInput(format!(
            "cross-entropy: {n} logit rows but {} labels",
            labels.len()
        )));
    }
    if n == 0 {
        return zero(logits);
    }
    let mut w = vec![0.0; n * c];
    for (i, &y) in labels.iter().enumerate() {
        if y as usize >= c {
            return Err(TrainError::InvalidInput(format!("label {y} out of range for {c} classes")));
        }
        w[i * c + y as usize] = 1.0 / n as f64;
    }
    weighted_ce(logits, w)
}

/// Probabilities of each row (host copy), from logits, detached.
pub fn probabilities(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let p = log_softmax(&logits.detach())?.exp()?.to_dtype(DType::F64)?;
    Ok(p.to_vec2::<f64>()?)
}

/// The pseudo-label (argmax; first maximum on ties) and whether its probability is strictly above `tau`.
pub fn pseudo_labels(probs: &[Vec<f64>], tau: f64) -> Vec<(u32, bool)> {
    probs
        .iter()
        .map(|row| {
            let (arg, max) = row.iter().enumerate().fold((0usize, f64::NEG_INFINITY), |acc, (i, &p)| {
                if p > acc.1 {
                    (i, p)
                } else {
                    acc
                }
            });
            (arg as u32, max > tau)
        })
        .collect()
}

/// Confidence-gated cross-entropy of `logits` (the student's unlabeled rows) on the teacher's pseudo-labels:
/// `(1/|U|) * sum_u m_u * CE(logits_u, y_u)`. Returns the loss and the number of gated rows.
pub fn gated_pseudo_ce(logits: &Tensor, teacher: &[(u32, bool)]) -> Result<(Tensor, usize)> {
    let (n, c) = logits.dims2()?;
    if n != teacher.len() {
        return Err(TrainError::InvalidInput(format!(
            "pseudo-supervision: {n} rows but {} pseudo-labels",
            teacher.len()
        )));
    }
    if n == 0 {
        return Ok((zero(logits)?, 0));
    }
    let mut w = vec![0.0; n * c];
    let mut passed = 0;
    for (u, &(y, ok)) in teacher.iter().enumerate() {
        if ok {
            w[u * c + y as usize] = 1.0 / n as f64;
            passed += 1;
        }
    }
    Ok((weighted_ce(logits, w)?, passed))
}

/// Rows scaled to unit L2 norm (norm clamped below at 1e-8 as torch's cosine similarity does).
fn l2_normalize(z: &Tensor) -> Result<Tensor> {
    let norm = z.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-8, f64::INFINITY)?;
    Ok(z.broadcast_div(&norm)?)
}

/// The negative-pair mask of the contrastive loss (row-major N x N, 1.0 where j is a negative of anchor i).
pub fn negative_mask(labels: &[Option<u32>], faithful: bool) -> Vec<f64> {
    let n = labels.len();
    let usable = if faithful { n.saturating_sub(1) } else { n };
    let mut m = vec![0.0; n * n];
    for i in 0..usable {
        let Some(ci) = labels[i] else { continue };
        let start = if faithful { i + 1 } else { 0 };
        for j in start..usable {
            if let Some(cj) = labels[j] {
                if j != i && cj != ci {
                    m[i * n + j] = 1.0;
                }
            }
        }
    }
    m
}

/// Class-wise contrastive loss on the projections `za`, `zb` (N x d) with contrastive labels (`None` = ignored).
/// For each anchor i: pos = exp(s(zB_i, zA_i)/T), neg = sum over negatives j of exp(s(zB_i, zB_j)/T) +
/// exp(s(zA_i, zA_j)/T); loss_i = -log(pos / (pos + neg)); the sum over anchors with at least one negative is
/// divided by (1 + their number). Returns the loss and the number of anchors.
pub fn contrastive_loss(
    za: &Tensor,
    zb: &Tensor,
    labels: &[Option<u32>],
    temperature: f64,
    faithful: bool,
) -> Result<(Tensor, usize)> {
    let (n, _) = za.dims2()?;
    if zb.dims2()?.0 != n || labels.len() != n {
        return Err(TrainError::InvalidInput(format!(
            "contrastive loss: {n} rows in zA, {} in zB, {} labels",
            zb.dims2()?.0,
            labels.len()
        )));
    }
    let mask = negative_mask(labels, faithful);
    let anchor: Vec<f64> =
        (0..n).map(|i| if mask[i * n..(i + 1) * n].iter().any(|&m| m > 0.0) { 1.0 } else { 0.0 }).collect();
    let anchors = anchor.iter().filter(|&&a| a > 0.0).count();
    if anchors == 0 {
        return Ok((zero(za)?, 0));
    }
    let (dev, dt) = (za.device(), za.dtype());
    let mask = Tensor::from_vec(mask, (n, n), dev)?.to_dtype(dt)?;
    let per_anchor = per_anchor_loss((za, zb), &mask, temperature)?;
    let weights = Tensor::from_vec(anchor, n, dev)?.to_dtype(dt)?;
    let loss = (per_anchor * weights)?.sum_all()?.affine(1.0 / (1.0 + anchors as f64), 0.0)?;
    Ok((loss, anchors))
}

/// Each row's `-log(pos / (pos + neg))` of the contrastive loss (see [`contrastive_loss`]) for the projections and
/// the `N x N` negative mask in their data type (also for `loss_device.rs`).
pub(crate) fn per_anchor_loss(
    (za, zb): (&Tensor, &Tensor),
    mask: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let ua = l2_normalize(za)?;
    let ub = l2_normalize(zb)?;
    let inv_t = 1.0 / temperature;
    let pos_logit = (&ub * &ua)?.sum(D::Minus1)?.affine(inv_t, 0.0)?;
    let sim_a = ua.matmul(&ua.t()?)?.affine(inv_t, 0.0)?;
    let sim_b = ub.matmul(&ub.t()?)?.affine(inv_t, 0.0)?;
    let neg = ((sim_a.exp()? + sim_b.exp()?)? * mask)?.sum(D::Minus1)?;
    // -log(pos / (pos + neg)) = log(pos + neg) - log(pos)
    Ok(((pos_logit.exp()? + neg)?.log()? - pos_logit)?)
}

/// Contrastive labels of a mixed batch: the true label for labeled rows; for unlabeled rows the shared
/// pseudo-label when both networks pass the gate and agree, otherwise `None`.
pub fn contrastive_labels(
    labels: &[u32],
    pseudo_a: &[(u32, bool)],
    pseudo_b: &[(u32, bool)],
) -> Vec<Option<u32>> {
    let unlabeled = pseudo_a
        .iter()
        .zip(pseudo_b)
        .map(|(&(ya, ca), &(yb, cb))| if ca && cb && ya == yb { Some(ya) } else { None });
    labels.iter().map(|&y| Some(y)).chain(unlabeled).collect()
}

/// Where [`dual_losses_with`] computes the pseudo-labels, gates and contrastive masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossPath {
    /// On the host: the probabilities are read back (a device sync on a GPU).
    Host,
    /// On the device (`crate::loss_device`), with the same results; the counts stay there until asked for.
    Device,
    /// On the device for data on a GPU (unless `UNISAL_DEVICE_LOSSES=0`), on the host for data on the CPU.
    Auto,
}

/// All three losses of one iteration for a mixed batch whose first `labels.len()` rows are labeled.
pub fn dual_losses(out: DualOutputs<'_>, labels: &[u32], cfg: &LossConfig) -> Result<LossParts> {
    dual_losses_with(out, labels, cfg, LossPath::Auto)
}

/// [`dual_losses`] with the pseudo-labels, gates and masks computed where `path` says.
pub fn dual_losses_with(
    out: DualOutputs<'_>,
    labels: &[u32],
    cfg: &LossConfig,
    path: LossPath,
) -> Result<LossParts> {
    let (n, _) = out.logits_a.dims2()?;
    let nl = labels.len();
    if nl > n || out.logits_b.dims2()?.0 != n {
        return Err(TrainError::InvalidInput(format!(
            "dual losses: {nl} labels for batches of {n} (A) and {} (B) rows",
            out.logits_b.dims2()?.0
        )));
    }
    let nu = n - nl;
    let sup_a = cross_entropy(&out.logits_a.narrow(0, 0, nl)?, labels)?;
    let sup_b = cross_entropy(&out.logits_b.narrow(0, 0, nl)?, labels)?;
    let supervised = (sup_a + sup_b)?;
    let ua = out.logits_a.narrow(0, nl, nu)?;
    let ub = out.logits_b.narrow(0, nl, nu)?;
    let on_device = match path {
        LossPath::Host => false,
        LossPath::Device => true,
        LossPath::Auto => !out.logits_a.device().is_cpu() && crate::nn::env_not_off("UNISAL_DEVICE_LOSSES"),
    };
    if on_device && nu > 0 {
        let ([pseudo_a, pseudo_b, contrastive], counts) =
            crate::loss_device::unlabeled_terms(&out, (&ua, &ub), labels, cfg)?;
        let counts = Counts::Device(counts);
        return Ok(LossParts { supervised, pseudo_a, pseudo_b, contrastive, counts });
    }
    let pl_a = pseudo_labels(&probabilities(&ua)?, cfg.tau);
    let pl_b = pseudo_labels(&probabilities(&ub)?, cfg.tau);
    let (pseudo_a, gated_for_a) = gated_pseudo_ce(&ua, &pl_b)?;
    let (pseudo_b, gated_for_b) = gated_pseudo_ce(&ub, &pl_a)?;
    let cl_labels = contrastive_labels(labels, &pl_a, &pl_b);
    let (contrastive, anchors) =
        contrastive_loss(out.proj_a, out.proj_b, &cl_labels, cfg.temperature, cfg.faithful)?;
    let counts = Counts::Host([gated_for_a, gated_for_b, anchors]);
    Ok(LossParts { supervised, pseudo_a, pseudo_b, contrastive, counts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f64], r: usize, c: usize) -> Tensor {
        Tensor::from_vec(v.to_vec(), (r, c), &Device::Cpu).unwrap()
    }

    #[test]
    fn cross_entropy_matches_hand_values() {
        // logits [0, ln 3] -> p = [0.25, 0.75]; CE(label 1) = -ln 0.75, CE(label 0) = -ln 0.25
        let l = t(&[0.0, 3f64.ln(), 0.0, 3f64.ln()], 2, 2);
        let ce = cross_entropy(&l, &[1, 0]).unwrap().to_scalar::<f64>().unwrap();
        let want = (-(0.75f64.ln()) - 0.25f64.ln()) / 2.0;
        assert!((ce - want).abs() < 1e-12, "{ce} vs {want}");
        assert!(cross_entropy(&l, &[1, 2]).is_err());
    }

    #[test]
    fn pseudo_gate_divides_by_all_unlabeled() {
        // row 0: p = [0.75, 0.25] passes tau 0.7; row 1: p = [0.5, 0.5] does not.
        let teacher = pseudo_labels(&[vec![0.75, 0.25], vec![0.5, 0.5]], 0.7);
        assert_eq!(teacher, vec![(0, true), (0, false)]);
        let student = t(&[3f64.ln(), 0.0, 0.0, 0.0], 2, 2);
        let (l, k) = gated_pseudo_ce(&student, &teacher).unwrap();
        assert_eq!(k, 1);
        let want = -(0.75f64.ln()) / 2.0;
        assert!((l.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn negative_masks_clean_and_faithful() {
        let labels = [Some(0), Some(1), None, Some(0), Some(2)];
        let clean = negative_mask(&labels, false);
        let ones: Vec<(usize, usize)> = (0..25).filter(|&k| clean[k] > 0.0).map(|k| (k / 5, k % 5)).collect();
        assert_eq!(
            ones,
            vec![(0, 1), (0, 4), (1, 0), (1, 3), (1, 4), (3, 1), (3, 4), (4, 0), (4, 1), (4, 3)]
        );
        let faithful = negative_mask(&labels, true);
        let ones: Vec<(usize, usize)> =
            (0..25).filter(|&k| faithful[k] > 0.0).map(|k| (k / 5, k % 5)).collect();
        assert_eq!(ones, vec![(0, 1), (1, 3)]);
    }

    #[test]
    fn contrastive_single_pair_matches_formula() {
        // two anchors of different classes, 2-d projections
        let za = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let zb = t(&[1.0, 1.0, 0.0, 2.0], 2, 2);
        let (l, k) = contrastive_loss(&za, &zb, &[Some(0), Some(1)], 0.5, false).unwrap();
        assert_eq!(k, 2);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        // anchor 0: pos = exp(s/T); neg = exp(sB01/T) + exp(sA01/T) = exp(s/T) + exp(0)
        let l0 = -((s / 0.5).exp() / ((s / 0.5).exp() + (s / 0.5).exp() + 1.0)).ln();
        // anchor 1: pos = exp(1/T); neg = exp(s/T) + 1
        let l1 = -((2.0f64).exp() / ((2.0f64).exp() + (s / 0.5).exp() + 1.0)).ln();
        let want = (l0 + l1) / 3.0;
        assert!((l.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
        let (l, k) = contrastive_loss(&za, &zb, &[Some(0), Some(0)], 0.5, false).unwrap();
        assert_eq!((l.to_scalar::<f64>().unwrap(), k), (0.0, 0));
    }
}
