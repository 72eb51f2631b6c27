//! A bounds-checked front for `gemm::gemm` on row-major (or transposed) f32 matrices.
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

/// `dst (row-major m x n) = a @ b`, or `dst += a @ b` when `accumulate`.
///
/// `threads > 1` lets gemm split the product; callers that already run one product per
/// rayon task pass 1.
pub fn matmul(dst: &mut [f32], a: Mat, b: Mat, accumulate: bool, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert_eq!(dst.len(), m * n, "destination size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
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
    // SAFETY: the asserts above keep every index gemm reads or writes inside the slices;
    // `dst` is exclusively borrowed and does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
                let mut got = vec![1.0; 25];
                matmul(&mut got, am, bm, false, threads);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-5);
                }
                matmul(&mut got, am, bm, true, threads);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - 2.0 * w).abs() < 1e-5);
                }
            }
        }
    }
}
