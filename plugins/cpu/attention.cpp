// Fused scaled-dot-product attention of the CPU plugin (ops.def NN):
//   out = dropout(softmax(scale * q k^T, causal mask)) v,  lse = logsumexp(scale * q k^T)
// and its backward, flash-attention style. The forward runs an online softmax over 64-key
// blocks (running max m, running sum l, output rescaled when m grows): no T x S matrix
// exists. The backward recomputes each 64 x 64 block of probabilities from q, k and the saved
// lse, with Di = rowsum(dO * O):
//   dS = P (Z dP - Di),  dV += (P Z)^T dO,  dQ += scale dS K,  dK += scale dS^T Q
// (Z: the dropout mask times 1/(1-p), regenerated from Philox exactly as the forward made it).
// Block products are register-tiled GEMMs on GCC vectors over converted copies of the blocks
// (float32 for float16/bfloat16/float32, float64 for float64). The forward splits work over
// (batch, head, query block), the backward over (batch, head); each unit is computed in a
// fixed order, so results do not depend on the thread count.
#include <atomic>
#include <limits>

#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kBlock = 64;  // queries per query block, keys per key block

template <class C>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <class C>
using Vec = typename VecOf<C>::type;  // one 256-bit register (two SSE ones in the baseline build)
template <class C>
constexpr int kLanes = 32 / sizeof(C);

// Columns of a GEMM tile (two vectors); every N below is a multiple of it.
template <class C>
constexpr int64_t kTileN = 64 / sizeof(C);
constexpr int64_t kPad = 16;  // row lengths (D) are padded to a multiple of this

TSR_INLINE int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

// ---------------------------------------------------------------------------------------
// Small GEMMs: Cm[M, N] (+)= op(A)[M, K] B[K, N], all row-major with leading dimensions;
// op(A)[r, k] is A[r * lda + k], or A[k * lda + r] with kTransA. M % 4 == 0, N % kTileN == 0.

template <class C, bool kTransA>
TSR_INLINE void gemm_tile(int64_t K, const C* A, int64_t lda, const C* B, int64_t ldb, C* Cm, int64_t ldc,
                          bool acc) {
  using V = Vec<C>;
  constexpr int kW = kLanes<C>;
  V c[4][2];
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    if (acc) {
      std::memcpy(&c[r][0], Cm + r * ldc, sizeof(V));
      std::memcpy(&c[r][1], Cm + r * ldc + kW, sizeof(V));
    } else {
      c[r][0] = V{};
      c[r][1] = V{};
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    V b0, b1;
    std::memcpy(&b0, B + k * ldb, sizeof(V));
    std::memcpy(&b1, B + k * ldb + kW, sizeof(V));
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const C a = kTransA ? A[k * lda + r] : A[r * lda + k];
      c[r][0] += a * b0;
      c[r][1] += a * b1;
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    std::memcpy(Cm + r * ldc, &c[r][0], sizeof(V));
    std::memcpy(Cm + r * ldc + kW, &c[r][1], sizeof(V));
  }
}

// On a causal diagonal block (query row r sees key column j iff j <= r) whole tiles are known
// zero and skipped: kColsToRow computes only columns j < r + 4 of rows [r, r + 4) (the rest
// is masked afterwards), kKToRow sums only k < r + 4 (A[r][k] is 0 beyond), kKFromRow only
// k >= r (op(A)[r][k] = P[k][r] is 0 for k < r).
enum class Diag { kNone, kColsToRow, kKToRow, kKFromRow };

template <class C, bool kTransA>
TSR_INLINE void gemm(int64_t M, int64_t N, int64_t K, const C* A, int64_t lda, const C* B, int64_t ldb, C* Cm,
                     int64_t ldc, bool acc, Diag diag) {
  for (int64_t i = 0; i < M; i += 4) {
    const int64_t n_end = diag == Diag::kColsToRow ? std::min(N, round_up(i + 4, kTileN<C>)) : N;
    const int64_t k0 = diag == Diag::kKFromRow ? std::min(K, i) : 0;
    const int64_t k1 = diag == Diag::kKToRow ? std::min(K, i + 4) : K;
    const C* a = kTransA ? A + i + k0 * lda : A + i * lda + k0;
    for (int64_t j = 0; j < n_end; j += kTileN<C>)
      gemm_tile<C, kTransA>(k1 - k0, a, lda, B + k0 * ldb + j, ldb, Cm + i * ldc + j, ldc, acc);
  }
}

// ---------------------------------------------------------------------------------------
// Geometry

// A 4-D operand: base pointer and element strides (b, h, row, col).
struct View4 {
  char* data;
  int32_t dtype;
  int64_t st[4];
  template <class S>
  S* row(int64_t b, int64_t h, int64_t i) const {
    return reinterpret_cast<S*>(data) + b * st[0] + h * st[1] + i * st[2];
  }
};

View4 view_of(const TsrTensorDesc& d) {
  View4 v{static_cast<char*>(d.data), d.dtype, {0, 0, 0, 0}};
  if (d.ndim == 4) {
    for (int i = 0; i < 4; ++i) v.st[i] = d.strides[i];
  } else if (d.ndim == 3) {  // [B, H, T] statistics (lse)
    for (int i = 0; i < 3; ++i) v.st[i] = d.strides[i];
  }
  return v;
}

struct AttnGeom {
  int64_t B, H, T, S, D, Dv;
  int64_t Dp, Dvp;  // D and Dv padded to kPad
  double scale, p;
  bool causal;
  uint64_t seed, offset;
  uint64_t keep_below;  // Philox lane x keeps its element iff x < keep_below
};

void check_4d(const TsrTensorDesc& d, const char* what, int64_t b, int64_t h, int64_t rows, int64_t cols) {
  if (d.ndim != 4 || d.sizes[0] != b || d.sizes[1] != h || (rows >= 0 && d.sizes[2] != rows) ||
      (cols >= 0 && d.sizes[3] != cols))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "%s %s does not fit [B=%lld, H=%lld, %lld, %lld]", what,
                ShapeStr(d).c_str(), static_cast<long long>(b), static_cast<long long>(h),
                static_cast<long long>(rows), static_cast<long long>(cols));
}

AttnGeom attn_geom(const TsrKernelArgs* a, const TsrTensorDesc& q, const TsrTensorDesc& k,
                   const TsrTensorDesc& v) {
  if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "q %s, k %s, v %s must be 4-D [B, H, T|S, D]", ShapeStr(q).c_str(),
                ShapeStr(k).c_str(), ShapeStr(v).c_str());
  if (!is_float_dtype(q.dtype) || k.dtype != q.dtype || v.dtype != q.dtype)
    raise_error(TSR_ERR_TYPE, "q, k, v must share one float dtype, got %s, %s, %s", dtype_name(q.dtype),
                dtype_name(k.dtype), dtype_name(v.dtype));
  AttnGeom g;
  g.B = q.sizes[0], g.H = q.sizes[1], g.T = q.sizes[2], g.D = q.sizes[3];
  g.S = k.sizes[2], g.Dv = v.sizes[3];
  check_4d(k, "k", g.B, g.H, g.S, g.D);
  check_4d(v, "v", g.B, g.H, g.S, -1);
  g.Dp = round_up(g.D, kPad), g.Dvp = round_up(g.Dv, kPad);
  const double* hp = a->attrs->hp;
  g.scale = hp[0] == 0 ? 1.0 / std::sqrt(static_cast<double>(g.D)) : hp[0];
  g.p = hp[1];
  g.causal = hp[2] != 0;
  if (!(g.scale > 0) || !(g.p >= 0 && g.p < 1))
    raise_error(TSR_ERR_INVALID_ARGUMENT, "scale must be > 0 and dropout p in [0, 1), got %g and %g", g.scale,
                g.p);
  g.seed = a->attrs->seed, g.offset = a->attrs->offset;
  g.keep_below = philox_threshold(1.0 - g.p);
  return g;
}

// ---------------------------------------------------------------------------------------
// Block loads (storage S -> compute C) and the per-row helpers

// dst[0..n) = src[j * stride] as C.
template <class C, class S>
TSR_INLINE void load_vec(C* dst, const S* src, int64_t n, int64_t stride) {
  if (stride == 1)
    for (int64_t j = 0; j < n; ++j) dst[j] = cast<C>(src[j]);
  else
    for (int64_t j = 0; j < n; ++j) dst[j] = cast<C>(src[j * stride]);
}

// rows [r0, r0 + n) of one (b, h) of a 4-D operand into dst [n][ld] (columns >= cols kept).
template <class C, class S>
void load_rows(C* dst, int64_t ld, const View4& v, int64_t b, int64_t h, int64_t r0, int64_t n,
               int64_t cols) {
  for (int64_t r = 0; r < n; ++r) load_vec(dst + r * ld, v.row<const S>(b, h, r0 + r), cols, v.st[3]);
}

// The same rows transposed: dst[c * ld + r] (dst is [cols][ld]).
template <class C, class S>
void load_rows_t(C* dst, int64_t ld, const View4& v, int64_t b, int64_t h, int64_t r0, int64_t n,
                 int64_t cols) {
  for (int64_t r = 0; r < n; ++r) {
    const S* src = v.row<const S>(b, h, r0 + r);
    for (int64_t c = 0; c < cols; ++c) dst[c * ld + r] = cast<C>(src[c * v.st[3]]);
  }
}

template <class C, class S>
void store_rows(const C* src, int64_t ld, const View4& v, int64_t b, int64_t h, int64_t r0, int64_t n,
                int64_t cols) {
  for (int64_t r = 0; r < n; ++r) {
    S* dst = v.row<S>(b, h, r0 + r);
    const C* row = src + r * ld;
    if (v.st[3] == 1)
      for (int64_t c = 0; c < cols; ++c) dst[c] = cast<S>(row[c]);
    else
      for (int64_t c = 0; c < cols; ++c) dst[c * v.st[3]] = cast<S>(row[c]);
  }
}

// Asks for rows [r0, r0 + n) of one (b, h) of a 4-D operand to be brought into cache (the next
// work unit's rows, fetched while this one computes; rows are short runs far apart, which the
// hardware prefetchers do not follow well).
template <class S>
void prefetch_rows(const View4& v, int64_t b, int64_t h, int64_t r0, int64_t n, int64_t cols) {
  if (v.st[3] != 1) return;
  const int64_t bytes = cols * static_cast<int64_t>(sizeof(S));
  for (int64_t r = r0; r < r0 + n; ++r) {
    const char* row = reinterpret_cast<const char*>(v.row<const S>(b, h, r));
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(row + off, 0, 3);
    __builtin_prefetch(row + bytes - 1, 0, 3);
  }
}

// z[j] = keep_value if element e0 + j survives dropout, else 0 (ops.def: Philox counter
// offset + e/4, lane e%4, kept iff u < 1 - p).
template <class C>
TSR_INLINE void dropout_row(const AttnGeom& g, uint64_t e0, int64_t n, C keep_value, C* z) {
  int64_t j = 0;
  while (j < n) {
    const uint64_t e = e0 + static_cast<uint64_t>(j);
    uint32_t lanes[4];
    philox4x32_10(g.seed, g.offset + e / 4, lanes);
    for (unsigned lane = static_cast<unsigned>(e % 4); lane < 4 && j < n; ++lane, ++j)
      z[j] = lanes[lane] < g.keep_below ? keep_value : C(0);
  }
}

// ---- rows of a 64 x 64 score block, on GCC vectors (compare-selects and float reductions
// do not auto-vectorize without fast-math)

// Lane j of the vector starting at column j0 is visible (j0 + lane < vis).
template <class C>
TSR_INLINE auto visible(int64_t j0, int64_t vis) {
  Vec<C> col;
  for (int i = 0; i < kLanes<C>; ++i) col[i] = static_cast<C>(j0 + i);
  return col < static_cast<C>(vis) - Vec<C>{};
}

// s[j] = scale * s[j] for j < vis, -inf after; returns the max of the visible entries and
// whether one is NaN.
template <class C>
TSR_INLINE C scale_mask_max(C* s, int64_t vis, C scale, bool& nan) {
  const Vec<C> neg_inf = -std::numeric_limits<C>::infinity() - Vec<C>{};
  Vec<C> mx = neg_inf;
  auto bad = mx != mx;
  for (int64_t j = 0; j < kBlock; j += kLanes<C>) {
    Vec<C> v;
    std::memcpy(&v, s + j, sizeof v);
    v = visible<C>(j, vis) ? v * scale : neg_inf;
    bad |= v != v;
    mx = v > mx ? v : mx;
    std::memcpy(s + j, &v, sizeof v);
  }
  C m = -std::numeric_limits<C>::infinity();
  nan = false;
  for (int i = 0; i < kLanes<C>; ++i) {
    m = mx[i] > m ? mx[i] : m;
    nan |= bad[i] != 0;
  }
  return m;
}

// e^(x - shift) in place over a 64-entry row, x - shift <= 0 (tiny positive excesses from
// rounding are fine); -inf entries give 0.
template <class C>
TSR_INLINE void exp_row(C* x, C shift) {
  for (int64_t j = 0; j < kBlock; j += kLanes<C>) {
    Vec<C> v;
    std::memcpy(&v, x + j, sizeof v);
    if constexpr (std::is_same_v<C, float>) {
      v = exp_nonpositive(v - shift);
    } else {
      for (int i = 0; i < kLanes<C>; ++i) v[i] = std::exp(v[i] - shift);
    }
    std::memcpy(x + j, &v, sizeof v);
  }
}

template <class C>
TSR_INLINE C row_sum(const C* x) {
  Vec<C> acc = {};
  for (int64_t j = 0; j < kBlock; j += kLanes<C>) {
    Vec<C> v;
    std::memcpy(&v, x + j, sizeof v);
    acc += v;
  }
  C t = 0;
  for (int i = 0; i < kLanes<C>; ++i) t += acc[i];
  return t;
}

// The forward's online-softmax step for one key block [j0, j0 + nk): rows of s (scores q.k)
// become their unnormalized, dropped-out probabilities; m and l advance and each acc row is
// rescaled to the new maximum. Rows that see no key of the block become 0.
struct FwdStep {
  const AttnGeom* g;
  uint64_t e_row0;  // dropout element of (row i0, key 0)
  int64_t i0, nq, Mr, j0, nk, dvp;
};

template <class C>
struct FwdSoftmaxK {
  static TSR_INLINE void run(FwdStep st, C* s, C* acc, C* m, C* l, C* z, bool* poisoned) {
    constexpr C kInf = std::numeric_limits<C>::infinity();
    const AttnGeom& g = *st.g;
    const C scale = static_cast<C>(g.scale);
    for (int64_t r = 0; r < st.Mr; ++r) {
      C* srow = s + r * kBlock;
      const int64_t i = st.i0 + r;
      const int64_t vis = r >= st.nq ? 0 : g.causal ? std::clamp<int64_t>(i - st.j0 + 1, 0, st.nk) : st.nk;
      bool nan = false;
      const C mb = vis > 0 ? scale_mask_max(srow, vis, scale, nan) : -kInf;
      const C m_new = std::max(m[r], mb);
      if (vis == 0 || m_new == -kInf || poisoned[r] || nan || m_new == kInf) {
        poisoned[r] = poisoned[r] || nan || m_new == kInf;  // a NaN or +inf score: NaN row
        std::fill(srow, srow + kBlock, C(0));               // adds nothing to acc
        continue;
      }
      exp_row(srow, m_new);
      const C corr = exp_c(m[r] - m_new);  // 0 for the row's first keys
      l[r] = l[r] * corr + row_sum(srow);
      m[r] = m_new;
      if (g.p > 0) {
        dropout_row(g, st.e_row0 + static_cast<uint64_t>(r * g.S + st.j0), vis,
                    C(1) / static_cast<C>(1.0 - g.p), z);
        for (int64_t j = 0; j < vis; ++j) srow[j] *= z[j];
      }
      if (corr != C(1))
        for (int64_t d = 0; d < st.dvp; ++d) acc[r * st.dvp + d] *= corr;
    }
  }
};

// The backward's block of probabilities and score gradients: p holds the scores q.k and ds
// dO.v on entry; on exit p = P Z (dropped-out probabilities) and ds = scale P (Z dP - Di),
// both 0 where a row does not see a key.
struct BwdStep {
  const AttnGeom* g;
  uint64_t e_row0;
  int64_t i0, nq, Mr, j0, nk;
};

template <class C>
struct BwdScoresK {
  static TSR_INLINE void run(BwdStep st, C* p, C* ds, C* z, const C* lse_all, const C* di_all) {
    const AttnGeom& g = *st.g;
    const C scale = static_cast<C>(g.scale);
    const C keep_value = C(1) / static_cast<C>(1.0 - g.p);
    const bool dropout = g.p > 0;
    for (int64_t r = 0; r < st.Mr; ++r) {
      C* prow = p + r * kBlock;
      C* dsrow = ds + r * kBlock;
      const int64_t i = st.i0 + r;
      const int64_t vis = r >= st.nq ? 0 : g.causal ? std::clamp<int64_t>(i - st.j0 + 1, 0, st.nk) : st.nk;
      if (vis == 0) {
        std::fill(prow, prow + kBlock, C(0));
        std::fill(dsrow, dsrow + kBlock, C(0));
        continue;
      }
      const C lse = lse_all[i], di = di_all[i];
      bool nan;
      scale_mask_max(prow, vis, scale, nan);
      if (std::isfinite(lse)) {
        exp_row(prow, lse);
      } else {
        for (int64_t j = 0; j < vis; ++j) prow[j] = exp_c(prow[j] - lse);
        std::fill(prow + vis, prow + kBlock, C(0));
      }
      if (dropout) {
        dropout_row(g, st.e_row0 + static_cast<uint64_t>(r * g.S + st.j0), vis, keep_value, z);
        std::fill(z + vis, z + kBlock, C(0));
      }
      for (int64_t j = 0; j < kBlock; j += kLanes<C>) {
        Vec<C> pv, dp, zv;
        std::memcpy(&pv, prow + j, sizeof pv);
        std::memcpy(&dp, dsrow + j, sizeof dp);
        if (dropout) {
          std::memcpy(&zv, z + j, sizeof zv);
          dp *= zv;
        }
        const Vec<C> dsv = visible<C>(j, vis) ? pv * (dp - di) * scale : Vec<C>{};
        std::memcpy(dsrow + j, &dsv, sizeof dsv);
        if (dropout) {
          pv *= zv;
          std::memcpy(prow + j, &pv, sizeof pv);
        }
      }
    }
  }
};

template <class C>
struct GemmK {
  static TSR_INLINE void run(int64_t M, int64_t N, int64_t K, const C* A, int64_t lda, const C* B,
                             int64_t ldb, C* Cm, int64_t ldc, bool acc, Diag diag) {
    gemm<C, false>(M, N, K, A, lda, B, ldb, Cm, ldc, acc, diag);
  }
};
template <class C>
struct GemmTK {
  static TSR_INLINE void run(int64_t M, int64_t N, int64_t K, const C* A, int64_t lda, const C* B,
                             int64_t ldb, C* Cm, int64_t ldc, bool acc, Diag diag) {
    gemm<C, true>(M, N, K, A, lda, B, ldb, Cm, ldc, acc, diag);
  }
};

// ---------------------------------------------------------------------------------------
// Forward

// Scratch of one forward task, C elements: Q [64][D], K^T [D][64], V [64][Dvp], S [64][64],
// acc [64][Dvp], m, l, z [64].
template <class C>
struct FwdScratch {
  C *q, *kt, *v, *s, *acc, *m, *l, *z;
  static int64_t size(const AttnGeom& g) { return kBlock * (g.D + g.D + 2 * g.Dvp + kBlock + 3); }
  FwdScratch(C* base, const AttnGeom& g) {
    q = base;
    kt = q + kBlock * g.D;
    v = kt + g.D * kBlock;
    s = v + kBlock * g.Dvp;
    acc = s + kBlock * kBlock;
    m = acc + kBlock * g.Dvp;
    l = m + kBlock;
    z = l + kBlock;
  }
};

// One query block [i0, i0 + nq) of head (b, h).
template <class C, class S>
void attn_forward_block(const AttnGeom& g, const View4& qv, const View4& kv, const View4& vv, const View4& ov,
                        const View4& lv, int64_t b, int64_t h, int64_t i0, FwdScratch<C>& w) {
  constexpr C kInf = std::numeric_limits<C>::infinity();
  const int64_t nq = std::min(kBlock, g.T - i0), Mr = round_up(nq, 4);
  load_rows<C, S>(w.q, g.D, qv, b, h, i0, nq, g.D);
  std::fill(w.q + nq * g.D, w.q + Mr * g.D, C(0));
  std::fill(w.acc, w.acc + Mr * g.Dvp, C(0));
  for (int64_t r = 0; r < kBlock; ++r) w.m[r] = -kInf, w.l[r] = 0;
  bool poisoned[kBlock] = {};  // a NaN or +inf score: the row's output is NaN
  const int64_t kend = g.causal ? std::min(g.S, i0 + nq) : g.S;
  for (int64_t j0 = 0; j0 < kend; j0 += kBlock) {
    const int64_t nk = std::min(kBlock, kend - j0);
    load_rows_t<C, S>(w.kt, kBlock, kv, b, h, j0, nk, g.D);
    load_rows<C, S>(w.v, g.Dvp, vv, b, h, j0, nk, g.Dv);
    const bool diag = g.causal && i0 == j0;  // blocks start at multiples of 64: only these mask
    isa_run<GemmK<C>>(Mr, kBlock, g.D, w.q, g.D, w.kt, kBlock, w.s, kBlock, false,
                      diag ? Diag::kColsToRow : Diag::kNone);  // S = Q K^T
    const FwdStep st{&g, (static_cast<uint64_t>(b * g.H + h) * g.T + i0) * g.S, i0, nq, Mr, j0, nk, g.Dvp};
    isa_run<FwdSoftmaxK<C>>(st, w.s, w.acc, w.m, w.l, w.z, poisoned);
    isa_run<GemmK<C>>(Mr, g.Dvp, nk, w.s, kBlock, w.v, g.Dvp, w.acc, g.Dvp, true,
                      diag ? Diag::kKToRow : Diag::kNone);  // acc += P V
  }
  constexpr C kNaN = std::numeric_limits<C>::quiet_NaN();
  for (int64_t r = 0; r < nq; ++r) {
    const C inv = poisoned[r] ? kNaN : C(1) / w.l[r];
    S* orow = ov.row<S>(b, h, i0 + r);
    for (int64_t d = 0; d < g.Dv; ++d) orow[d * ov.st[3]] = cast<S>(w.acc[r * g.Dvp + d] * inv);
    if (lv.data != nullptr)
      *(reinterpret_cast<C*>(lv.data) + b * lv.st[0] + h * lv.st[1] + (i0 + r) * lv.st[2]) =
          poisoned[r] ? kNaN : w.m[r] + std::log(w.l[r]);
  }
}

void sdpa_forward_body(const TsrKernelArgs* a) {
  if (a->num_inputs < 3) raise_error(TSR_ERR_INVALID_ARGUMENT, "expects q, k, v");
  const TsrTensorDesc &q = a->inputs[0], &k = a->inputs[1], &v = a->inputs[2];
  const AttnGeom g = attn_geom(a, q, k, v);
  const TsrTensorDesc& out = a->outputs[0];
  check_4d(out, "out", g.B, g.H, g.T, g.Dv);
  if (out.dtype != q.dtype)
    raise_error(TSR_ERR_TYPE, "out must be %s, got %s", dtype_name(q.dtype), dtype_name(out.dtype));
  const int32_t stat_dtype = q.dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
  View4 lv{nullptr, stat_dtype, {0, 0, 0, 0}};
  if (a->num_outputs >= 2) {
    const TsrTensorDesc& lse = a->outputs[1];
    if (lse.ndim != 3 || lse.sizes[0] != g.B || lse.sizes[1] != g.H || lse.sizes[2] != g.T ||
        lse.dtype != stat_dtype)
      raise_error(TSR_ERR_INVALID_ARGUMENT, "lse must be %s [%lld, %lld, %lld], got %s %s",
                  dtype_name(stat_dtype), static_cast<long long>(g.B), static_cast<long long>(g.H),
                  static_cast<long long>(g.T), dtype_name(lse.dtype), ShapeStr(lse).c_str());
    lv = view_of(lse);
  }
  const View4 qv = view_of(q), kv = view_of(k), vv = view_of(v), ov = view_of(out);
  const int64_t nqb = (g.T + kBlock - 1) / kBlock;
  std::atomic<bool> failed{false};
  dispatch_float_storage(q.dtype, [&](auto s) {
    using S = decltype(s);
    using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
    state_of(a).pool.parallel_for(g.B * g.H * nqb, 1, [&](int64_t u0, int64_t u1) {
      TaskBuffer<C> buf(FwdScratch<C>::size(g));
      if (buf.data() == nullptr) return void(failed = true);
      std::fill(buf.data(), buf.data() + FwdScratch<C>::size(g), C(0));
      FwdScratch<C> w(buf.data(), g);
      for (int64_t u = u0; u < u1; ++u) {
        if (u + 1 < u1) {  // the next unit's query rows and first key block
          const int64_t bh = (u + 1) / nqb, i0 = (u + 1) % nqb * kBlock;
          const int64_t b = bh / g.H, h = bh % g.H;
          prefetch_rows<S>(qv, b, h, i0, std::min(kBlock, g.T - i0), g.D);
          prefetch_rows<S>(kv, b, h, 0, std::min(kBlock, g.S), g.D);
          prefetch_rows<S>(vv, b, h, 0, std::min(kBlock, g.S), g.Dv);
        }
        const int64_t bh = u / nqb, qb = u % nqb;
        attn_forward_block<C, S>(g, qv, kv, vv, ov, lv, bh / g.H, bh % g.H, qb * kBlock, w);
      }
    });
  });
  if (failed)
    raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for attention scratch (D = %lld)",
                static_cast<long long>(g.D));
}

// ---------------------------------------------------------------------------------------
// Backward

// Scratch of one backward task (one head at a time), C elements:
//   q [Tp][Dp], dO [Tp][Dvp], dQ [Tp][Dp], Di, lse [Tp]        (the whole head, Tp = T padded)
//   K^T [D][64], K [64][Dp], V^T [Dv][64], dK [64][Dp], dV [64][Dvp], P, dS [64][64], z [64]
template <class C>
struct BwdScratch {
  C *q, *dout, *dq, *di, *lse, *kt, *k, *vt, *dk, *dv, *p, *ds, *z;
  static int64_t size(const AttnGeom& g) {
    const int64_t Tp = round_up(g.T, kBlock);
    return Tp * (2 * g.Dp + g.Dvp + 2) + kBlock * (g.D + 2 * g.Dp + g.Dv + g.Dvp + 2 * kBlock + 1);
  }
  BwdScratch(C* base, const AttnGeom& g) {
    const int64_t Tp = round_up(g.T, kBlock);
    q = base;
    dout = q + Tp * g.Dp;
    dq = dout + Tp * g.Dvp;
    di = dq + Tp * g.Dp;
    lse = di + Tp;
    kt = lse + Tp;
    k = kt + g.D * kBlock;
    vt = k + kBlock * g.Dp;
    dk = vt + g.Dv * kBlock;
    dv = dk + kBlock * g.Dp;
    p = dv + kBlock * g.Dvp;
    ds = p + kBlock * kBlock;
    z = ds + kBlock * kBlock;
  }
};

struct BwdViews {
  View4 grad, q, k, v, out, lse, dq, dk, dv;
};

// Di = rowsum(dO * O) of one row.
template <class C, class S>
C row_dot(const C* dout, const S* o, int64_t n, int64_t stride) {
  C acc[8] = {};
  int64_t d = 0;
  if (stride == 1)
    for (; d + 8 <= n; d += 8)
      for (int j = 0; j < 8; ++j) acc[j] += dout[d + j] * cast<C>(o[d + j]);
  for (; d < n; ++d) acc[d % 8] += dout[d] * cast<C>(o[d * stride]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// One (query block, key block) pair: P, dS, then dV, dQ and dK accumulated.
template <class C>
void attn_backward_pair(const AttnGeom& g, int64_t b, int64_t h, int64_t i0, int64_t j0, int64_t nk,
                        BwdScratch<C>& w) {
  const int64_t nq = std::min(kBlock, g.T - i0), Mr = round_up(nq, 4), Kr = round_up(nk, 4);
  const C* q = w.q + i0 * g.Dp;
  const C* dout = w.dout + i0 * g.Dvp;
  const bool diag = g.causal && i0 == j0;  // blocks start at multiples of 64: only these mask
  const Diag cols = diag ? Diag::kColsToRow : Diag::kNone;
  isa_run<GemmK<C>>(Mr, kBlock, g.D, q, g.Dp, w.kt, kBlock, w.p, kBlock, false, cols);        // S = Q K^T
  isa_run<GemmK<C>>(Mr, kBlock, g.Dv, dout, g.Dvp, w.vt, kBlock, w.ds, kBlock, false, cols);  // dP = dO V^T
  const BwdStep st{&g, (static_cast<uint64_t>(b * g.H + h) * g.T + i0) * g.S, i0, nq, Mr, j0, nk};
  isa_run<BwdScoresK<C>>(st, w.p, w.ds, w.z, w.lse, w.di);
  const Diag k_from = diag ? Diag::kKFromRow : Diag::kNone, k_to = diag ? Diag::kKToRow : Diag::kNone;
  isa_run<GemmTK<C>>(Kr, g.Dvp, Mr, w.p, kBlock, dout, g.Dvp, w.dv, g.Dvp, true, k_from);  // dV += (P Z)^T dO
  isa_run<GemmK<C>>(Mr, g.Dp, nk, w.ds, kBlock, w.k, g.Dp, w.dq + i0 * g.Dp, g.Dp, true, k_to);  // dQ += dS K
  isa_run<GemmTK<C>>(Kr, g.Dp, Mr, w.ds, kBlock, q, g.Dp, w.dk, g.Dp, true, k_from);  // dK += dS^T Q
}

// Every gradient of head (b, h).
template <class C, class S>
void attn_backward_head(const AttnGeom& g, const BwdViews& x, int64_t b, int64_t h, BwdScratch<C>& w) {
  // the scratch starts zeroed; padding rows and columns are never written, so they stay 0
  std::fill(w.dq, w.dq + round_up(g.T, kBlock) * g.Dp, C(0));
  load_rows<C, S>(w.q, g.Dp, x.q, b, h, 0, g.T, g.D);
  load_rows<C, S>(w.dout, g.Dvp, x.grad, b, h, 0, g.T, g.Dv);
  for (int64_t i = 0; i < g.T; ++i) {
    w.di[i] = row_dot(w.dout + i * g.Dvp, x.out.row<const S>(b, h, i), g.Dv, x.out.st[3]);
    w.lse[i] =
        *(reinterpret_cast<const C*>(x.lse.data) + b * x.lse.st[0] + h * x.lse.st[1] + i * x.lse.st[2]);
  }
  for (int64_t j0 = 0; j0 < g.S; j0 += kBlock) {
    const int64_t nk = std::min(kBlock, g.S - j0);
    if (g.causal && j0 >= g.T) {  // keys no query sees: zero gradients
      std::fill(w.dk, w.dk + kBlock * g.Dp, C(0));
      std::fill(w.dv, w.dv + kBlock * g.Dvp, C(0));
    } else {
      // K^T / V^T columns and K rows >= nk keep stale (finite) values: masked or unused
      std::fill(w.dk, w.dk + kBlock * g.Dp, C(0));
      std::fill(w.dv, w.dv + kBlock * g.Dvp, C(0));
      load_rows_t<C, S>(w.kt, kBlock, x.k, b, h, j0, nk, g.D);
      load_rows<C, S>(w.k, g.Dp, x.k, b, h, j0, nk, g.D);
      load_rows_t<C, S>(w.vt, kBlock, x.v, b, h, j0, nk, g.Dv);
      const int64_t first = g.causal ? j0 / kBlock * kBlock : 0;  // query blocks that see these keys
      for (int64_t i0 = first; i0 < g.T; i0 += kBlock) attn_backward_pair(g, b, h, i0, j0, nk, w);
    }
    store_rows<C, S>(w.dk, g.Dp, x.dk, b, h, j0, nk, g.D);
    store_rows<C, S>(w.dv, g.Dvp, x.dv, b, h, j0, nk, g.Dv);
  }
  store_rows<C, S>(w.dq, g.Dp, x.dq, b, h, 0, g.T, g.D);
}

void sdpa_backward_body(const TsrKernelArgs* a) {
  if (a->num_inputs < 6 || a->num_outputs < 3)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "expects grad, q, k, v, out, lse -> dq, dk, dv");
  const TsrTensorDesc &grad = a->inputs[0], &q = a->inputs[1], &k = a->inputs[2], &v = a->inputs[3];
  const TsrTensorDesc &out = a->inputs[4], &lse = a->inputs[5];
  const AttnGeom g = attn_geom(a, q, k, v);
  check_4d(grad, "grad", g.B, g.H, g.T, g.Dv);
  check_4d(out, "out", g.B, g.H, g.T, g.Dv);
  check_4d(a->outputs[0], "dq", g.B, g.H, g.T, g.D);
  check_4d(a->outputs[1], "dk", g.B, g.H, g.S, g.D);
  check_4d(a->outputs[2], "dv", g.B, g.H, g.S, g.Dv);
  const TsrTensorDesc* same_dtype[5] = {&grad, &out, &a->outputs[0], &a->outputs[1], &a->outputs[2]};
  for (const TsrTensorDesc* d : same_dtype)
    if (d->dtype != q.dtype)
      raise_error(TSR_ERR_TYPE, "grad, out, dq, dk, dv must be %s, got %s", dtype_name(q.dtype),
                  dtype_name(d->dtype));
  const int32_t stat_dtype = q.dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
  if (lse.ndim != 3 || lse.sizes[0] != g.B || lse.sizes[1] != g.H || lse.sizes[2] != g.T ||
      lse.dtype != stat_dtype)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "lse must be %s [%lld, %lld, %lld], got %s %s",
                dtype_name(stat_dtype), static_cast<long long>(g.B), static_cast<long long>(g.H),
                static_cast<long long>(g.T), dtype_name(lse.dtype), ShapeStr(lse).c_str());
  const BwdViews x{view_of(grad),
                   view_of(q),
                   view_of(k),
                   view_of(v),
                   view_of(out),
                   view_of(lse),
                   view_of(a->outputs[0]),
                   view_of(a->outputs[1]),
                   view_of(a->outputs[2])};
  std::atomic<bool> failed{false};
  dispatch_float_storage(q.dtype, [&](auto s) {
    using S = decltype(s);
    using C = std::conditional_t<std::is_same_v<S, double>, double, float>;
    state_of(a).pool.parallel_for(g.B * g.H, 1, [&](int64_t u0, int64_t u1) {
      TaskBuffer<C> buf(BwdScratch<C>::size(g));
      if (buf.data() == nullptr) return void(failed = true);
      std::fill(buf.data(), buf.data() + BwdScratch<C>::size(g), C(0));
      BwdScratch<C> w(buf.data(), g);
      for (int64_t u = u0; u < u1; ++u) {
        if (u + 1 < u1) {  // the next head's first rows
          const int64_t b = (u + 1) / g.H, h = (u + 1) % g.H, nt = std::min(kBlock, g.T),
                        ns = std::min(kBlock, g.S);
          prefetch_rows<S>(x.q, b, h, 0, nt, g.D);
          prefetch_rows<S>(x.grad, b, h, 0, nt, g.Dv);
          prefetch_rows<S>(x.out, b, h, 0, nt, g.Dv);
          prefetch_rows<S>(x.k, b, h, 0, ns, g.D);
          prefetch_rows<S>(x.v, b, h, 0, ns, g.Dv);
        }
        attn_backward_head<C, S>(g, x, u / g.H, u % g.H, w);
      }
    });
  });
  if (failed)
    raise_error(TSR_ERR_OUT_OF_MEMORY, "no memory for attention scratch (T = %lld, D = %lld)",
                static_cast<long long>(g.T), static_cast<long long>(g.D));
}

}  // namespace

int32_t kernel_scaled_dot_product_attention(const TsrKernelArgs* a) {
  return run_kernel(a, &sdpa_forward_body);
}
int32_t kernel_scaled_dot_product_attention_backward(const TsrKernelArgs* a) {
  return run_kernel(a, &sdpa_backward_body);
}

}  // namespace tessera_cpu
