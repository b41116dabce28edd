//! k-means for UniSAL's Compact Selector: k-means++ seeding, then Lloyd iterations whose assignment step
//! is accelerated with Elkan's or Hamerly's triangle-inequality bounds (most points skip most distance
//! computations). Results are those of plain Lloyd up to ties and f32 rounding, deterministic per seed.
//!
//! Empty clusters: the point farthest from its centroid (in a cluster of more than one member; ties to the
//! lowest index) moves to the empty cluster. When every point sits exactly on its centroid (duplicates, fewer
//! distinct points than K), the cluster stays empty and [`KMeansResult::representatives`] fills its slot with
//! the nearest point not yet chosen.

use super::distance::{sq_dist, DenseRows, PointSet};
use super::elkan::Elkan;
use super::hamerly::Hamerly;
use super::rng::SeededRng;
use super::seeding::kmeans_pp;
use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};

/// Elkan's bounds are used up to this many point × cluster pairs (64 MiB of f32), Hamerly's beyond.
pub const ELKAN_MAX_BOUNDS: usize = 1 << 24;

/// How Lloyd's assignment step avoids distance computations (all give the same clusters up to ties and
/// f32 rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KMeansAlgorithm {
    /// Elkan while n × K <= [`ELKAN_MAX_BOUNDS`], else Hamerly.
    #[default]
    Auto,
    /// Elkan (2003): a lower bound per point and centroid; fastest in high dimension with many clusters.
    Elkan,
    /// Hamerly (2010): one lower bound per point; O(n) memory.
    Hamerly,
}

/// Stopping rule and algorithm of Lloyd's iterations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KMeansConfig {
    /// At most this many Lloyd iterations (at least 1).
    pub max_iters: usize,
    /// Stop when the sum of squared centroid moves is at most `tol` times the mean per-dimension variance
    /// of the points (scikit-learn's rule); also stop when no point changes cluster.
    pub tol: f64,
    /// How the assignment step is accelerated.
    pub algorithm: KMeansAlgorithm,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig { max_iters: 100, tol: 1e-4, algorithm: KMeansAlgorithm::Auto }
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
    ///
    /// # Panics
    /// When `points` does not hold one row of `dim` values per assigned point.
    pub fn representatives(&self, points: &[f32]) -> Vec<(usize, usize)> {
        assert_eq!(
            points.len(),
            self.assignment.len() * self.dim,
            "representatives() needs the {} points k-means ran on",
            self.assignment.len()
        );
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
/// uniform first center, then Lloyd's iterations (Elkan- or Hamerly-accelerated) until `config`'s stopping rule.
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

/// The bounds that accelerate the assignment step.
enum Accelerator {
    Elkan(Elkan),
    Hamerly(Hamerly),
}

fn lloyd(
    rows: &DenseRows<'_>,
    dim: usize,
    k: usize,
    config: &KMeansConfig,
    rng: &mut SeededRng,
) -> KMeansResult {
    let n = rows.len();
    let use_elkan = match config.algorithm {
        KMeansAlgorithm::Elkan => true,
        KMeansAlgorithm::Hamerly => false,
        KMeansAlgorithm::Auto => n.saturating_mul(k) <= ELKAN_MAX_BOUNDS,
    };
    let first = rng.below(n);
    let seeding = kmeans_pp(rows, k, first, rng, use_elkan);
    let mut centroids: Vec<f32> = seeding.centers.iter().flat_map(|&c| rows.row(c).iter().copied()).collect();
    let mut assignment = seeding.nearest;
    let mut accelerator = if use_elkan {
        Accelerator::Elkan(Elkan::new(&seeding.d2, seeding.lower_all, k))
    } else {
        Accelerator::Hamerly(Hamerly::new(&seeding.d2, seeding.second_lower, k))
    };
    let tol_abs = config.tol * mean_variance(rows, dim);
    let (mut iterations, mut converged) = (0, false);
    while iterations < config.max_iters {
        iterations += 1;
        let (shifts, moved) = move_centroids(rows, dim, k, &mut centroids, &mut assignment);
        let changed = match &mut accelerator {
            Accelerator::Elkan(elkan) => {
                elkan.after_move(&assignment, &shifts, &moved);
                elkan.assign(rows, &centroids, dim, &mut assignment)
            }
            Accelerator::Hamerly(hamerly) => {
                hamerly.after_move(&assignment, &shifts, &moved);
                hamerly.assign(rows, &centroids, dim, &mut assignment)
            }
        };
        let moved_sq: f64 = shifts.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        if (changed == 0 && moved.is_empty()) || moved_sq <= tol_abs {
            converged = true;
            break;
        }
    }
    let assignment: Vec<usize> = assignment.iter().map(|&a| a as usize).collect();
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
