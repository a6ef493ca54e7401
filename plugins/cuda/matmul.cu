// Matrix multiply of the CUDA plugin: floats through cuBLASLt (row-major as C^T = B^T A^T,
// strided batches, cached heuristics), integers (and any float case cuBLASLt refuses) through a
// shared-memory tiled kernel with int64 (wrapping) / float32 / float64 accumulation.
#include <cublasLt.h>

#include <array>
#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "cuda_common.cuh"

namespace tcu {
namespace {

constexpr int kMaxDevices = 64;
constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLASLt workspace limit (as PyTorch on Hopper)
constexpr int kMaxBatchDims = TSR_MAX_DIMS - 2;

// ---- tiled kernel (integers; fallback for floats) -------------------------------------------

// Batch dims of size > 1 and each operand's element strides along them.
struct BatchGeo {
  int32_t nb;
  int64_t size[kMaxBatchDims];
  int64_t sa[kMaxBatchDims], sb[kMaxBatchDims], so[kMaxBatchDims];
};

template <class T> struct MmAcc { using type = float; };
template <> struct MmAcc<double> { using type = double; };
template <> struct MmAcc<uint8_t> { using type = unsigned long long; };
template <> struct MmAcc<int32_t> { using type = unsigned long long; };
template <> struct MmAcc<int64_t> { using type = unsigned long long; };

template <class Acc, class T>
__device__ __forceinline__ Acc mm_load(T v) {
  if constexpr (std::is_integral_v<T>)
    return static_cast<Acc>(static_cast<int64_t>(v));  // sign-extend, then wrap as unsigned
  else
    return cast<Acc>(v);
}

template <class T, class Acc>
__device__ __forceinline__ T mm_store(Acc v) {
  if constexpr (std::is_integral_v<T>)
    return static_cast<T>(static_cast<int64_t>(v));  // wraps like the CPU plugin's int64 -> T
  else
    return cast<T>(v);
}

constexpr int kTile = 16;

// O[b] (M, N contiguous) = A[b] (M, K; strides a_rs, a_cs) @ B[b] (K, N; strides b_rs, b_cs).
template <class T>
__global__ void __launch_bounds__(kTile * kTile)
tiled_matmul_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ O, int64_t M, int64_t N,
                    int64_t K, int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs, BatchGeo bg, int64_t nbatch) {
  using Acc = typename MmAcc<T>::type;
  __shared__ Acc As[kTile][kTile + 1];  // [row][k]
  __shared__ Acc Bs[kTile][kTile + 1];  // [k][col]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tiles_m = (M + kTile - 1) / kTile;
  for (int64_t bz = blockIdx.z; bz < nbatch; bz += gridDim.z) {
    int64_t oa = 0, ob = 0, oo = 0, rem = bz;
    for (int d = bg.nb - 1; d >= 0; --d) {
      const int64_t q = rem / bg.size[d], i = rem - q * bg.size[d];
      oa += i * bg.sa[d];
      ob += i * bg.sb[d];
      oo += i * bg.so[d];
      rem = q;
    }
    const T* a = A + oa;
    const T* b = B + ob;
    T* o = O + oo;
    for (int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      const int64_t row = tm * kTile + ty, col = int64_t(blockIdx.x) * kTile + tx;
      Acc acc = Acc(0);
      for (int64_t k0 = 0; k0 < K; k0 += kTile) {
        As[ty][tx] = (row < M && k0 + tx < K) ? mm_load<Acc>(a[row * a_rs + (k0 + tx) * a_cs]) : Acc(0);
        Bs[ty][tx] = (k0 + ty < K && col < N) ? mm_load<Acc>(b[(k0 + ty) * b_rs + col * b_cs]) : Acc(0);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTile; ++kk) acc += As[ty][kk] * Bs[kk][tx];
        __syncthreads();
      }
      if (row < M && col < N) o[row * N + col] = mm_store<T>(acc);
    }
  }
}

template <class T>
int32_t launch_tiled(const TsrKernelArgs* args, const void* a, const void* b, void* o, int64_t M, int64_t N,
                     int64_t K, int64_t a_rs, int64_t a_cs, int64_t b_rs, int64_t b_cs, const BatchGeo& bg,
                     int64_t nbatch) {
  const int64_t tiles_m = (M + kTile - 1) / kTile, tiles_n = (N + kTile - 1) / kTile;
  if (tiles_n > INT_MAX) return fail(args, TSR_ERR_INVALID_ARGUMENT, "matrix too wide (N = %lld)", (long long)N);
  const dim3 block(kTile, kTile);
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m < 65535 ? tiles_m : 65535),
                  static_cast<unsigned>(nbatch < 65535 ? nbatch : 65535));
  tiled_matmul_kernel<T><<<grid, block, 0, stream_of(args)>>>(static_cast<const T*>(a), static_cast<const T*>(b),
                                                              static_cast<T*>(o), M, N, K, a_rs, a_cs, b_rs, b_cs,
                                                              bg, nbatch);
  return check_launch(args, "tiled_matmul_kernel");
}

// ---- packing of operands cuBLASLt cannot read in place -----------------------------------

template <class W>
__global__ void pack_kernel(const W* __restrict__ src, W* __restrict__ dst, int64_t n, Geometry g, Strides st) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = src[offset_of(i, g, st)];
}

// dst (contiguous, d's sizes) = d's elements.
int32_t pack(const TsrKernelArgs* args, const TsrTensorDesc& d, void* dst) {
  TsrTensorDesc c = d;
  int64_t expect = 1;
  for (int32_t i = d.ndim - 1; i >= 0; --i) {
    c.strides[i] = expect;
    expect *= d.sizes[i];
  }
  const TsrTensorDesc* ops[2] = {&c, &d};
  Geometry g;
  Strides st[2];
  collapse(ops, 2, g, st);
  const int64_t n = numel(d);
  const unsigned blocks = grid_for(n, 256) < 65536u ? grid_for(n, 256) : 65536u;
  switch (itemsize(d.dtype)) {
    case 1: pack_kernel<uint8_t><<<blocks, 256, 0, stream_of(args)>>>(static_cast<const uint8_t*>(d.data), static_cast<uint8_t*>(dst), n, g, st[1]); break;
    case 2: pack_kernel<uint16_t><<<blocks, 256, 0, stream_of(args)>>>(static_cast<const uint16_t*>(d.data), static_cast<uint16_t*>(dst), n, g, st[1]); break;
    case 4: pack_kernel<uint32_t><<<blocks, 256, 0, stream_of(args)>>>(static_cast<const uint32_t*>(d.data), static_cast<uint32_t*>(dst), n, g, st[1]); break;
    default: pack_kernel<uint64_t><<<blocks, 256, 0, stream_of(args)>>>(static_cast<const uint64_t*>(d.data), static_cast<uint64_t*>(dst), n, g, st[1]); break;
  }
  return check_launch(args, "pack_kernel");
}

// ---- cuBLASLt ------------------------------------------------------------------------------

std::mutex g_handle_mutex;
std::atomic<cublasLtHandle_t> g_handles[kMaxDevices];

int32_t lt_fail(const TsrKernelArgs* args, const char* what, cublasStatus_t st) {
  return fail(args, st == CUBLAS_STATUS_ALLOC_FAILED ? TSR_ERR_OUT_OF_MEMORY : TSR_ERR_RUNTIME, "%s failed: %s", what,
              cublasLtGetStatusString(st));
}

// The device's cuBLASLt handle, created once (kept until the process exits).
int32_t lt_handle(const TsrKernelArgs* args, int dev, cublasLtHandle_t& out) {
  if (dev < 0 || dev >= kMaxDevices) return fail(args, TSR_ERR_RUNTIME, "device index %d out of range", dev);
  out = g_handles[dev].load(std::memory_order_acquire);
  if (out) return TSR_OK;
  std::lock_guard<std::mutex> lock(g_handle_mutex);
  out = g_handles[dev].load(std::memory_order_relaxed);
  if (out) return TSR_OK;
  int prev = -1;
  TCU_TRY(args, cudaGetDevice(&prev));
  if (prev != dev) TCU_TRY(args, cudaSetDevice(dev));
  cublasLtHandle_t h = nullptr;
  const cublasStatus_t st = cublasLtCreate(&h);
  if (prev != dev) cudaSetDevice(prev);
  if (st != CUBLAS_STATUS_SUCCESS) return lt_fail(args, TCU_WHERE("cublasLtCreate"), st);
  g_handles[dev].store(h, std::memory_order_release);
  out = h;
  return TSR_OK;
}

// Descriptors and the heuristic's algorithm for one problem (everything in the key).
struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  bool found = false;  // false: cuBLASLt has no algorithm; use the tiled kernel
  ~LtPlan() {
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// In cuBLASLt (column-major) terms: D (m x n, ld m) = op(A) (m x k) op(B) (k x n).
struct LtProblem {
  int32_t dev, dtype, tf32;
  int32_t transa, transb;  // 1 = CUBLAS_OP_T
  int64_t m, n, k;
  int64_t lda, ldb;
  int64_t batch, stride_a, stride_b, stride_c;
  int64_t align_a, align_b, align_c;
};
using LtKey = std::array<int64_t, 18>;

LtKey key_of(const LtProblem& p) {
  return {p.dev, p.dtype, p.tf32, p.transa, p.transb, p.m, p.n, p.k, p.lda, p.ldb,
          p.batch, p.stride_a, p.stride_b, p.stride_c, p.align_a, p.align_b, p.align_c, 0};
}

using LtKeyHash = KeyHash;

constexpr size_t kMaxPlans = 2048;
std::mutex g_plan_mutex;
std::unordered_map<LtKey, std::shared_ptr<LtPlan>, LtKeyHash>* g_plans = nullptr;  // leaked: no teardown order issues

cudaDataType_t cuda_type(int32_t dtype) {
  switch (dtype) {
    case TSR_FLOAT16: return CUDA_R_16F;
    case TSR_BFLOAT16: return CUDA_R_16BF;
    case TSR_FLOAT64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

int32_t build_plan(const TsrKernelArgs* args, cublasLtHandle_t h, const LtProblem& p, LtPlan& plan) {
  const cudaDataType_t dt = cuda_type(p.dtype);
  const bool f64 = p.dtype == TSR_FLOAT64;
  const cublasComputeType_t ct =
      f64 ? CUBLAS_COMPUTE_64F : (p.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  const cudaDataType_t scale = f64 ? CUDA_R_64F : CUDA_R_32F;
  cublasStatus_t st;
#define TCU_LT(expr)                                          \
  do {                                                        \
    st = (expr);                                              \
    if (st != CUBLAS_STATUS_SUCCESS) return lt_fail(args, TCU_WHERE(#expr), st); \
  } while (0)
  TCU_LT(cublasLtMatmulDescCreate(&plan.op, ct, scale));
  const int32_t ta = p.transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p.transb ? CUBLAS_OP_T : CUBLAS_OP_N;
  TCU_LT(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  TCU_LT(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  // stored shapes: A is (m x k) or, transposed, (k x m); B (k x n) or (n x k)
  TCU_LT(cublasLtMatrixLayoutCreate(&plan.la, dt, p.transa ? p.k : p.m, p.transa ? p.m : p.k, p.lda));
  TCU_LT(cublasLtMatrixLayoutCreate(&plan.lb, dt, p.transb ? p.n : p.k, p.transb ? p.k : p.n, p.ldb));
  TCU_LT(cublasLtMatrixLayoutCreate(&plan.lc, dt, p.m, p.n, p.m));
  if (p.batch > 1) {
    const int32_t count = static_cast<int32_t>(p.batch);
    const std::pair<cublasLtMatrixLayout_t, int64_t> ls[3] = {{plan.la, p.stride_a}, {plan.lb, p.stride_b},
                                                              {plan.lc, p.stride_c}};
    for (const auto& [l, stride] : ls) {
      TCU_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      TCU_LT(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
  }
  cublasLtMatmulPreference_t pref = nullptr;
  TCU_LT(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = kWorkspaceBytes;
  const uint32_t aa = static_cast<uint32_t>(p.align_a), ab = static_cast<uint32_t>(p.align_b),
                 ac = static_cast<uint32_t>(p.align_c);
  st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof(aa));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof(ab));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof(ac));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof(ac));
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasLtMatmulPreferenceDestroy(pref);
    return lt_fail(args, TCU_WHERE("cublasLtMatmulPreferenceSetAttribute"), st);
  }
  cublasLtMatmulHeuristicResult_t res{};
  int returned = 0;
  st = cublasLtMatmulAlgoGetHeuristic(h, plan.op, plan.la, plan.lb, plan.lc, plan.lc, pref, 1, &res, &returned);
  cublasLtMatmulPreferenceDestroy(pref);
  // NOT_SUPPORTED / INVALID_VALUE: no algorithm for this problem; the tiled kernel takes it
  if (st == CUBLAS_STATUS_SUCCESS && returned > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    plan.algo = res.algo;
    plan.workspace = res.workspaceSize;
    plan.found = true;
  } else if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED && st != CUBLAS_STATUS_INVALID_VALUE) {
    return lt_fail(args, TCU_WHERE("cublasLtMatmulAlgoGetHeuristic"), st);
  }
#undef TCU_LT
  return TSR_OK;
}

int32_t get_plan(const TsrKernelArgs* args, cublasLtHandle_t h, const LtProblem& p, std::shared_ptr<LtPlan>& out) {
  const LtKey key = key_of(p);
  {
    std::lock_guard<std::mutex> lock(g_plan_mutex);
    if (g_plans) {
      auto it = g_plans->find(key);
      if (it != g_plans->end()) {
        out = it->second;
        return TSR_OK;
      }
    }
  }
  auto plan = std::make_shared<LtPlan>();
  if (int32_t st = build_plan(args, h, p, *plan)) return st;
  std::lock_guard<std::mutex> lock(g_plan_mutex);
  if (!g_plans) g_plans = new std::unordered_map<LtKey, std::shared_ptr<LtPlan>, LtKeyHash>();
  if (g_plans->size() >= kMaxPlans) g_plans->clear();  // plans in use live on in their shared_ptr
  g_plans->emplace(key, plan);
  out = std::move(plan);
  return TSR_OK;
}

// Largest power of two (<= 256) dividing every value.
int64_t alignment_of(uint64_t bits) {
  bits |= 256;
  return static_cast<int64_t>(bits & (~bits + 1));
}

// A matrix (rows x cols, element strides rs, cs) as BLAS reads it: row-major (trans = false,
// ld = row stride) or column-major (trans = true, ld = column stride). Size-1 dims take any stride.
bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool& trans, int64_t& ld) {
  const int64_t c1 = cols > 1 ? cols : 1, r1 = rows > 1 ? rows : 1;
  if (cols == 1) cs = 1;
  if (cs == 1 && (rows == 1 || rs >= c1)) {
    trans = false;
    ld = rows == 1 ? c1 : rs;
    return true;
  }
  if ((rows == 1 || rs == 1) && cs >= r1) {
    trans = true;
    ld = cs;
    return true;
  }
  return false;
}

// ---- the kernel ----------------------------------------------------------------------------

// Batch dims of size > 1 of O/A/B; a and b give A's and B's descriptors (possibly packed).
BatchGeo batch_geo(const TsrTensorDesc& O, const TsrTensorDesc& a, const TsrTensorDesc& b) {
  BatchGeo bg{};
  bg.nb = 0;
  for (int32_t d = 0; d < O.ndim - 2; ++d) {
    if (O.sizes[d] == 1) continue;
    bg.size[bg.nb] = O.sizes[d];
    bg.sa[bg.nb] = a.strides[d];
    bg.sb[bg.nb] = b.strides[d];
    bg.so[bg.nb] = O.strides[d];
    ++bg.nb;
  }
  return bg;
}

int32_t lt_matmul(const TsrKernelArgs* args, const TsrTensorDesc& A0, const TsrTensorDesc& B0, TsrTensorDesc& O,
                  int64_t M, int64_t N, int64_t K, bool& done) {
  done = false;
  const int nd = O.ndim;
  const int dev = device_of(args);
  const cudaStream_t s = stream_of(args);
  const size_t isz = itemsize(O.dtype);
  cublasLtHandle_t h;
  if (int32_t st = lt_handle(args, dev, h)) return st;

  // Operands cuBLASLt cannot read in place become contiguous copies.
  TsrTensorDesc A = A0, B = B0;
  bool ta = false, tb = false;  // our A / B column-major
  int64_t lda = 0, ldb = 0;
  const bool a_ok = blas_layout(M, K, A.strides[nd - 2], A.strides[nd - 1], ta, lda);
  const bool b_ok = blas_layout(K, N, B.strides[nd - 2], B.strides[nd - 1], tb, ldb);
  std::optional<Scratch> pa, pb;  // A's / B's sizes, contiguous
  if (!a_ok) pa.emplace(dev, size_t(numel(A)) * isz, s);
  if (!b_ok) pb.emplace(dev, size_t(numel(B)) * isz, s);
  for (int which = 0; which < 2; ++which) {
    if (which == 0 ? a_ok : b_ok) continue;
    TsrTensorDesc& d = which == 0 ? A : B;
    const Scratch& buf = which == 0 ? *pa : *pb;
    if (!buf) return fail(args, TSR_ERR_OUT_OF_MEMORY, "out of memory packing a matmul operand");
    if (int32_t st = pack(args, d, buf.get())) return st;
    d.data = buf.get();
    int64_t expect = 1;
    for (int32_t i = nd - 1; i >= 0; --i) {
      d.strides[i] = expect;
      expect *= d.sizes[i];
    }
  }
  if (!a_ok) blas_layout(M, K, A.strides[nd - 2], A.strides[nd - 1], ta, lda);
  if (!b_ok) blas_layout(K, N, B.strides[nd - 2], B.strides[nd - 1], tb, ldb);

  // Batches: the innermost run of batch dims that collapses to one stride per operand goes to
  // cuBLASLt as a strided batch; the dims outside it are looped over here.
  const BatchGeo bg = batch_geo(O, A, B);
  int inner_begin = bg.nb;  // dims [inner_begin, nb) form the strided batch
  int64_t inner = 1, sa = 0, sb = 0, so = 0;
  if (bg.nb > 0) {
    inner_begin = bg.nb - 1;
    inner = bg.size[inner_begin];
    sa = bg.sa[inner_begin], sb = bg.sb[inner_begin], so = bg.so[inner_begin];
    while (inner_begin > 0) {
      const int d = inner_begin - 1;
      if (bg.sa[d] != sa * inner || bg.sb[d] != sb * inner || bg.so[d] != so * inner) break;
      inner *= bg.size[d];
      inner_begin = d;
    }
  }
  int64_t outer = 1;
  uint64_t bits_a = reinterpret_cast<uintptr_t>(A.data), bits_b = reinterpret_cast<uintptr_t>(B.data),
           bits_c = reinterpret_cast<uintptr_t>(O.data);
  for (int d = 0; d < bg.nb; ++d) {
    if (d < inner_begin) outer *= bg.size[d];
    bits_a |= uint64_t(bg.sa[d]) * isz;
    bits_b |= uint64_t(bg.sb[d]) * isz;
    bits_c |= uint64_t(bg.so[d]) * isz;
  }
  const int64_t chunk = inner < INT_MAX ? inner : INT_MAX;

  // cuBLASLt's A is our B, its B our A: C^T (N x M) = B^T (N x K) A^T (K x M).
  LtProblem p{};
  p.dev = dev;
  p.dtype = O.dtype;
  p.tf32 = O.dtype == TSR_FLOAT32 && allow_tf32();
  p.transa = tb;
  p.transb = ta;
  p.m = N, p.n = M, p.k = K;
  p.lda = ldb, p.ldb = lda;
  p.stride_a = sb, p.stride_b = sa, p.stride_c = so;
  p.align_a = alignment_of(bits_b), p.align_b = alignment_of(bits_a), p.align_c = alignment_of(bits_c);

  std::shared_ptr<LtPlan> plan, tail_plan;
  p.batch = chunk;
  if (int32_t st = get_plan(args, h, p, plan)) return st;
  const int64_t tail = inner % chunk;
  if (tail) {
    p.batch = tail;
    if (int32_t st = get_plan(args, h, p, tail_plan)) return st;
  }
  if (!plan->found || (tail_plan && !tail_plan->found)) return TSR_OK;  // not done: tiled kernel
  size_t ws_bytes = plan->workspace;
  if (tail_plan && tail_plan->workspace > ws_bytes) ws_bytes = tail_plan->workspace;
  std::optional<Scratch> ws;
  if (ws_bytes) {
    ws.emplace(dev, ws_bytes, s);
    if (!*ws) return fail(args, TSR_ERR_OUT_OF_MEMORY, "out of memory for the cuBLASLt workspace");
  }
  void* ws_ptr = ws ? ws->get() : nullptr;

  const float alpha_f = 1.0f, beta_f = 0.0f;
  const double alpha_d = 1.0, beta_d = 0.0;
  const bool f64 = O.dtype == TSR_FLOAT64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : static_cast<const void*>(&alpha_f);
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f);
  const char* a_base = static_cast<const char*>(A.data);
  const char* b_base = static_cast<const char*>(B.data);
  char* c_base = static_cast<char*>(O.data);
  for (int64_t ob = 0; ob < outer; ++ob) {
    int64_t oa = 0, obb = 0, oc = 0, rem = ob;
    for (int d = inner_begin - 1; d >= 0; --d) {
      const int64_t q = rem / bg.size[d], i = rem - q * bg.size[d];
      oa += i * bg.sa[d];
      obb += i * bg.sb[d];
      oc += i * bg.so[d];
      rem = q;
    }
    for (int64_t b0 = 0; b0 < inner; b0 += chunk) {
      const LtPlan& pl = (inner - b0 < chunk) ? *tail_plan : *plan;
      const char* pa_ = a_base + (oa + b0 * sa) * int64_t(isz);
      const char* pb_ = b_base + (obb + b0 * sb) * int64_t(isz);
      char* pc_ = c_base + (oc + b0 * so) * int64_t(isz);
      const cublasStatus_t st = cublasLtMatmul(h, pl.op, alpha, pb_, pl.la, pa_, pl.lb, beta, pc_, pl.lc, pc_, pl.lc,
                                               &pl.algo, ws_ptr, pl.workspace, s);
      if (st != CUBLAS_STATUS_SUCCESS) return lt_fail(args, TCU_WHERE("cublasLtMatmul"), st);
    }
  }
  done = true;
  return TSR_OK;
}

}  // namespace

int32_t kernel_matmul(const TsrKernelArgs* args) {
  const TsrTensorDesc& A = args->inputs[0];
  const TsrTensorDesc& B = args->inputs[1];
  TsrTensorDesc& O = args->outputs[0];
  const int nd = O.ndim;
  if (nd < 2 || A.ndim != nd || B.ndim != nd)
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "expected operands of equal rank >= 2, got %d, %d -> %d", A.ndim,
                B.ndim, nd);
  const int64_t M = A.sizes[nd - 2], K = A.sizes[nd - 1], N = B.sizes[nd - 1];
  if (B.sizes[nd - 2] != K || O.sizes[nd - 2] != M || O.sizes[nd - 1] != N)
    return fail(args, TSR_ERR_INVALID_ARGUMENT, "shapes (%lld, %lld) @ (%lld, %lld) do not match", (long long)M,
                (long long)K, (long long)B.sizes[nd - 2], (long long)N);
  for (int d = 0; d < nd - 2; ++d)
    if (A.sizes[d] != O.sizes[d] || B.sizes[d] != O.sizes[d])
      return fail(args, TSR_ERR_INVALID_ARGUMENT, "batch dims do not match");
  if (!is_contiguous(O)) return fail(args, TSR_ERR_INVALID_ARGUMENT, "the output must be contiguous");
  const int32_t dt = O.dtype;
  if (dt == TSR_BOOL || A.dtype != dt || B.dtype != dt)
    return fail(args, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", dt);
  if (K == 0) {  // empty sum
    TCU_TRY(args, cudaMemsetAsync(O.data, 0, size_t(numel(O)) * itemsize(dt), stream_of(args)));
    return TSR_OK;
  }
  const bool is_float = dt == TSR_FLOAT16 || dt == TSR_BFLOAT16 || dt == TSR_FLOAT32 || dt == TSR_FLOAT64;
  if (is_float) {
    bool done = false;
    if (int32_t st = lt_matmul(args, A, B, O, M, N, K, done)) return st;
    if (done) return TSR_OK;
  }
  // Tiled kernel straight on the strided operands.
  const BatchGeo bg = batch_geo(O, A, B);
  int64_t nbatch = 1;
  for (int d = 0; d < bg.nb; ++d) nbatch *= bg.size[d];
  int32_t status = TSR_OK;
  const bool ok = dispatch_dtype(dt, [&](auto t) {
    using T = decltype(t);
    if constexpr (std::is_same_v<T, bool>) {
      status = fail(args, TSR_ERR_NOT_IMPLEMENTED, "dtype bool is not supported");
    } else {
      status = launch_tiled<T>(args, A.data, B.data, O.data, M, N, K, A.strides[nd - 2], A.strides[nd - 1],
                               B.strides[nd - 2], B.strides[nd - 1], bg, nbatch);
    }
  });
  if (!ok) return fail(args, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", dt);
  return status;
}

}  // namespace tcu
