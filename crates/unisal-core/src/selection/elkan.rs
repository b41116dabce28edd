//! Elkan's acceleration of Lloyd's assignment step (Elkan 2003): per point an upper bound on the distance
//! to its centroid and a lower bound on the distance to every centroid (n × K bounds), plus the
//! centroid-to-centroid distances. In high dimension with many clusters it skips far more distance
//! computations than Hamerly's single lower bound, because a large move of one centroid loosens only that
//! centroid's bounds.

use super::distance::{sq_dist, DenseRows};

/// Per-point bounds and the centroid distance matrix.
pub(crate) struct Elkan {
    k: usize,
    upper: Vec<f32>,
    /// Lower bounds, row `i` = point `i`, column = centroid.
    lower: Vec<f32>,
    /// Centroid-to-centroid distances, K × K.
    between: Vec<f32>,
    half_gap: Vec<f32>,
}

impl Elkan {
    /// From the seeding's squared distances to the nearest center and its lower bounds to every center.
    pub(crate) fn new(d2: &[f32], lower_all: Vec<f32>, k: usize) -> Self {
        Elkan {
            k,
            upper: d2.iter().map(|d| d.sqrt()).collect(),
            lower: lower_all,
            between: vec![0.0; k * k],
            half_gap: vec![f32::INFINITY; k],
        }
    }

    /// Loosen the bounds by the centroid moves; points moved into empty clusters sit on their centroid.
    pub(crate) fn after_move(&mut self, assignment: &[u32], shifts: &[f32], moved: &[usize]) {
        for ((&a, upper), lower) in
            assignment.iter().zip(&mut self.upper).zip(self.lower.chunks_exact_mut(self.k))
        {
            *upper += shifts[a as usize];
            for (l, &s) in lower.iter_mut().zip(shifts) {
                *l = (*l - s).max(0.0);
            }
        }
        for &i in moved {
            self.upper[i] = 0.0;
            self.lower[i * self.k + assignment[i] as usize] = 0.0;
        }
    }

    /// The assignment step; returns how many points changed cluster.
    pub(crate) fn assign(
        &mut self,
        rows: &DenseRows<'_>,
        centroids: &[f32],
        dim: usize,
        assignment: &mut [u32],
    ) -> usize {
        let k = self.k;
        self.half_gap.fill(f32::INFINITY);
        for a in 0..k {
            for b in a + 1..k {
                let d =
                    sq_dist(&centroids[a * dim..(a + 1) * dim], &centroids[b * dim..(b + 1) * dim]).sqrt();
                self.between[a * k + b] = d;
                self.between[b * k + a] = d;
                self.half_gap[a] = self.half_gap[a].min(0.5 * d);
                self.half_gap[b] = self.half_gap[b].min(0.5 * d);
            }
        }
        let mut changed = 0;
        for (i, (slot, lower)) in assignment.iter_mut().zip(self.lower.chunks_exact_mut(k)).enumerate() {
            let start = *slot as usize;
            let mut a = start;
            let mut upper = self.upper[i];
            if upper <= self.half_gap[a] {
                continue;
            }
            let x = rows.row(i);
            let mut tight = false;
            for c in 0..k {
                if c == a {
                    continue;
                }
                let limit = lower[c].max(0.5 * self.between[a * k + c]);
                if upper <= limit {
                    continue;
                }
                if !tight {
                    upper = sq_dist(x, &centroids[a * dim..(a + 1) * dim]).sqrt();
                    lower[a] = upper;
                    tight = true;
                    if upper <= limit {
                        continue;
                    }
                }
                let d = sq_dist(x, &centroids[c * dim..(c + 1) * dim]).sqrt();
                lower[c] = d;
                if d < upper {
                    a = c;
                    upper = d;
                }
            }
            self.upper[i] = upper;
            if a != start {
                changed += 1;
                *slot = a as u32;
            }
        }
        changed
    }
}
