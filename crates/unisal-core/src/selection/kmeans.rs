//! k-means for UniSAL's Compact Selector: k-means++ seeding, then Lloyd iterations accelerated with
//! Hamerly's bounds (one upper bound to the assigned centroid and one lower bound to the second nearest per
//! point; most points skip the distance computations after the first iterations). Results are identical to
//! plain Lloyd up to ties and f32 rounding, deterministic per seed.
//!
//! Empty clusters: the point farthest from its centroid (in a cluster of more than one member; ties to the
//! lowest index) moves to the empty cluster. When every point sits exactly on its centroid (duplicates, fewer
//! distinct points than K), the cluster stays empty and [`KMeansResult::representatives`] fills its slot with
//! the nearest point not yet chosen.

use super::distance::{sq_dist, DenseRows, PointSet};
use super::rng::SeededRng;
use super::seeding::kmeans_pp;
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};

/// Stopping rule of Lloyd's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KMeansConfig {
    /// At most this many Lloyd iterations (at least 1).
    pub max_iters: usize,
    /// Stop when the sum of squared centroid moves is at most `tol` times the mean per-dimension variance
    /// of the points (scikit-learn's rule); also stop when no point changes cluster.
    pub tol: f64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig { max_iters: 100, tol: 1e-4 }
    }
}

/// The outcome of [`kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult {
    /// K centroids, `k * dim` values.
    pub centroids: Vec<f32>,
    /// Dimension of the points.
    pub dim: usize,
    /// The cluster of every point.
    pub assignment: Vec<usize>,
    /// Members per cluster (some may be 0 only when there are fewer distinct points than K).
    pub sizes: Vec<usize>,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Whether the stopping rule was met before `max_iters`.
    pub converged: bool,
}

impl KMeansResult {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.sizes.len()
    }

    /// Centroid `j`.
    pub fn centroid(&self, j: usize) -> &[f32] {
        &self.centroids[j * self.dim..(j + 1) * self.dim]
    }

    /// One distinct point per cluster, as `(point index, cluster)`: for each non-empty cluster in order, its
    /// member nearest the centroid (ties to the lowest index); then, for each empty cluster, the nearest point
    /// not already chosen. `points` must be the points the result was computed from.
    pub fn representatives(&self, points: &[f32]) -> Vec<(usize, usize)> {
        let rows = DenseRows::new(points, self.dim);
        let mut best: Vec<Option<(f32, usize)>> = vec![None; self.k()];
        for (i, &j) in self.assignment.iter().enumerate() {
            let d = sq_dist(rows.row(i), self.centroid(j));
            if best[j].is_none_or(|(bd, _)| d < bd) {
                best[j] = Some((d, i));
            }
        }
        let mut chosen = vec![false; self.assignment.len()];
        let mut picks = Vec::with_capacity(self.k());
        for (j, entry) in best.iter().enumerate() {
            if let Some((_, i)) = entry {
                chosen[*i] = true;
                picks.push((*i, j));
            }
        }
        for j in (0..self.k()).filter(|&j| best[j].is_none()) {
            let nearest = (0..self.assignment.len())
                .filter(|&i| !chosen[i])
                .map(|i| (sq_dist(rows.row(i), self.centroid(j)), i))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            if let Some((_, i)) = nearest {
                chosen[i] = true;
                picks.push((i, j));
            }
        }
        picks
    }
}

/// k-means with K = `k` over `points` (row-major, `dim` values a point): k-means++ seeding from a seeded
/// uniform first center, then Lloyd's iterations (Hamerly-accelerated) until `config`'s stopping rule.
/// Requires 1 <= k <= number of points and finite values.
pub fn kmeans(
    points: &[f32],
    dim: usize,
    k: usize,
    config: &KMeansConfig,
    seed: u64,
) -> Result<KMeansResult> {
    let invalid = |field, reason: String| CoreError::Invalid { field, reason };
    if dim == 0 || points.len() % dim != 0 {
        return Err(invalid("dim", format!("{} values are not rows of {dim}", points.len())));
    }
    let n = points.len() / dim;
    if k == 0 || k > n {
        return Err(invalid("k", format!("must be between 1 and the number of points {n}, got {k}")));
    }
    if config.max_iters == 0 || !config.tol.is_finite() || config.tol < 0.0 {
        return Err(invalid(
            "kmeans",
            format!("max_iters must be >= 1 and tol finite and >= 0, got {config:?}"),
        ));
    }
    if let Some(at) = points.iter().position(|v| !v.is_finite()) {
        return Err(invalid("points", format!("point {} has a non-finite value", at / dim)));
    }
    let mut rng = SeededRng::new(seed, 0x6b6d);
    Ok(lloyd(&DenseRows::new(points, dim), dim, k, config, &mut rng))
}

/// Per-point state of Hamerly's algorithm.
struct Bounds {
    assignment: Vec<u32>,
    upper: Vec<f32>,
    lower: Vec<f32>,
}

fn lloyd(
    rows: &DenseRows<'_>,
    dim: usize,
    k: usize,
    config: &KMeansConfig,
    rng: &mut SeededRng,
) -> KMeansResult {
    let n = rows.len();
    let first = rng.below(n);
    let seeding = kmeans_pp(rows, k, first, rng);
    let mut centroids: Vec<f32> = seeding.centers.iter().flat_map(|&c| rows.row(c).iter().copied()).collect();
    let mut bounds = Bounds {
        assignment: seeding.nearest,
        upper: seeding.d2.iter().map(|d| d.sqrt()).collect(),
        lower: seeding.second_lower,
    };
    let tol_abs = config.tol * mean_variance(rows, dim);
    let mut half_gap = vec![f32::INFINITY; k];
    let (mut iterations, mut converged) = (0, false);
    while iterations < config.max_iters {
        iterations += 1;
        let (shifts, moved) = move_centroids(rows, dim, k, &mut centroids, &mut bounds.assignment);
        update_bounds(&mut bounds, &shifts, &moved);
        half_gaps(&centroids, dim, k, &mut half_gap);
        let changed = assign(rows, &centroids, dim, &half_gap, &mut bounds);
        let moved_sq: f64 = shifts.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        if (changed == 0 && moved.is_empty()) || moved_sq <= tol_abs {
            converged = true;
            break;
        }
    }
    let assignment: Vec<usize> = bounds.assignment.iter().map(|&a| a as usize).collect();
    let mut sizes = vec![0; k];
    for &a in &assignment {
        sizes[a] += 1;
    }
    KMeansResult { centroids, dim, assignment, sizes, iterations, converged }
}

/// Mean over dimensions of the per-dimension variance of the points.
fn mean_variance(rows: &DenseRows<'_>, dim: usize) -> f64 {
    let n = rows.len();
    let mut mean = vec![0.0f64; dim];
    for i in 0..n {
        for (m, &v) in mean.iter_mut().zip(rows.row(i)) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut total = 0.0;
    for i in 0..n {
        for (m, &v) in mean.iter().zip(rows.row(i)) {
            total += (f64::from(v) - m).powi(2);
        }
    }
    total / (n as f64 * dim as f64)
}

/// Recompute every centroid as the mean of its members (f64 sums in point order), refill empty clusters,
/// and return each centroid's move and the points moved into empty clusters.
fn move_centroids(
    rows: &DenseRows<'_>,
    dim: usize,
    k: usize,
    centroids: &mut [f32],
    assignment: &mut [u32],
) -> (Vec<f32>, Vec<usize>) {
    let old = centroids.to_vec();
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (i, &a) in assignment.iter().enumerate() {
        let a = a as usize;
        counts[a] += 1;
        for (s, &v) in sums[a * dim..(a + 1) * dim].iter_mut().zip(rows.row(i)) {
            *s += f64::from(v);
        }
    }
    let write_mean = |centroids: &mut [f32], sums: &[f64], counts: &[usize], j: usize| {
        if counts[j] > 0 {
            for (c, s) in centroids[j * dim..(j + 1) * dim].iter_mut().zip(&sums[j * dim..(j + 1) * dim]) {
                *c = (s / counts[j] as f64) as f32;
            }
        }
    };
    for j in 0..k {
        write_mean(centroids, &sums, &counts, j);
    }
    let mut moved = Vec::new();
    for j in 0..k {
        if counts[j] > 0 {
            continue;
        }
        let farthest = assignment
            .iter()
            .enumerate()
            .filter(|(_, &a)| counts[a as usize] > 1)
            .map(|(i, &a)| (sq_dist(rows.row(i), &centroids[a as usize * dim..(a as usize + 1) * dim]), i))
            .fold(None, |best: Option<(f32, usize)>, (d, i)| match best {
                Some((bd, _)) if bd >= d => best,
                _ => Some((d, i)),
            });
        let Some((d, i)) = farthest else { continue };
        if d <= 0.0 {
            continue;
        }
        let from = assignment[i] as usize;
        counts[from] -= 1;
        for (s, &v) in sums[from * dim..(from + 1) * dim].iter_mut().zip(rows.row(i)) {
            *s -= f64::from(v);
        }
        write_mean(centroids, &sums, &counts, from);
        assignment[i] = j as u32;
        counts[j] = 1;
        centroids[j * dim..(j + 1) * dim].copy_from_slice(rows.row(i));
        for (s, &v) in sums[j * dim..(j + 1) * dim].iter_mut().zip(rows.row(i)) {
            *s = f64::from(v);
        }
        moved.push(i);
    }
    let shifts = (0..k)
        .map(|j| sq_dist(&old[j * dim..(j + 1) * dim], &centroids[j * dim..(j + 1) * dim]).sqrt())
        .collect();
    (shifts, moved)
}

/// Loosen the bounds by the centroid moves (upper by the own centroid's, lower by the largest other one).
fn update_bounds(bounds: &mut Bounds, shifts: &[f32], moved: &[usize]) {
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
    for ((&a, upper), lower) in bounds.assignment.iter().zip(&mut bounds.upper).zip(&mut bounds.lower) {
        let a = a as usize;
        *upper += shifts[a];
        *lower -= if a == largest_at { second } else { largest };
    }
    for &i in moved {
        bounds.upper[i] = 0.0;
        bounds.lower[i] = 0.0;
    }
}

/// Half the distance from each centroid to its nearest other centroid (infinite for K = 1).
fn half_gaps(centroids: &[f32], dim: usize, k: usize, half_gap: &mut [f32]) {
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

/// Hamerly's assignment step; returns how many points changed cluster.
fn assign(
    rows: &DenseRows<'_>,
    centroids: &[f32],
    dim: usize,
    half_gap: &[f32],
    bounds: &mut Bounds,
) -> usize {
    let mut changed = 0;
    for i in 0..bounds.assignment.len() {
        let a = bounds.assignment[i] as usize;
        let limit = half_gap[a].max(bounds.lower[i]);
        if bounds.upper[i] <= limit {
            continue;
        }
        let x = rows.row(i);
        bounds.upper[i] = sq_dist(x, &centroids[a * dim..(a + 1) * dim]).sqrt();
        if bounds.upper[i] <= limit {
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
            bounds.assignment[i] = best as u32;
        }
        bounds.upper[i] = best_d.sqrt();
        bounds.lower[i] = second_d.sqrt();
    }
    changed
}
