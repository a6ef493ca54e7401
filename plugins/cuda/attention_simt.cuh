// Flash attention on CUDA cores for float32 and float64 (plain FMA in the input's precision, no
// TF32), head dims 16/32/64/128: the same three kernels as attention_mma.cuh (forward with an
// online softmax; dK/dV looping over query tiles; dQ looping over key tiles; no atomics),
// with square kB x kB score tiles held in shared memory (kB = 32 for float32, 16 for float64).
// 128 threads: thread (ty, tx) = (tid / 8, tid % 8) owns tile rows ty*kRT + r (r < kRT = kB/16)
// and columns tx + 8c (of the kB score columns, c < kB/8; of the D output columns, c < D/8),
// so a row's 8 owners are 8 adjacent lanes. Inputs may have any strides (stride 1 on D).
#pragma once

#include <type_traits>

#include "attention_common.cuh"

namespace tcu {
namespace attn {
namespace simt {

constexpr int kThreads = 128;
constexpr unsigned kFull = 0xffffffffu;

template <class A>
struct Tile {
  static constexpr int kB = std::is_same_v<A, double> ? 16 : 32;  // queries and keys per tile
  static constexpr int kRT = kB / 16, kCT = kB / 8;                // rows, score columns per thread
};

__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float lg(float x) { return logf(x); }
__device__ __forceinline__ double lg(double x) { return log(x); }
template <class A>
__device__ __forceinline__ A inf() {
  return static_cast<A>(INFINITY);
}

// Reductions over the 8 lanes owning a row.
template <class A>
__device__ __forceinline__ A row_max(A v) {
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) v = fmax(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
template <class A>
__device__ __forceinline__ A row_sum(A v) {
#pragma unroll
  for (int o = 1; o < 8; o <<= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

// Rows row0 .. row0 + kRows - 1 of a [rows, D] matrix (row stride ld) into shared memory
// (row stride D + 1); rows >= limit are zeros.
template <class A, int D, int kRows>
__device__ __forceinline__ void load_rows(A* sm, const A* g, int64_t ld, int row0, int limit) {
  for (int e = threadIdx.x; e < kRows * D; e += kThreads) {
    const int r = e / D, d = e % D, row = row0 + r;
    sm[r * (D + 1) + d] = row < limit ? g[static_cast<int64_t>(row) * ld + d] : A(0);
  }
}

// acc[r][c] = sum_d a[ty*kRT + r][d] * b[tx + 8c][d]   (a, b: row stride D + 1)
template <class A, int D>
__device__ __forceinline__ void dot_tile(A (&acc)[Tile<A>::kRT][Tile<A>::kCT], const A* a, const A* b, int ty,
                                         int tx) {
  constexpr int kRT = Tile<A>::kRT, kCT = Tile<A>::kCT;
#pragma unroll
  for (int r = 0; r < kRT; ++r)
#pragma unroll
    for (int c = 0; c < kCT; ++c) acc[r][c] = A(0);
#pragma unroll 8
  for (int d = 0; d < D; ++d) {
    A av[kRT], bv[kCT];
#pragma unroll
    for (int r = 0; r < kRT; ++r) av[r] = a[(ty * kRT + r) * (D + 1) + d];
#pragma unroll
    for (int c = 0; c < kCT; ++c) bv[c] = b[(tx + 8 * c) * (D + 1) + d];
#pragma unroll
    for (int r = 0; r < kRT; ++r)
#pragma unroll
      for (int c = 0; c < kCT; ++c) acc[r][c] = fma(av[r], bv[c], acc[r][c]);
  }
}

// acc[r][c] += sum_k m[ty*kRT + r][k] * n[k][tx + 8c]   (m: kB x kB, row stride kB + 1;
// n: kB x D, row stride D + 1)
template <class A, int D>
__device__ __forceinline__ void acc_tile(A (&acc)[Tile<A>::kRT][D / 8], const A* m, const A* n, int ty, int tx) {
  constexpr int kB = Tile<A>::kB, kRT = Tile<A>::kRT;
#pragma unroll 4
  for (int kk = 0; kk < kB; ++kk) {
    A mv[kRT];
#pragma unroll
    for (int r = 0; r < kRT; ++r) mv[r] = m[(ty * kRT + r) * (kB + 1) + kk];
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
      const A nv = n[kk * (D + 1) + tx + 8 * c];
#pragma unroll
      for (int r = 0; r < kRT; ++r) acc[r][c] = fma(mv[r], nv, acc[r][c]);
    }
  }
}

// Writes rows ty*kRT + r of acc * row_scale[r] to dst rows row0 + ... (< limit), contiguous.
template <class A, int D>
__device__ __forceinline__ void store_rows(A* dst, int row0, int limit, const A (&acc)[Tile<A>::kRT][D / 8],
                                           const A (&row_scale)[Tile<A>::kRT], int ty, int tx) {
#pragma unroll
  for (int r = 0; r < Tile<A>::kRT; ++r) {
    const int row = row0 + ty * Tile<A>::kRT + r;
    if (row >= limit) continue;
#pragma unroll
    for (int c = 0; c < D / 8; ++c) dst[static_cast<int64_t>(row) * D + tx + 8 * c] = acc[r][c] * row_scale[r];
  }
}

template <class A, int D>
constexpr size_t fwd_smem() {  // Q, K, V, P
  return (3 * Tile<A>::kB * (D + 1) + Tile<A>::kB * (Tile<A>::kB + 1)) * sizeof(A);
}
template <class A, int D>
constexpr size_t bwd_smem() {  // 4 row tiles, 2 score tiles, 2 rows of stats
  return (4 * Tile<A>::kB * (D + 1) + 2 * Tile<A>::kB * (Tile<A>::kB + 1) + 2 * Tile<A>::kB) * sizeof(A);
}

// grid (B*H, ceil(T/kB)); last query tiles first.
template <class A, int D>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const Params p) {
  constexpr int kB = Tile<A>::kB, kRT = Tile<A>::kRT, kCT = Tile<A>::kCT, kLd = D + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sQ = reinterpret_cast<A*>(smem_raw);  // [kB][kLd]
  A* sK = sQ + kB * kLd;                   // [kB][kLd]
  A* sV = sK + kB * kLd;                   // [kB][kLd]
  A* sP = sV + kB * kLd;                   // [kB][kB + 1]

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kB;
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
  const A* q = static_cast<const A*>(p.q) + b * p.q_sb + h * p.q_sh;  // (T, D)
  const A* k = static_cast<const A*>(p.k) + b * p.k_sb + h * p.k_sh;  // (S, D)
  const A* v = static_cast<const A*>(p.v) + b * p.v_sb + h * p.v_sh;  // (S, D)
  const int n_keys = p.causal ? min(p.S, i0 + kB) : p.S;
  const A scale = static_cast<A>(p.scale);

  load_rows<A, D, kB>(sQ, q, p.q_st, i0, p.T);
  A o[kRT][D / 8] = {};
  A m[kRT], l[kRT];
#pragma unroll
  for (int r = 0; r < kRT; ++r) m[r] = -inf<A>(), l[r] = A(0);

  for (int j0 = 0; j0 < n_keys; j0 += kB) {
    __syncthreads();  // the last tile's K, V and P are read
    load_rows<A, D, kB>(sK, k, p.k_st, j0, p.S);
    load_rows<A, D, kB>(sV, v, p.v_st, j0, p.S);
    __syncthreads();
    A s[kRT][kCT];
    dot_tile<A, D>(s, sQ, sK, ty, tx);
#pragma unroll
    for (int r = 0; r < kRT; ++r) {
      const int i = i0 + ty * kRT + r;
      A mx = m[r];
#pragma unroll
      for (int c = 0; c < kCT; ++c) {
        const int j = j0 + tx + 8 * c;
        s[r][c] = (j >= p.S || (p.causal && j > i)) ? -inf<A>() : s[r][c] * scale;
        mx = fmax(mx, s[r][c]);
      }
      mx = row_max(mx);
      const A mu = mx == -inf<A>() ? A(0) : mx;
      const A alpha = ex(m[r] - mu);
      m[r] = mx;
      A rs = A(0);
#pragma unroll
      for (int c = 0; c < kCT; ++c) {
        const A e = ex(s[r][c] - mu);
        rs += e;
        const int j = j0 + tx + 8 * c;
        const bool kept = !p.dropout || keep_one(p, mask_index(p, bh, i, j));
        sP[(ty * kRT + r) * (kB + 1) + tx + 8 * c] = kept ? e : A(0);
      }
      l[r] = l[r] * alpha + rs;
#pragma unroll
      for (int c = 0; c < D / 8; ++c) o[r][c] *= alpha;
    }
    __syncthreads();
    acc_tile<A, D>(o, sP, sV, ty, tx);
  }

  A inv[kRT];
#pragma unroll
  for (int r = 0; r < kRT; ++r) {
    l[r] = row_sum(l[r]);
    inv[r] = l[r] > A(0) ? static_cast<A>(p.keep_scale) / l[r] : A(0);
    const int i = i0 + ty * kRT + r;
    if (tx == 0 && i < p.T) static_cast<A*>(p.lse)[static_cast<int64_t>(bh) * p.T + i] = m[r] + lg(l[r]);
  }
  store_rows<A, D>(static_cast<A*>(p.out) + static_cast<int64_t>(bh) * p.T * D, i0, p.T, o, inv, ty, tx);
}

// dK, dV: grid (B*H, ceil(S/kB)).
template <class A, int D>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(const Params p) {
  constexpr int kB = Tile<A>::kB, kRT = Tile<A>::kRT, kCT = Tile<A>::kCT, kLd = D + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sK = reinterpret_cast<A*>(smem_raw);  // [kB][kLd]  keys
  A* sV = sK + kB * kLd;                   // [kB][kLd]
  A* sQ = sV + kB * kLd;                   // [kB][kLd]  queries
  A* sG = sQ + kB * kLd;                   // [kB][kLd]  dO
  A* sP = sG + kB * kLd;                   // [kB][kB + 1]  (P*mask)^T: rows keys, columns queries
  A* sS = sP + kB * (kB + 1);              // [kB][kB + 1]  dS^T
  A* sL = sS + kB * (kB + 1);              // [kB] lse of the tile's queries (+inf past T)
  A* sD = sL + kB;                         // [kB] Di (0 past T)

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int j0 = blockIdx.y * kB;
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
  const A* q = static_cast<const A*>(p.q) + b * p.q_sb + h * p.q_sh;
  const A* k = static_cast<const A*>(p.k) + b * p.k_sb + h * p.k_sh;
  const A* v = static_cast<const A*>(p.v) + b * p.v_sb + h * p.v_sh;
  const A* go = static_cast<const A*>(p.grad) + b * p.g_sb + h * p.g_sh;
  const A scale = static_cast<A>(p.scale), ks = static_cast<A>(p.keep_scale);

  load_rows<A, D, kB>(sK, k, p.k_st, j0, p.S);
  load_rows<A, D, kB>(sV, v, p.v_st, j0, p.S);
  A dk[kRT][D / 8] = {}, dv[kRT][D / 8] = {};
  for (int i0 = p.causal ? (j0 / kB) * kB : 0; i0 < p.T; i0 += kB) {
    __syncthreads();
    load_rows<A, D, kB>(sQ, q, p.q_st, i0, p.T);
    load_rows<A, D, kB>(sG, go, p.g_st, i0, p.T);
    for (int r = threadIdx.x; r < kB; r += kThreads) {
      const int i = i0 + r;
      const int64_t at = static_cast<int64_t>(bh) * p.T + i;
      sL[r] = i < p.T ? static_cast<const A*>(p.lse_in)[at] : inf<A>();
      sD[r] = i < p.T ? static_cast<const A*>(p.delta)[at] : A(0);
    }
    __syncthreads();
    A s[kRT][kCT], dp[kRT][kCT];
    dot_tile<A, D>(s, sK, sQ, ty, tx);
    dot_tile<A, D>(dp, sV, sG, ty, tx);
#pragma unroll
    for (int r = 0; r < kRT; ++r) {
      const int j = j0 + ty * kRT + r;
#pragma unroll
      for (int c = 0; c < kCT; ++c) {
        const int qc = tx + 8 * c, i = i0 + qc;
        const A pr = (p.causal && j > i) ? A(0) : ex(s[r][c] * scale - sL[qc]);
        const bool kept = !p.dropout || keep_one(p, mask_index(p, bh, i, j));
        const A dpz = p.dropout ? (kept ? dp[r][c] * ks : A(0)) : dp[r][c];
        sP[(ty * kRT + r) * (kB + 1) + qc] = kept ? pr : A(0);
        sS[(ty * kRT + r) * (kB + 1) + qc] = pr * (dpz - sD[qc]);
      }
    }
    __syncthreads();
    acc_tile<A, D>(dv, sP, sG, ty, tx);
    acc_tile<A, D>(dk, sS, sQ, ty, tx);
  }
  A sv[kRT], sk[kRT];
#pragma unroll
  for (int r = 0; r < kRT; ++r) sv[r] = ks, sk[r] = scale;
  store_rows<A, D>(static_cast<A*>(p.dv) + static_cast<int64_t>(bh) * p.S * D, j0, p.S, dv, sv, ty, tx);
  store_rows<A, D>(static_cast<A*>(p.dk) + static_cast<int64_t>(bh) * p.S * D, j0, p.S, dk, sk, ty, tx);
}

// dQ: grid (B*H, ceil(T/kB)); last query tiles first.
template <class A, int D>
__global__ void __launch_bounds__(kThreads) dq_kernel(const Params p) {
  constexpr int kB = Tile<A>::kB, kRT = Tile<A>::kRT, kCT = Tile<A>::kCT, kLd = D + 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* sQ = reinterpret_cast<A*>(smem_raw);  // [kB][kLd]
  A* sG = sQ + kB * kLd;                   // [kB][kLd]  dO
  A* sK = sG + kB * kLd;                   // [kB][kLd]
  A* sV = sK + kB * kLd;                   // [kB][kLd]
  A* sS = sV + kB * kLd;                   // [kB][kB + 1]  dS

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kB;
  const int ty = threadIdx.x >> 3, tx = threadIdx.x & 7;
  const A* q = static_cast<const A*>(p.q) + b * p.q_sb + h * p.q_sh;
  const A* k = static_cast<const A*>(p.k) + b * p.k_sb + h * p.k_sh;
  const A* v = static_cast<const A*>(p.v) + b * p.v_sb + h * p.v_sh;
  const A* go = static_cast<const A*>(p.grad) + b * p.g_sb + h * p.g_sh;
  const int n_keys = p.causal ? min(p.S, i0 + kB) : p.S;
  const A scale = static_cast<A>(p.scale), ks = static_cast<A>(p.keep_scale);

  load_rows<A, D, kB>(sQ, q, p.q_st, i0, p.T);
  load_rows<A, D, kB>(sG, go, p.g_st, i0, p.T);
  A lse[kRT], di[kRT];
#pragma unroll
  for (int r = 0; r < kRT; ++r) {
    const int i = i0 + ty * kRT + r;
    const int64_t at = static_cast<int64_t>(bh) * p.T + i;
    lse[r] = i < p.T ? static_cast<const A*>(p.lse_in)[at] : inf<A>();
    di[r] = i < p.T ? static_cast<const A*>(p.delta)[at] : A(0);
  }
  A dq[kRT][D / 8] = {};
  for (int j0 = 0; j0 < n_keys; j0 += kB) {
    __syncthreads();
    load_rows<A, D, kB>(sK, k, p.k_st, j0, p.S);
    load_rows<A, D, kB>(sV, v, p.v_st, j0, p.S);
    __syncthreads();
    A s[kRT][kCT], dp[kRT][kCT];
    dot_tile<A, D>(s, sQ, sK, ty, tx);
    dot_tile<A, D>(dp, sG, sV, ty, tx);
#pragma unroll
    for (int r = 0; r < kRT; ++r) {
      const int i = i0 + ty * kRT + r;
#pragma unroll
      for (int c = 0; c < kCT; ++c) {
        const int j = j0 + tx + 8 * c;
        const A pr = (j >= p.S || (p.causal && j > i)) ? A(0) : ex(s[r][c] * scale - lse[r]);
        const bool kept = !p.dropout || keep_one(p, mask_index(p, bh, i, j));
        const A dpz = p.dropout ? (kept ? dp[r][c] * ks : A(0)) : dp[r][c];
        sS[(ty * kRT + r) * (kB + 1) + tx + 8 * c] = pr * (dpz - di[r]);
      }
    }
    __syncthreads();
    acc_tile<A, D>(dq, sS, sK, ty, tx);
  }
  A sq[kRT];
#pragma unroll
  for (int r = 0; r < kRT; ++r) sq[r] = scale;
  store_rows<A, D>(static_cast<A*>(p.dq) + static_cast<int64_t>(bh) * p.T * D, i0, p.T, dq, sq, ty, tx);
}

}  // namespace simt
}  // namespace attn
}  // namespace tcu
