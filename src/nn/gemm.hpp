// C = alpha * op(A) * op(B) + beta * C on row-major matrices, through
// xtensor-blas (its cxxblas binding of OpenBLAS's cblas_?gemm).
//
// OpenBLAS itself always runs on one thread here (use_threads_per_cell sets
// it so). When the engine has more threads and the product is large enough,
// the columns of C (or its rows: GemmSplit) are split between them, each block one single-threaded
// OpenBLAS call: small products never pay for waking threads, and a block's
// values do not depend on how many blocks there are.
//
// gemm() takes pointers and leading dimensions (the convolutions' blocks are
// strided); gemm_matrices() takes whole row-major matrices as xtensor views of
// memory normlab owns (matrix()), which xt::blas::gemm reads in place.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <xtensor-blas/xblas.hpp>
#include <xtensor/xadapt.hpp>

#include "normlab/threads.hpp"

namespace normlab {

namespace detail {

template <class T>
void blas_gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda,
               const T* b, int ldb, T beta, T* c, int ldc) {
  cxxblas::gemm<int>(cxxblas::RowMajor, trans_a ? cxxblas::Trans : cxxblas::NoTrans,
                     trans_b ? cxxblas::Trans : cxxblas::NoTrans, m, n, k, alpha, a, lda, b, ldb,
                     beta, c, ldc);
}

// Blocks of 64 columns or rows (a multiple of every kernel's register block),
// and the work passed on to parallel_for: the multiply-adds / 8, so that a
// block is worth a thread at about a million multiply-adds.
constexpr int kGemmBlock = 64;
inline std::size_t gemm_work(std::size_t m, std::size_t n, std::size_t k) {
  return m * n * k / 8;
}

}  // namespace detail

// Which dimension of C the engine's threads split: its columns (the default:
// wide products such as a convolution's (C_out, N*P)), or its rows (tall and
// narrow ones such as a channels-last convolution's (N*P, C_out)).
enum class GemmSplit { columns, rows };

template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc, GemmSplit split = GemmSplit::columns) {
  constexpr int kBlock = detail::kGemmBlock;
  const bool by_rows = split == GemmSplit::rows;
  const int split_size = by_rows ? m : n;
  const std::size_t blocks = std::size_t((split_size + kBlock - 1) / kBlock);
  const std::size_t work = detail::gemm_work(std::size_t(m), std::size_t(n), std::size_t(k));
  parallel_for(blocks, work, [&](std::size_t first, std::size_t last) {
    const int begin = int(first) * kBlock, end = std::min(split_size, int(last) * kBlock);
    const std::size_t at = std::size_t(begin);
    if (by_rows) {  // rows [begin, end) of op(A): A's rows when not transposed, its columns else
      const T* a_block = trans_a ? a + at : a + at * std::size_t(lda);
      detail::blas_gemm(trans_a, trans_b, end - begin, n, k, alpha, a_block, lda, b, ldb, beta,
                        c + at * std::size_t(ldc), ldc);
      return;
    }
    // Columns [begin, end) of op(B): B's columns when not transposed, its rows when transposed.
    const T* b_block = trans_b ? b + at * std::size_t(ldb) : b + begin;
    detail::blas_gemm(trans_a, trans_b, m, end - begin, k, alpha, a, lda, b_block, ldb, beta,
                      c + begin, ldc);
  });
}

// The row-major (rows x cols) matrix at `data`, as an xtensor view without a
// copy: its static row-major layout is what xt::blas::gemm reads in place.
template <class T>
auto matrix(T* data, std::size_t rows, std::size_t cols) {
  return xt::adapt(data, rows * cols, xt::no_ownership(), std::array<std::size_t, 2>{rows, cols});
}

// C (m x n) = alpha * op(A) * op(B) + beta * C on whole matrices: A is (m x k),
// or (k x m) with trans_a; B is (k x n), or (n x k) with trans_b. Without
// trans_a, blocks of C's rows go to the engine's threads: a block's rows of A
// and of C are contiguous, so each block is a view too. With trans_a they are
// not, and the product is one call.
template <class T>
void gemm_matrices(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k, T alpha,
                   const T* a, const T* b, T beta, T* c) {
  const auto b_matrix = trans_b ? matrix(b, n, k) : matrix(b, k, n);
  if (trans_a) {
    auto c_matrix = matrix(c, m, n);
    xt::blas::gemm(matrix(a, k, m), b_matrix, c_matrix, true, trans_b, alpha, beta);
    return;
  }
  const std::size_t block = std::size_t(detail::kGemmBlock);
  parallel_for((m + block - 1) / block, detail::gemm_work(m, n, k),
               [&](std::size_t first, std::size_t last) {
                 const std::size_t begin = first * block, end = std::min(m, last * block);
                 auto c_rows = matrix(c + begin * n, end - begin, n);
                 xt::blas::gemm(matrix(a + begin * k, end - begin, k), b_matrix, c_rows, false,
                                trans_b, alpha, beta);
               });
}

}  // namespace normlab
