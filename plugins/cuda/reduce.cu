// CUDA reductions sum mean max min argmax argmin prod var std over any dims into the keepdim-form output.
//
// The input's dims are split (logically) into kept dims (one per output element, linear index m)
// and reduced dims (linear index j, row-major over the reduced dims: argmax/argmin's index),
// each group collapsed separately. Then:
//  - rows kernel: the innermost reduced dim is contiguous (e.g. sum over the last dim): a warp
//    (many outputs) or a 512-thread block (few outputs) per output, 16-byte vector loads when
//    the reduced dims collapse to one contiguous run; few outputs with a long reduction are
//    split along j over gridDim.y into partial states (tcu::Scratch) merged by a second kernel.
//  - cols kernel: otherwise, with >= 32 outputs (e.g. sum over dim 0 of [N, C]): a thread per
//    output (adjacent threads read adjacent columns), 8 slices of j per block merged through
//    shared memory, and more slices over gridDim.y when the outputs alone do not fill the GPU.
// Every merge happens in a fixed order (no atomics): results are deterministic.
// var/std: a mean pass (double) into scratch, then a sum of squared deviations (double).
#include <cstring>
#include <limits>
#include <optional>

#include "cuda_common.cuh"

namespace tcu {
namespace {

// ---------------------------------------------------------------------------------------
// Geometry

// Kept dims (sizes, input and output strides) and reduced dims (sizes, input strides),
// each collapsed in order: dims of size 1 dropped, neighbours merged where strides allow.
struct RedGeom {
  int64_t M;  // outputs
  int64_t R;  // reduced elements per output
  int32_t kn, rn;
  int64_t ksize[TSR_MAX_DIMS], kin[TSR_MAX_DIMS], kout[TSR_MAX_DIMS];
  int64_t rsize[TSR_MAX_DIMS], rin[TSR_MAX_DIMS];
};

// Collapses `nd` dims of sizes `sizes` and `k` stride arrays; returns the new ndim.
int collapse_dims(int nd, const int64_t* sizes, int k, const int64_t* const* strides, int64_t* osize,
                  int64_t* const* ostrides) {
  int n = 0;
  for (int d = 0; d < nd; ++d) {
    if (sizes[d] == 1) continue;
    if (n > 0) {
      bool merge = true;
      for (int o = 0; o < k; ++o) merge = merge && ostrides[o][n - 1] == strides[o][d] * sizes[d];
      if (merge) {
        osize[n - 1] *= sizes[d];
        for (int o = 0; o < k; ++o) ostrides[o][n - 1] = strides[o][d];
        continue;
      }
    }
    osize[n] = sizes[d];
    for (int o = 0; o < k; ++o) ostrides[o][n] = strides[o][d];
    ++n;
  }
  return n;
}


// ---------------------------------------------------------------------------------------
// Dtype helpers

template <class T>
constexpr bool kIsFloat = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, half> ||
                          std::is_same_v<T, bf16>;
// Type values are compared/combined in: float for float16/bfloat16, int for bool/uint8.
template <class T>
using val_t = std::conditional_t<std::is_same_v<T, half> || std::is_same_v<T, bf16>, float,
                                 std::conditional_t<(sizeof(T) < 4), int, T>>;
template <class T>
__device__ __forceinline__ val_t<T> to_val(T x) {
  if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bf16>) return cast<float>(x);
  else return static_cast<val_t<T>>(x);
}
// Integers summed/multiplied with 64-bit wrap-around (as the CPU plugin).
template <class T>
__device__ __forceinline__ unsigned long long to_u64(T x) {
  return static_cast<unsigned long long>(static_cast<int64_t>(x));
}

template <class T>
constexpr int32_t dtype_code() {
  if constexpr (std::is_same_v<T, bool>) return TSR_BOOL;
  else if constexpr (std::is_same_v<T, uint8_t>) return TSR_UINT8;
  else if constexpr (std::is_same_v<T, int32_t>) return TSR_INT32;
  else if constexpr (std::is_same_v<T, int64_t>) return TSR_INT64;
  else if constexpr (std::is_same_v<T, half>) return TSR_FLOAT16;
  else if constexpr (std::is_same_v<T, bf16>) return TSR_BFLOAT16;
  else if constexpr (std::is_same_v<T, float>) return TSR_FLOAT32;
  else return TSR_FLOAT64;
}

template <class V>
__device__ __forceinline__ bool is_nan(V v) {
  if constexpr (std::is_floating_point_v<V>) return v != v;
  else return false;
}

// ---------------------------------------------------------------------------------------
// Reduction ops. Each has: In (storage type read), State, Out (storage type written), Param
// (per-output value, from param(m)), init(), add(state, x, j, param), merge(a, b) (b may
// be any other range: merges are exact for ints/extremes and index-ordered for arg ops),
// finish(state) -> Out.

struct NoParam {};

template <class T, bool kMean>
struct SumOp {
  static constexpr bool kF = kIsFloat<T>;
  using In = T;
  using State = std::conditional_t<kF, std::conditional_t<std::is_same_v<T, double>, double, float>, unsigned long long>;
  using Out = std::conditional_t<kF, T, int64_t>;
  using Param = NoParam;
  double count = 1;  // mean: the number of reduced elements
  __device__ State init() const { return State(0); }
  __device__ Param param(int64_t) const { return {}; }
  __device__ void add(State& s, T x, int64_t, Param) const {
    if constexpr (kF) s += static_cast<State>(to_val(x));
    else s += to_u64(x);
  }
  __device__ void merge(State& a, const State& b) const { a += b; }
  __device__ Out finish(State s) const {
    if constexpr (!kF) return static_cast<int64_t>(s);
    else if constexpr (kMean) return cast<T>(static_cast<double>(s) / count);
    else return cast<T>(s);
  }
};

template <class T>
struct ProdOp {
  static constexpr bool kF = kIsFloat<T>;
  using In = T;
  using State = std::conditional_t<kF, double, unsigned long long>;
  using Out = std::conditional_t<kF, T, int64_t>;
  using Param = NoParam;
  __device__ State init() const { return State(1); }
  __device__ Param param(int64_t) const { return {}; }
  __device__ void add(State& s, T x, int64_t, Param) const {
    if constexpr (kF) s *= static_cast<double>(to_val(x));
    else s *= to_u64(x);
  }
  __device__ void merge(State& a, const State& b) const { a *= b; }
  __device__ Out finish(State s) const {
    if constexpr (kF) return cast<T>(s);
    else return static_cast<int64_t>(s);
  }
};

// max/min: any NaN makes the result NaN.
template <class T, bool kMax>
struct ExtOp {
  using In = T;
  using V = val_t<T>;
  using State = V;
  using Out = T;
  using Param = NoParam;
  __device__ State init() const {
    if constexpr (std::is_floating_point_v<V>)
      return kMax ? -std::numeric_limits<V>::infinity() : std::numeric_limits<V>::infinity();
    else
      return kMax ? static_cast<V>(std::numeric_limits<T>::lowest()) : static_cast<V>(std::numeric_limits<T>::max());
  }
  __device__ Param param(int64_t) const { return {}; }
  __device__ static void take(State& s, V v) {
    if ((kMax ? v > s : v < s) || is_nan(v)) s = v;
  }
  __device__ void add(State& s, T x, int64_t, Param) const { take(s, to_val(x)); }
  __device__ void merge(State& a, const State& b) const { take(a, b); }
  __device__ Out finish(State s) const { return cast<T>(s); }
};

template <class V>
struct ArgState {
  V v;
  long long i;  // -1: empty
};

// argmax/argmin: the first index of the extreme; NaN counts as the extreme, the first NaN wins.
template <class T, bool kMax>
struct ArgOp {
  using In = T;
  using V = val_t<T>;
  using State = ArgState<V>;
  using Out = int64_t;
  using Param = NoParam;
  __device__ State init() const { return State{V(0), -1}; }
  __device__ Param param(int64_t) const { return {}; }
  __device__ static bool better(V v, V best) {
    if (is_nan(best)) return false;
    return is_nan(v) || (kMax ? v > best : v < best);
  }
  __device__ void add(State& s, T x, int64_t j, Param) const {
    const V v = to_val(x);
    if (s.i < 0 || better(v, s.v)) {
      s.v = v;
      s.i = j;
    }
  }
  __device__ void merge(State& a, const State& b) const {
    if (b.i < 0) return;
    if (a.i < 0 || better(b.v, a.v) || (!better(a.v, b.v) && b.i < a.i)) a = b;
  }
  __device__ Out finish(State s) const { return s.i; }
};

// var/std pass 1: the mean, in double.
template <class T>
struct MeanF64Op {
  using In = T;
  using State = double;
  using Out = double;
  using Param = NoParam;
  double count = 1;
  __device__ State init() const { return 0.0; }
  __device__ Param param(int64_t) const { return {}; }
  __device__ void add(State& s, T x, int64_t, Param) const { s += static_cast<double>(to_val(x)); }
  __device__ void merge(State& a, const State& b) const { a += b; }
  __device__ Out finish(State s) const { return s / count; }
};

// var/std pass 2: sum of squared deviations from mean[m], divided by max(N - correction, 0).
template <class T, bool kStd>
struct SqDevOp {
  using In = T;
  using State = double;
  using Out = T;
  using Param = double;
  const double* mean = nullptr;  // [M], by linear output index
  double denom = 1;
  __device__ State init() const { return 0.0; }
  __device__ Param param(int64_t m) const { return mean[m]; }
  __device__ void add(State& s, T x, int64_t, Param mu) const {
    const double d = static_cast<double>(to_val(x)) - mu;
    s += d * d;
  }
  __device__ void merge(State& a, const State& b) const { a += b; }
  __device__ Out finish(State s) const {
    const double v = s / denom;
    return cast<T>(kStd ? sqrt(v) : v);
  }
};

// ---------------------------------------------------------------------------------------
// Warp/block merging

template <class V>
__device__ __forceinline__ V shfl_down(V v, int o) {
  if constexpr (sizeof(V) == 8) {
    unsigned long long b;
    memcpy(&b, &v, 8);
    b = __shfl_down_sync(0xffffffffu, b, o);
    memcpy(&v, &b, 8);
    return v;
  } else if constexpr (sizeof(V) == 4) {
    unsigned b;
    memcpy(&b, &v, 4);
    b = __shfl_down_sync(0xffffffffu, b, o);
    memcpy(&v, &b, 4);
    return v;
  } else {
    return static_cast<V>(__shfl_down_sync(0xffffffffu, static_cast<int>(v), o));
  }
}
template <class V>
__device__ __forceinline__ ArgState<V> shfl_down(ArgState<V> s, int o) {
  return ArgState<V>{shfl_down(s.v, o), shfl_down(s.i, o)};
}

// Lane 0 gets the merge of the warp's states (a fixed tree).
template <class Op, class S>
__device__ __forceinline__ S warp_reduce(const Op& op, S s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const S t = shfl_down(s, o);
    op.merge(s, t);
  }
  return s;
}

// Thread 0 gets the merge of the block's states; every thread must call it. smem: 32 states.
template <class Op, class S>
__device__ __forceinline__ S block_reduce(const Op& op, S s, S* smem) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  s = warp_reduce(op, s);
  if (lane == 0) smem[w] = s;
  __syncthreads();
  if (w == 0) {
    s = lane < nw ? smem[lane] : op.init();
    s = warp_reduce(op, s);
  }
  __syncthreads();  // smem free for the next use
  return s;
}

// ---------------------------------------------------------------------------------------
// Kernels

constexpr int kRowBlock = 512;   // threads of a block-per-output rows kernel
constexpr int kWarpBlock = 128;  // threads of a warp-per-output rows kernel (4 outputs)
constexpr int kColX = 32;        // cols kernel: outputs per block
constexpr int kColY = 8;         //              slices of the reduction per block
constexpr int kFinBlock = 256;   // finalize: a warp per output

template <class T>
struct alignas(16) Vec16 {
  T v[16 / sizeof(T)];
};

// This thread's share (t of G) of row[lo, hi) of a contiguous reduction, 16-byte loads.
template <class Op, class S, class P>
__device__ __forceinline__ void reduce_contig(const Op& op, S& s, const typename Op::In* base, int64_t lo,
                                              int64_t hi, int t, int G, P p) {
  using T = typename Op::In;
  constexpr int E = 16 / sizeof(T);
  using Vec = Vec16<T>;
  const int64_t len = hi - lo;
  if (len <= 0) return;
  const T* row = base + lo;
  const int mis = static_cast<int>((reinterpret_cast<uintptr_t>(row) & 15) / sizeof(T));
  const int64_t head = mis ? (E - mis < len ? E - mis : len) : 0;  // scalar elements before 16-byte alignment
  if (t < head) op.add(s, row[t], lo + t, p);
  const int64_t nvec = (len - head) / E;
  const Vec* vp = reinterpret_cast<const Vec*>(row + head);
  const int64_t j0 = lo + head;
  int64_t v = t;
  for (; v + 3 * G < nvec; v += 4 * G) {
    Vec a[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) a[k] = vp[v + k * G];
#pragma unroll
    for (int k = 0; k < 4; ++k)
#pragma unroll
      for (int e = 0; e < E; ++e) op.add(s, a[k].v[e], j0 + (v + k * G) * E + e, p);
  }
  for (; v < nvec; v += G) {
    const Vec a = vp[v];
#pragma unroll
    for (int e = 0; e < E; ++e) op.add(s, a.v[e], j0 + v * E + e, p);
  }
  const int64_t done = head + nvec * E;
  if (t < len - done) op.add(s, row[done + t], lo + done + t, p);
}

// A group (a warp, or the whole block) per output; blockIdx.y picks the slice [y*chunk, ..)
// of the reduction. One slice: writes the output; several: part[y][m] (partial states).
template <class Op, bool kContig, bool kWarp>
__global__ void __launch_bounds__(kRowBlock) reduce_rows_kernel(Op op, const typename Op::In* __restrict__ in, RedGeom g,
                                                                typename Op::Out* __restrict__ out,
                                                                typename Op::State* __restrict__ part, int64_t chunk) {
  using S = typename Op::State;
  __shared__ alignas(16) unsigned char smem_raw[32 * sizeof(S)];
  S* smem = reinterpret_cast<S*>(smem_raw);
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  const int64_t first = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0);
  const int64_t step = static_cast<int64_t>(gridDim.x) * per_block;
  const int64_t lo = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t hi = lo + chunk < g.R ? lo + chunk : g.R;
  for (int64_t m = first; m < g.M; m += step) {  // uniform per group
    const typename Op::In* base = in + offset_nd(m, g.kn, g.ksize, g.kin);
    const auto p = op.param(m);
    S s = op.init();
    if constexpr (kContig) {
      reduce_contig(op, s, base, lo, hi, t, G, p);
    } else if (g.rn <= 1) {
      const int64_t rs = g.rn == 1 ? g.rin[0] : 0;
#pragma unroll 4
      for (int64_t j = lo + t; j < hi; j += G) op.add(s, base[j * rs], j, p);
    } else {
      for (int64_t j = lo + t; j < hi; j += G) op.add(s, base[offset_nd(j, g.rn, g.rsize, g.rin)], j, p);
    }
    if constexpr (kWarp) s = warp_reduce(op, s);
    else s = block_reduce(op, s, smem);
    if (t == 0) {
      if (gridDim.y == 1) out[offset_nd(m, g.kn, g.ksize, g.kout)] = op.finish(s);
      else part[static_cast<int64_t>(blockIdx.y) * g.M + m] = s;
    }
  }
}

// A thread per output (kColX adjacent outputs per block), kColY slices of the reduction per
// block; slice (blockIdx.y * kColY + threadIdx.y) covers [slice*chunk, ..). The block's
// slices are merged in order; one y block writes the output, several write part[y][m].
template <class Op>
__global__ void __launch_bounds__(kColX * kColY) reduce_cols_kernel(Op op, const typename Op::In* __restrict__ in, RedGeom g,
                                                                    typename Op::Out* __restrict__ out,
                                                                    typename Op::State* __restrict__ part, int64_t chunk) {
  using S = typename Op::State;
  __shared__ alignas(16) unsigned char smem_raw[kColY * kColX * sizeof(S)];
  S* smem = reinterpret_cast<S*>(smem_raw);  // [kColY][kColX]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t m = static_cast<int64_t>(blockIdx.x) * kColX + tx;
  const bool valid = m < g.M;
  const int64_t lo = (static_cast<int64_t>(blockIdx.y) * kColY + ty) * chunk;
  const int64_t hi = lo + chunk < g.R ? lo + chunk : g.R;
  S s = op.init();
  if (valid) {
    const typename Op::In* base = in + offset_nd(m, g.kn, g.ksize, g.kin);
    const auto p = op.param(m);
    if (g.rn <= 1) {
      const int64_t rs = g.rn == 1 ? g.rin[0] : 0;
#pragma unroll 4
      for (int64_t j = lo; j < hi; ++j) op.add(s, base[j * rs], j, p);
    } else {
      for (int64_t j = lo; j < hi; ++j) op.add(s, base[offset_nd(j, g.rn, g.rsize, g.rin)], j, p);
    }
  }
  smem[ty * kColX + tx] = s;
  __syncthreads();
  if (ty == 0 && valid) {
#pragma unroll
    for (int k = 1; k < kColY; ++k) op.merge(s, smem[k * kColX + tx]);
    if (gridDim.y == 1) out[offset_nd(m, g.kn, g.ksize, g.kout)] = op.finish(s);
    else part[static_cast<int64_t>(blockIdx.y) * g.M + m] = s;
  }
}

// Merges part[0..nparts)[m] (a warp per output, fixed order) and writes the outputs.
template <class Op>
__global__ void __launch_bounds__(kFinBlock) reduce_finalize_kernel(Op op, const typename Op::State* __restrict__ part,
                                                                    int64_t nparts, RedGeom g,
                                                                    typename Op::Out* __restrict__ out) {
  using S = typename Op::State;
  const int lane = threadIdx.x & 31;
  const int64_t per_block = kFinBlock / 32;
  for (int64_t m = blockIdx.x * per_block + threadIdx.x / 32; m < g.M; m += static_cast<int64_t>(gridDim.x) * per_block) {
    S s = op.init();
    for (int64_t k = lane; k < nparts; k += 32) op.merge(s, part[k * g.M + m]);
    s = warp_reduce(op, s);
    if (lane == 0) out[offset_nd(m, g.kn, g.ksize, g.kout)] = op.finish(s);
  }
}

// ---------------------------------------------------------------------------------------
// Host side

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
unsigned grid_cap(int64_t b) { return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 30) ? (int64_t{1} << 30) : b)); }

// Builds the geometry; returns TSR_OK or an error status.
int32_t make_geom(const TsrKernelArgs* a, RedGeom& g) {
  const TsrTensorDesc& in = a->inputs[0];
  const TsrTensorDesc& out = a->outputs[0];
  const TsrAttrs& at = *a->attrs;
  if (out.ndim != in.ndim) return fail(a, TSR_ERR_INVALID_ARGUMENT, "output must be in keepdim form");
  bool reduced[TSR_MAX_DIMS] = {};
  for (int i = 0; i < at.ndims; ++i) {
    const int64_t d = at.dims[i];
    if (d < 0 || d >= (in.ndim > 0 ? in.ndim : 1))
      return fail(a, TSR_ERR_INDEX, "reduction dim %lld out of range for %d dims", static_cast<long long>(d), in.ndim);
    if (d < in.ndim) reduced[d] = true;
  }
  int64_t ks[TSR_MAX_DIMS], rs[TSR_MAX_DIMS];
  for (int d = 0; d < in.ndim; ++d) {
    if (!reduced[d] && out.sizes[d] != in.sizes[d]) return fail(a, TSR_ERR_INVALID_ARGUMENT, "output sizes do not match the input");
    ks[d] = reduced[d] ? 1 : in.sizes[d];
    rs[d] = reduced[d] ? in.sizes[d] : 1;
  }
  std::memset(&g, 0, sizeof g);
  {
    const int64_t* st[2] = {in.strides, out.strides};
    int64_t* ost[2] = {g.kin, g.kout};
    g.kn = collapse_dims(in.ndim, ks, 2, st, g.ksize, ost);
  }
  {
    const int64_t* st[1] = {in.strides};
    int64_t* ost[1] = {g.rin};
    g.rn = collapse_dims(in.ndim, rs, 1, st, g.rsize, ost);
  }
  g.M = 1;
  for (int d = 0; d < g.kn; ++d) g.M *= g.ksize[d];
  g.R = 1;
  for (int d = 0; d < g.rn; ++d) g.R *= g.rsize[d];
  return TSR_OK;
}

// Reduces g's input with op into out (output strides g.kout).
template <class Op>
int32_t launch_reduce(const TsrKernelArgs* a, const Op& op, const RedGeom& g, const typename Op::In* in,
                      typename Op::Out* out) {
  using S = typename Op::State;
  cudaStream_t stream = stream_of(a);
  const int dev = device_of(a);
  const int64_t sm = sm_count(dev) > 0 ? sm_count(dev) : 1;
  const bool inner_contig = g.rn >= 1 && g.rin[g.rn - 1] == 1;

  if (inner_contig || g.M < kColX) {
    // rows kernel: a warp per output when there are many outputs (or short reductions),
    // else a block per output, split along the reduction while the blocks do not fill the GPU.
    const bool contig = g.rn == 1 && g.rin[0] == 1;
    const bool warp = g.R <= 1024 || g.M >= sm * 16;
    int64_t nsplit = 1, chunk = g.R;
    if (!warp && g.M < sm * 4) {
      nsplit = ceil_div(sm * 4, g.M);
      const int64_t by_len = ceil_div(g.R, 8192);  // at least 16 elements a thread
      if (nsplit > by_len) nsplit = by_len;
      if (nsplit > 65535) nsplit = 65535;
      if (nsplit > 1) {
        chunk = ceil_div(ceil_div(g.R, nsplit), 64) * 64;  // keeps 16-byte alignment across slices
        nsplit = ceil_div(g.R, chunk);
      }
      if (nsplit <= 1) {
        nsplit = 1;
        chunk = g.R;
      }
    }
    std::optional<Scratch> part;  // [nsplit][M] partial states
    S* pp = nullptr;
    if (nsplit > 1) {
      part.emplace(dev, static_cast<size_t>(nsplit * g.M) * sizeof(S), stream);
      if (!*part) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld partial results", static_cast<long long>(nsplit * g.M));
      pp = part->as<S>();
    }
    const dim3 grid(grid_cap(warp ? ceil_div(g.M, kWarpBlock / 32) : g.M), static_cast<unsigned>(nsplit));
    const int threads = warp ? kWarpBlock : kRowBlock;
    if (contig) {
      if (warp) reduce_rows_kernel<Op, true, true><<<grid, threads, 0, stream>>>(op, in, g, out, pp, chunk);
      else reduce_rows_kernel<Op, true, false><<<grid, threads, 0, stream>>>(op, in, g, out, pp, chunk);
    } else {
      if (warp) reduce_rows_kernel<Op, false, true><<<grid, threads, 0, stream>>>(op, in, g, out, pp, chunk);
      else reduce_rows_kernel<Op, false, false><<<grid, threads, 0, stream>>>(op, in, g, out, pp, chunk);
    }
    if (int32_t st = check_launch(a, "reduce_rows_kernel")) return st;
    if (nsplit > 1) {
      reduce_finalize_kernel<Op><<<grid_cap(ceil_div(g.M, kFinBlock / 32)), kFinBlock, 0, stream>>>(op, pp, nsplit, g, out);
      if (int32_t st = check_launch(a, "reduce_finalize_kernel")) return st;
    }
    return TSR_OK;
  }

  // cols kernel: a thread per output, kColY slices per block, more slices over gridDim.y
  // while the blocks do not fill the GPU (each slice keeps >= 32 elements).
  const int64_t bx = ceil_div(g.M, kColX);
  if (bx > 0x7fffffff) return fail(a, TSR_ERR_INVALID_ARGUMENT, "too many outputs");
  int64_t gy = 1;
  if (bx < sm * 8) {
    gy = ceil_div(sm * 8, bx);
    const int64_t by_len = ceil_div(g.R, kColY * 32);
    if (gy > by_len) gy = by_len;
    if (gy > 65535) gy = 65535;
    if (gy < 1) gy = 1;
  }
  int64_t chunk = ceil_div(g.R, gy * kColY);
  gy = ceil_div(g.R, chunk * kColY);
  if (gy < 1) gy = 1;
  std::optional<Scratch> part;  // [gy][M] partial states
  S* pp = nullptr;
  if (gy > 1) {
    part.emplace(dev, static_cast<size_t>(gy * g.M) * sizeof(S), stream);
    if (!*part) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld partial results", static_cast<long long>(gy * g.M));
    pp = part->as<S>();
  }
  reduce_cols_kernel<Op><<<dim3(static_cast<unsigned>(bx), static_cast<unsigned>(gy)), dim3(kColX, kColY), 0, stream>>>(
      op, in, g, out, pp, chunk);
  if (int32_t st = check_launch(a, "reduce_cols_kernel")) return st;
  if (gy > 1) {
    reduce_finalize_kernel<Op><<<grid_cap(ceil_div(g.M, kFinBlock / 32)), kFinBlock, 0, stream>>>(op, pp, gy, g, out);
    if (int32_t st = check_launch(a, "reduce_finalize_kernel")) return st;
  }
  return TSR_OK;
}

template <class Op>
int32_t run_op(const TsrKernelArgs* a, const RedGeom& g, const Op& op) {
  using Out = typename Op::Out;
  if (a->outputs[0].dtype != dtype_code<Out>())
    return fail(a, TSR_ERR_TYPE, "output dtype %d, expected %d", a->outputs[0].dtype, dtype_code<Out>());
  return launch_reduce(a, op, g, static_cast<const typename Op::In*>(a->inputs[0].data),
                       static_cast<Out*>(a->outputs[0].data));
}

enum class Red { Sum, Mean, Prod, Max, Min, ArgMax, ArgMin, Var, Std };

template <Red kRed>
int32_t reduce_entry(const TsrKernelArgs* a) {
  if (a->num_inputs < 1 || a->num_outputs < 1) return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected one input and one output");
  RedGeom g;
  if (int32_t st = make_geom(a, g)) return st;
  int32_t status = TSR_OK;
  const bool known = dispatch_dtype(a->inputs[0].dtype, [&](auto z) {
    using T = decltype(z);
    if constexpr (kRed == Red::Sum) {
      status = run_op(a, g, SumOp<T, false>{});
    } else if constexpr (kRed == Red::Prod) {
      status = run_op(a, g, ProdOp<T>{});
    } else if constexpr (kRed == Red::Max || kRed == Red::Min) {
      status = run_op(a, g, ExtOp<T, kRed == Red::Max>{});
    } else if constexpr (kRed == Red::ArgMax || kRed == Red::ArgMin) {
      status = run_op(a, g, ArgOp<T, kRed == Red::ArgMax>{});
    } else if constexpr (!kIsFloat<T>) {
      status = fail(a, TSR_ERR_NOT_IMPLEMENTED, "integer and bool dtypes are not supported");
    } else if constexpr (kRed == Red::Mean) {
      SumOp<T, true> op;
      op.count = static_cast<double>(g.R);
      status = run_op(a, g, op);
    } else {  // var/std: the means into scratch [M], then the squared deviations
      if (a->outputs[0].dtype != dtype_code<T>()) {
        status = fail(a, TSR_ERR_TYPE, "output dtype %d, expected %d", a->outputs[0].dtype, dtype_code<T>());
        return;
      }
      const int dev = device_of(a);
      Scratch mean(dev, static_cast<size_t>(g.M) * sizeof(double), stream_of(a));
      if (!mean) {
        status = fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld means", static_cast<long long>(g.M));
        return;
      }
      RedGeom gm = g;  // the means: contiguous by linear output index
      int64_t stride = 1;
      for (int d = gm.kn - 1; d >= 0; --d) {
        gm.kout[d] = stride;
        stride *= gm.ksize[d];
      }
      MeanF64Op<T> mop;
      mop.count = static_cast<double>(g.R);
      const T* in = static_cast<const T*>(a->inputs[0].data);
      status = launch_reduce(a, mop, gm, in, mean.as<double>());
      if (status != TSR_OK) return;
      SqDevOp<T, kRed == Red::Std> dop;
      dop.mean = mean.as<double>();
      const int64_t corr = a->attrs->correction;
      dop.denom = static_cast<double>(g.R - corr > 0 ? g.R - corr : 0);
      status = launch_reduce(a, dop, g, in, static_cast<T*>(a->outputs[0].data));
    }
  });
  if (!known) return fail(a, TSR_ERR_NOT_IMPLEMENTED, "unsupported dtype %d", a->inputs[0].dtype);
  return status;
}

}  // namespace

int32_t kernel_sum(const TsrKernelArgs* a) { return reduce_entry<Red::Sum>(a); }
int32_t kernel_mean(const TsrKernelArgs* a) { return reduce_entry<Red::Mean>(a); }
int32_t kernel_max(const TsrKernelArgs* a) { return reduce_entry<Red::Max>(a); }
int32_t kernel_min(const TsrKernelArgs* a) { return reduce_entry<Red::Min>(a); }
int32_t kernel_argmax(const TsrKernelArgs* a) { return reduce_entry<Red::ArgMax>(a); }
int32_t kernel_argmin(const TsrKernelArgs* a) { return reduce_entry<Red::ArgMin>(a); }
int32_t kernel_prod(const TsrKernelArgs* a) { return reduce_entry<Red::Prod>(a); }
int32_t kernel_var(const TsrKernelArgs* a) { return reduce_entry<Red::Var>(a); }
int32_t kernel_std(const TsrKernelArgs* a) { return reduce_entry<Red::Std>(a); }

}  // namespace tcu
