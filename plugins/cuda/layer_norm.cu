// LayerNorm of the CUDA plugin (ops.def NN): layer_norm(x[R,C] [, w[C] [, b[C]]]) -> y[R,C],
// mean[R], rstd[R] and layer_norm_backward(grad[R,C], x, mean, rstd [, w]) -> dx [, dw, db].
// Statistics in float32 (float64 for float64); the variance is biased; y = (x - mean) * rstd
// * w + b with rstd = 1 / sqrt(var + eps).
//
// Paths (operands are contiguous; the register paths need 16-byte aligned rows):
//  - registers: a row is read once into registers as 16-byte vectors and written once; a warp
//    per row for short rows, else a block of up to 1024 threads per row. The mean, then the
//    sum of squared deviations from registers (two passes, no cancellation).
//    The backward runs whole warps per row (<= 512 threads, about 256 threads a block: several
//    rows a block for short rows) holding grad and x of the row in registers; it writes dx
//    and accumulates dw/db of its own columns over the rows it visits; a block's rows add
//    their partials in row order in shared memory, every block writes one partial row
//    [2][C], and layer_norm_dwdb_kernel adds those rows in block order: dw/db are
//    deterministic (no float atomics) for a given shape and GPU.
//  - generic (any other width or alignment): a warp or block per row reading the row from
//    memory three times (forward) or twice (dx); dw/db from a column kernel over row chunks
//    into partial rows, added by the same layer_norm_dwdb_kernel.
#include <cmath>
#include <optional>

#include "nn_common.cuh"

namespace tcu {
namespace {
using namespace nn;

constexpr int kFwdWarpBlock = 128;   // forward warp-per-row kernels: 4 rows a block
constexpr int kBwdMaxThreads = 512;  // backward register kernel: at most 512 threads a block
constexpr int kGenericBlock = 256;   // generic block-per-row kernels

// ---------------------------------------------------------------------------------------
// Forward

// Registers: row r is x + r * C, C = nvec * E; a group (warp, or the block) per row; thread t
// holds vectors t, t + G, ... (kVPT of them).
template <class T, bool kWarp, int kVPT>
__global__ void __launch_bounds__(kWarp ? kFwdWarpBlock : 1024)
    layer_norm_forward_reg_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                                  T* __restrict__ y, acc_t<T>* __restrict__ mean, acc_t<T>* __restrict__ rstd,
                                  int64_t rows, int nvec, acc_t<T> eps) {
  using A = acc_t<T>;
  constexpr int E = 16 / sizeof(T);
  using V = Vec<T, E>;
  __shared__ A smem[32];
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  const int64_t C = static_cast<int64_t>(nvec) * E;
  for (int64_t r = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0); r < rows;
       r += gridDim.x * per_block) {
    const V* xr = reinterpret_cast<const V*>(x + r * C);
    A v[kVPT][E];
    A s = 0;
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      const int j = t + k * G;
      V raw;
      if (j < nvec) raw = xr[j];
#pragma unroll
      for (int e = 0; e < E; ++e) {
        v[k][e] = j < nvec ? cast<A>(raw.v[e]) : A(0);
        s += v[k][e];
      }
    }
    const A mu = group_sum<kWarp>(s, smem) / A(C);
    A q = 0;
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      if (t + k * G < nvec) {
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const A d = v[k][e] - mu;
          q += d * d;
        }
      }
    }
    const A rs = A(1) / sqrt(group_sum<kWarp>(q, smem) / A(C) + eps);
    V* yr = reinterpret_cast<V*>(y + r * C);
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      const int j = t + k * G;
      if (j < nvec) {
        V wv, bv, o;
        if (w) wv = reinterpret_cast<const V*>(w)[j];
        if (b) bv = reinterpret_cast<const V*>(b)[j];
#pragma unroll
        for (int e = 0; e < E; ++e) {
          A h = (v[k][e] - mu) * rs;
          if (w) h = h * cast<A>(wv.v[e]);
          if (b) h = h + cast<A>(bv.v[e]);
          o.v[e] = cast<T>(h);
        }
        yr[j] = o;
      }
    }
    if (t == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// Any width: a group per row, the row read three times (sum, squared deviations, write).
template <class T, bool kWarp>
__global__ void __launch_bounds__(kWarp ? kFwdWarpBlock : kGenericBlock)
    layer_norm_forward_generic_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                      const T* __restrict__ b, T* __restrict__ y, acc_t<T>* __restrict__ mean,
                                      acc_t<T>* __restrict__ rstd, int64_t rows, int64_t C, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  for (int64_t r = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0); r < rows;
       r += gridDim.x * per_block) {
    const T* xr = x + r * C;
    A s = 0;
    for (int64_t c = t; c < C; c += G) s += cast<A>(xr[c]);
    const A mu = group_sum<kWarp>(s, smem) / A(C);
    A q = 0;
    for (int64_t c = t; c < C; c += G) {
      const A d = cast<A>(xr[c]) - mu;
      q += d * d;
    }
    const A rs = A(1) / sqrt(group_sum<kWarp>(q, smem) / A(C) + eps);
    T* yr = y + r * C;
    for (int64_t c = t; c < C; c += G) {
      A h = (cast<A>(xr[c]) - mu) * rs;
      if (w) h = h * cast<A>(w[c]);
      if (b) h = h + cast<A>(b[c]);
      yr[c] = cast<T>(h);
    }
    if (t == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Backward. With xh = (x - mean) * rstd and gw = grad * w (grad without w):
//   dx = rstd * (gw - mean_c(gw) - xh * mean_c(gw * xh)),  dw = sum_r grad * xh,  db = sum_r grad.

// Registers: blockDim.x threads (whole warps) per row, blockDim.y rows at a time; thread t
// of a row holds vectors t, t + blockDim.x, ... (kVPT of them) of grad and x, and w, dw and db
// of those columns. partial (with w) is [gridDim.x][2][C]: the block's dw then db. With
// blockDim.y > 1, dynamic shared memory of 2 * C accumulators.
template <class T, int kVPT>
__global__ void __launch_bounds__(kBwdMaxThreads, 2)
    layer_norm_backward_reg_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                   const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd,
                                   const T* __restrict__ w, T* __restrict__ dx,
                                   acc_t<T>* __restrict__ partial, int64_t rows, int nvec) {
  using A = acc_t<T>;
  constexpr int E = 16 / sizeof(T);
  using V = Vec<T, E>;
  __shared__ A red[2][kBwdMaxThreads / 32];  // per-warp sums
  extern __shared__ unsigned char dyn_smem[];
  const int G = static_cast<int>(blockDim.x), t = static_cast<int>(threadIdx.x),
            gy = static_cast<int>(threadIdx.y);
  const int RB = static_cast<int>(blockDim.y);
  const int wpr = G / 32;  // warps per row
  const int64_t C = static_cast<int64_t>(nvec) * E;
  const bool affine = w != nullptr;

  A wv[kVPT][E], pw[kVPT][E], pb[kVPT][E];  // w of this thread's columns; dw, db partials
#pragma unroll
  for (int k = 0; k < kVPT; ++k) {
    const int j = t + k * G;
    V raw;
    if (affine && j < nvec) raw = reinterpret_cast<const V*>(w)[j];
#pragma unroll
    for (int e = 0; e < E; ++e) {
      wv[k][e] = affine && j < nvec ? cast<A>(raw.v[e]) : A(1);
      pw[k][e] = 0;
      pb[k][e] = 0;
    }
  }

  auto load_row = [&](int64_t r, V(&gv)[kVPT], V(&xv)[kVPT]) {
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      const int j = t + k * G;
      if (r < rows && j < nvec) {
        gv[k] = reinterpret_cast<const V*>(g + r * C)[j];
        xv[k] = reinterpret_cast<const V*>(x + r * C)[j];
      }
    }
  };
  const int64_t stride = static_cast<int64_t>(gridDim.x) * RB;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * RB; base < rows; base += stride) {
    const int64_t r = base + gy;  // uniform loop: every thread reaches the barriers
    const bool active = r < rows;
    V graw[kVPT], xraw[kVPT];  // the row's grad and x
    load_row(r, graw, xraw);
    const A mu = active ? mean[r] : A(0), rs = active ? rstd[r] : A(0);
    A s1 = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      if (active && t + k * G < nvec) {
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const A gv = cast<A>(graw[k].v[e]);
          const A xh = (cast<A>(xraw[k].v[e]) - mu) * rs;
          const A gw = gv * wv[k][e];
          s1 += gw;
          s2 += gw * xh;
          if (affine) {
            pw[k][e] += gv * xh;
            pb[k][e] += gv;
          }
        }
      }
    }
    s1 = warp_sum(s1);
    s2 = warp_sum(s2);
    if (wpr > 1) {  // add the row's warps in order
      const int first = gy * wpr;
      if ((t & 31) == 0) {
        red[0][first + t / 32] = s1;
        red[1][first + t / 32] = s2;
      }
      __syncthreads();
      s1 = red[0][first];
      s2 = red[1][first];
      for (int q = 1; q < wpr; ++q) {
        s1 += red[0][first + q];
        s2 += red[1][first + q];
      }
      __syncthreads();
    }
    if (!active) continue;
    const A c1 = s1 / A(C), c2 = s2 / A(C);
    V* dr = reinterpret_cast<V*>(dx + r * C);
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      const int j = t + k * G;
      if (j < nvec) {
        V o;
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const A xh = (cast<A>(xraw[k].v[e]) - mu) * rs;
          const A gw = cast<A>(graw[k].v[e]) * wv[k][e];
          o.v[e] = cast<T>(rs * (gw - c1 - xh * c2));
        }
        dr[j] = o;
      }
    }
  }

  if (!affine) return;
  A* out = partial + static_cast<int64_t>(blockIdx.x) * 2 * C;
  if (RB == 1) {  // each thread writes its own columns
#pragma unroll
    for (int k = 0; k < kVPT; ++k) {
      const int j = t + k * G;
      if (j < nvec) {
#pragma unroll
        for (int e = 0; e < E; ++e) {
          const int64_t c = static_cast<int64_t>(j) * E + e;
          out[c] = pw[k][e];
          out[C + c] = pb[k][e];
        }
      }
    }
    return;
  }
  // The block's rows add their partials into shared memory in row order.
  A* acc = reinterpret_cast<A*>(dyn_smem);  // [2][C]
  for (int q = 0; q < RB; ++q) {
    if (gy == q) {
#pragma unroll
      for (int k = 0; k < kVPT; ++k) {
        const int j = t + k * G;
        if (j < nvec) {
#pragma unroll
          for (int e = 0; e < E; ++e) {
            const int64_t c = static_cast<int64_t>(j) * E + e;
            acc[c] = q == 0 ? pw[k][e] : acc[c] + pw[k][e];
            acc[C + c] = q == 0 ? pb[k][e] : acc[C + c] + pb[k][e];
          }
        }
      }
    }
    __syncthreads();
  }
  for (int64_t i = static_cast<int64_t>(gy) * G + t; i < 2 * C; i += static_cast<int64_t>(G) * RB)
    out[i] = acc[i];
}

// Any width: dx only, a group per row reading grad and x twice.
template <class T, bool kWarp>
__global__ void __launch_bounds__(kWarp ? kFwdWarpBlock : kGenericBlock)
    layer_norm_backward_generic_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                       const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd,
                                       const T* __restrict__ w, T* __restrict__ dx, int64_t rows, int64_t C) {
  using A = acc_t<T>;
  __shared__ A smem[32];
  const int G = kWarp ? 32 : static_cast<int>(blockDim.x);
  const int t = kWarp ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  const int64_t per_block = kWarp ? blockDim.x / 32 : 1;
  for (int64_t r = blockIdx.x * per_block + (kWarp ? threadIdx.x / 32 : 0); r < rows;
       r += gridDim.x * per_block) {
    const T* gr = g + r * C;
    const T* xr = x + r * C;
    const A mu = mean[r], rs = rstd[r];
    A s1 = 0, s2 = 0;
    for (int64_t c = t; c < C; c += G) {
      const A gw = cast<A>(gr[c]) * (w ? cast<A>(w[c]) : A(1));
      s1 += gw;
      s2 += gw * ((cast<A>(xr[c]) - mu) * rs);
    }
    const A c1 = group_sum<kWarp>(s1, smem) / A(C);
    const A c2 = group_sum<kWarp>(s2, smem) / A(C);
    T* dr = dx + r * C;
    for (int64_t c = t; c < C; c += G) {
      const A gw = cast<A>(gr[c]) * (w ? cast<A>(w[c]) : A(1));
      const A xh = (cast<A>(xr[c]) - mu) * rs;
      dr[c] = cast<T>(rs * (gw - c1 - xh * c2));
    }
  }
}

// dw/db partials by columns: block (32, 8) covers 32 columns of the row chunk blockIdx.y
// (rows [y * rows_per_chunk, ...)); writes partial[blockIdx.y][2][C].
constexpr int kColSlices = 8;
template <class T>
__global__ void __launch_bounds__(32 * kColSlices)
    layer_norm_backward_cols_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                    const acc_t<T>* __restrict__ mean, const acc_t<T>* __restrict__ rstd,
                                    acc_t<T>* __restrict__ partial, int64_t rows, int64_t C,
                                    int64_t rows_per_chunk) {
  using A = acc_t<T>;
  __shared__ A sw[kColSlices][33], sb[kColSlices][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  A pw = 0, pb = 0;
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColSlices) {
      const A gv = cast<A>(g[r * C + c]);
      pw += gv * ((cast<A>(x[r * C + c]) - mean[r]) * rstd[r]);
      pb += gv;
    }
  }
  sw[threadIdx.y][threadIdx.x] = pw;
  sb[threadIdx.y][threadIdx.x] = pb;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    A tw = sw[0][threadIdx.x], tb = sb[0][threadIdx.x];
    for (int q = 1; q < kColSlices; ++q) {
      tw += sw[q][threadIdx.x];
      tb += sb[q][threadIdx.x];
    }
    A* out = partial + static_cast<int64_t>(blockIdx.y) * 2 * C;
    out[c] = tw;
    out[C + c] = tb;
  }
}

// dw[c], db[c] = the sums of partial[p][0][c], partial[p][1][c] over p in a fixed order:
// block (32, 32) covers 32 of the 2C columns; slice y adds p = y, y + 32, ...; slices are
// then added in order.
constexpr int kSumSlices = 32;
template <class T>
__global__ void __launch_bounds__(32 * kSumSlices)
    layer_norm_dwdb_kernel(const acc_t<T>* __restrict__ partial, int64_t P, int64_t C, T* __restrict__ dw,
                           T* __restrict__ db) {
  using A = acc_t<T>;
  __shared__ A sh[kSumSlices][33];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;  // 0 .. 2C-1
  A s = 0;
  if (col < 2 * C) {
#pragma unroll 4
    for (int64_t p = threadIdx.y; p < P; p += kSumSlices) s += partial[p * 2 * C + col];
  }
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < 2 * C) {
    A tot = sh[0][threadIdx.x];
    for (int q = 1; q < kSumSlices; ++q) tot += sh[q][threadIdx.x];
    if (col < C)
      dw[col] = cast<T>(tot);
    else
      db[col - C] = cast<T>(tot);
  }
}

// ---------------------------------------------------------------------------------------
// Host side

// Register-path plan for rows of nvec vectors: a warp per row with vpt vectors a lane, or a
// block of `threads` per row with vpt vectors a thread; vpt 0: no register path.
struct RegPlan {
  bool warp = false;
  int vpt = 0;
  int threads = 0;
};
// max_warp / max_block: the most vectors a lane / a block thread may hold (powers of two).
RegPlan plan_rows(int64_t nvec, int max_warp, int max_block) {
  RegPlan p;
  if (nvec <= 32LL * max_warp) {
    p.warp = true;
    p.vpt = 1;
    while (nvec > 32LL * p.vpt) p.vpt *= 2;
    return p;
  }
  if (nvec > 1024LL * max_block) return p;
  p.vpt = 1;
  while (nvec > 512LL * p.vpt && p.vpt < max_block) p.vpt *= 2;
  p.threads = static_cast<int>(ceil_div(ceil_div(nvec, p.vpt), 32) * 32);
  return p;
}

// Calls f(std::integral_constant<int, v>) for v in {1, 2, 4, 8} (v <= kMax).
template <int kMax, class F>
void with_vpt(int v, F&& f) {
  if (v <= 1)
    f(std::integral_constant<int, 1>{});
  else if (v == 2) {
    if constexpr (kMax >= 2) f(std::integral_constant<int, 2>{});
  } else if (v == 4) {
    if constexpr (kMax >= 4) f(std::integral_constant<int, 4>{});
  } else {
    if constexpr (kMax >= 8) f(std::integral_constant<int, 8>{});
  }
}

struct LnOperands {
  int64_t R, C;
  const void *x, *w, *b;          // forward
  const void *g, *mean, *rstd;    // backward (x, w shared)
  void *y, *out_mean, *out_rstd;  // forward outputs
  void *dx, *dw, *db;             // backward outputs
};

template <class T>
int32_t forward_typed(const TsrKernelArgs* a, const LnOperands& o, double eps_d) {
  using A = acc_t<T>;
  constexpr int E = 16 / sizeof(T);
  constexpr int kVals = sizeof(A) == 8 ? 16 : 32;  // values a lane holds (warp path)
  constexpr int kMaxW = kVals / E, kMaxB = kVals / 2 / E;
  const cudaStream_t s = stream_of(a);
  const T* x = static_cast<const T*>(o.x);
  const T* w = static_cast<const T*>(o.w);
  const T* b = static_cast<const T*>(o.b);
  T* y = static_cast<T*>(o.y);
  A* mean = static_cast<A*>(o.out_mean);
  A* rstd = static_cast<A*>(o.out_rstd);
  const A eps = static_cast<A>(eps_d);
  const bool aligned =
      aligned_to(x, 16) && aligned_to(y, 16) && (!w || aligned_to(w, 16)) && (!b || aligned_to(b, 16));
  const RegPlan p = aligned && o.C % E == 0 ? plan_rows(o.C / E, kMaxW, kMaxB) : RegPlan{};
  if (p.vpt > 0) {
    const int nvec = static_cast<int>(o.C / E);
    if (p.warp) {
      const unsigned grid = grid_cap(ceil_div(o.R, kFwdWarpBlock / 32));
      with_vpt<kMaxW>(p.vpt, [&](auto v) {
        layer_norm_forward_reg_kernel<T, true, decltype(v)::value>
            <<<grid, kFwdWarpBlock, 0, s>>>(x, w, b, y, mean, rstd, o.R, nvec, eps);
      });
    } else {
      with_vpt<kMaxB>(p.vpt, [&](auto v) {
        layer_norm_forward_reg_kernel<T, false, decltype(v)::value>
            <<<grid_cap(o.R), p.threads, 0, s>>>(x, w, b, y, mean, rstd, o.R, nvec, eps);
      });
    }
    return check_launch(a, "layer_norm_forward_reg_kernel");
  }
  if (o.C <= 1024)
    layer_norm_forward_generic_kernel<T, true>
        <<<grid_cap(ceil_div(o.R, kFwdWarpBlock / 32)), kFwdWarpBlock, 0, s>>>(x, w, b, y, mean, rstd, o.R,
                                                                               o.C, eps);
  else
    layer_norm_forward_generic_kernel<T, false>
        <<<grid_cap(o.R), kGenericBlock, 0, s>>>(x, w, b, y, mean, rstd, o.R, o.C, eps);
  return check_launch(a, "layer_norm_forward_generic_kernel");
}

// Blocks of `threads` a kernel keeps resident per SM (at least 1, at most `cap`).
template <class K>
int resident_blocks(K kernel, int threads, size_t smem, int cap) {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) != cudaSuccess) {
    cudaGetLastError();
    n = 1;
  }
  return n < 1 ? 1 : (n > cap ? cap : n);
}

template <class T>
int32_t dwdb_finish(const TsrKernelArgs* a, const acc_t<T>* partial, int64_t P, const LnOperands& o) {
  const dim3 block(32, kSumSlices);
  layer_norm_dwdb_kernel<T><<<grid_cap(ceil_div(2 * o.C, 32)), block, 0, stream_of(a)>>>(
      partial, P, o.C, static_cast<T*>(o.dw), static_cast<T*>(o.db));
  return check_launch(a, "layer_norm_dwdb_kernel");
}

// Backward register-path plan: rows of nvec vectors, vpt vectors a thread (at most 32 bytes
// of accumulators per tensor a thread), `threads` (whole warps, <= 512) per row, `rows` rows a
// block (about 256 threads); vpt 0: no register path.
struct BwdPlan {
  int vpt = 0, threads = 0, rows = 1;
};
BwdPlan plan_backward(int64_t nvec, int max_vpt) {
  BwdPlan p;
  int vpt = 1;
  while (ceil_div(nvec, vpt) > kBwdMaxThreads && vpt < max_vpt) vpt *= 2;
  const int64_t threads = ceil_div(ceil_div(nvec, vpt), 32) * 32;
  if (threads > kBwdMaxThreads) return p;
  p.vpt = vpt;
  p.threads = static_cast<int>(threads);
  p.rows = p.threads >= 256 ? 1 : 256 / p.threads;
  return p;
}

template <class T>
int32_t backward_typed(const TsrKernelArgs* a, const LnOperands& o) {
  using A = acc_t<T>;
  constexpr int E = 16 / sizeof(T);
  constexpr int kMaxVpt =
      32 / static_cast<int>(E * sizeof(A)) >= 1 ? 32 / static_cast<int>(E * sizeof(A)) : 1;
  const cudaStream_t s = stream_of(a);
  const int dev = device_of(a);
  const int sms = sm_count(dev) > 0 ? sm_count(dev) : 1;
  const T* g = static_cast<const T*>(o.g);
  const T* x = static_cast<const T*>(o.x);
  const T* w = static_cast<const T*>(o.w);
  const A* mean = static_cast<const A*>(o.mean);
  const A* rstd = static_cast<const A*>(o.rstd);
  T* dx = static_cast<T*>(o.dx);
  const bool affine = w != nullptr;
  const bool aligned =
      aligned_to(g, 16) && aligned_to(x, 16) && aligned_to(dx, 16) && (!w || aligned_to(w, 16));
  const BwdPlan p = aligned && o.C % E == 0 ? plan_backward(o.C / E, kMaxVpt) : BwdPlan{};
  if (p.vpt > 0) {
    const int nvec = static_cast<int>(o.C / E);
    int32_t status = TSR_OK;
    with_vpt<kMaxVpt>(p.vpt, [&](auto v) {
      auto kernel = layer_norm_backward_reg_kernel<T, decltype(v)::value>;
      const dim3 block(p.threads, p.rows);
      const size_t smem = affine && p.rows > 1 ? static_cast<size_t>(2 * o.C) * sizeof(A) : 0;
      const int threads = p.threads * p.rows;
      int64_t grid = static_cast<int64_t>(sms) * resident_blocks(kernel, threads, smem, 2048 / threads);
      if (grid > ceil_div(o.R, p.rows)) grid = ceil_div(o.R, p.rows);
      std::optional<Scratch> partial;  // [grid][2][C]
      if (affine) {
        partial.emplace(dev, static_cast<size_t>(grid) * 2 * o.C * sizeof(A), s);
        if (!*partial) {
          status = fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld bytes of dw/db partial sums",
                        static_cast<long long>(grid * 2 * o.C * sizeof(A)));
          return;
        }
      }
      A* part = affine ? partial->as<A>() : nullptr;
      kernel<<<static_cast<unsigned>(grid), block, smem, s>>>(g, x, mean, rstd, w, dx, part, o.R, nvec);
      status = check_launch(a, "layer_norm_backward_reg_kernel");
      if (status == TSR_OK && affine) status = dwdb_finish<T>(a, part, grid, o);
    });
    return status;
  }
  // Generic: dx by rows, dw/db by columns.
  if (o.C <= 1024)
    layer_norm_backward_generic_kernel<T, true>
        <<<grid_cap(ceil_div(o.R, kFwdWarpBlock / 32)), kFwdWarpBlock, 0, s>>>(g, x, mean, rstd, w, dx, o.R,
                                                                               o.C);
  else
    layer_norm_backward_generic_kernel<T, false>
        <<<grid_cap(o.R), kGenericBlock, 0, s>>>(g, x, mean, rstd, w, dx, o.R, o.C);
  if (int32_t st = check_launch(a, "layer_norm_backward_generic_kernel")) return st;
  if (!affine) return TSR_OK;
  const int64_t col_blocks = ceil_div(o.C, 32);
  int64_t chunks = ceil_div(4LL * sms, col_blocks);  // about 4 blocks per SM in all
  if (chunks > ceil_div(o.R, 4 * kColSlices)) chunks = ceil_div(o.R, 4 * kColSlices);
  if (chunks > 65535) chunks = 65535;
  if (chunks < 1) chunks = 1;
  const int64_t rows_per_chunk = ceil_div(o.R, chunks);
  chunks = ceil_div(o.R, rows_per_chunk);
  Scratch partial(dev, static_cast<size_t>(chunks) * 2 * o.C * sizeof(A), s);
  if (!partial)
    return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of memory for %lld bytes of dw/db partial sums",
                static_cast<long long>(chunks * 2 * o.C * sizeof(A)));
  layer_norm_backward_cols_kernel<T>
      <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)), dim3(32, kColSlices), 0,
         s>>>(g, x, mean, rstd, partial.as<A>(), o.R, o.C, rows_per_chunk);
  if (int32_t st = check_launch(a, "layer_norm_backward_cols_kernel")) return st;
  return dwdb_finish<T>(a, partial.as<A>(), chunks, o);
}

// Checks that d is a contiguous tensor of `dtype` with sizes [n0] or [n0, n1] (n1 >= 0).
bool is_rows(const TsrTensorDesc& d, int32_t dtype, int64_t n0, int64_t n1 = -1) {
  if (d.dtype != dtype || !is_contiguous(d)) return false;
  if (n1 < 0) return d.ndim == 1 && d.sizes[0] == n0;
  return d.ndim == 2 && d.sizes[0] == n0 && d.sizes[1] == n1;
}

}  // namespace

int32_t kernel_layer_norm(const TsrKernelArgs* a) {
  if (a->num_inputs < 1 || a->num_inputs > 3 || a->num_outputs != 3)
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected x [, w [, b]] and outputs y, mean, rstd (got %d inputs, %d outputs)", a->num_inputs,
                a->num_outputs);
  const TsrTensorDesc& x = a->inputs[0];
  if (!is_float_dtype(x.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", x.dtype);
  if (x.ndim != 2 || !is_contiguous(x))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "x must be a contiguous [R, C] tensor (got %s)", ShapeText(x).s);
  const int64_t R = x.sizes[0], C = x.sizes[1];
  const int32_t sdt = stat_dtype(x.dtype);
  for (int i = 1; i < a->num_inputs; ++i)
    if (!is_rows(a->inputs[i], x.dtype, C))
      return fail(a, TSR_ERR_INVALID_ARGUMENT,
                  "%s must be a contiguous [%lld] tensor of x's dtype %d (got %s, dtype %d)",
                  i == 1 ? "w" : "b", static_cast<long long>(C), x.dtype, ShapeText(a->inputs[i]).s,
                  a->inputs[i].dtype);
  if (!is_rows(a->outputs[0], x.dtype, R, C) || !is_rows(a->outputs[1], sdt, R) ||
      !is_rows(a->outputs[2], sdt, R))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "outputs must be y %s of dtype %d and mean, rstd [%lld] of dtype %d", ShapeText(x).s, x.dtype,
                static_cast<long long>(R), sdt);
  LnOperands o{};
  o.R = R;
  o.C = C;
  o.x = x.data;
  o.w = a->num_inputs > 1 ? a->inputs[1].data : nullptr;
  o.b = a->num_inputs > 2 ? a->inputs[2].data : nullptr;
  o.y = a->outputs[0].data;
  o.out_mean = a->outputs[1].data;
  o.out_rstd = a->outputs[2].data;
  const double eps = a->attrs->hp[0];
  int32_t status = TSR_OK;
  dispatch_float(x.dtype, [&](auto z) { status = forward_typed<decltype(z)>(a, o, eps); });
  return status;
}

int32_t kernel_layer_norm_backward(const TsrKernelArgs* a) {
  const bool affine = a->num_inputs == 5;
  if ((a->num_inputs != 4 && a->num_inputs != 5) || a->num_outputs != (affine ? 3 : 1))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected grad, x, mean, rstd [, w] and outputs dx [, dw, db] (got %d inputs, %d outputs)",
                a->num_inputs, a->num_outputs);
  const TsrTensorDesc& x = a->inputs[1];
  if (!is_float_dtype(x.dtype))
    return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported (float dtypes only)", x.dtype);
  if (x.ndim != 2 || !is_contiguous(x))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "x must be a contiguous [R, C] tensor (got %s)", ShapeText(x).s);
  const int64_t R = x.sizes[0], C = x.sizes[1];
  const int32_t sdt = stat_dtype(x.dtype);
  if (!is_rows(a->inputs[0], x.dtype, R, C) || !is_rows(a->inputs[2], sdt, R) ||
      !is_rows(a->inputs[3], sdt, R) || (affine && !is_rows(a->inputs[4], x.dtype, C)))
    return fail(a, TSR_ERR_INVALID_ARGUMENT,
                "expected grad %s and x of dtype %d, mean and rstd [%lld] of dtype %d, w [%lld] (got grad "
                "%s, mean %s)",
                ShapeText(x).s, x.dtype, static_cast<long long>(R), sdt, static_cast<long long>(C),
                ShapeText(a->inputs[0]).s, ShapeText(a->inputs[2]).s);
  if (!is_rows(a->outputs[0], x.dtype, R, C) ||
      (affine && (!is_rows(a->outputs[1], x.dtype, C) || !is_rows(a->outputs[2], x.dtype, C))))
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "outputs must be dx %s [, dw, db [%lld]] of dtype %d",
                ShapeText(x).s, static_cast<long long>(C), x.dtype);
  LnOperands o{};
  o.R = R;
  o.C = C;
  o.g = a->inputs[0].data;
  o.x = x.data;
  o.mean = a->inputs[2].data;
  o.rstd = a->inputs[3].data;
  o.w = affine ? a->inputs[4].data : nullptr;
  o.dx = a->outputs[0].data;
  o.dw = affine ? a->outputs[1].data : nullptr;
  o.db = affine ? a->outputs[2].data : nullptr;
  int32_t status = TSR_OK;
  dispatch_float(x.dtype, [&](auto z) { status = backward_typed<decltype(z)>(a, o); });
  return status;
}

}  // namespace tcu
