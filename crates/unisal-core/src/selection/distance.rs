//! Squared Euclidean distances over flat f32 rows, written so that the compiler vectorises them, and the
//! [`PointSet`] abstraction that lets k-means++ seeding run on dense embeddings and on BADGE's implicit
//! gradient embeddings alike.

/// A finite set of points addressed by index, with a squared distance between any two.
pub(crate) trait PointSet: Sync {
    /// Number of points.
    fn len(&self) -> usize;
    /// Squared Euclidean distance between points `i` and `j` (0 for `i == j`, never negative).
    fn dist2(&self, i: usize, j: usize) -> f32;
}

/// Points stored as rows of a flat row-major array.
pub(crate) struct DenseRows<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> DenseRows<'a> {
    /// `data.len()` must be a multiple of `dim` (> 0).
    pub(crate) fn new(data: &'a [f32], dim: usize) -> Self {
        debug_assert!(dim > 0 && data.len() % dim == 0, "rows of {dim} in {} values", data.len());
        DenseRows { data, dim }
    }

    /// Row `i`.
    #[inline]
    pub(crate) fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

impl PointSet for DenseRows<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    #[inline]
    fn dist2(&self, i: usize, j: usize) -> f32 {
        sq_dist(self.row(i), self.row(j))
    }
}

/// Squared Euclidean distance of two equally long slices, accumulated in eight independent lanes (a fixed
/// summation order, so the result is the same whether or not the compiler uses SIMD).
#[inline]
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let mut tail = 0.0f32;
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        let d = x - y;
        tail += d * d;
    }
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..8 {
            let d = x[lane] - y[lane];
            acc[lane] += d * d;
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product of two equally long slices, in the same eight-lane order as [`sq_dist`].
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let mut tail = 0.0f32;
    for (x, y) in chunks_a.remainder().iter().zip(chunks_b.remainder()) {
        tail += x * y;
    }
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..8 {
            acc[lane] += x[lane] * y[lane];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squared_distance_by_hand() {
        assert_eq!(sq_dist(&[1.0, 2.0, 3.0], &[4.0, 6.0, 3.0]), 25.0);
        let a: Vec<f32> = (0..19).map(|v| v as f32).collect();
        let b: Vec<f32> = (0..19).map(|v| v as f32 + 2.0).collect();
        assert_eq!(sq_dist(&a, &b), 19.0 * 4.0);
        let rows = DenseRows::new(&[0.0, 0.0, 3.0, 4.0], 2);
        assert_eq!((rows.len(), rows.dist2(0, 1), rows.dist2(1, 1)), (2, 25.0, 0.0));
        assert_eq!(dot(&a, &b), (0..19).map(|v| (v * (v + 2)) as f32).sum::<f32>());
    }
}
