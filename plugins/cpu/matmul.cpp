// Matrix multiply of the CPU plugin: cblas_sgemm/dgemm with transposes and leading
// dimensions read from the strides (a copy only when neither last stride is 1), a loop
// over the broadcast batch dims; float16/bfloat16 through float32; integers by a loop.
#include <cblas.h>

#include <climits>
#include <vector>

#include "cpu.h"

namespace tessera_cpu {
namespace {

struct Mat {
  const char* data;
  int64_t rows, cols;
  int64_t rs, cs;  // element strides
};

// How BLAS can read m as is: row-major, transposed or not, with leading dimension ld.
bool blas_layout(const Mat& m, bool& trans, int64_t& ld) {
  const int64_t cs = m.cols == 1 ? 1 : m.cs;
  const int64_t rs = m.rows == 1 ? std::max<int64_t>(m.cols, 1) : m.rs;
  if (cs == 1 && rs >= std::max<int64_t>(m.cols, 1) && rs <= INT_MAX) {
    trans = false;
    ld = rs;
    return true;
  }
  if (rs == 1 && cs >= std::max<int64_t>(m.rows, 1) && cs <= INT_MAX) {
    trans = true;
    ld = cs;
    return true;
  }
  return false;
}

// m converted to a contiguous row-major (rows, cols) matrix of compute type cdt.
void gather(const Mat& m, int32_t dtype, int32_t cdt, void* dst) {
  const int64_t size = dtype_size(dtype), csize = dtype_size(cdt);
  for (int64_t r = 0; r < m.rows; ++r)
    load_run(cdt, dtype, m.data + r * m.rs * size, m.cs * size, m.cols,
             static_cast<char*>(dst) + r * m.cols * csize);
}

template <class T>
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, const T* a, int lda,
          const T* b, int ldb, T* c) {
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, n);
}

// c (M, N, contiguous) = a @ b for T = float/double; a and b of dtype `dtype`, which is
// T itself or (float16/bfloat16) converted to T first. tmp_* are reused scratch.
template <class T>
void blas_matmul(const Mat& a, const Mat& b, int32_t dtype, char* c, std::vector<T>& tmp_a,
                 std::vector<T>& tmp_b, std::vector<T>& tmp_c) {
  const int32_t cdt = std::is_same_v<T, float> ? TSR_FLOAT32 : TSR_FLOAT64;
  const bool native = dtype == cdt;
  // An operand BLAS can read in place, or else a contiguous T copy of it in tmp.
  auto operand = [&](const Mat& m, std::vector<T>& tmp, bool& trans, int64_t& ld) -> const T* {
    trans = false;
    ld = m.cols;
    if (native && blas_layout(m, trans, ld)) return reinterpret_cast<const T*>(m.data);
    tmp.resize(m.rows * m.cols);
    gather(m, dtype, cdt, tmp.data());
    return tmp.data();
  };
  bool ta, tb;
  int64_t lda, ldb;
  const T* pa = operand(a, tmp_a, ta, lda);
  const T* pb = operand(b, tmp_b, tb, ldb);
  T* pc = reinterpret_cast<T*>(c);
  if (!native) {
    tmp_c.resize(a.rows * b.cols);
    pc = tmp_c.data();
  }
  gemm<T>(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(a.rows),
          static_cast<int>(b.cols), static_cast<int>(a.cols), pa, static_cast<int>(lda), pb,
          static_cast<int>(ldb), pc);
  if (!native) store_run(cdt, dtype, pc, a.rows * b.cols, c, dtype_size(dtype));
}

// Integers: int64 accumulation (wrapping), narrowed on store.
void int_matmul(const Mat& a, const Mat& b, int32_t dtype, char* c, std::vector<int64_t>& tmp_a,
                std::vector<int64_t>& tmp_b, std::vector<int64_t>& row) {
  tmp_a.resize(a.rows * a.cols);
  tmp_b.resize(b.rows * b.cols);
  row.resize(b.cols);
  gather(a, dtype, TSR_INT64, tmp_a.data());
  gather(b, dtype, TSR_INT64, tmp_b.data());
  const int64_t K = a.cols, N = b.cols;
  for (int64_t i = 0; i < a.rows; ++i) {
    uint64_t* acc = reinterpret_cast<uint64_t*>(row.data());
    std::fill(acc, acc + N, 0);
    for (int64_t k = 0; k < K; ++k) {
      const uint64_t av = static_cast<uint64_t>(tmp_a[i * K + k]);
      const int64_t* brow = tmp_b.data() + k * N;
      for (int64_t j = 0; j < N; ++j) acc[j] += av * static_cast<uint64_t>(brow[j]);
    }
    store_run(TSR_INT64, dtype, row.data(), N, c + i * N * dtype_size(dtype), dtype_size(dtype));
  }
}

void matmul_body(const TsrKernelArgs* args) {
  const TsrTensorDesc& A = args->inputs[0];
  const TsrTensorDesc& B = args->inputs[1];
  TsrTensorDesc& O = args->outputs[0];
  const int nd = O.ndim;
  if (nd < 2 || A.ndim != nd || B.ndim != nd)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "expected operands of equal rank >= 2, got %d, %d -> %d", A.ndim, B.ndim, nd);
  const int64_t M = A.sizes[nd - 2], K = A.sizes[nd - 1], N = B.sizes[nd - 1];
  if (B.sizes[nd - 2] != K || O.sizes[nd - 2] != M || O.sizes[nd - 1] != N)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "shapes (%lld, %lld) @ (%lld, %lld) do not match", static_cast<long long>(M),
                static_cast<long long>(K), static_cast<long long>(B.sizes[nd - 2]), static_cast<long long>(N));
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "matrix dims above INT_MAX are not supported");
  const int32_t dt = O.dtype;
  if (dt == TSR_BOOL) raise_error(TSR_ERR_NOT_IMPLEMENTED, "dtype bool is not supported");

  // Batch walk: the three operands with their matrix dims hidden.
  TsrTensorDesc ob = O, ab = A, bb = B;
  for (TsrTensorDesc* d : {&ob, &ab, &bb}) d->sizes[nd - 2] = d->sizes[nd - 1] = 1;
  const TsrTensorDesc* descs[3] = {&ob, &ab, &bb};
  NdIter batches;
  batches.init(descs, 3, false);

  std::vector<float> fa, fb, fc;
  std::vector<double> da, db, dc;
  std::vector<int64_t> ia, ib, irow;
  batches.for_each_run(0, batches.numel, [&](char* const* p, const int64_t* s, int64_t n, int64_t) {
    for (int64_t i = 0; i < n; ++i) {
      const Mat a{p[1] + i * s[1], M, K, A.strides[nd - 2], A.strides[nd - 1]};
      const Mat b{p[2] + i * s[2], K, N, B.strides[nd - 2], B.strides[nd - 1]};
      char* c = p[0] + i * s[0];
      if (dt == TSR_FLOAT64)
        blas_matmul<double>(a, b, dt, c, da, db, dc);
      else if (is_float_dtype(dt))
        blas_matmul<float>(a, b, dt, c, fa, fb, fc);
      else
        int_matmul(a, b, dt, c, ia, ib, irow);
    }
  });
}

}  // namespace

int32_t kernel_matmul(const TsrKernelArgs* a) { return run_kernel(a, &matmul_body); }

}  // namespace tessera_cpu
