//! Hamerly's acceleration of Lloyd's assignment step (Hamerly 2010): per point, an upper bound on the
//! distance to its centroid and one lower bound on the distance to every other centroid. O(n) memory; used
//! when Elkan's n × K bounds would take too much memory.

use super::distance::{sq_dist, DenseRows};

/// Per-point bounds.
pub(crate) struct Hamerly {
    upper: Vec<f32>,
    lower: Vec<f32>,
    half_gap: Vec<f32>,
}

impl Hamerly {
    /// From the seeding's squared distances to the nearest center and lower bounds to the second nearest.
    pub(crate) fn new(d2: &[f32], second_lower: Vec<f32>, k: usize) -> Self {
        Hamerly {
            upper: d2.iter().map(|d| d.sqrt()).collect(),
            lower: second_lower,
            half_gap: vec![f32::INFINITY; k],
        }
    }

    /// Loosen the bounds by the centroid moves (upper by the own centroid's, lower by the largest other
    /// one); points moved into empty clusters sit on their centroid.
    pub(crate) fn after_move(&mut self, assignment: &[u32], shifts: &[f32], moved: &[usize]) {
        let (mut largest, mut second, mut largest_at) = (0.0f32, 0.0f32, usize::MAX);
        for (j, &s) in shifts.iter().enumerate() {
            if s > largest {
                second = largest;
                largest = s;
                largest_at = j;
            } else if s > second {
                second = s;
            }
        }
        for ((&a, upper), lower) in assignment.iter().zip(&mut self.upper).zip(&mut self.lower) {
            let a = a as usize;
            *upper += shifts[a];
            *lower -= if a == largest_at { second } else { largest };
        }
        for &i in moved {
            self.upper[i] = 0.0;
            self.lower[i] = 0.0;
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
        half_gaps(centroids, dim, &mut self.half_gap);
        let mut changed = 0;
        for (i, slot) in assignment.iter_mut().enumerate() {
            let a = *slot as usize;
            let limit = self.half_gap[a].max(self.lower[i]);
            if self.upper[i] <= limit {
                continue;
            }
            let x = rows.row(i);
            self.upper[i] = sq_dist(x, &centroids[a * dim..(a + 1) * dim]).sqrt();
            if self.upper[i] <= limit {
                continue;
            }
            let (mut best, mut best_d, mut second_d) = (0usize, f32::INFINITY, f32::INFINITY);
            for (j, centroid) in centroids.chunks_exact(dim).enumerate() {
                let d = sq_dist(x, centroid);
                if d < best_d {
                    second_d = best_d;
                    best_d = d;
                    best = j;
                } else if d < second_d {
                    second_d = d;
                }
            }
            if best != a {
                changed += 1;
                *slot = best as u32;
            }
            self.upper[i] = best_d.sqrt();
            self.lower[i] = second_d.sqrt();
        }
        changed
    }
}

/// Half the distance from each centroid to its nearest other centroid (infinite for K = 1).
fn half_gaps(centroids: &[f32], dim: usize, half_gap: &mut [f32]) {
    let k = half_gap.len();
    half_gap.fill(f32::INFINITY);
    for a in 0..k {
        for b in a + 1..k {
            let d =
                0.5 * sq_dist(&centroids[a * dim..(a + 1) * dim], &centroids[b * dim..(b + 1) * dim]).sqrt();
            half_gap[a] = half_gap[a].min(d);
            half_gap[b] = half_gap[b].min(d);
        }
    }
}
