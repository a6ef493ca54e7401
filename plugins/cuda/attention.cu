// Fused scaled-dot-product attention of the CUDA plugin (ABI 1.3): flash-style forward and
// backward (ops.def, NN kind). q[B,H,T,D], k/v[B,H,S,D] with any strides but stride 1 on D;
// out[B,H,T,D] and lse[B,H,T] (float32; float64 for float64). The T x S matrix is never
// materialized; the backward recomputes P from q, k and lse and regenerates the dropout mask
// from the same Philox counters. Paths:
//  - float16/bfloat16: tensor cores (attention_mma.cuh). Rows must start on 16 bytes; other
//    layouts are first packed into contiguous scratch.
//  - float32/float64: CUDA cores, FMA in the input's precision (attention_simt.cuh).
// Head dims 16, 32, 64, 128. Everything is enqueued on args->stream (no host sync, no
// cudaMalloc: scratch comes from the caching allocator), so calls can be captured in graphs.
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "attention_mma.cuh"
#include "attention_simt.cuh"

namespace tcu {
namespace {

using attn::Params;

// ---------------------------------------------------------------------------------------
// Small kernels: packing a strided operand, and Di = rowsum(grad * out).

// dst (contiguous [B,H,N,D]) = src (strides sb, sh, st, 1).
template <class T>
__global__ void pack_kernel(T* dst, const T* src, int64_t n, int H, int N, int D, int64_t sb, int64_t sh,
                            int64_t st) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(e % D);
    const int64_t row = e / D;
    const int64_t i = row % N, bh = row / N;
    dst[e] = src[(bh / H) * sb + (bh % H) * sh + i * st + d];
  }
}

// delta[bh*T + i] = sum_d grad[b,h,i,d] * out[b,h,i,d]; A: float (double for double). A row
// is D/8 adjacent lanes of 8 elements each (kVec: rows on 16 bytes, vector loads).
template <class T>
struct alignas(16) Vec8 {
  T v[8];
};
template <class T, class A, int D, bool kVec>
__global__ void __launch_bounds__(256) delta_kernel(const Params p) {
  constexpr int kLanes = D / 8;  // lanes per row (2 .. 16, a divisor of 32)
  const int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kLanes;
  const int part = threadIdx.x % kLanes;
  const bool live = row < int64_t(p.B) * p.H * p.T;
  A acc = A(0);
  if (live) {
    const int64_t i = row % p.T, bh = row / p.T, b = bh / p.H, h = bh % p.H;
    const T* g = static_cast<const T*>(p.grad) + b * p.g_sb + h * p.g_sh + i * p.g_st + part * 8;
    const T* o = static_cast<const T*>(p.out_in) + b * p.o_sb + h * p.o_sh + i * p.o_st + part * 8;
    if constexpr (kVec) {
      const Vec8<T> gv = *reinterpret_cast<const Vec8<T>*>(g), ov = *reinterpret_cast<const Vec8<T>*>(o);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc += cast<A>(gv.v[e]) * cast<A>(ov.v[e]);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc += cast<A>(g[e]) * cast<A>(o[e]);
    }
  }
#pragma unroll
  for (int off = kLanes / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (live && part == 0) static_cast<A*>(p.delta)[row] = acc;
}

// ---------------------------------------------------------------------------------------
// Host helpers.

// Keep iff the Philox lane x satisfies (x + 0.5) * 2^-32 < 1 - p (bernoulli_'s double rule);
// (x + 0.5) * 2^-32 grows with x, so that is x < the returned count (0 .. 2^32).
uint64_t keep_below(double p) {
  const double keep = 1.0 - p;
  auto kept = [&](int64_t x) { return (static_cast<double>(x) + 0.5) * 0x1.0p-32 < keep; };
  constexpr int64_t kTop = int64_t(1) << 32;
  int64_t x = static_cast<int64_t>(std::floor(keep * 0x1.0p32)) - 2;
  if (x < 0) x = 0;
  if (x > kTop) x = kTop;
  while (x < kTop && kept(x)) ++x;
  while (x > 0 && !kept(x - 1)) --x;
  return static_cast<uint64_t>(x);
}

template <class F>
bool dispatch_head_dim(int64_t d, F&& f) {
  switch (d) {
    case 16: f(std::integral_constant<int, 16>{}); return true;
    case 32: f(std::integral_constant<int, 32>{}); return true;
    case 64: f(std::integral_constant<int, 64>{}); return true;
    case 128: f(std::integral_constant<int, 128>{}); return true;
    default: return false;
  }
}

const char* dtype_name(int32_t dt) {
  switch (dt) {
    case TSR_FLOAT16: return "float16";
    case TSR_BFLOAT16: return "bfloat16";
    case TSR_FLOAT32: return "float32";
    case TSR_FLOAT64: return "float64";
    default: return "a non-float dtype";
  }
}

// Checks a 4-D operand [B,H,rows,D] with stride 1 on D; msg names it.
int32_t check_operand(const TsrKernelArgs* a, const TsrTensorDesc& t, const char* name, int64_t B, int64_t H,
                      int64_t rows, int64_t D, int32_t dtype) {
  if (t.ndim != 4)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s must be 4-D [B,H,N,D], got %d dims", name, t.ndim);
  if (t.dtype != dtype)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s has dtype %s, expected %s", name, dtype_name(t.dtype),
                dtype_name(dtype));
  if (t.sizes[0] != B || t.sizes[1] != H || t.sizes[2] != rows || t.sizes[3] != D)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s has shape [%lld,%lld,%lld,%lld], expected [%lld,%lld,%lld,%lld]",
                name, (long long)t.sizes[0], (long long)t.sizes[1], (long long)t.sizes[2], (long long)t.sizes[3],
                (long long)B, (long long)H, (long long)rows, (long long)D);
  if (t.strides[3] != 1 && D != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s must have stride 1 on its last dim (got %lld)", name,
                (long long)t.strides[3]);
  return TSR_OK;
}

int32_t check_contiguous_out(const TsrKernelArgs* a, const TsrTensorDesc& t, const char* name) {
  if (!is_contiguous(t)) return fail(a, TSR_ERR_INVALID_ARGUMENT, "%s must be contiguous", name);
  return TSR_OK;
}

// A [B,H,N,D] operand as the kernels read it. The tensor-core kernels need rows starting on
// 16 bytes; where the tensor's own layout does not give that, a contiguous copy in scratch.
struct Operand {
  const void* data;
  int64_t sb, sh, st;
};
// Whether every row of t (element size elem) starts on a multiple of `align` bytes.
bool rows_aligned_to(const TsrTensorDesc& t, size_t elem, size_t align) {
  auto ok = [&](int dim) { return t.sizes[dim] == 1 || (t.strides[dim] * int64_t(elem)) % int64_t(align) == 0; };
  return reinterpret_cast<uintptr_t>(t.data) % align == 0 && ok(0) && ok(1) && ok(2);
}
bool rows_aligned(const TsrTensorDesc& t, size_t elem) { return rows_aligned_to(t, elem, 16); }
template <class T>
int32_t prepare_operand(const TsrKernelArgs* a, const TsrTensorDesc& t, bool need_aligned,
                        std::optional<Scratch>& storage, Operand& op) {
  op = {t.data, t.strides[0], t.strides[1], t.strides[2]};
  if (!need_aligned || rows_aligned(t, sizeof(T))) return TSR_OK;
  const int64_t n = numel(t);
  storage.emplace(device_of(a), static_cast<size_t>(n) * sizeof(T), stream_of(a));
  if (!*storage)
    return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for a packed copy (%lld bytes)", (long long)(n * sizeof(T)));
  T* dst = storage->as<T>();
  const int N = static_cast<int>(t.sizes[2]), D = static_cast<int>(t.sizes[3]);
  pack_kernel<T><<<grid_for(n, 256, 4), 256, 0, stream_of(a)>>>(dst, static_cast<const T*>(t.data), n,
                                                                static_cast<int>(t.sizes[1]), N, D, t.strides[0],
                                                                t.strides[1], t.strides[2]);
  if (int32_t st = check_launch(a, "attention_pack"); st != TSR_OK) return st;
  op = {dst, int64_t(t.sizes[1]) * N * D, int64_t(N) * D, D};
  return TSR_OK;
}

// Where a tensor-core kernel writes an output: the output itself, or (not on 16 bytes)
// scratch that finish() copies into it.
template <class T>
struct OutputSlot {
  TsrTensorDesc* t = nullptr;
  std::optional<Scratch> stage;
  void* dst = nullptr;
  int32_t init(const TsrKernelArgs* a, TsrTensorDesc& out, bool need_aligned) {
    t = &out;
    dst = out.data;
    if (!need_aligned || reinterpret_cast<uintptr_t>(out.data) % 16 == 0) return TSR_OK;
    stage.emplace(device_of(a), bytes(), stream_of(a));
    if (!*stage) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for a staged output (%zu bytes)", bytes());
    dst = stage->get();
    return TSR_OK;
  }
  size_t bytes() const { return static_cast<size_t>(numel(*t)) * sizeof(T); }
  int32_t finish(const TsrKernelArgs* a) {
    if (stage) TCU_TRY(a, cudaMemcpyAsync(t->data, stage->get(), bytes(), cudaMemcpyDeviceToDevice, stream_of(a)));
    return TSR_OK;
  }
};

// Dynamic shared memory above 48 KiB needs the kernel's opt-in, within the device's limit.
template <class K>
int32_t allow_smem(const TsrKernelArgs* a, K kernel, size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return TSR_OK;
  int dev = 0, limit = 0;
  TCU_TRY(a, cudaGetDevice(&dev));
  TCU_TRY(a, cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (bytes > static_cast<size_t>(limit))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "%s needs %zu bytes of shared memory per block; this device allows %d",
                what, bytes, limit);
  TCU_TRY(a, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return TSR_OK;
}

// The shape, scale, mask and dropout fields of Params, checked.
int32_t common_params(const TsrKernelArgs* a, const TsrTensorDesc& q, const TsrTensorDesc& k,
                      const TsrTensorDesc& v, Params& p) {
  p = Params{};
  const int64_t B = q.sizes[0], H = q.sizes[1], T = q.sizes[2], D = q.sizes[3];
  if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "q, k, v must be 4-D [B,H,N,D] (got %d, %d, %d dims)", q.ndim, k.ndim,
                v.ndim);
  const int64_t S = k.sizes[2];
  if (int32_t st = check_operand(a, k, "k", B, H, S, D, q.dtype); st != TSR_OK) return st;
  if (int32_t st = check_operand(a, v, "v", B, H, S, D, q.dtype); st != TSR_OK) return st;
  if (int32_t st = check_operand(a, q, "q", B, H, T, D, q.dtype); st != TSR_OK) return st;
  if (D != 16 && D != 32 && D != 64 && D != 128)
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "head dim D=%lld is not supported on cuda (16, 32, 64 or 128)",
                (long long)D);
  if (B * H > 0x7FFFFFFF || T > (int64_t(1) << 30) || S > (int64_t(1) << 30) || (T + 63) / 64 > 65535 ||
      (S + 63) / 64 > 65535)
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "shape B=%lld H=%lld T=%lld S=%lld is too large for one launch",
                (long long)B, (long long)H, (long long)T, (long long)S);
  const TsrAttrs& at = *a->attrs;
  const double scale = at.hp[0], drop = at.hp[1];
  if (!(scale > 0.0) || !std::isfinite(scale))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "scale must be finite and > 0 (got %g)", scale);
  if (!(drop >= 0.0 && drop < 1.0))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "dropout p must be in [0, 1) (got %g)", drop);
  p.B = static_cast<int>(B);
  p.H = static_cast<int>(H);
  p.T = static_cast<int>(T);
  p.S = static_cast<int>(S);
  p.scale = scale;
  p.causal = at.hp[2] != 0.0;
  p.dropout = drop > 0.0;
  p.group4 = S % 4 == 0;
  p.seed = at.seed;
  p.offset = at.offset;
  p.keep_below = p.dropout ? keep_below(drop) : (uint64_t(1) << 32);
  p.keep_scale = p.dropout ? 1.0 / (1.0 - drop) : 1.0;
  return TSR_OK;
}

// ---------------------------------------------------------------------------------------
// Forward.

template <class T, int D>
int32_t forward_mma(const TsrKernelArgs* a, Params& p) {
  using Cfg = attn::mma::FwdCfg<T, D>;
  auto kernel = attn::mma::fwd_kernel<T, D>;
  if (int32_t st = allow_smem(a, kernel, Cfg::kSmem, "attention forward"); st != TSR_OK) return st;
  const dim3 grid(p.B * p.H, (p.T + Cfg::kBr - 1) / Cfg::kBr);
  kernel<<<grid, attn::mma::kThreads, Cfg::kSmem, stream_of(a)>>>(p);
  return check_launch(a, "attention_forward_mma");
}

template <class A, int D>
int32_t forward_simt(const TsrKernelArgs* a, Params& p) {
  constexpr size_t smem = attn::simt::fwd_smem<A, D>();
  constexpr int kB = attn::simt::Tile<A>::kB;
  auto kernel = attn::simt::fwd_kernel<A, D>;
  if (int32_t st = allow_smem(a, kernel, smem, "attention forward"); st != TSR_OK) return st;
  const dim3 grid(p.B * p.H, (p.T + kB - 1) / kB);
  kernel<<<grid, attn::simt::kThreads, smem, stream_of(a)>>>(p);
  return check_launch(a, "attention_forward_simt");
}

template <class T>
int32_t forward_typed(const TsrKernelArgs* a, Params& p) {
  const TsrTensorDesc &q = a->inputs[0], &k = a->inputs[1], &v = a->inputs[2];
  constexpr bool kMma = std::is_same_v<T, half> || std::is_same_v<T, bf16>;
  std::optional<Scratch> sq, sk, sv;
  Operand oq, ok, ov;
  if (int32_t st = prepare_operand<T>(a, q, kMma, sq, oq); st != TSR_OK) return st;
  if (int32_t st = prepare_operand<T>(a, k, kMma, sk, ok); st != TSR_OK) return st;
  if (int32_t st = prepare_operand<T>(a, v, kMma, sv, ov); st != TSR_OK) return st;
  p.q = oq.data, p.q_sb = oq.sb, p.q_sh = oq.sh, p.q_st = oq.st;
  p.k = ok.data, p.k_sb = ok.sb, p.k_sh = ok.sh, p.k_st = ok.st;
  p.v = ov.data, p.v_sb = ov.sb, p.v_sh = ov.sh, p.v_st = ov.st;
  OutputSlot<T> out;
  if (int32_t st = out.init(a, a->outputs[0], kMma); st != TSR_OK) return st;
  p.out = out.dst;
  p.lse = a->outputs[1].data;

  int32_t status = TSR_OK;
  dispatch_head_dim(q.sizes[3], [&](auto dc) {
    constexpr int kD = decltype(dc)::value;
    if constexpr (kMma) status = forward_mma<T, kD>(a, p);
    else status = forward_simt<T, kD>(a, p);
  });
  if (status != TSR_OK) return status;
  return out.finish(a);
}

// ---------------------------------------------------------------------------------------
// Backward.

template <class T, int D>
int32_t backward_mma(const TsrKernelArgs* a, Params& p) {
  using Kv = attn::mma::DkvCfg<T, D>;
  using Q = attn::mma::DqCfg<T, D>;
  auto dkdv = attn::mma::dkdv_kernel<T, D>;
  auto dq = attn::mma::dq_kernel<T, D>;
  if (int32_t st = allow_smem(a, dkdv, Kv::kSmem, "attention backward (dk, dv)"); st != TSR_OK) return st;
  if (int32_t st = allow_smem(a, dq, Q::kSmem, "attention backward (dq)"); st != TSR_OK) return st;
  const cudaStream_t s = stream_of(a);
  dkdv<<<dim3(p.B * p.H, (p.S + Kv::kBc - 1) / Kv::kBc), attn::mma::kThreads, Kv::kSmem, s>>>(p);
  if (int32_t st = check_launch(a, "attention_backward_dkdv_mma"); st != TSR_OK) return st;
  dq<<<dim3(p.B * p.H, (p.T + Q::kBr - 1) / Q::kBr), attn::mma::kThreads, Q::kSmem, s>>>(p);
  return check_launch(a, "attention_backward_dq_mma");
}

template <class A, int D>
int32_t backward_simt(const TsrKernelArgs* a, Params& p) {
  constexpr size_t smem = attn::simt::bwd_smem<A, D>();
  constexpr int kB = attn::simt::Tile<A>::kB;
  auto dkdv = attn::simt::dkdv_kernel<A, D>;
  auto dq = attn::simt::dq_kernel<A, D>;
  if (int32_t st = allow_smem(a, dkdv, smem, "attention backward (dk, dv)"); st != TSR_OK) return st;
  if (int32_t st = allow_smem(a, dq, smem, "attention backward (dq)"); st != TSR_OK) return st;
  const cudaStream_t s = stream_of(a);
  dkdv<<<dim3(p.B * p.H, (p.S + kB - 1) / kB), attn::simt::kThreads, smem, s>>>(p);
  if (int32_t st = check_launch(a, "attention_backward_dkdv_simt"); st != TSR_OK) return st;
  dq<<<dim3(p.B * p.H, (p.T + kB - 1) / kB), attn::simt::kThreads, smem, s>>>(p);
  return check_launch(a, "attention_backward_dq_simt");
}

template <class T>
int32_t backward_typed(const TsrKernelArgs* a, Params& p) {
  using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const TsrTensorDesc &grad = a->inputs[0], &q = a->inputs[1], &k = a->inputs[2], &v = a->inputs[3];
  const TsrTensorDesc &out = a->inputs[4], &lse = a->inputs[5];
  const int64_t D = q.sizes[3];
  constexpr bool kMma = std::is_same_v<T, half> || std::is_same_v<T, bf16>;
  const cudaStream_t s = stream_of(a);
  std::optional<Scratch> sq, sk, sv, sg;
  Operand oq, ok, ov, og;
  if (int32_t st = prepare_operand<T>(a, q, kMma, sq, oq); st != TSR_OK) return st;
  if (int32_t st = prepare_operand<T>(a, k, kMma, sk, ok); st != TSR_OK) return st;
  if (int32_t st = prepare_operand<T>(a, v, kMma, sv, ov); st != TSR_OK) return st;
  if (int32_t st = prepare_operand<T>(a, grad, kMma, sg, og); st != TSR_OK) return st;
  p.q = oq.data, p.q_sb = oq.sb, p.q_sh = oq.sh, p.q_st = oq.st;
  p.k = ok.data, p.k_sb = ok.sb, p.k_sh = ok.sh, p.k_st = ok.st;
  p.v = ov.data, p.v_sb = ov.sb, p.v_sh = ov.sh, p.v_st = ov.st;
  p.grad = og.data, p.g_sb = og.sb, p.g_sh = og.sh, p.g_st = og.st;
  p.out_in = out.data, p.o_sb = out.strides[0], p.o_sh = out.strides[1], p.o_st = out.strides[2];
  p.lse_in = lse.data;

  // Di = rowsum(dO * O), one value per query row
  const int64_t rows = int64_t(p.B) * p.H * p.T;
  Scratch delta(device_of(a), static_cast<size_t>(rows) * sizeof(A), s);
  if (!delta) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for the row sums (%lld rows)", (long long)rows);
  p.delta = delta.get();
  TsrTensorDesc g_used = grad;  // grad as the kernels read it (maybe packed)
  g_used.data = const_cast<void*>(og.data);
  g_used.strides[0] = og.sb, g_used.strides[1] = og.sh, g_used.strides[2] = og.st;
  const bool vec = rows_aligned(g_used, sizeof(T)) && rows_aligned(out, sizeof(T));
  dispatch_head_dim(D, [&](auto dc) {
    constexpr int kD = decltype(dc)::value;
    const unsigned blocks = grid_for(rows * (kD / 8), 256);
    if (vec) delta_kernel<T, A, kD, true><<<blocks, 256, 0, s>>>(p);
    else delta_kernel<T, A, kD, false><<<blocks, 256, 0, s>>>(p);
  });
  if (int32_t st = check_launch(a, "attention_backward_delta"); st != TSR_OK) return st;

  OutputSlot<T> dq, dk, dv;
  if (int32_t st = dq.init(a, a->outputs[0], kMma); st != TSR_OK) return st;
  if (int32_t st = dk.init(a, a->outputs[1], kMma); st != TSR_OK) return st;
  if (int32_t st = dv.init(a, a->outputs[2], kMma); st != TSR_OK) return st;
  p.dq = dq.dst, p.dk = dk.dst, p.dv = dv.dst;

  int32_t status = TSR_OK;
  dispatch_head_dim(D, [&](auto dc) {
    constexpr int kD = decltype(dc)::value;
    if constexpr (kMma) status = backward_mma<T, kD>(a, p);
    else status = backward_simt<T, kD>(a, p);
  });
  if (status != TSR_OK) return status;
  if (int32_t st = dq.finish(a); st != TSR_OK) return st;
  if (int32_t st = dk.finish(a); st != TSR_OK) return st;
  return dv.finish(a);
}

}  // namespace

// scaled_dot_product_attention(q[B,H,T,D], k[B,H,S,D], v[B,H,S,D]) -> out[B,H,T,D], lse[B,H,T]
int32_t kernel_scaled_dot_product_attention(const TsrKernelArgs* a) {
  if (a->num_inputs != 3 || a->num_outputs != 2)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expects 3 inputs (q, k, v) and 2 outputs (out, lse), got %d and %d",
                a->num_inputs, a->num_outputs);
  const TsrTensorDesc &q = a->inputs[0], &k = a->inputs[1], &v = a->inputs[2];
  Params p;
  if (int32_t st = common_params(a, q, k, v, p); st != TSR_OK) return st;
  const TsrTensorDesc &out = a->outputs[0], &lse = a->outputs[1];
  const int32_t lse_dtype = q.dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
  if (int32_t st = check_operand(a, out, "out", p.B, p.H, p.T, q.sizes[3], q.dtype); st != TSR_OK) return st;
  if (int32_t st = check_contiguous_out(a, out, "out"); st != TSR_OK) return st;
  if (lse.ndim != 3 || lse.sizes[0] != p.B || lse.sizes[1] != p.H || lse.sizes[2] != p.T || lse.dtype != lse_dtype ||
      !is_contiguous(lse))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "lse must be a contiguous [%d,%d,%d] %s tensor", p.B, p.H, p.T,
                dtype_name(lse_dtype));
  int32_t status = TSR_OK;
  if (!dispatch_float(q.dtype, [&](auto t) { status = forward_typed<decltype(t)>(a, p); }))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %s is not supported", dtype_name(q.dtype));
  return status;
}

// scaled_dot_product_attention_backward(grad, q, k, v, out, lse) -> dq, dk, dv
int32_t kernel_scaled_dot_product_attention_backward(const TsrKernelArgs* a) {
  if (a->num_inputs != 6 || a->num_outputs != 3)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expects 6 inputs (grad, q, k, v, out, lse) and 3 outputs (dq, dk, dv), got %d and %d",
                a->num_inputs, a->num_outputs);
  const TsrTensorDesc &grad = a->inputs[0], &q = a->inputs[1], &k = a->inputs[2], &v = a->inputs[3];
  const TsrTensorDesc &out = a->inputs[4], &lse = a->inputs[5];
  Params p;
  if (int32_t st = common_params(a, q, k, v, p); st != TSR_OK) return st;
  const int64_t D = q.sizes[3];
  const int32_t lse_dtype = q.dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
  if (int32_t st = check_operand(a, grad, "grad", p.B, p.H, p.T, D, q.dtype); st != TSR_OK) return st;
  if (int32_t st = check_operand(a, out, "out", p.B, p.H, p.T, D, q.dtype); st != TSR_OK) return st;
  if (lse.ndim != 3 || lse.sizes[0] != p.B || lse.sizes[1] != p.H || lse.sizes[2] != p.T || lse.dtype != lse_dtype ||
      !is_contiguous(lse))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "lse must be a contiguous [%d,%d,%d] %s tensor", p.B, p.H, p.T,
                dtype_name(lse_dtype));
  const char* names[3] = {"dq", "dk", "dv"};
  const int64_t rows[3] = {p.T, p.S, p.S};
  for (int i = 0; i < 3; ++i) {
    if (int32_t st = check_operand(a, a->outputs[i], names[i], p.B, p.H, rows[i], D, q.dtype); st != TSR_OK) return st;
    if (int32_t st = check_contiguous_out(a, a->outputs[i], names[i]); st != TSR_OK) return st;
  }
  int32_t status = TSR_OK;
  if (!dispatch_float(q.dtype, [&](auto t) { status = backward_typed<decltype(t)>(a, p); }))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %s is not supported", dtype_name(q.dtype));
  return status;
}

}  // namespace tcu
