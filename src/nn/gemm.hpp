// C = alpha * op(A) * op(B) + beta * C on row-major matrices, through OpenBLAS.
//
// OpenBLAS itself always runs on one thread here (use_threads_per_cell sets
// it so). When the engine has more threads and the product is large enough,
// the columns of C (or its rows: GemmSplit) are split between them, each block one single-threaded
// OpenBLAS call: small products never pay for waking threads, and a block's
// values do not depend on how many blocks there are.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstddef>

#include "normlab/threads.hpp"

namespace normlab {

namespace detail {

inline void blas_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                      int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

inline void blas_gemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha,
                      const double* a, int lda, const double* b, int ldb, double beta, double* c,
                      int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace detail

// Which dimension of C the engine's threads split: its columns (the default:
// wide products such as a convolution's (C_out, N*P)), or its rows (tall and
// narrow ones such as a channels-last convolution's (N*P, C_out)).
enum class GemmSplit { columns, rows };

template <class T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc, GemmSplit split = GemmSplit::columns) {
  // Blocks of 64 columns or rows (a multiple of every kernel's register block); the
  // work passed on is the multiply-adds / 8, so that a block is worth a thread
  // at about a million multiply-adds.
  constexpr int kBlock = 64;
  const bool by_rows = split == GemmSplit::rows;
  const int split_size = by_rows ? m : n;
  const std::size_t blocks = std::size_t((split_size + kBlock - 1) / kBlock);
  const std::size_t work = std::size_t(m) * std::size_t(n) * std::size_t(k) / 8;
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

}  // namespace normlab
