//! Matrix products on the CPU straight through the gemm crate (the one candle uses), on strided views, and the
//! reusable scratch buffers of the convolution.
//!
//! Calling gemm directly lets the convolution multiply by a transposed matrix without copying it, and keep its
//! largest temporaries (the patch matrix, its gradient, the product) in buffers that live as long as the
//! training thread instead of being mapped, faulted in and zeroed again at every call.

use super::cpu_util::Elem;

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose (the same memory).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst = a · b`, `dst` row-major `a.rows x b.cols`, on candle's thread count.
///
/// Panics if the shapes do not chain or a view reaches outside its slice (a bug in the caller).
pub(crate) fn matmul<T: Elem>(dst: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>) {
    matmul_on(dst, a, b, candle_core::utils::get_num_threads());
}

/// [`matmul`] on `threads` threads (1: on the calling thread, for products inside a threaded loop).
pub(crate) fn matmul_on<T: Elem>(dst: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, threads: usize) {
    product(dst, a, b, threads, false);
}

/// `dst += a · b` on the calling thread (`dst` row-major `a.rows x b.cols`); with `add` false `dst = a · b`.
pub(crate) fn matmul_add<T: Elem>(dst: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, add: bool) {
    product(dst, a, b, 1, add);
}

/// `dst = a · b`, or `dst += a · b` with `add`, on `threads` threads.
fn product<T: Elem>(dst: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, threads: usize, add: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && dst.len() >= m * n, "matmul: {m}x{k} by {}x{n} into {}", b.rows, dst.len());
    assert!(a.in_bounds() && b.in_bounds(), "matmul: a view reaches outside its data");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !add {
            dst[..m * n].fill(T::zero());
        }
        return;
    }
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let s = |v: usize| v as isize;
    // SAFETY: the asserts above keep every index gemm forms (row * row stride + column * column stride, within
    // the given sizes) inside `dst`, `a.data` and `b.data`; `dst` is exclusively borrowed and does not overlap
    // the inputs. With `read_dst` false gemm writes `dst = 1 * a · b` without reading it; with `add` it computes
    // `dst = 1 * dst + 1 * a · b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(n),
            add,
            a.data.as_ptr(),
            s(a.col_stride),
            s(a.row_stride),
            b.data.as_ptr(),
            s(b.col_stride),
            s(b.row_stride),
            if add { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `src: [rows, cols]` (row-major) -> `dst: [cols, rows]`, in 16 x 16 tiles (one pass over each side in cache).
pub(crate) fn transpose<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const B: usize = 16;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols, "transpose: {rows}x{cols} does not fit");
    for i0 in (0..rows).step_by(B) {
        let i1 = (i0 + B).min(rows);
        for j0 in (0..cols).step_by(B) {
            for j in j0..(j0 + B).min(cols) {
                for (d, i) in dst[j * rows + i0..j * rows + i1].iter_mut().zip(i0..i1) {
                    *d = src[i * cols + j];
                }
            }
        }
    }
}

/// A buffer of at least `len` elements of unspecified (but initialised) content from this thread's pool: the
/// smallest free one that is long enough, else the largest grown to `len`. Give it back with [`give_scratch`].
pub(crate) fn take_scratch<T: Elem>(len: usize) -> Vec<T> {
    let mut buf = T::pool().with(|p| {
        let mut pool = p.borrow_mut();
        let fits = (0..pool.len()).filter(|&i| pool[i].len() >= len).min_by_key(|&i| pool[i].len());
        let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
        pick.map(|i| pool.swap_remove(i)).unwrap_or_default()
    });
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    buf
}

/// Returns a buffer to this thread's pool, so that its pages stay mapped from one call to the next.
pub(crate) fn give_scratch<T: Elem>(buf: Vec<T>) {
    T::pool().with(|p| p.borrow_mut().push(buf));
}

/// Run `f` with a scratch buffer of `len` elements ([`take_scratch`]), given back afterwards.
pub(crate) fn with_scratch<T: Elem, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let mut buf = take_scratch(len);
    let out = f(&mut buf[..len]);
    give_scratch(buf);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_transposed_views_match_a_naive_loop() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.11).cos()).collect();
        // b holds B^T (n x k) row-major; multiply a (m x k) by its transpose view (k x n).
        let mut dst = vec![0.0; m * n];
        matmul(&mut dst, MatRef::row_major(&a, m, k), MatRef::row_major(&b, n, k).t());
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum();
                assert!((dst[i * n + j] - want).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn an_added_product_keeps_what_dst_held() {
        let a = [1.0f64, 2.0, 3.0, 4.0];
        let b = [5.0f64, 6.0, 7.0, 8.0];
        let mut dst = vec![100.0; 4];
        matmul_add(&mut dst, MatRef::row_major(&a, 2, 2), MatRef::row_major(&b, 2, 2), true);
        assert_eq!(dst, vec![119.0, 122.0, 143.0, 150.0]);
        matmul_add(&mut dst, MatRef::row_major(&a, 2, 2), MatRef::row_major(&b, 2, 2), false);
        assert_eq!(dst, vec![19.0, 22.0, 43.0, 50.0]);
    }

    #[test]
    fn transpose_matches_the_definition_across_tile_edges() {
        for (r, c) in [(1usize, 1usize), (3, 40), (17, 16), (33, 5)] {
            let src: Vec<usize> = (0..r * c).collect();
            let mut dst = vec![0; r * c];
            transpose(&src, r, c, &mut dst);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(dst[j * r + i], src[i * c + j], "{r}x{c} at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_view_outside_its_data_is_refused() {
        let a = vec![0.0f32; 6];
        let mut dst = vec![0.0f32; 6];
        let bad = MatRef { data: &a, rows: 2, cols: 3, row_stride: 4, col_stride: 1 };
        matmul(&mut dst, MatRef::row_major(&a, 2, 2), bad.t().t());
    }

    #[test]
    fn scratch_takes_the_smallest_buffer_that_fits() {
        std::thread::spawn(|| {
            for len in [100, 1000, 10] {
                give_scratch(vec![0.0f32; len]);
            }
            assert_eq!(take_scratch::<f32>(50).len(), 100);
            assert_eq!(take_scratch::<f32>(5000).len(), 5000); // the largest (1000), grown
            assert_eq!(take_scratch::<f32>(5).len(), 10);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn scratch_buffers_are_reused_on_a_thread() {
        let first = with_scratch::<f32, _>(1000, |b| b.as_ptr() as usize);
        let again = with_scratch::<f32, _>(800, |b| {
            assert_eq!(b.len(), 800);
            b.as_ptr() as usize
        });
        assert_eq!(first, again);
        // Nested use gets a second buffer.
        with_scratch::<f32, _>(10, |outer| {
            with_scratch::<f32, _>(10, |inner| assert_ne!(outer.as_ptr(), inner.as_ptr()));
        });
    }
}
