//! k-means++ seeding (Arthur and Vassilvitskii 2007) over any [`PointSet`], pruned with the triangle
//! inequality: a point whose nearest center `a` satisfies `d(new, a) >= 2 d(x, a)` cannot be closer to the
//! new center, so its distance is not computed. The seeding also returns, for free, each point's nearest
//! center and a lower bound on its distance to the second nearest, which Hamerly's Lloyd iterations start from.

use super::distance::PointSet;
use super::rng::SeededRng;

/// The chosen centers and the bookkeeping Lloyd's iterations start from.
pub(crate) struct Seeding {
    /// Point indices of the centers, in the order they were chosen.
    pub(crate) centers: Vec<usize>,
    /// Squared distance of each point to the chosen centers when each was drawn (0 for the first).
    pub(crate) drawn_d2: Vec<f32>,
    /// For each point, the position in `centers` of its nearest center (ties: the earlier center).
    pub(crate) nearest: Vec<u32>,
    /// For each point, its squared distance to that center.
    pub(crate) d2: Vec<f32>,
    /// For each point, a lower bound on its (not squared) distance to the second nearest center.
    pub(crate) second_lower: Vec<f32>,
    /// When asked for: for each point (row) and center (column), a lower bound on their distance
    /// (exact where it was computed); empty otherwise.
    pub(crate) lower_all: Vec<f32>,
}

/// Choose `k` (1..=n) centers among the points: `first`, then each next one with probability proportional
/// to its squared distance to the nearest chosen center. When every remaining point coincides with a
/// chosen center (duplicates), the next center is drawn uniformly among the points not yet chosen.
/// `all_lower` asks for the n × k lower bounds (Elkan's k-means starts from them).
pub(crate) fn kmeans_pp<P: PointSet>(
    points: &P,
    k: usize,
    first: usize,
    rng: &mut SeededRng,
    all_lower: bool,
) -> Seeding {
    let n = points.len();
    debug_assert!(k >= 1 && k <= n && first < n, "k-means++ with k={k}, n={n}, first={first}");
    let mut is_center = vec![false; n];
    is_center[first] = true;
    let mut seeding = Seeding {
        centers: vec![first],
        drawn_d2: vec![0.0],
        nearest: vec![0; n],
        d2: (0..n).map(|i| points.dist2(i, first)).collect(),
        second_lower: vec![f32::INFINITY; n],
        lower_all: if all_lower { vec![0.0; n * k] } else { Vec::new() },
    };
    let mut dist: Vec<f32> = seeding.d2.iter().map(|d| d.sqrt()).collect();
    if all_lower {
        for (i, &d) in dist.iter().enumerate() {
            seeding.lower_all[i * k] = d;
        }
    }
    let mut center_dist = Vec::with_capacity(k);
    while seeding.centers.len() < k {
        let chosen = draw_next(&seeding.d2, &is_center, rng);
        let position = seeding.centers.len() as u32;
        is_center[chosen] = true;
        seeding.drawn_d2.push(seeding.d2[chosen]);
        center_dist.clear();
        center_dist.extend(seeding.centers.iter().map(|&c| points.dist2(c, chosen).sqrt()));
        seeding.centers.push(chosen);
        for i in 0..n {
            let current = dist[i];
            let gap = center_dist[seeding.nearest[i] as usize];
            if gap >= 2.0 * current {
                // d(x, new) >= gap - d(x, a) >= d(x, a): the nearest center stays, and the new one is at
                // least `gap - current` away.
                let bound = gap - current;
                if bound < seeding.second_lower[i] {
                    seeding.second_lower[i] = bound;
                }
                if all_lower {
                    seeding.lower_all[i * k + position as usize] = bound;
                }
                continue;
            }
            let d2 = points.dist2(i, chosen);
            if all_lower {
                seeding.lower_all[i * k + position as usize] = d2.sqrt();
            }
            if d2 < seeding.d2[i] {
                seeding.second_lower[i] = seeding.second_lower[i].min(current);
                seeding.nearest[i] = position;
                seeding.d2[i] = d2;
                dist[i] = d2.sqrt();
            } else {
                seeding.second_lower[i] = seeding.second_lower[i].min(d2.sqrt());
            }
        }
    }
    seeding
}

/// Draw a point with probability proportional to `d2` (never a center: their `d2` is 0), or uniformly among
/// the non-centers when all `d2` are 0.
fn draw_next(d2: &[f32], is_center: &[bool], rng: &mut SeededRng) -> usize {
    let total: f64 = d2.iter().map(|&d| f64::from(d)).sum();
    if total > 0.0 {
        let target = rng.uniform() * total;
        let mut cumulative = 0.0f64;
        let mut last_positive = None;
        for (i, &d) in d2.iter().enumerate() {
            if d > 0.0 && !is_center[i] {
                cumulative += f64::from(d);
                last_positive = Some(i);
                if cumulative > target {
                    return i;
                }
            }
        }
        if let Some(i) = last_positive {
            // Rounding left `target` at the very end of the cumulative sum.
            return i;
        }
    }
    let free = is_center.iter().filter(|&&c| !c).count();
    let pick = rng.below(free);
    is_center.iter().enumerate().filter(|(_, &c)| !c).nth(pick).map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::distance::DenseRows;

    #[test]
    fn seeding_bookkeeping_matches_brute_force() {
        let mut rng = SeededRng::new(5, 0);
        let data: Vec<f32> = (0..300).map(|_| rng.uniform() as f32 * 10.0).collect();
        let points = DenseRows::new(&data, 3);
        let seeding = kmeans_pp(&points, 12, 0, &mut SeededRng::new(1, 0), true);
        assert_eq!(seeding.centers.len(), 12);
        let mut unique = seeding.centers.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 12, "centers repeat: {:?}", seeding.centers);
        for i in 0..points.len() {
            let mut dists: Vec<(f32, usize)> =
                seeding.centers.iter().enumerate().map(|(p, &c)| (points.dist2(i, c), p)).collect();
            dists.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(seeding.nearest[i] as usize, dists[0].1, "nearest center of point {i}");
            assert_eq!(seeding.d2[i], dists[0].0);
            assert!(seeding.second_lower[i] <= dists[1].0.sqrt() + 1e-4, "second bound of point {i}");
            for (p, &c) in seeding.centers.iter().enumerate() {
                let bound = seeding.lower_all[i * 12 + p];
                assert!(bound <= points.dist2(i, c).sqrt() + 1e-4, "bound of point {i} to center {p}");
            }
        }
    }

    #[test]
    fn duplicates_fall_back_to_uniform_non_centers() {
        let data = [1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let points = DenseRows::new(&data, 2);
        let seeding = kmeans_pp(&points, 4, 2, &mut SeededRng::new(9, 0), false);
        let mut centers = seeding.centers.clone();
        centers.sort_unstable();
        assert_eq!(centers, vec![0, 1, 2, 3]);
        assert_eq!(seeding.centers[0], 2);
    }
}
