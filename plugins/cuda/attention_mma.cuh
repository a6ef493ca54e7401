// Flash attention on tensor cores for float16/bfloat16 (mma.sync m16n8k16, float32
// accumulate; sm_80+), head dims 16/32/64/128. Three kernels, 4 warps each, every warp owning
// 16 rows of the block's tile:
//  - fwd_kernel:  a block per (b*h, 64 queries); loops over 64-key tiles of K/V (double-
//    buffered cp.async) with an online softmax; writes out and lse once. T x S never exists.
//  - dkdv_kernel: a block per (b*h, 64 keys); loops over query tiles (64, or 32 for D = 128)
//    recomputing P^T = exp(K Q^T * scale - lse) in registers; accumulates dV = (P*Z)^T dO and
//    dK = scale * dS^T Q, dS = P * (dP*Z - Di), dP = dO V^T. Each dK/dV row has one writer.
//  - dq_kernel:   a block per (b*h, 64 queries); loops over key tiles; dQ = scale * dS K.
// No float atomics, so the backward is deterministic. Shared memory tiles have rows of D + 8
// elements (16 bytes of padding make ldmatrix conflict-free); global rows must be 16-byte
// aligned (the host packs other layouts first). Fragment layouts are PTX's for
// mma.m16n8k16: lane = 4*g + t holds C rows g and g + 8, columns 2t and 2t + 1 of each 8-wide
// n-tile; two adjacent C n-tiles of P are exactly an A fragment of P for the next product.
#pragma once

#include <type_traits>

#include "attention_common.cuh"

namespace tcu {
namespace attn {
namespace mma {

constexpr int kThreads = 128;  // 4 warps
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFull = 0xffffffffu;

// ---------------------------------------------------------------------------------------
// PTX wrappers.
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldsm4_t(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
// d += a (16x16, row) * b (16x8, col)
template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, bf16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}
// Two floats -> one register of two T (lo in the low half: the smaller column).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<T, bf16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
}

// ---------------------------------------------------------------------------------------
// Tiles and fragments.

// Rows row0 .. row0 + kRows - 1 of a [rows, D] matrix (row stride ld elements, stride 1 on D)
// into shared memory with row stride kLd, by cp.async; rows >= limit are zero-filled.
template <class T, int D, int kRows, int kLd>
__device__ __forceinline__ void load_tile(T* sm, const T* g, int64_t ld, int row0, int limit) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
#pragma unroll
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const int row = row0 + r;
    const bool ok = row < limit;
    cp_async16(smem_addr(sm + r * kLd + col), ok ? g + static_cast<int64_t>(row) * ld + col : g, ok);
  }
}

// acc[n-tile][4] += A (16 rows of `a`, row-major in shared memory from row a_row) x B^T where
// B is kN*8 rows of `b` (row-major, from row 0): the "Q K^T" product, contracting over D.
// (Skipping fully masked n-tiles here was measured slower: the guards break the straight-line
// ldmatrix/mma schedule.)
template <class T, int D, int kN, int kLd>
__device__ __forceinline__ void mma_abt(float (&acc)[kN][4], const T* a, int a_row, const T* b, int lane) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t af[4];
    ldsm4(af, smem_addr(a + (a_row + (lane & 15)) * kLd + kk * 16 + (lane >> 4) * 8));
#pragma unroll
    for (int np = 0; np < kN / 2; ++np) {
      uint32_t bf[4];
      ldsm4(bf, smem_addr(b + (np * 16 + (lane & 7) + (lane >> 4) * 8) * kLd + kk * 16 + ((lane >> 3) & 1) * 8));
      mma16816<T>(acc[2 * np], af, bf[0], bf[1]);
      mma16816<T>(acc[2 * np + 1], af, bf[2], bf[3]);
    }
  }
}

// acc[D/8][4] += P (16 x kN*8, in registers as C fragments) x B where B is kN*8 rows of `b`
// (row-major [kN*8][D] in shared memory): the "P V" product.
template <class T, int D, int kN, int kLd>
__device__ __forceinline__ void mma_pb(float (&acc)[D / 8][4], const float (&pm)[kN][4], const T* b, int lane) {
#pragma unroll
  for (int kc = 0; kc < kN / 2; ++kc) {
    uint32_t af[4];
    af[0] = pack2<T>(pm[2 * kc][0], pm[2 * kc][1]);
    af[1] = pack2<T>(pm[2 * kc][2], pm[2 * kc][3]);
    af[2] = pack2<T>(pm[2 * kc + 1][0], pm[2 * kc + 1][1]);
    af[3] = pack2<T>(pm[2 * kc + 1][2], pm[2 * kc + 1][3]);
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t bf[4];
      ldsm4_t(bf, smem_addr(b + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLd + dp * 16 + (lane >> 4) * 8));
      mma16816<T>(acc[2 * dp], af, bf[0], bf[1]);
      mma16816<T>(acc[2 * dp + 1], af, bf[2], bf[3]);
    }
  }
}

// Writes a warp's 16 x D accumulator rows (times row_scale[0] for row g, [1] for g + 8) as
// T to dst rows row0 .. row0 + 15 (contiguous, row length D, rows >= limit skipped), staged
// through the warp's own 16 rows of shared memory `stage` (row stride kLd).
template <class T, int D, int kLd>
__device__ __forceinline__ void store_rows(T* dst, int row0, int limit, const float (&acc)[D / 8][4],
                                           const float (&row_scale)[2], T* stage, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int dn = 0; dn < D / 8; ++dn) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      *reinterpret_cast<uint32_t*>(stage + (g + 8 * r) * kLd + dn * 8 + 2 * t) =
          pack2<T>(acc[dn][2 * r] * row_scale[r], acc[dn][2 * r + 1] * row_scale[r]);
    }
  }
  __syncwarp();
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int c = lane; c < 16 * kChunks; c += 32) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    if (row0 + r < limit)
      *reinterpret_cast<uint4*>(dst + static_cast<int64_t>(row0 + r) * D + col) =
          *reinterpret_cast<const uint4*>(stage + r * kLd + col);
  }
}

// Dropout keep bits of this lane's elements of a 16 x 8*kN score tile with rows (queries)
// row0 + g (c = 0, 1) and row0 + g + 8 (c = 2, 3), columns (keys) j0 + 8*nt + 2t + (c & 1):
// bit 4*nt + c. With group4, lane L draws the 4 keys of group (row L/2, keys 4*(L%2)..+3)
// of every n-tile (one Philox call per 4 elements) and the bits move by two shuffles.
// Only n-tiles nt_lo <= nt < nt_hi are drawn (the others are fully masked; their bits are 0).
template <int kN>
__device__ __forceinline__ uint32_t keep_rows(const Params& p, int bh, int row0, int j0, int lane, int nt_lo,
                                              int nt_hi) {
  static_assert(kN <= 8, "32 bits of mask");
  const int g = lane >> 2, t = lane & 3;
  uint32_t bits = 0;
  if (p.group4) {
    uint32_t word = 0;
    const int r = lane >> 1, cg = lane & 1;
#pragma unroll
    for (int nt = 0; nt < kN; ++nt)
      if (nt >= nt_lo && nt < nt_hi)
        word |= keep_bits4(p, mask_index(p, bh, row0 + r, j0 + nt * 8 + cg * 4)) << (4 * nt);
    const uint32_t w_lo = __shfl_sync(kFull, word, 2 * g + (t >> 1));
    const uint32_t w_hi = __shfl_sync(kFull, word, 2 * (g + 8) + (t >> 1));
    const int sh = (t & 1) * 2;
#pragma unroll
    for (int nt = 0; nt < kN; ++nt) {
      bits |= ((w_lo >> (4 * nt + sh)) & 3u) << (4 * nt);
      bits |= ((w_hi >> (4 * nt + sh)) & 3u) << (4 * nt + 2);
    }
  } else {  // S % 4 != 0: a Philox call per element
#pragma unroll 1
    for (int nt = nt_lo; nt < nt_hi; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (keep_one(p, mask_index(p, bh, row0 + g + (c >> 1) * 8, j0 + nt * 8 + 2 * t + (c & 1))))
          bits |= 1u << (4 * nt + c);
  }
  return bits;
}

// The same for a transposed tile: rows are keys key0 + g (c = 0, 1) and key0 + g + 8 (c = 2,
// 3), columns queries i0 + 8*nt + 2t + (c & 1). With group4, lane L draws keys
// key0 + 4*(L/8) .. +3 of query i0 + 8*nt + L%8, and four shuffles move the bits.
template <int kN>
__device__ __forceinline__ uint32_t keep_cols(const Params& p, int bh, int key0, int i0, int lane, int nt_lo,
                                              int nt_hi) {
  static_assert(kN <= 8, "32 bits of mask");
  const int g = lane >> 2, t = lane & 3;
  uint32_t bits = 0;
  if (p.group4) {
    uint32_t word = 0;
    const int kg = lane >> 3, qc = lane & 7;
#pragma unroll
    for (int nt = 0; nt < kN; ++nt)
      if (nt >= nt_lo && nt < nt_hi)
        word |= keep_bits4(p, mask_index(p, bh, i0 + nt * 8 + qc, key0 + kg * 4)) << (4 * nt);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const uint32_t w = __shfl_sync(kFull, word, ((g >> 2) + (c >> 1) * 2) * 8 + 2 * t + (c & 1));
#pragma unroll
      for (int nt = 0; nt < kN; ++nt) bits |= ((w >> (4 * nt + (g & 3))) & 1u) << (4 * nt + c);
    }
  } else {  // S % 4 != 0: a Philox call per element
#pragma unroll 1
    for (int nt = nt_lo; nt < nt_hi; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        if (keep_one(p, mask_index(p, bh, i0 + nt * 8 + 2 * t + (c & 1), key0 + g + (c >> 1) * 8)))
          bits |= 1u << (4 * nt + c);
  }
  return bits;
}

// Sum over the 4 lanes of a quad (the lanes holding one row).
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFull, v, 1);
  return v + __shfl_xor_sync(kFull, v, 2);
}
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFull, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFull, v, 2));
}

// ---------------------------------------------------------------------------------------
// Forward.
template <class T, int D>
struct FwdCfg {
  static constexpr int kBr = 64, kBc = 64, kLd = D + 8;
  static constexpr size_t kSmem = static_cast<size_t>(kBr + 4 * kBc) * kLd * sizeof(T);  // Q, 2 x (K, V)
};

// grid (B*H, ceil(T/64)); the last query tiles (most keys under a causal mask) go first.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const Params p) {
  using C = FwdCfg<T, D>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kLd = C::kLd, kN = kBc / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBr][kLd]
  T* sK = sQ + kBr * kLd;                  // [2][kBc][kLd]
  T* sV = sK + 2 * kBc * kLd;              // [2][kBc][kLd]

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kBr;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;  // q is (T, D), row stride q_st
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + h * p.k_sh;  // k is (S, D)
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + h * p.v_sh;  // v is (S, D)
  const int n_keys = p.causal ? min(p.S, i0 + kBr) : p.S;
  const int n_tiles = (n_keys + kBc - 1) / kBc;
  const int wrow = warp * 16;          // the warp's first row in the tile
  const int row_g = i0 + wrow + g;     // this lane's query rows: row_g, row_g + 8
  const float sl2 = static_cast<float>(p.scale) * kLog2e;

  load_tile<T, D, kBr, kLd>(sQ, q, p.q_st, i0, p.T);
  load_tile<T, D, kBc, kLd>(sK, k, p.k_st, 0, p.S);
  load_tile<T, D, kBc, kLd>(sV, v, p.v_st, 0, p.S);
  cp_async_commit();

  float o[D / 8][4] = {};                       // out rows (unnormalized)
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (log2 units), lane-partial sums
  for (int it = 0; it < n_tiles; ++it) {
    const int buf = it & 1, j0 = it * kBc;
    __syncthreads();  // everyone is done with the other buffer
    if (it + 1 < n_tiles) {
      load_tile<T, D, kBc, kLd>(sK + (buf ^ 1) * kBc * kLd, k, p.k_st, j0 + kBc, p.S);
      load_tile<T, D, kBc, kLd>(sV + (buf ^ 1) * kBc * kLd, v, p.v_st, j0 + kBc, p.S);
    }
    cp_async_commit();
    cp_async_wait<1>();  // this tile (and Q) landed
    __syncthreads();
    const T* cK = sK + buf * kBc * kLd;
    const T* cV = sV + buf * kBc * kLd;

    // Philox draws for key pairs (16 keys) past S or, under the causal mask, past the warp's
    // last row are skipped
    int np_hi = min(kN / 2, (p.S - j0 + 15) / 16);
    if (p.causal) np_hi = min(np_hi, (i0 + wrow + 15 - j0) / 16 + 1);
    float s[kN][4] = {};  // scores, then probabilities
    mma_abt<T, D, kN, kLd>(s, sQ, wrow, cK, lane);

    const bool edge = j0 + kBc > p.S || (p.causal && j0 + kBc - 1 > i0 + wrow);
    float mx[2] = {-INFINITY, -INFINITY};  // the tile's row max of the raw scores
#pragma unroll
    for (int nt = 0; nt < kN; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        if (edge) {
          const int j = j0 + nt * 8 + 2 * t + (c & 1), i = row_g + (c >> 1) * 8;
          if (j >= p.S || (p.causal && j > i)) s[nt][c] = -INFINITY;
        }
        mx[c >> 1] = fmaxf(mx[c >> 1], s[nt][c]);
      }
    float mu[2], alpha[2], rs[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float mt = fmaxf(m[r], quad_max(mx[r]) * sl2);  // the running max, log2 units
      mu[r] = mt == -INFINITY ? 0.f : mt;
      alpha[r] = exp2f(m[r] - mu[r]);
      m[r] = mt;
    }
#pragma unroll
    for (int nt = 0; nt < kN; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float e = exp2f(fmaf(s[nt][c], sl2, -mu[c >> 1]));
        s[nt][c] = e;
        rs[c >> 1] += e;
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + rs[r];
#pragma unroll
    for (int dn = 0; dn < D / 8; ++dn)
#pragma unroll
      for (int c = 0; c < 4; ++c) o[dn][c] *= alpha[c >> 1];
    if (p.dropout) {  // dropped probabilities leave the product, not the sum
      const uint32_t keep = keep_rows<kN>(p, bh, i0 + wrow, j0, lane, 0, 2 * np_hi);
#pragma unroll
      for (int nt = 0; nt < kN; ++nt)
#pragma unroll
        for (int c = 0; c < 4; ++c)
          if (!((keep >> (4 * nt + c)) & 1u)) s[nt][c] = 0.f;
    }
    mma_pb<T, D, kN, kLd>(o, s, cV, lane);
  }

  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = quad_sum(l[r]);
    inv[r] = l[r] > 0.f ? static_cast<float>(p.keep_scale) / l[r] : 0.f;
    const int i = row_g + 8 * r;
    if (t == 0 && i < p.T) static_cast<float*>(p.lse)[static_cast<int64_t>(bh) * p.T + i] = (m[r] + log2f(l[r])) * kLn2;
  }
  cp_async_wait<0>();
  __syncthreads();
  store_rows<T, D, kLd>(static_cast<T*>(p.out) + static_cast<int64_t>(bh) * p.T * D, i0 + wrow, p.T, o, inv,
                        sQ + wrow * kLd, lane);
}

// ---------------------------------------------------------------------------------------
// Backward: dK and dV.
template <class T, int D>
struct DkvCfg {
  static constexpr int kBc = 64, kBr = D <= 64 ? 64 : 32, kLd = D + 8;
  // K, V, 2 x (Q, dO) tiles, then 2 x (lse*log2e, Di) rows of floats
  static constexpr size_t kSmem =
      static_cast<size_t>(2 * kBc + 4 * kBr) * kLd * sizeof(T) + 4 * kBr * sizeof(float);
};

// Query tile i0's rows of lse (times log2 e; +inf past T, so P = 0 there) and Di (0 past T).
template <int kBr>
__device__ __forceinline__ void load_row_stats(float* sl, float* sd, const Params& p, int bh, int i0) {
  for (int r = threadIdx.x; r < kBr; r += kThreads) {
    const int i = i0 + r;
    const int64_t at = static_cast<int64_t>(bh) * p.T + i;
    sl[r] = i < p.T ? static_cast<const float*>(p.lse_in)[at] * kLog2e : INFINITY;
    sd[r] = i < p.T ? static_cast<const float*>(p.delta)[at] : 0.f;
  }
}

// grid (B*H, ceil(S/64)); under a causal mask the first key tiles see the most queries.
// D <= 64: registers capped for 3 blocks per SM (168 for D = 64, no spills; 234 uncapped):
// 52 us instead of 62 on the GPT shape (H100).
template <class T, int D>
__global__ void __launch_bounds__(kThreads, D <= 64 ? 3 : 1) dkdv_kernel(const Params p) {
  using C = DkvCfg<T, D>;
  constexpr int kBc = C::kBc, kBr = C::kBr, kLd = C::kLd, kN = kBr / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);  // [kBc][kLd]
  T* sV = sK + kBc * kLd;                  // [kBc][kLd]
  T* sQ = sV + kBc * kLd;                  // [2][kBr][kLd]
  T* sG = sQ + 2 * kBr * kLd;              // [2][kBr][kLd] (dO)
  float* sL = reinterpret_cast<float*>(sG + 2 * kBr * kLd);  // [2][kBr]
  float* sD = sL + 2 * kBr;                                  // [2][kBr]

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int j0 = blockIdx.y * kBc;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;     // (T, D)
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + h * p.k_sh;     // (S, D)
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + h * p.v_sh;     // (S, D)
  const T* go = static_cast<const T*>(p.grad) + b * p.g_sb + h * p.g_sh;  // dO is (T, D)
  const int wrow = warp * 16, key0 = j0 + wrow;  // this lane's keys: key0 + g, key0 + g + 8
  const int t_begin = p.causal ? j0 / kBr : 0;    // earlier queries see none of these keys
  const int t_end = (p.T + kBr - 1) / kBr;
  const float sl2 = static_cast<float>(p.scale) * kLog2e;
  const float ks = static_cast<float>(p.keep_scale);

  load_tile<T, D, kBc, kLd>(sK, k, p.k_st, j0, p.S);
  load_tile<T, D, kBc, kLd>(sV, v, p.v_st, j0, p.S);
  if (t_begin < t_end) {
    load_tile<T, D, kBr, kLd>(sQ, q, p.q_st, t_begin * kBr, p.T);
    load_tile<T, D, kBr, kLd>(sG, go, p.g_st, t_begin * kBr, p.T);
    load_row_stats<kBr>(sL, sD, p, bh, t_begin * kBr);
  }
  cp_async_commit();

  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  for (int ti = t_begin; ti < t_end; ++ti) {
    const int buf = (ti - t_begin) & 1, i0 = ti * kBr;
    __syncthreads();
    if (ti + 1 < t_end) {
      load_tile<T, D, kBr, kLd>(sQ + (buf ^ 1) * kBr * kLd, q, p.q_st, i0 + kBr, p.T);
      load_tile<T, D, kBr, kLd>(sG + (buf ^ 1) * kBr * kLd, go, p.g_st, i0 + kBr, p.T);
      load_row_stats<kBr>(sL + (buf ^ 1) * kBr, sD + (buf ^ 1) * kBr, p, bh, i0 + kBr);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* cQ = sQ + buf * kBr * kLd;
    const T* cG = sG + buf * kBr * kLd;
    const float* cL = sL + buf * kBr;
    const float* cD = sD + buf * kBr;

    // no Philox draws for query pairs (16 queries) wholly before the warp's first key (causal)
    // or past T
    const int np_lo = p.causal ? max(0, min(kN / 2, (key0 - i0) / 16)) : 0;
    const int np_hi = min(kN / 2, (p.T - i0 + 15) / 16);
    float s[kN][4] = {}, dp[kN][4] = {};  // S^T and dP^T: rows keys, columns queries
    mma_abt<T, D, kN, kLd>(s, sK, wrow, cQ, lane);
    mma_abt<T, D, kN, kLd>(dp, sV, wrow, cG, lane);

    const bool edge = p.causal && i0 < key0 + 15;  // some query of the tile precedes some key
    uint32_t keep = ~0u;
    if (p.dropout) keep = keep_cols<kN>(p, bh, key0, i0, lane, 2 * np_lo, 2 * np_hi);
#pragma unroll
    for (int nt = 0; nt < kN; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int qi = nt * 8 + 2 * t + (c & 1);
        float x = fmaf(s[nt][c], sl2, -cL[qi]);
        if (edge && key0 + g + (c >> 1) * 8 > i0 + qi) x = -INFINITY;
        const float pr = exp2f(x);
        const bool kept = (keep >> (4 * nt + c)) & 1u;
        const float dpz = p.dropout ? (kept ? dp[nt][c] * ks : 0.f) : dp[nt][c];
        dp[nt][c] = pr * (dpz - cD[qi]);  // dS^T
        s[nt][c] = kept ? pr : 0.f;       // (P*mask)^T
      }
    mma_pb<T, D, kN, kLd>(dv, s, cG, lane);
    mma_pb<T, D, kN, kLd>(dk, dp, cQ, lane);
  }

  cp_async_wait<0>();
  __syncthreads();
  const float sv[2] = {ks, ks}, sk[2] = {static_cast<float>(p.scale), static_cast<float>(p.scale)};
  store_rows<T, D, kLd>(static_cast<T*>(p.dv) + static_cast<int64_t>(bh) * p.S * D, key0, p.S, dv, sv,
                        sV + wrow * kLd, lane);
  store_rows<T, D, kLd>(static_cast<T*>(p.dk) + static_cast<int64_t>(bh) * p.S * D, key0, p.S, dk, sk,
                        sK + wrow * kLd, lane);
}

// ---------------------------------------------------------------------------------------
// Backward: dQ.
template <class T, int D>
struct DqCfg {
  static constexpr int kBr = 64, kBc = 64, kLd = D + 8;
  static constexpr size_t kSmem = static_cast<size_t>(2 * kBr + 4 * kBc) * kLd * sizeof(T);  // Q, dO, 2 x (K, V)
};

// grid (B*H, ceil(T/64)); the last query tiles go first.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) dq_kernel(const Params p) {
  using C = DqCfg<T, D>;
  constexpr int kBr = C::kBr, kBc = C::kBc, kLd = C::kLd, kN = kBc / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBr][kLd]
  T* sG = sQ + kBr * kLd;                  // [kBr][kLd] (dO)
  T* sK = sG + kBr * kLd;                  // [2][kBc][kLd]
  T* sV = sK + 2 * kBc * kLd;              // [2][kBc][kLd]

  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kBr;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const T* q = static_cast<const T*>(p.q) + b * p.q_sb + h * p.q_sh;
  const T* k = static_cast<const T*>(p.k) + b * p.k_sb + h * p.k_sh;
  const T* v = static_cast<const T*>(p.v) + b * p.v_sb + h * p.v_sh;
  const T* go = static_cast<const T*>(p.grad) + b * p.g_sb + h * p.g_sh;
  const int n_keys = p.causal ? min(p.S, i0 + kBr) : p.S;
  const int n_tiles = (n_keys + kBc - 1) / kBc;
  const int wrow = warp * 16, row_g = i0 + wrow + g;
  const float sl2 = static_cast<float>(p.scale) * kLog2e;
  const float ks = static_cast<float>(p.keep_scale);

  load_tile<T, D, kBr, kLd>(sQ, q, p.q_st, i0, p.T);
  load_tile<T, D, kBr, kLd>(sG, go, p.g_st, i0, p.T);
  load_tile<T, D, kBc, kLd>(sK, k, p.k_st, 0, p.S);
  load_tile<T, D, kBc, kLd>(sV, v, p.v_st, 0, p.S);
  cp_async_commit();
  float lse2[2], di[2];  // rows row_g, row_g + 8
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_g + 8 * r;
    const int64_t at = static_cast<int64_t>(bh) * p.T + i;
    lse2[r] = i < p.T ? static_cast<const float*>(p.lse_in)[at] * kLog2e : 0.f;
    di[r] = i < p.T ? static_cast<const float*>(p.delta)[at] : 0.f;
  }

  float dq[D / 8][4] = {};
  for (int it = 0; it < n_tiles; ++it) {
    const int buf = it & 1, j0 = it * kBc;
    __syncthreads();
    if (it + 1 < n_tiles) {
      load_tile<T, D, kBc, kLd>(sK + (buf ^ 1) * kBc * kLd, k, p.k_st, j0 + kBc, p.S);
      load_tile<T, D, kBc, kLd>(sV + (buf ^ 1) * kBc * kLd, v, p.v_st, j0 + kBc, p.S);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* cK = sK + buf * kBc * kLd;
    const T* cV = sV + buf * kBc * kLd;

    int np_hi = min(kN / 2, (p.S - j0 + 15) / 16);  // as the forward's
    if (p.causal) np_hi = min(np_hi, (i0 + wrow + 15 - j0) / 16 + 1);
    float s[kN][4] = {}, dp[kN][4] = {};  // S and dP: rows queries, columns keys
    mma_abt<T, D, kN, kLd>(s, sQ, wrow, cK, lane);
    mma_abt<T, D, kN, kLd>(dp, sG, wrow, cV, lane);

    const bool edge = j0 + kBc > p.S || (p.causal && j0 + kBc - 1 > i0 + wrow);
    uint32_t keep = ~0u;
    if (p.dropout) keep = keep_rows<kN>(p, bh, i0 + wrow, j0, lane, 0, 2 * np_hi);
#pragma unroll
    for (int nt = 0; nt < kN; ++nt)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float x = fmaf(s[nt][c], sl2, -lse2[c >> 1]);
        if (edge) {
          const int j = j0 + nt * 8 + 2 * t + (c & 1), i = row_g + (c >> 1) * 8;
          if (j >= p.S || (p.causal && j > i)) x = -INFINITY;
        }
        const float pr = exp2f(x);
        const bool kept = (keep >> (4 * nt + c)) & 1u;
        const float dpz = p.dropout ? (kept ? dp[nt][c] * ks : 0.f) : dp[nt][c];
        s[nt][c] = pr * (dpz - di[c >> 1]);  // dS
      }
    mma_pb<T, D, kN, kLd>(dq, s, cK, lane);
  }

  cp_async_wait<0>();
  __syncthreads();
  const float sq[2] = {static_cast<float>(p.scale), static_cast<float>(p.scale)};
  store_rows<T, D, kLd>(static_cast<T*>(p.dq) + static_cast<int64_t>(bh) * p.T * D, i0 + wrow, p.T, dq, sq,
                        sQ + wrow * kLd, lane);
}

}  // namespace mma
}  // namespace attn
}  // namespace tcu
