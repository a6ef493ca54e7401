// Indexing kernels of the CUDA plugin (ops.def INDEX): index_select, gather, their backwards,
// triu and tril. Operands are contiguous, index tensors int64. An index outside [0, size)
// never reads or writes out of bounds: the forward writes zeros for it and the backward drops
// its gradient (the CPU plugin raises TSR_ERR_INDEX instead; a device kernel cannot).
//
// index_select / gather / triu / tril move bits (words of 1..16 bytes), so one kernel serves
// every dtype. The backwards are deterministic whatever hp[0] says (bitwise the same run to
// run, and the same sums as the CPU: each output element adds its gradients in ascending
// index position, in float32 for float16/bfloat16/float32, float64 for float64):
//  - few index entries per output (index_select: n <= 16; gather: size(dim) <= 32): each
//    output element scans the index itself;
//  - otherwise the (index, position) pairs are sorted by a stable radix sort (CUB, on scratch
//    memory), and each output element adds the positions of its key range in order.
// No atomics, so hp[0] = 0 (atomics allowed) takes the same path.
#include <cub/cub.cuh>

#include "nn_common.cuh"

namespace tcu {
namespace {
using namespace nn;

constexpr int kThreads = 256;

// Words of 1, 2, 4, 8 or 16 bytes.
template <int kBytes>
struct WordOf;
template <>
struct WordOf<1> {
  using type = uint8_t;
};
template <>
struct WordOf<2> {
  using type = uint16_t;
};
template <>
struct WordOf<4> {
  using type = uint32_t;
};
template <>
struct WordOf<8> {
  using type = uint64_t;
};
template <>
struct WordOf<16> {
  using type = uint4;
};

// The largest word size (<= 16) that divides `bytes` and the alignment of every pointer.
int word_size(int64_t bytes, std::initializer_list<const void*> ptrs) {
  for (int w = 16; w > 1; w /= 2) {
    bool ok = bytes % w == 0;
    for (const void* p : ptrs) ok = ok && aligned_to(p, w);
    if (ok) return w;
  }
  return 1;
}
// Calls f(std::integral_constant<int, w>) for a word size w in {1, 2, 4, 8, 16}.
template <class F>
void with_word(int w, F&& f) {
  switch (w) {
    case 16:
      f(std::integral_constant<int, 16>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    default:
      f(std::integral_constant<int, 1>{});
      break;
  }
}

unsigned blocks_for(const TsrKernelArgs* a, int64_t n) {
  const int sms = sm_count(device_of(a)) > 0 ? sm_count(device_of(a)) : 1;
  int64_t b = ceil_div(n, kThreads);
  if (b > 64LL * sms) b = 64LL * sms;
  return grid_cap(b);
}

// dims of a contiguous tensor split at `dim`: outer = prod sizes[:dim], inner = prod sizes[dim+1:].
void split_at(const TsrTensorDesc& d, int64_t dim, int64_t& outer, int64_t& size, int64_t& inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= d.sizes[i];
  size = d.ndim > 0 ? d.sizes[dim] : 1;
  for (int64_t i = dim + 1; i < d.ndim; ++i) inner *= d.sizes[i];
}

bool same_sizes(const TsrTensorDesc& a, const TsrTensorDesc& b, int64_t skip_dim) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (i != skip_dim && a.sizes[i] != b.sizes[i]) return false;
  return true;
}

// ---------------------------------------------------------------------------------------
// index_select: out [outer, n, inner] = x [outer, S, inner] at index[n] (rows of inner_words words).

template <class W>
__global__ void __launch_bounds__(kThreads)
    index_select_kernel(const W* __restrict__ x, const int64_t* __restrict__ index, W* __restrict__ out,
                        int64_t S, int64_t n, int64_t inner_words, int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / inner_words;
    const int64_t w = i - row * inner_words;
    const int64_t o = row / n;
    const int64_t idx = index[row - o * n];
    W v{};
    if (idx >= 0 && idx < S) v = x[(o * S + idx) * inner_words + w];
    out[i] = v;
  }
}

// ---------------------------------------------------------------------------------------
// Sorting (index key, position) pairs: CUB's stable LSD radix sort, so equal keys keep
// ascending positions.

template <class K, class V>
int32_t radix_sort_pairs(const TsrKernelArgs* a, const K* kin, K* kout, const V* vin, V* vout, int64_t n,
                         int end_bit) {
  const cudaStream_t s = stream_of(a);
  size_t bytes = 0;
  TCU_TRY(a, cub::DeviceRadixSort::SortPairs(nullptr, bytes, kin, kout, vin, vout, static_cast<int>(n), 0,
                                             end_bit, s));
  Scratch tmp(device_of(a), bytes > 0 ? bytes : 1, s);
  if (!tmp) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of sort scratch", bytes);
  TCU_TRY(a, cub::DeviceRadixSort::SortPairs(tmp.get(), bytes, kin, kout, vin, vout, static_cast<int>(n), 0,
                                             end_bit, s));
  return TSR_OK;
}

// First position p in sorted[0, n) with sorted[p] >= key.
template <class K>
__device__ __forceinline__ int64_t lower_bound(const K* sorted, int64_t n, K key) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (sorted[mid] < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// ---------------------------------------------------------------------------------------
// index_select_backward: out [outer, S, inner] (zeros) += grad [outer, n, inner] at index[n].

// keys[i] = index[i] if in [0, S), else S (a key no output row asks for); pos[i] = i.
__global__ void __launch_bounds__(kThreads)
    index_keys_kernel(const int64_t* __restrict__ index, int64_t n, int64_t S, uint32_t* __restrict__ keys,
                      int32_t* __restrict__ pos) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t v = index[i];
    keys[i] = static_cast<uint32_t>(v >= 0 && v < S ? v : S);
    pos[i] = static_cast<int32_t>(i);
  }
}

// seg[v] = first position of key v in the sorted keys, v = 0 .. S.
__global__ void __launch_bounds__(kThreads)
    segment_starts_kernel(const uint32_t* __restrict__ sorted, int64_t n, int64_t S,
                          int32_t* __restrict__ seg) {
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v <= S;
       v += static_cast<int64_t>(gridDim.x) * blockDim.x)
    seg[v] = static_cast<int32_t>(lower_bound(sorted, n, static_cast<uint32_t>(v)));
}

// Sorted form: output row v adds grad rows pos[seg[v] .. seg[v+1]).
// Direct form (seg == nullptr): output row v scans index[0, n) for v.
// A thread writes E consecutive elements of a row (inner % E == 0; 16-byte vectors where aligned).
template <class T, int E>
__global__ void __launch_bounds__(kThreads)
    index_select_backward_kernel(const T* __restrict__ grad, const int64_t* __restrict__ index,
                                 const int32_t* __restrict__ seg, const int32_t* __restrict__ pos,
                                 T* __restrict__ out, int64_t S, int64_t n, int64_t inner, int64_t total) {
  using A = acc_t<T>;
  using V = Vec<T, E>;
  const int64_t iv = inner / E;  // vectors per row
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / iv;
    const int64_t j = (i - row * iv) * E;
    const int64_t o = row / S;
    const int64_t v = row - o * S;
    const T* g = grad + o * n * inner + j;
    A acc[E];
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = 0;
    auto add = [&](int64_t p) {
      const V x = *reinterpret_cast<const V*>(g + p * inner);
#pragma unroll
      for (int e = 0; e < E; ++e) acc[e] += cast<A>(x.v[e]);
    };
    if (seg) {
      const int32_t p1 = seg[v + 1];
      for (int32_t p = seg[v]; p < p1; ++p) add(pos[p]);
    } else {
      for (int64_t p = 0; p < n; ++p)
        if (index[p] == v) add(p);
    }
    V res;
#pragma unroll
    for (int e = 0; e < E; ++e) res.v[e] = cast<T>(acc[e]);
    *reinterpret_cast<V*>(out + row * inner + j) = res;
  }
}

// ---------------------------------------------------------------------------------------
// gather / gather_backward: index (and grad, out of gather) have sizes isz; x (and the output
// of gather_backward) sizes xsz; both contiguous; `dim` the gathered dim.

struct GatherGeom {
  int32_t nd, dim;
  int64_t isz[TSR_MAX_DIMS], xsz[TSR_MAX_DIMS];
  int64_t ist[TSR_MAX_DIMS], xst[TSR_MAX_DIMS];  // contiguous strides
};

GatherGeom gather_geom(const TsrTensorDesc& index, const TsrTensorDesc& x, int dim) {
  GatherGeom g{};
  g.nd = index.ndim;
  g.dim = dim;
  int64_t si = 1, sx = 1;
  for (int d = g.nd - 1; d >= 0; --d) {
    g.isz[d] = index.sizes[d];
    g.xsz[d] = x.sizes[d];
    g.ist[d] = si;
    g.xst[d] = sx;
    si *= g.isz[d];
    sx *= g.xsz[d];
  }
  return g;
}

template <class W>
__global__ void __launch_bounds__(kThreads)
    gather_kernel(const W* __restrict__ x, const int64_t* __restrict__ index, W* __restrict__ out,
                  GatherGeom g, int64_t total) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = i, off = 0;
    for (int d = g.nd - 1; d >= 0; --d) {
      const int64_t q = rest / g.isz[d];
      if (d != g.dim) off += (rest - q * g.isz[d]) * g.xst[d];
      rest = q;
    }
    const int64_t idx = index[i];
    W v{};
    if (idx >= 0 && idx < g.xsz[g.dim]) v = x[off + idx * g.xst[g.dim]];
    out[i] = v;
  }
}

// Sorting form: column c of the index (its position with the dim's coordinate dropped, row-major
// over isz) and value v give the key c * (S + 1) + v (v = S when out of range).
__global__ void __launch_bounds__(kThreads)
    gather_keys_kernel(const int64_t* __restrict__ index, GatherGeom g, int64_t n,
                       uint64_t* __restrict__ keys, int32_t* __restrict__ pos) {
  const int64_t S = g.xsz[g.dim], m = g.isz[g.dim], inner = g.ist[g.dim];
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t a = p / (m * inner), b = p % inner;
    const uint64_t col = static_cast<uint64_t>(a * inner + b);
    const int64_t v = index[p];
    keys[p] = col * static_cast<uint64_t>(S + 1) + static_cast<uint64_t>(v >= 0 && v < S ? v : S);
    pos[p] = static_cast<int32_t>(p);
  }
}

// out (x's sizes) element e: with coordinates c, zero if c is outside the index's sizes on a
// dim other than `dim`; else the sum of grad at the index positions of c's column holding c[dim],
// in ascending position. sorted/pos null: scan the column directly.
template <class T>
__global__ void __launch_bounds__(kThreads)
    gather_backward_kernel(const T* __restrict__ grad, const int64_t* __restrict__ index,
                           const uint64_t* __restrict__ sorted, const int32_t* __restrict__ pos, int64_t n,
                           T* __restrict__ out, GatherGeom g, int64_t total) {
  using A = acc_t<T>;
  const int64_t S = g.xsz[g.dim], m = g.isz[g.dim], inner = g.ist[g.dim];
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rest = e, base = 0, v = 0;
    bool inside = true;
    for (int d = g.nd - 1; d >= 0; --d) {
      const int64_t q = rest / g.xsz[d];
      const int64_t c = rest - q * g.xsz[d];
      rest = q;
      if (d == g.dim)
        v = c;
      else if (c >= g.isz[d])
        inside = false;
      else
        base += c * g.ist[d];
    }
    A acc = 0;
    if (inside) {
      if (sorted) {
        const int64_t a = base / (m * inner), b = base % inner;
        const uint64_t key =
            static_cast<uint64_t>(a * inner + b) * static_cast<uint64_t>(S + 1) + static_cast<uint64_t>(v);
        for (int64_t p = lower_bound(sorted, n, key); p < n && sorted[p] == key; ++p)
          acc += cast<A>(grad[pos[p]]);
      } else {
        for (int64_t i = 0; i < m; ++i) {
          const int64_t p = base + i * inner;
          if (index[p] == v) acc += cast<A>(grad[p]);
        }
      }
    }
    out[e] = cast<T>(acc);
  }
}

// ---------------------------------------------------------------------------------------
// triu / tril over the last two dims [rows, cols]: keep j - i >= diag (triu) or <= diag
// (tril); E elements of kBytes each per thread, all in one row.

template <int kBytes, int E, bool kUpper>
__global__ void __launch_bounds__(kThreads)
    tri_kernel(const typename WordOf<kBytes>::type* __restrict__ x,
               typename WordOf<kBytes>::type* __restrict__ out, int64_t nvec, int64_t rows, int64_t cols,
               int64_t diag) {
  using U = typename WordOf<kBytes>::type;
  using V = Vec<U, E>;
  const int64_t vpr = cols / E;  // vectors per row
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t line = i / vpr;
    const int64_t j0 = (i - line * vpr) * E;
    const int64_t r = line % rows;
    V v = reinterpret_cast<const V*>(x)[i];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      const int64_t d = j0 + e - r;
      if (kUpper ? d < diag : d > diag) v.v[e] = U{};
    }
    reinterpret_cast<V*>(out)[i] = v;
  }
}

template <bool kUpper>
int32_t tri_entry(const TsrKernelArgs* a) {
  if (a->num_inputs != 1 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected one input and one output");
  const TsrTensorDesc &x = a->inputs[0], &out = a->outputs[0];
  if (x.ndim < 2)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected at least 2 dims (got %s)", ShapeText(x).s);
  if (out.dtype != x.dtype || !same_sizes(x, out, -1) || !is_contiguous(x) || !is_contiguous(out))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "input %s and output %s must be contiguous with one sizes and dtype", ShapeText(x).s,
                ShapeText(out).s);
  const int64_t rows = x.sizes[x.ndim - 2], cols = x.sizes[x.ndim - 1];
  const int64_t n = numel(x);
  const int sz = static_cast<int>(itemsize(x.dtype));
  const bool vec = cols * sz % 16 == 0 && aligned_to(x.data, 16) && aligned_to(out.data, 16);
  const int64_t diag = a->attrs->index;
  const cudaStream_t s = stream_of(a);
  auto go = [&](auto bytes) {
    constexpr int B = decltype(bytes)::value;
    using U = typename WordOf<B>::type;
    constexpr int E = 16 / B;
    const U* xp = static_cast<const U*>(x.data);
    U* op = static_cast<U*>(out.data);
    if (vec)
      tri_kernel<B, E, kUpper><<<blocks_for(a, n / E), kThreads, 0, s>>>(xp, op, n / E, rows, cols, diag);
    else
      tri_kernel<B, 1, kUpper><<<blocks_for(a, n), kThreads, 0, s>>>(xp, op, n, rows, cols, diag);
  };
  with_word(sz, go);
  return check_launch(a, kUpper ? "triu_kernel" : "tril_kernel");
}

int32_t check_dim(const TsrKernelArgs* a, const TsrTensorDesc& d, int64_t dim) {
  if (dim < 0 || dim >= (d.ndim > 0 ? d.ndim : 1))
    return fail(a, TSR_ERR_INDEX, "dim %lld out of range for %s", static_cast<long long>(dim),
                ShapeText(d).s);
  return TSR_OK;
}

}  // namespace

int32_t kernel_index_select(const TsrKernelArgs* a) {
  if (a->num_inputs != 2 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected x, index and one output");
  const TsrTensorDesc &x = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const int64_t dim = a->attrs->dim;
  if (int32_t st = check_dim(a, x, dim)) return st;
  const int64_t n = numel(index);
  if (index.dtype != TSR_INT64 || index.ndim > 1 || !is_contiguous(index))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "index must be a contiguous int64 vector (got %s, dtype %d)",
                ShapeText(index).s, index.dtype);
  if (out.dtype != x.dtype || !same_sizes(x, out, dim) || (x.ndim > 0 && out.sizes[dim] != n) ||
      !is_contiguous(x) || !is_contiguous(out))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "x %s and out %s must be contiguous, of one dtype, out of size %lld on dim %lld",
                ShapeText(x).s, ShapeText(out).s, static_cast<long long>(n), static_cast<long long>(dim));
  int64_t outer, S, inner;
  split_at(x, dim, outer, S, inner);
  const int64_t row_bytes = inner * static_cast<int64_t>(itemsize(x.dtype));
  const int w = word_size(row_bytes, {x.data, out.data});
  const int64_t inner_words = row_bytes / w;
  const int64_t total = outer * n * inner_words;
  const cudaStream_t s = stream_of(a);
  with_word(w, [&](auto b) {
    using W = typename WordOf<decltype(b)::value>::type;
    index_select_kernel<W><<<blocks_for(a, total), kThreads, 0, s>>>(
        static_cast<const W*>(x.data), static_cast<const int64_t*>(index.data), static_cast<W*>(out.data), S,
        n, inner_words, total);
  });
  return check_launch(a, "index_select_kernel");
}

int32_t kernel_index_select_backward(const TsrKernelArgs* a) {
  if (a->num_inputs != 2 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected grad, index and one output");
  const TsrTensorDesc &grad = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const int64_t dim = a->attrs->dim;
  if (int32_t st = check_dim(a, out, dim)) return st;
  if (!is_float_dtype(out.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", out.dtype);
  const int64_t n = numel(index);
  if (index.dtype != TSR_INT64 || index.ndim > 1 || !is_contiguous(index))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "index must be a contiguous int64 vector (got %s, dtype %d)",
                ShapeText(index).s, index.dtype);
  if (grad.dtype != out.dtype || !same_sizes(grad, out, dim) || (out.ndim > 0 && grad.sizes[dim] != n) ||
      !is_contiguous(grad) || !is_contiguous(out))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "grad %s and out %s must be contiguous, of one dtype, grad of size %lld on dim %lld",
                ShapeText(grad).s, ShapeText(out).s, static_cast<long long>(n), static_cast<long long>(dim));
  int64_t outer, S, inner;
  split_at(out, dim, outer, S, inner);
  if (n >= (int64_t{1} << 31) - 1 || S >= (int64_t{1} << 32) - 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "index of %lld entries into a dim of %lld is too large",
                static_cast<long long>(n), static_cast<long long>(S));
  const int64_t total = numel(out);
  const cudaStream_t s = stream_of(a);
  const int dev = device_of(a);
  const int64_t* idx = static_cast<const int64_t*>(index.data);
  const bool direct = n <= 16;
  // keys, sorted keys [n] uint32; positions, sorted positions [n] int32; seg [S + 1] int32
  Scratch work(dev, direct ? 1 : static_cast<size_t>(n) * 16 + static_cast<size_t>(S + 1) * 4, s);
  if (!work) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for the index sort's scratch");
  uint32_t* keys = work.as<uint32_t>();
  uint32_t* skeys = keys + n;
  int32_t* pos = reinterpret_cast<int32_t*>(skeys + n);
  int32_t* spos = pos + n;
  int32_t* seg = spos + n;
  if (!direct) {
    index_keys_kernel<<<blocks_for(a, n), kThreads, 0, s>>>(idx, n, S, keys, pos);
    if (int32_t st = check_launch(a, "index_keys_kernel")) return st;
    if (int32_t st = radix_sort_pairs(a, keys, skeys, pos, spos, n, bits_for(static_cast<uint64_t>(S))))
      return st;
    segment_starts_kernel<<<blocks_for(a, S + 1), kThreads, 0, s>>>(skeys, n, S, seg);
    if (int32_t st = check_launch(a, "segment_starts_kernel")) return st;
  }
  dispatch_float(out.dtype, [&](auto z) {
    using T = decltype(z);
    constexpr int E = 16 / sizeof(T);
    const T* gp = static_cast<const T*>(grad.data);
    T* op = static_cast<T*>(out.data);
    if (inner % E == 0 && aligned_to(gp, 16) && aligned_to(op, 16))
      index_select_backward_kernel<T, E><<<blocks_for(a, total / E), kThreads, 0, s>>>(
          gp, idx, direct ? nullptr : seg, direct ? nullptr : spos, op, S, n, inner, total / E);
    else
      index_select_backward_kernel<T, 1><<<blocks_for(a, total), kThreads, 0, s>>>(
          gp, idx, direct ? nullptr : seg, direct ? nullptr : spos, op, S, n, inner, total);
  });
  return check_launch(a, "index_select_backward_kernel");
}

int32_t kernel_gather(const TsrKernelArgs* a) {
  if (a->num_inputs != 2 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected x, index and one output");
  const TsrTensorDesc &x = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const int64_t dim = a->attrs->dim;
  if (int32_t st = check_dim(a, x, dim)) return st;
  if (index.dtype != TSR_INT64 || index.ndim != x.ndim || !is_contiguous(index) || !is_contiguous(x) ||
      out.dtype != x.dtype || !same_sizes(out, index, -1) || !is_contiguous(out))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected contiguous x %s, int64 index of x's rank (got %s, dtype %d) and out of the index's "
                "sizes (got %s)",
                ShapeText(x).s, ShapeText(index).s, index.dtype, ShapeText(out).s);
  for (int d = 0; d < x.ndim; ++d)
    if (d != dim && index.sizes[d] > x.sizes[d])
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "index %s exceeds x %s on dim %d", ShapeText(index).s,
                  ShapeText(x).s, d);
  const GatherGeom g =
      x.ndim > 0 ? gather_geom(index, x, static_cast<int>(dim)) : GatherGeom{1, 0, {1}, {1}, {1}, {1}};
  const int64_t total = numel(out);
  const cudaStream_t s = stream_of(a);
  with_word(static_cast<int>(itemsize(x.dtype)), [&](auto b) {
    using W = typename WordOf<decltype(b)::value>::type;
    gather_kernel<W><<<blocks_for(a, total), kThreads, 0, s>>>(static_cast<const W*>(x.data),
                                                               static_cast<const int64_t*>(index.data),
                                                               static_cast<W*>(out.data), g, total);
  });
  return check_launch(a, "gather_kernel");
}

int32_t kernel_gather_backward(const TsrKernelArgs* a) {
  if (a->num_inputs != 2 || a->num_outputs != 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected grad, index and one output");
  const TsrTensorDesc &grad = a->inputs[0], &index = a->inputs[1], &out = a->outputs[0];
  const int64_t dim = a->attrs->dim;
  if (int32_t st = check_dim(a, out, dim)) return st;
  if (!is_float_dtype(out.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", out.dtype);
  if (index.dtype != TSR_INT64 || index.ndim != out.ndim || !is_contiguous(index) ||
      grad.dtype != out.dtype || !same_sizes(grad, index, -1) || !is_contiguous(grad) || !is_contiguous(out))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected contiguous grad %s of the int64 index's sizes (got %s, dtype %d) and out %s of "
                "grad's dtype",
                ShapeText(grad).s, ShapeText(index).s, index.dtype, ShapeText(out).s);
  for (int d = 0; d < out.ndim; ++d)
    if (d != dim && index.sizes[d] > out.sizes[d])
      return fail(a, TSR_ERR_INVALID_ARGUMENT, "index %s exceeds out %s on dim %d", ShapeText(index).s,
                  ShapeText(out).s, d);
  const GatherGeom g =
      out.ndim > 0 ? gather_geom(index, out, static_cast<int>(dim)) : GatherGeom{1, 0, {1}, {1}, {1}, {1}};
  const int64_t n = numel(index), total = numel(out);
  const int64_t S = g.xsz[g.dim], m = g.isz[g.dim];
  const cudaStream_t s = stream_of(a);
  const int dev = device_of(a);
  const int64_t* idx = static_cast<const int64_t*>(index.data);
  const bool direct = m <= 32;
  const uint64_t ncols = direct ? 0 : static_cast<uint64_t>(n / m);
  if (!direct && (n >= (int64_t{1} << 31) - 1 || ncols > (~uint64_t{0} >> 1) / static_cast<uint64_t>(S + 1)))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "index %s is too large for the sorted scatter",
                ShapeText(index).s);
  // keys, sorted keys [n] uint64; positions, sorted positions [n] int32
  Scratch work(dev, direct ? 1 : static_cast<size_t>(n) * 24, s);
  if (!work) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for the index sort's scratch");
  uint64_t* keys = work.as<uint64_t>();
  uint64_t* skeys = keys + n;
  int32_t* pos = reinterpret_cast<int32_t*>(skeys + n);
  int32_t* spos = pos + n;
  if (!direct) {
    gather_keys_kernel<<<blocks_for(a, n), kThreads, 0, s>>>(idx, g, n, keys, pos);
    if (int32_t st = check_launch(a, "gather_keys_kernel")) return st;
    const int end_bit = bits_for(ncols * static_cast<uint64_t>(S + 1) - 1);
    if (int32_t st = radix_sort_pairs(a, keys, skeys, pos, spos, n, end_bit)) return st;
  }
  dispatch_float(out.dtype, [&](auto z) {
    using T = decltype(z);
    gather_backward_kernel<T><<<blocks_for(a, total), kThreads, 0, s>>>(
        static_cast<const T*>(grad.data), idx, direct ? nullptr : skeys, direct ? nullptr : spos, n,
        static_cast<T*>(out.data), g, total);
  });
  return check_launch(a, "gather_backward_kernel");
}

int32_t kernel_triu(const TsrKernelArgs* a) {
  return tri_entry<true>(a);
}
int32_t kernel_tril(const TsrKernelArgs* a) {
  return tri_entry<false>(a);
}

}  // namespace tcu
