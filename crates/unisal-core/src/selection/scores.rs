//! Per-patch scores of one round: both networks' predictions, their Jensen-Shannon divergence (the graded
//! disagreement), and the ensemble's confidence, entropy and margin. All logarithms are natural.

use serde::{Deserialize, Serialize};

/// The scores of one patch, computed from both networks' probabilities and the ensemble's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PatchScores {
    /// The patch id.
    pub patch_id: i64,
    /// Network A's class (argmax, ties to the lowest class index).
    pub pred_a: u32,
    /// Network B's class.
    pub pred_b: u32,
    /// The ensemble's class.
    pub pred: u32,
    /// Network A's probability of its class.
    pub conf_a: f64,
    /// Network B's probability of its class.
    pub conf_b: f64,
    /// Whether A and B predict the same class (UniSAL's DUS keeps the patches where they do not).
    pub agree: bool,
    /// Jensen-Shannon divergence between A's and B's probabilities, in [0, ln 2].
    pub jsd: f64,
    /// The ensemble's probability of its class, in [1/C, 1].
    pub confidence: f64,
    /// The ensemble's entropy, in [0, ln C].
    pub entropy: f64,
    /// The ensemble's most probable minus its second most probable class probability, in [0, 1].
    pub margin: f64,
}

impl PatchScores {
    /// Score one patch; `ensemble` is the ensemble's probabilities (see [`crate::selection::SelectionInput`]).
    pub fn compute(patch_id: i64, probs_a: &[f32], probs_b: &[f32], ensemble: &[f32]) -> PatchScores {
        let (pred_a, conf_a) = argmax(probs_a);
        let (pred_b, conf_b) = argmax(probs_b);
        let (pred, confidence) = argmax(ensemble);
        let total: f64 = ensemble.iter().map(|&p| f64::from(p)).sum();
        let (mut first, mut second) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        let mut entropy = 0.0;
        for &p in ensemble {
            let p = f64::from(p) / total;
            if p > 0.0 {
                entropy -= p * p.ln();
            }
            if p > first {
                second = first;
                first = p;
            } else if p > second {
                second = p;
            }
        }
        let max_entropy = (ensemble.len() as f64).ln();
        PatchScores {
            patch_id,
            pred_a,
            pred_b,
            pred,
            conf_a: f64::from(conf_a),
            conf_b: f64::from(conf_b),
            agree: pred_a == pred_b,
            jsd: jensen_shannon(probs_a, probs_b),
            confidence: (f64::from(confidence) / total).clamp(0.0, 1.0),
            entropy: entropy.clamp(0.0, max_entropy),
            margin: (first - second).clamp(0.0, 1.0),
        }
    }
}

/// The index and value of the largest entry; ties go to the lowest index.
pub(crate) fn argmax(values: &[f32]) -> (u32, f32) {
    let mut best = 0;
    for (index, &value) in values.iter().enumerate() {
        if value > values[best] {
            best = index;
        }
    }
    (best as u32, values[best])
}

/// The Jensen-Shannon divergence between two probability vectors of the same length, in nats:
/// `0.5 KL(p || m) + 0.5 KL(q || m)` with `m = (p + q) / 2`, `0 ln 0 = 0`. Each vector is first rescaled to
/// sum to 1 (in f64), so the result lies in [0, ln 2]. Both vectors must be non-negative with a positive sum.
pub fn jensen_shannon(p: &[f32], q: &[f32]) -> f64 {
    debug_assert_eq!(p.len(), q.len(), "jensen_shannon of vectors of different lengths");
    let sum_p: f64 = p.iter().map(|&v| f64::from(v)).sum();
    let sum_q: f64 = q.iter().map(|&v| f64::from(v)).sum();
    let mut divergence = 0.0;
    for (&pi, &qi) in p.iter().zip(q) {
        let pi = f64::from(pi) / sum_p;
        let qi = f64::from(qi) / sum_q;
        let mi = 0.5 * (pi + qi);
        if pi > 0.0 {
            divergence += 0.5 * pi * (pi / mi).ln();
        }
        if qi > 0.0 {
            divergence += 0.5 * qi * (qi / mi).ln();
        }
    }
    divergence.clamp(0.0, std::f64::consts::LN_2)
}

/// The ensemble's probabilities from both networks': the softmax of the averaged log-probabilities, which
/// equals the softmax of the averaged logits (softmax is invariant to a per-row shift, and
/// `ln softmax(z) = z - logsumexp(z)`), i.e. the normalised geometric mean `sqrt(pa * pb) / sum`. Where every
/// class has probability 0 in one of the networks (f32 underflow), the normalised arithmetic mean is used.
pub(crate) fn ensemble_from_pair(pa: &[f32], pb: &[f32], out: &mut Vec<f32>) {
    let geometric = |(&a, &b): (&f32, &f32)| (f64::from(a) * f64::from(b)).sqrt();
    let total: f64 = pa.iter().zip(pb).map(geometric).sum();
    if total > 0.0 {
        out.extend(pa.iter().zip(pb).map(|pair| (geometric(pair) / total) as f32));
    } else {
        let total: f64 = pa.iter().zip(pb).map(|(&a, &b)| f64::from(a) + f64::from(b)).sum();
        out.extend(pa.iter().zip(pb).map(|(&a, &b)| ((f64::from(a) + f64::from(b)) / total) as f32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::LN_2;

    #[test]
    fn jsd_of_known_distributions() {
        // Identical distributions: 0.
        assert!(jensen_shannon(&[0.2, 0.3, 0.5], &[0.2, 0.3, 0.5]).abs() < 1e-12);
        // Disjoint supports: ln 2.
        assert!((jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]) - LN_2).abs() < 1e-12);
        // p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): KL(p||m) = ln(4/3), KL(q||m) = (ln(2/3) + ln 2) / 2,
        // JSD = (ln(4/3) + (ln(2/3) + ln 2) / 2) / 2 = 0.2157615...
        let expected =
            0.5 * (1.0f64 / 0.75).ln() + 0.5 * (0.5 * (0.5f64 / 0.75).ln() + 0.5 * (0.5f64 / 0.25).ln());
        assert!((jensen_shannon(&[1.0, 0.0], &[0.5, 0.5]) - expected).abs() < 1e-12);
        assert!((expected - 0.215_761_554_338_835_6).abs() < 1e-12, "hand value {expected}");
        // Symmetric.
        let (p, q) = ([0.7f32, 0.2, 0.1], [0.1f32, 0.3, 0.6]);
        assert!((jensen_shannon(&p, &q) - jensen_shannon(&q, &p)).abs() < 1e-15);
    }

    #[test]
    fn ensemble_is_softmax_of_averaged_logits() {
        let za = [2.0f64, -1.0, 0.5];
        let zb = [0.0f64, 1.5, -0.5];
        let softmax = |z: &[f64]| {
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect::<Vec<f64>>()
        };
        let pa: Vec<f32> = softmax(&za).iter().map(|&v| v as f32).collect();
        let pb: Vec<f32> = softmax(&zb).iter().map(|&v| v as f32).collect();
        let averaged: Vec<f64> = za.iter().zip(&zb).map(|(a, b)| 0.5 * (a + b)).collect();
        let expected = softmax(&averaged);
        let mut out = Vec::new();
        ensemble_from_pair(&pa, &pb, &mut out);
        for (got, want) in out.iter().zip(&expected) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{out:?} vs {expected:?}");
        }
        // Underflowed rows fall back to the arithmetic mean.
        let mut out = Vec::new();
        ensemble_from_pair(&[1.0, 0.0], &[0.0, 1.0], &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
    }

    #[test]
    fn scores_by_hand() {
        let s = PatchScores::compute(9, &[0.6, 0.3, 0.1], &[0.2, 0.7, 0.1], &[0.4, 0.5, 0.1]);
        assert_eq!((s.pred_a, s.pred_b, s.pred, s.agree), (0, 1, 1, false));
        assert!((s.conf_a - 0.6).abs() < 1e-6 && (s.conf_b - 0.7).abs() < 1e-6);
        assert!((s.confidence - 0.5).abs() < 1e-6);
        assert!((s.margin - 0.1).abs() < 1e-6);
        let entropy = -(0.4f64 * 0.4f64.ln() + 0.5 * 0.5f64.ln() + 0.1 * 0.1f64.ln());
        assert!((s.entropy - entropy).abs() < 1e-6, "{} vs {entropy}", s.entropy);
        // Ties go to the lowest class index.
        assert_eq!(argmax(&[0.25, 0.5, 0.25, 0.5]), (1, 0.5));
    }
}
