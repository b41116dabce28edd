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
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && dst.len() >= m * n, "matmul: {m}x{k} by {}x{n} into {}", b.rows, dst.len());
    assert!(a.in_bounds() && b.in_bounds(), "matmul: a view reaches outside its data");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(T::zero());
        return;
    }
    // SAFETY: the asserts above keep every index gemm forms (row * row stride + column * column stride, within
    // the given sizes) inside `dst`, `a.data` and `b.data`; `dst` is exclusively borrowed and does not overlap
    // the inputs.
    unsafe { gemm_raw(dst, a, (b.data.as_ptr(), b.rows, b.cols, b.row_stride, b.col_stride), threads) }
}

/// `dst = a · b` with `b` given as `(pointer, rows, cols, row stride, column stride)`.
///
/// # Safety
/// `dst` holds `a.rows * cols` elements, `a` lies inside its data, every element `b` addresses is readable, and no
/// thread writes them while this runs.
unsafe fn gemm_raw<T: Elem>(
    dst: &mut [T],
    a: MatRef<'_, T>,
    (b, k, n, b_rs, b_cs): (*const T, usize, usize, usize, usize),
    threads: usize,
) {
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let s = |v: usize| v as isize;
    // SAFETY: the caller's contract; with `read_dst` false gemm writes `dst = 1 * a · b` without reading it.
    unsafe {
        gemm::gemm(
            a.rows,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(n),
            false,
            a.data.as_ptr(),
            s(a.col_stride),
            s(a.row_stride),
            b,
            s(b_cs),
            s(b_rs),
            T::zero(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A row-major `rows x (blocks * width)` matrix (the convolution's patch matrix of a batch: a block of `width`
/// columns a sample) whose column blocks different threads fill and multiply at the same time, each its own.
pub(crate) struct ColumnBlocks<'a, T> {
    ptr: *mut T,
    rows: usize,
    width: usize,
    blocks: usize,
    _buf: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: a `ColumnBlocks` is a `&mut [T]` handed out in disjoint column blocks (see its methods' contracts).
unsafe impl<T: Send> Send for ColumnBlocks<'_, T> {}
unsafe impl<T: Send> Sync for ColumnBlocks<'_, T> {}

impl<'a, T: Elem> ColumnBlocks<'a, T> {
    /// Over the first `rows * blocks * width` elements of `buf`.
    pub fn new(buf: &'a mut [T], rows: usize, width: usize, blocks: usize) -> Self {
        assert!(buf.len() >= rows * width * blocks, "column blocks: {rows}x{blocks}x{width} do not fit");
        Self { ptr: buf.as_mut_ptr(), rows, width, blocks, _buf: std::marker::PhantomData }
    }

    /// Row `r` of block `b` (`width` values).
    ///
    /// # Safety
    /// While the returned slice lives, no other thread uses block `b`.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn run(&self, b: usize, r: usize) -> &mut [T] {
        assert!(b < self.blocks && r < self.rows, "column blocks: block {b} row {r} out of range");
        // SAFETY: inside the buffer (assert above, `new`); disjoint from every other block's runs, which the
        // caller keeps to other threads.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add((r * self.blocks + b) * self.width), self.width)
        }
    }

    /// `dst = a · block b` on the calling thread.
    ///
    /// # Safety
    /// No other thread uses block `b` meanwhile.
    pub unsafe fn matmul(&self, dst: &mut [T], a: MatRef<'_, T>, b: usize) {
        let (k, n) = (self.rows, self.width);
        assert!(
            b < self.blocks && a.cols == k && dst.len() >= a.rows * n && a.in_bounds(),
            "column blocks: matmul"
        );
        // SAFETY: block b's elements lie inside the buffer, and only this thread uses them (the caller's contract).
        unsafe { gemm_raw(dst, a, (self.ptr.add(b * n).cast_const(), k, n, self.blocks * n, 1), 1) }
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
    fn column_blocks_filled_and_multiplied_on_threads_are_the_whole_product() {
        // A 3 x (4 blocks * 5,000) matrix filled one block per item on the pool's threads (the output is large
        // enough to be split), each block multiplied by a 2 x 3 matrix as soon as it is filled; the same as one
        // product over the whole matrix.
        let (rows, width, blocks) = (3, 5000, 4);
        let value = |r: usize, c: usize| (r * 31 + c * 7) as f64 % 11.0 - 5.0;
        let a: Vec<f64> = (0..6).map(|i| i as f64 - 2.5).collect();
        let a = MatRef::row_major(&a, 2, rows);
        let mut buf = vec![0.0; rows * width * blocks];
        let mut y = vec![0.0; blocks * 2 * width];
        {
            let cols = ColumnBlocks::new(&mut buf, rows, width, blocks);
            super::super::cpu_util::for_each_item(&mut y, 2 * width, |b, y_b| unsafe {
                for r in 0..rows {
                    for (j, v) in cols.run(b, r).iter_mut().enumerate() {
                        *v = value(r, b * width + j);
                    }
                }
                cols.matmul(y_b, a, b);
            });
        }
        let whole: Vec<f64> =
            (0..rows * width * blocks).map(|i| value(i / (width * blocks), i % (width * blocks))).collect();
        assert_eq!(buf, whole);
        let mut want = vec![0.0; 2 * width * blocks];
        matmul(&mut want, a, MatRef::row_major(&whole, rows, width * blocks));
        for b in 0..blocks {
            for i in 0..2 {
                for j in 0..width {
                    assert_eq!(
                        y[(b * 2 + i) * width + j],
                        want[i * width * blocks + b * width + j],
                        "block {b}"
                    );
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
