// topk of the CUDA plugin (ops.def INDEX): topk(x) -> values, indices (int64) along attrs.dim,
// k = attrs.index, hp[0] = 1 largest / 0 smallest; sorted, NaN the largest value, ties in
// index order (-0.0 and +0.0 tie).
//
// Every value maps to an unsigned key whose order is the wanted order (largest first; for
// smallest the key is complemented); (key descending, index ascending) is then a strict total
// order, so the result is unique. Rows are x viewed as [outer, n, inner], row (o, j) holding
// x[o, :, j].
//  - k <= 1024: a block per row, the row's keys cached in shared memory when they fit (up to
//    227 KiB: 50k 32-bit keys). A radix select (8-bit digits, most significant first, shared
//    histograms per pass, 8 copies against atomic contention) finds the k-th key and how many
//    of its ties to take; an ordered pass (block prefix sums in index order) collects the
//    keys above it and the first ties into shared memory, and a bitonic sort orders the k.
//  - larger k: CUB's stable radix sort of every row's (key, index) pairs (descending), the
//    first k of each row kept.
#include <algorithm>
#include <cub/cub.cuh>

#include "nn_common.cuh"

namespace tcu {
namespace {
using namespace nn;

constexpr int kCap = 1024;    // largest k of the block-per-row path
constexpr int kSubHists = 8;  // histogram copies per block (fewer same-address atomics)

// Order-preserving keys: larger key = larger value; NaN the largest; -0.0 as +0.0.
template <class T>
struct KeyOf {
  using U = uint32_t;
  static constexpr int kBits = 32;
};
template <>
struct KeyOf<uint8_t> {
  using U = uint32_t;
  static constexpr int kBits = 8;
};
template <>
struct KeyOf<half> {
  using U = uint32_t;
  static constexpr int kBits = 16;
};
template <>
struct KeyOf<bf16> {
  using U = uint32_t;
  static constexpr int kBits = 16;
};
template <>
struct KeyOf<int64_t> {
  using U = uint64_t;
  static constexpr int kBits = 64;
};
template <>
struct KeyOf<double> {
  using U = uint64_t;
  static constexpr int kBits = 64;
};

template <class T>
__device__ __forceinline__ typename KeyOf<T>::U key_of(T v) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    return v;
  } else if constexpr (std::is_same_v<T, int32_t>) {
    return static_cast<uint32_t>(v) ^ 0x80000000u;
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return static_cast<uint64_t>(v) ^ (uint64_t{1} << 63);
  } else if constexpr (std::is_same_v<T, half> || std::is_same_v<T, bf16>) {
    const float f = cast<float>(v);
    if (f != f) return 0xFFFFu;
    uint32_t u = 0;
    if (f != 0.0f) {
      if constexpr (std::is_same_v<T, half>)
        u = __half_as_ushort(v);
      else
        u = __bfloat16_as_ushort(v);
    }
    return (u & 0x8000u) ? (~u & 0xFFFFu) : (u | 0x8000u);
  } else if constexpr (std::is_same_v<T, float>) {
    if (v != v) return 0xFFFFFFFFu;
    const uint32_t u = v == 0.0f ? 0u : __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  } else {
    if (v != v) return ~uint64_t{0};
    const uint64_t u = v == 0.0 ? 0u : static_cast<uint64_t>(__double_as_longlong(v));
    return (u & (uint64_t{1} << 63)) ? ~u : (u | (uint64_t{1} << 63));
  }
}

// The row's key of element i: flipped (within kBits) for smallest.
template <class T>
__device__ __forceinline__ typename KeyOf<T>::U row_key(const T* base, int64_t stride, int64_t i,
                                                        bool largest) {
  using U = typename KeyOf<T>::U;
  constexpr U kMask = KeyOf<T>::kBits == sizeof(U) * 8 ? ~U{0} : ((U{1} << KeyOf<T>::kBits) - 1);
  const U k = key_of(base[i * stride]);
  return largest ? k : (~k & kMask);
}

// Exclusive prefix sum over the block (blockDim.x a multiple of 32, <= 1024); returns the
// thread's exclusive sum and sets total. smem: 32 ints. Every thread must call it.
__device__ __forceinline__ int block_exclusive_scan(int v, int& total, int* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += y;
  }
  if (lane == 31) smem[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
  for (int w = 0; w < nw; ++w) {
    if (w < warp) before += smem[w];
    total += smem[w];
  }
  __syncthreads();
  return before + incl - v;
}

// (key, index) a before (key, index) b: larger key first, then smaller index.
template <class U>
__device__ __forceinline__ bool before(U ka, int32_t ia, U kb, int32_t ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// kCached: the row's keys are computed once into dynamic shared memory ([n] keys) and every
// pass reads them there; otherwise each pass recomputes them from x (four loads in flight).
template <class T, bool kCached>
__global__ void __launch_bounds__(1024)
    topk_block_kernel(const T* __restrict__ x, T* __restrict__ values, int64_t* __restrict__ indices,
                      int64_t rows, int64_t n, int64_t inner, int k, bool largest) {
  using U = typename KeyOf<T>::U;
  constexpr int kBits = KeyOf<T>::kBits;
  extern __shared__ unsigned char topk_dyn_smem[];
  U* cache = reinterpret_cast<U*>(topk_dyn_smem);
  __shared__ int hist[256];
  __shared__ int sub[kSubHists][256];  // warp w counts into sub[w % kSubHists]
  __shared__ int scan_smem[32];
  __shared__ U ckey[kCap];
  __shared__ int32_t cidx[kCap];
  __shared__ U sel_digit;
  __shared__ int sel_left;
  const int tid = threadIdx.x, lane = tid & 31, bd = blockDim.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t o = r / inner, j = r - o * inner;
    const T* base = x + o * n * inner + j;
    auto key_at = [&](int64_t i) -> U {
      if constexpr (kCached)
        return cache[i];
      else
        return row_key(base, inner, i, largest);
    };
    if constexpr (kCached) {
#pragma unroll 4
      for (int64_t i = tid; i < n; i += bd) cache[i] = row_key(base, inner, i, largest);
    }

    // Radix select: after the pass at `shift`, the k-th key agrees with `desired` on `mask`,
    // and `left` of the keys matching it (counted from the top) remain to be taken.
    U desired = 0, mask = 0;
    int left = k;
    for (int shift = kBits - 8; shift >= 0; shift -= 8) {
      for (int b = tid; b < kSubHists * 256; b += bd) (&sub[0][0])[b] = 0;
      __syncthreads();
      int* mine = sub[(tid >> 5) % kSubHists];
      for (int64_t i0 = 0; i0 < n; i0 += 4 * bd) {
        U u[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int64_t i = i0 + q * bd + tid;
          u[q] = i < n ? key_at(i) : U{0};
        }
#pragma unroll
        for (int q = 0; q < 4; ++q)
          if (i0 + q * bd + tid < n && (u[q] & mask) == desired) atomicAdd(&mine[(u[q] >> shift) & 0xFF], 1);
      }
      __syncthreads();
      for (int b = tid; b < 256; b += bd) {
        int c = 0;
#pragma unroll
        for (int h = 0; h < kSubHists; ++h) c += sub[h][b];
        hist[b] = c;
      }
      __syncthreads();
      if (tid < 32) {  // warp 0: lane l holds bins 255 - 8l down to 248 - 8l
        int c = 0;
#pragma unroll
        for (int q = 0; q < 8; ++q) c += hist[255 - 8 * lane - q];
        int incl = c;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const int y = __shfl_up_sync(0xffffffffu, incl, off);
          if (lane >= off) incl += y;
        }
        const unsigned hit = __ballot_sync(0xffffffffu, incl >= left);
        if (lane == __ffs(hit) - 1) {
          int seen = incl - c;
          for (int q = 0; q < 8; ++q) {
            const int b = 255 - 8 * lane - q;
            if (seen + hist[b] >= left) {
              sel_digit = static_cast<U>(b);
              sel_left = left - seen;
              break;
            }
            seen += hist[b];
          }
        }
      }
      __syncthreads();
      desired |= sel_digit << shift;
      mask |= U{0xFF} << shift;
      left = sel_left;
    }
    const U kth = desired;
    const int above = k - left;  // keys greater than kth, all taken; then `left` ties

    // Collect in index order: keys above kth at [0, above), the first `left` ties after them.
    int n_above = 0, n_tie = 0;
    for (int64_t i0 = 0; i0 < n && (n_above < above || n_tie < left); i0 += bd) {
      const int64_t i = i0 + tid;
      U u = 0;
      bool gt = false, eq = false;
      if (i < n) {
        u = key_at(i);
        gt = u > kth;
        eq = u == kth;
      }
      int total;
      const int ex = block_exclusive_scan((gt ? 1 : 0) | (eq ? 1 << 16 : 0), total, scan_smem);
      if (gt) {
        const int slot = n_above + (ex & 0xFFFF);
        ckey[slot] = u;
        cidx[slot] = static_cast<int32_t>(i);
      } else if (eq && n_tie + (ex >> 16) < left) {
        const int slot = above + n_tie + (ex >> 16);
        ckey[slot] = u;
        cidx[slot] = static_cast<int32_t>(i);
      }
      n_above += total & 0xFFFF;
      n_tie += total >> 16;
    }

    // Bitonic sort of the k candidates padded to a power of two P (padding sorts last).
    int P = 1;
    while (P < k) P <<= 1;
    for (int s = k + tid; s < P; s += bd) {
      ckey[s] = 0;
      cidx[s] = 0x7FFFFFFF;
    }
    for (int size = 2; size <= P; size <<= 1) {
      for (int stride = size >> 1; stride > 0; stride >>= 1) {
        __syncthreads();
        for (int t = tid; t < P / 2; t += bd) {
          const int low = t & (stride - 1);
          const int a = ((t - low) << 1) + low, b = a + stride;
          const bool up = (a & size) == 0;  // this run ends in wanted order
          const bool swap =
              up ? before(ckey[b], cidx[b], ckey[a], cidx[a]) : before(ckey[a], cidx[a], ckey[b], cidx[b]);
          if (swap) {
            const U tk = ckey[a];
            ckey[a] = ckey[b];
            ckey[b] = tk;
            const int32_t ti = cidx[a];
            cidx[a] = cidx[b];
            cidx[b] = ti;
          }
        }
      }
    }
    __syncthreads();
    for (int s = tid; s < k; s += bd) {
      const int64_t i = cidx[s];
      const int64_t out = (o * k + s) * inner + j;
      values[out] = base[i * inner];
      indices[out] = i;
    }
    __syncthreads();  // shared memory reused by the next row
  }
}

// Large k: keys[r * n + i], pos[r * n + i] = i of row r, and the segments' offsets.
template <class T>
__global__ void __launch_bounds__(256)
    topk_keys_kernel(const T* __restrict__ x, int64_t rows, int64_t n, int64_t inner, bool largest,
                     typename KeyOf<T>::U* __restrict__ keys, int32_t* __restrict__ pos,
                     int64_t* __restrict__ offsets) {
  const int64_t total = rows * n;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / n, i = e - r * n;
    const int64_t o = r / inner, j = r - o * inner;
    keys[e] = row_key(x + o * n * inner + j, inner, i, largest);
    pos[e] = static_cast<int32_t>(i);
    if (i == 0) offsets[r] = e;
    if (e == total - 1) offsets[rows] = total;
  }
}

template <class T>
__global__ void __launch_bounds__(256)
    topk_write_kernel(const T* __restrict__ x, const int32_t* __restrict__ spos, int64_t rows, int64_t n,
                      int64_t inner, int64_t k, T* __restrict__ values, int64_t* __restrict__ indices) {
  const int64_t total = rows * k;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / k, s = e - r * k;
    const int64_t o = r / inner, j = r - o * inner;
    const int64_t i = spos[r * n + s];
    const int64_t out = (o * k + s) * inner + j;
    values[out] = x[(o * n + i) * inner + j];
    indices[out] = i;
  }
}

template <class T>
int32_t topk_sorted(const TsrKernelArgs* a, const T* x, T* values, int64_t* indices, int64_t rows, int64_t n,
                    int64_t inner, int64_t k, bool largest) {
  using U = typename KeyOf<T>::U;
  const cudaStream_t s = stream_of(a);
  const int dev = device_of(a);
  const int64_t total = rows * n;
  if (total >= (int64_t{1} << 31) - 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "topk with k = %lld over %lld rows of %lld is too large",
                static_cast<long long>(k), static_cast<long long>(rows), static_cast<long long>(n));
  const size_t kb = static_cast<size_t>(total) * sizeof(U), pb = static_cast<size_t>(total) * sizeof(int32_t);
  const size_t ob = static_cast<size_t>(rows + 1) * sizeof(int64_t);
  // keys, sorted keys, positions, sorted positions, offsets
  Scratch work(dev, 2 * kb + 2 * pb + ob + 64, s);
  if (!work)
    return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of topk sort scratch",
                2 * kb + 2 * pb + ob);
  char* p = work.as<char>();
  U* keys = reinterpret_cast<U*>(p);
  U* skeys = reinterpret_cast<U*>(p + kb);
  int64_t* offsets = reinterpret_cast<int64_t*>(p + 2 * kb);
  int32_t* pos = reinterpret_cast<int32_t*>(p + 2 * kb + ob);
  int32_t* spos = pos + total;
  const int sms = sm_count(dev) > 0 ? sm_count(dev) : 1;
  const unsigned grid = grid_cap(std::min<int64_t>(ceil_div(total, 256), 32LL * sms));
  topk_keys_kernel<T><<<grid, 256, 0, s>>>(x, rows, n, inner, largest, keys, pos, offsets);
  if (int32_t st = check_launch(a, "topk_keys_kernel")) return st;
  constexpr int kBits = KeyOf<T>::kBits;
  size_t bytes = 0;
  const int items = static_cast<int>(total), segs = static_cast<int>(rows);
  if (rows == 1) {
    TCU_TRY(a, cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, keys, skeys, pos, spos, items, 0,
                                                         kBits, s));
  } else {
    TCU_TRY(a, cub::DeviceSegmentedRadixSort::SortPairsDescending(
                   nullptr, bytes, keys, skeys, pos, spos, items, segs, offsets, offsets + 1, 0, kBits, s));
  }
  Scratch tmp(dev, bytes > 0 ? bytes : 1, s);
  if (!tmp) return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of sort scratch", bytes);
  if (rows == 1) {
    TCU_TRY(a, cub::DeviceRadixSort::SortPairsDescending(tmp.get(), bytes, keys, skeys, pos, spos, items, 0,
                                                         kBits, s));
  } else {
    TCU_TRY(a, cub::DeviceSegmentedRadixSort::SortPairsDescending(
                   tmp.get(), bytes, keys, skeys, pos, spos, items, segs, offsets, offsets + 1, 0, kBits, s));
  }
  const unsigned wgrid = grid_cap(std::min<int64_t>(ceil_div(rows * k, 256), 32LL * sms));
  topk_write_kernel<T><<<wgrid, 256, 0, s>>>(x, spos, rows, n, inner, k, values, indices);
  return check_launch(a, "topk_write_kernel");
}

template <class T>
int32_t topk_typed(const TsrKernelArgs* a, int64_t outer, int64_t n, int64_t inner, int64_t k, bool largest) {
  const T* x = static_cast<const T*>(a->inputs[0].data);
  T* values = static_cast<T*>(a->outputs[0].data);
  int64_t* indices = static_cast<int64_t*>(a->outputs[1].data);
  const int64_t rows = outer * inner;
  if (k > kCap) return topk_sorted<T>(a, x, values, indices, rows, n, inner, k, largest);
  using U = typename KeyOf<T>::U;
  const int threads = n >= 4096 ? 1024 : n >= 256 ? 256 : static_cast<int>(ceil_div(n, 32) * 32);
  // The row's keys in shared memory when they fit beside the static arrays.
  const int dev = device_of(a);
  int optin = 0;
  if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();
    optin = 48 * 1024;
  }
  cudaFuncAttributes fa{};
  TCU_TRY(a, cudaFuncGetAttributes(&fa, topk_block_kernel<T, true>));
  const size_t cache = static_cast<size_t>(n) * sizeof(U);
  if (cache + fa.sharedSizeBytes <= static_cast<size_t>(optin)) {
    if (cache + fa.sharedSizeBytes > 48 * 1024)
      TCU_TRY(a, cudaFuncSetAttribute(topk_block_kernel<T, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(cache)));
    topk_block_kernel<T, true><<<grid_cap(rows), threads, cache, stream_of(a)>>>(
        x, values, indices, rows, n, inner, static_cast<int>(k), largest);
  } else {
    topk_block_kernel<T, false><<<grid_cap(rows), threads, 0, stream_of(a)>>>(
        x, values, indices, rows, n, inner, static_cast<int>(k), largest);
  }
  return check_launch(a, "topk_block_kernel");
}

}  // namespace

int32_t kernel_topk(const TsrKernelArgs* a) {
  if (a->num_inputs != 1 || a->num_outputs != 2)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected x and outputs values, indices (got %d inputs, %d outputs)", a->num_inputs,
                a->num_outputs);
  const TsrTensorDesc &x = a->inputs[0], &vals = a->outputs[0], &idx = a->outputs[1];
  const int64_t dim = a->attrs->dim, k = a->attrs->index;
  if (dim < 0 || dim >= (x.ndim > 0 ? x.ndim : 1))
    return fail(a, TSR_ERR_INDEX, "dim %lld out of range for %s", static_cast<long long>(dim),
                ShapeText(x).s);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x.sizes[d];
  for (int64_t d = dim + 1; d < x.ndim; ++d) inner *= x.sizes[d];
  const int64_t n = x.ndim > 0 ? x.sizes[dim] : 1;
  if (k < 1 || k > n)
    return fail(a, TSR_ERR_INDEX, "k = %lld out of range for a dim of size %lld", static_cast<long long>(k),
                static_cast<long long>(n));
  if (n >= (int64_t{1} << 31) - 1)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "rows of %lld elements are too long", static_cast<long long>(n));
  bool shapes_ok = is_contiguous(x) && is_contiguous(vals) && is_contiguous(idx) && vals.dtype == x.dtype &&
                   idx.dtype == TSR_INT64 && vals.ndim == x.ndim && idx.ndim == x.ndim;
  for (int d = 0; shapes_ok && d < x.ndim; ++d) {
    const int64_t want = d == dim ? k : x.sizes[d];
    shapes_ok = vals.sizes[d] == want && idx.sizes[d] == want;
  }
  if (!shapes_ok)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected contiguous x %s, values of x's dtype and int64 indices with size %lld on dim %lld "
                "(got %s, %s)",
                ShapeText(x).s, static_cast<long long>(k), static_cast<long long>(dim), ShapeText(vals).s,
                ShapeText(idx).s);
  const bool largest = a->attrs->hp[0] != 0;
  int32_t status = TSR_OK;
  const bool known = dispatch_dtype(x.dtype, [&](auto z) {
    using T = decltype(z);
    if constexpr (std::is_same_v<T, bool>)
      status = fail(a, TSR_ERR_NOT_IMPLEMENTED, "bool is not supported");
    else
      status = topk_typed<T>(a, outer, n, inner, k, largest);
  });
  if (!known) return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", x.dtype);
  return status;
}

}  // namespace tcu
