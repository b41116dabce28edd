//! Classification metrics of a round (UNISAL.md section 1.5): accuracy, macro-F1, macro-precision,
//! macro-recall and the confusion matrix. Pure Rust.
//!
//! Macro averages are over all `num_classes` classes; a class with no predictions has precision 0, a class
//! with no true samples has recall 0, and F1 is 0 where precision + recall is 0 (scikit-learn's
//! `zero_division=0`).

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};

/// The metrics of a set of predictions against true labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

impl Metrics {
    /// Computes every metric; `truth` and `pred` are class indices below `num_classes`.
    pub fn compute(truth: &[u32], pred: &[u32], num_classes: usize) -> Result<Self> {
        if truth.len() != pred.len() {
            return Err(TrainError::InvalidInput(format!(
                "metrics: {} true labels but {} predictions",
                truth.len(),
                pred.len()
            )));
        }
        if truth.is_empty() || num_classes == 0 {
            return Err(TrainError::InvalidInput("metrics: no samples or no classes".into()));
        }
        let mut confusion = vec![vec![0u64; num_classes]; num_classes];
        for (&t, &p) in truth.iter().zip(pred) {
            if t as usize >= num_classes || p as usize >= num_classes {
                return Err(TrainError::InvalidInput(format!(
                    "metrics: class index {} out of range for {num_classes} classes",
                    t.max(p)
                )));
            }
            confusion[t as usize][p as usize] += 1;
        }
        let correct: u64 = (0..num_classes).map(|c| confusion[c][c]).sum();
        let (mut sp, mut sr, mut sf) = (0.0, 0.0, 0.0);
        for (c, row) in confusion.iter().enumerate() {
            let tp = row[c] as f64;
            let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
            let actual: u64 = row.iter().sum();
            let p = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let r = if actual > 0 { tp / actual as f64 } else { 0.0 };
            sp += p;
            sr += r;
            sf += if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        }
        let k = num_classes as f64;
        Ok(Self {
            accuracy: correct as f64 / truth.len() as f64,
            macro_f1: sf / k,
            macro_precision: sp / k,
            macro_recall: sr / k,
            confusion,
        })
    }

    /// The scalar metrics by name, as rounds and checkpoint cards record them.
    pub fn named(&self) -> Vec<(String, f64)> {
        vec![
            ("accuracy".into(), self.accuracy),
            ("macro_f1".into(), self.macro_f1),
            ("macro_precision".into(), self.macro_precision),
            ("macro_recall".into(), self.macro_recall),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_three_classes() {
        // truth 0 0 0 1 1 2 ; pred 0 0 1 1 2 2
        let m = Metrics::compute(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3).unwrap();
        assert_eq!(m.confusion, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // precision: c0 2/2, c1 1/2, c2 1/2 -> 2/3; recall: 2/3, 1/2, 1 -> 13/18
        assert!((m.macro_precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.macro_recall - 13.0 / 18.0).abs() < 1e-12);
        // f1: c0 2*1*(2/3)/(5/3) = 0.8, c1 0.5, c2 2*0.5*1/1.5 = 2/3
        assert!((m.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn absent_classes_count_as_zero() {
        let m = Metrics::compute(&[0, 0], &[0, 0], 2).unwrap();
        assert_eq!(m.accuracy, 1.0);
        assert_eq!((m.macro_precision, m.macro_recall, m.macro_f1), (0.5, 0.5, 0.5));
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(Metrics::compute(&[0], &[0, 1], 2).is_err());
        assert!(Metrics::compute(&[0], &[3], 2).is_err());
        assert!(Metrics::compute(&[], &[], 2).is_err());
    }
}
