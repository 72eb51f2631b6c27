//! A bounds-checked front for `gemm::gemm` on row-major (or transposed) f32 matrices.
use std::mem::MaybeUninit;

use gemm::Parallelism;

/// A matrix view: `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `rows x cols`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of row-major `rows x cols` data (a `cols x rows` view).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            rs: 1,
            cs: cols,
        }
    }

    fn last_index(&self) -> usize {
        (self.rows - 1) * self.rs + (self.cols - 1) * self.cs
    }
}

/// A new row-major `a @ b`, written by the product without zeroing the buffer first.
pub fn matmul_uninit(a: Mat, b: Mat, threads: usize) -> Vec<f32> {
    let len = a.rows * b.cols;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    matmul_into(&mut v.spare_capacity_mut()[..len], a, b, threads);
    // SAFETY: matmul_into wrote all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Writes row-major `a @ b` into `dst` (`a.rows * b.cols` elements, all written).
pub fn matmul_into(dst: &mut [MaybeUninit<f32>], a: Mat, b: Mat, threads: usize) {
    // SAFETY: gemm is called with read_dst = false, so it only writes `dst` (every one of
    // its m*n entries; k = 0 is zeroed by hand), never reads it; `dst` is exclusively
    // borrowed and gemm_raw checks its length.
    unsafe { gemm_raw(dst.as_mut_ptr().cast(), dst.len(), a, b, threads, false) }
}

/// `dst += a @ b` (row-major `a.rows * b.cols`), on the calling thread.
pub fn matmul_acc(dst: &mut [f32], a: Mat, b: Mat) {
    // SAFETY: `dst` is an exclusively borrowed, initialised slice (gemm reads it, as it
    // accumulates) that cannot alias the shared borrows behind `a` and `b`.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst.len(), a, b, 1, true) }
}

/// `dst (row-major m x n) = a @ b`, or `dst += a @ b` when `accumulate`.
///
/// `threads > 1` lets gemm split the product; callers that already run one product per
/// rayon task pass 1.
///
/// # Safety
/// `dst` must be valid for writes of `dst_len` floats (and for reads, initialised, when
/// `accumulate`) and must not alias `a` or `b`.
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_len: usize,
    a: Mat,
    b: Mat,
    threads: usize,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert_eq!(dst_len, m * n, "destination size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            // SAFETY: the caller's contract covers dst_len writes.
            unsafe { std::ptr::write_bytes(dst, 0, dst_len) };
        }
        return;
    }
    assert!(a.last_index() < a.data.len(), "lhs view out of bounds");
    assert!(b.last_index() < b.data.len(), "rhs view out of bounds");
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm reads inside `a` and `b`; the caller
    // vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: Mat, b: Mat) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols)
                    .map(|k| a.data[i * a.rs + k * a.cs] * b.data[k * b.rs + j * b.cs])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn matches_a_naive_product_in_every_layout() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..35).map(|i| (i as f32 * 0.7).cos()).collect();
        // a: 5x7, b: 7x5 and their transposes.
        for (am, bm) in [
            (Mat::rows(&a, 5, 7), Mat::rows(&b, 7, 5)),
            (Mat::transposed(&a, 7, 5), Mat::transposed(&b, 5, 7)),
        ] {
            let want = naive(am, bm);
            for threads in [1, 2] {
                let got = matmul_uninit(am, bm, threads);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5);
                }
            }
        }
        // Accumulating adds the product to what is there.
        let (am, bm) = (Mat::rows(&a, 5, 7), Mat::transposed(&b, 5, 7));
        let mut acc = vec![1.0f32; 25];
        matmul_acc(&mut acc, am, bm);
        for (g, w) in acc.iter().zip(naive(am, bm)) {
            assert!((g - (w + 1.0)).abs() < 1e-5);
        }
        // An empty inner dimension is an all-zero product.
        assert_eq!(
            matmul_uninit(Mat::rows(&[], 3, 0), Mat::rows(&[], 0, 2), 1),
            vec![0.0; 6]
        );
    }
}
