// Shared by the attention kernels (attention.cu, attention_mma.cuh, attention_simt.cuh): the
// launch parameters of one forward or backward call, and the dropout mask rule of ops.def
// (cuda_common.cuh's Philox4x32-10 as random.cu and the CPU plugin: element
// e = ((b*H + h)*T + i)*S + j takes counter offset + e/4, lane e%4, and is kept iff
// u = (x + 0.5) * 2^-32 < 1 - p, i.e. iff the lane's x < keep_below).
#pragma once

#include "cuda_common.cuh"

namespace tcu {
namespace attn {

// One attention call. q/k/v/grad/out are [B,H,rows,D] with the given element strides for
// b, h and the row (stride 1 on D); outputs are contiguous.
struct Params {
  // inputs (q is [B,H,T,D], k and v [B,H,S,D]; grad and out [B,H,T,D])
  const void* q;
  const void* k;
  const void* v;
  const void* grad;
  const void* out_in;  // the forward's output (backward only)
  const void* lse_in;  // [B,H,T] float (double for double) (backward only)
  int64_t q_sb, q_sh, q_st;
  int64_t k_sb, k_sh, k_st;
  int64_t v_sb, v_sh, v_st;
  int64_t g_sb, g_sh, g_st;
  int64_t o_sb, o_sh, o_st;
  // outputs (contiguous)
  void* out;    // [B,H,T,D]
  void* lse;    // [B,H,T]
  void* dq;     // [B,H,T,D]
  void* dk;     // [B,H,S,D]
  void* dv;     // [B,H,S,D]
  void* delta;  // [B,H,T] rowsum(grad * out), float (double for double): backward scratch
  int B, H, T, S;
  double scale;  // softmax scale (> 0)
  int causal;    // key j is seen by query i iff j <= i
  // dropout
  int dropout;         // p > 0
  int group4;          // S % 4 == 0: a row's keys 4m..4m+3 share one Philox call
  uint64_t seed, offset;
  uint64_t keep_below;  // keep iff the 32-bit Philox lane x < keep_below (<= 2^32)
  double keep_scale;    // 1 / (1 - p) (1 without dropout)
};

// Keep bits of elements e4 .. e4+3 (e4 % 4 == 0): bit l for element e4 + l.
__device__ __forceinline__ uint32_t keep_bits4(const Params& p, uint64_t e4) {
  uint32_t x[4];
  philox4x32_10(p.seed, p.offset + (e4 >> 2), x);
  return (uint64_t(x[0]) < p.keep_below ? 1u : 0u) | (uint64_t(x[1]) < p.keep_below ? 2u : 0u) |
         (uint64_t(x[2]) < p.keep_below ? 4u : 0u) | (uint64_t(x[3]) < p.keep_below ? 8u : 0u);
}

// Whether element e is kept (one Philox call for one element: the slow, general form).
__device__ __forceinline__ bool keep_one(const Params& p, uint64_t e) {
  uint32_t x[4];
  philox4x32_10(p.seed, p.offset + (e >> 2), x);
  const uint32_t l = static_cast<uint32_t>(e & 3);
  const uint32_t v = l == 0 ? x[0] : l == 1 ? x[1] : l == 2 ? x[2] : x[3];
  return uint64_t(v) < p.keep_below;
}

// Element index of (bh, i, j) in the [B,H,T,S] dropout mask.
__device__ __forceinline__ uint64_t mask_index(const Params& p, int bh, int64_t i, int64_t j) {
  return (static_cast<uint64_t>(bh) * p.T + i) * static_cast<uint64_t>(p.S) + j;
}

}  // namespace attn
}  // namespace tcu
