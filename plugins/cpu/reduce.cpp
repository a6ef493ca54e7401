// Reductions and softmax of the CPU plugin: sum mean max min argmax argmin prod var std
// over any dims into the keepdim-form output, and softmax/log_softmax over one dim (two
// passes per contiguous row, pipelined with the rows before and after it). float16/bfloat16 compute
// in float32; float sums use 32 float lanes per 4096-element block, blocks summed in double.
#include <limits>
#include <vector>

#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kBlock = 1024;          // elements per converted block
constexpr int64_t kGrain = 32768;         // input elements per task
constexpr int64_t kMaxChunks = 64;        // fixed split of one large output's elements

// ---------------------------------------------------------------------------------------
// Contiguous row primitives (inlined into the AVX2 and baseline variants)

template <class C>
using SumAcc = std::conditional_t<std::is_integral_v<C>, int64_t, double>;

template <class C>
TSR_INLINE SumAcc<C> row_sum(const C* x, int64_t n) {
  if constexpr (std::is_integral_v<C>) {
    uint64_t s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<uint64_t>(x[i]);
    return static_cast<int64_t>(s);
  } else {
    constexpr int kLanes = 128 / sizeof(C);  // four 256-bit accumulators
    double total = 0;
    for (int64_t b = 0; b < n; b += 4096) {
      const int64_t m = std::min<int64_t>(4096, n - b);
      const C* xb = x + b;
      C acc[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= m; i += kLanes)
        for (int j = 0; j < kLanes; ++j) acc[j] += xb[i + j];
      for (; i < m; ++i) acc[i % kLanes] += xb[i];
      for (int w = kLanes / 2; w > 0; w /= 2)
        for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
      total += acc[0];
    }
    return total;
  }
}

// Max (IsMax) or min of x[0..n) and `init`; any NaN makes the result NaN. Written with
// GCC vector types: compare-select reductions do not auto-vectorize without fast-math.
template <class C, bool IsMax>
TSR_INLINE C row_extreme(const C* x, int64_t n, C init) {
  typedef C V __attribute__((vector_size(32)));
  constexpr int kW = 32 / sizeof(C);
  V acc0 = init - V{}, acc1 = acc0;
  auto nan = acc0 != acc0;
  int64_t i = 0;
  for (; i + 2 * kW <= n; i += 2 * kW) {
    V v0, v1;
    std::memcpy(&v0, x + i, sizeof(V));
    std::memcpy(&v1, x + i + kW, sizeof(V));
    acc0 = (IsMax ? v0 > acc0 : v0 < acc0) ? v0 : acc0;
    acc1 = (IsMax ? v1 > acc1 : v1 < acc1) ? v1 : acc1;
    nan |= (v0 != v0) | (v1 != v1);
  }
  acc0 = (IsMax ? acc1 > acc0 : acc1 < acc0) ? acc1 : acc0;
  C r = init;
  bool any_nan = false;
  for (int j = 0; j < kW; ++j) {
    r = (IsMax ? acc0[j] > r : acc0[j] < r) ? acc0[j] : r;
    any_nan |= nan[j] != 0;
  }
  for (; i < n; ++i) {
    r = (IsMax ? x[i] > r : x[i] < r) ? x[i] : r;
    any_nan |= x[i] != x[i];
  }
  if constexpr (std::is_floating_point_v<C>) return any_nan ? std::numeric_limits<C>::quiet_NaN() : r;
  return r;
}

// Sum of (x - mean)^2 in double.
template <class C>
TSR_INLINE double row_sq_dev(const C* x, int64_t n, double mean) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const double d = static_cast<double>(x[i + j]) - mean;
      acc[j] += d * d;
    }
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mean;
    acc[0] += d * d;
  }
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

template <class C>
struct RowSumK {
  static TSR_INLINE SumAcc<C> run(const C* x, int64_t n) { return row_sum(x, n); }
};
template <class C, bool IsMax>
struct RowExtremeK {
  static TSR_INLINE C run(const C* x, int64_t n, C init) { return row_extreme<C, IsMax>(x, n, init); }
};
template <class C>
struct RowSqDevK {
  static TSR_INLINE double run(const C* x, int64_t n, double mean) { return row_sq_dev(x, n, mean); }
};

// ---------------------------------------------------------------------------------------
// Reducers: state over a range of one output's elements; add() takes a contiguous block
// whose first element has reduced linear index pos; merge() appends a later range.

template <class C>
struct SumR {
  SumAcc<C> acc = 0;
  void add(const C* x, int64_t n, int64_t) { acc = wrap(acc, isa_run<RowSumK<C>>(x, n)); }
  void merge(const SumR& o) { acc = wrap(acc, o.acc); }
  static SumAcc<C> wrap(SumAcc<C> a, SumAcc<C> b) {
    if constexpr (std::is_integral_v<C>) return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
    else return a + b;
  }
};

template <class C>
struct ProdR {
  SumAcc<C> acc = 1;
  void add(const C* x, int64_t n, int64_t) {
    if constexpr (std::is_integral_v<C>) {
      uint64_t p = static_cast<uint64_t>(acc);
      for (int64_t i = 0; i < n; ++i) p *= static_cast<uint64_t>(x[i]);
      acc = static_cast<int64_t>(p);
    } else {
      for (int64_t i = 0; i < n; ++i) acc *= x[i];
    }
  }
  void merge(const ProdR& o) {
    if constexpr (std::is_integral_v<C>) acc = static_cast<int64_t>(static_cast<uint64_t>(acc) * static_cast<uint64_t>(o.acc));
    else acc *= o.acc;
  }
};

template <class C, bool IsMax>
struct ExtremeR {
  static constexpr C kInit = IsMax ? (std::is_integral_v<C> ? std::numeric_limits<C>::lowest() : -std::numeric_limits<C>::infinity())
                                   : (std::is_integral_v<C> ? std::numeric_limits<C>::max() : std::numeric_limits<C>::infinity());
  C acc = kInit;
  void add(const C* x, int64_t n, int64_t) { acc = isa_run<RowExtremeK<C, IsMax>>(x, n, acc); }
  void merge(const ExtremeR& o) { acc = row_extreme<C, IsMax>(&o.acc, 1, acc); }
};

// First index of the max (min); NaN counts as the extreme and the first NaN wins.
template <class C, bool IsMax>
struct ArgR {
  C best = C(0);
  int64_t index = -1;
  static bool better(C v, C best) {
    if (best != best) return false;
    return v != v || (IsMax ? v > best : v < best);
  }
  void add(const C* x, int64_t n, int64_t pos) {
    int64_t i = 0;
    if (index < 0) {
      best = x[0];
      index = pos;
      i = 1;
    }
    for (; i < n; ++i)
      if (better(x[i], best)) {
        best = x[i];
        index = pos + i;
      }
  }
  void merge(const ArgR& o) {
    if (o.index >= 0 && (index < 0 || better(o.best, best))) *this = o;
  }
};

template <class C>
struct SqDevR {
  double mean = 0;
  double acc = 0;
  void add(const C* x, int64_t n, int64_t) { acc += isa_run<RowSqDevK<C>>(x, n, mean); }
  void merge(const SqDevR& o) { acc += o.acc; }
};

// ---------------------------------------------------------------------------------------
// The reduction driver

struct Geom {
  NdIter kept;     // operands: output, input; over the kept dims
  NdIter reduced;  // operand: input; over the reduced dims, row-major (argmax indices)
  int32_t in_dtype, cdt;
  int64_t M, R;    // outputs, elements per output
};

void make_geom(const TsrKernelArgs* a, Geom& g) {
  const TsrTensorDesc& in = a->inputs[0];
  TsrTensorDesc& out = a->outputs[0];
  const TsrAttrs& at = *a->attrs;
  bool is_reduced[TSR_MAX_DIMS] = {};
  for (int i = 0; i < at.ndims; ++i) {
    if (at.dims[i] < 0 || at.dims[i] >= std::max(in.ndim, 1))
      raise_error(TSR_ERR_INDEX, "reduction dim %lld out of range for %d dims", static_cast<long long>(at.dims[i]), in.ndim);
    is_reduced[at.dims[i]] = true;
  }
  if (out.ndim != in.ndim) raise_error(TSR_ERR_INVALID_ARGUMENT, "output must be in keepdim form");
  TsrTensorDesc in_kept = in, in_reduced = in;
  for (int d = 0; d < in.ndim; ++d) (is_reduced[d] ? in_kept : in_reduced).sizes[d] = 1;
  const TsrTensorDesc* kept[2] = {&out, &in_kept};
  const TsrTensorDesc* reduced[1] = {&in_reduced};
  g.kept.init(kept, 2, true);
  g.reduced.init(reduced, 1, false);
  g.in_dtype = in.dtype;
  g.cdt = compute_dtype(in.dtype);
  g.M = g.kept.numel;
  g.R = g.reduced.numel;
}

// Feeds elements [rb, re) of the output whose input starts at base to r, in blocks.
template <class C, class R>
void accumulate(const Geom& g, char* base, int64_t rb, int64_t re, R& r) {
  const bool native = g.in_dtype == g.cdt;
  g.reduced.for_each_run_at(&base, rb, re, [&](char* const* p, const int64_t* s, int64_t n, int64_t pos) {
    if (native && s[0] == static_cast<int64_t>(sizeof(C))) {
      r.add(reinterpret_cast<const C*>(p[0]), n, pos);
      return;
    }
    C buf[kBlock];
    for (int64_t off = 0; off < n; off += kBlock) {
      const int64_t m = std::min(kBlock, n - off);
      load_run(g.cdt, g.in_dtype, p[0] + off * s[0], s[0], m, buf);
      r.add(buf, m, pos + off);
    }
  });
}

// One output's reducer; large ones are split in a fixed number of chunks (independent of
// the thread count, so results are too) reduced in parallel and merged in order.
template <class C, class R>
R reduce_one(State& st, const Geom& g, char* base, R r, bool split) {
  if (!split || g.R < 2 * kGrain) {
    accumulate<C>(g, base, 0, g.R, r);
    return r;
  }
  const int64_t chunks = std::min(kMaxChunks, g.R / kGrain);
  R parts[kMaxChunks];
  for (int64_t c = 0; c < chunks; ++c) parts[c] = r;
  st.pool.parallel_for(chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) accumulate<C>(g, base, g.R * c / chunks, g.R * (c + 1) / chunks, parts[c]);
  });
  for (int64_t c = 1; c < chunks; ++c) parts[0].merge(parts[c]);
  return parts[0];
}

// Adjacent outputs reduced together: count outputs whose inputs start in_step bytes apart
// (count > 1 only when in_step is the element size) and whose results go out_step apart.
struct Outputs {
  char* in;
  int64_t in_step;
  char* out;
  int64_t out_step;
  int64_t count;
  bool split;  // a single output whose elements are split across threads
};

constexpr int64_t kTile = 64;      // outputs per tile
constexpr int64_t kTileRows = 64;  // reduced elements per tile

// states[0..o.count) (initialized by the caller) reduced over their outputs' elements.
// Several outputs (an outer reduction, e.g. over dim 0 of a row-major matrix) are read a
// tile at a time: kTileRows contiguous input rows, transposed so that each output's
// elements are contiguous for the reducers.
template <class C, class R>
void reduce_many(State& st, const Geom& g, const Outputs& o, R* states) {
  if (o.count == 1) {
    states[0] = reduce_one<C>(st, g, o.in, states[0], o.split);
    return;
  }
  C tile[kTile * kTileRows];  // [output][row]
  C row[kTile];
  const bool native = g.in_dtype == g.cdt;
  for (int64_t rb = 0; rb < g.R; rb += kTileRows) {
    const int64_t m = std::min(kTileRows, g.R - rb);
    char* base = o.in;
    g.reduced.for_each_run_at(&base, rb, rb + m, [&](char* const* p, const int64_t* s, int64_t n, int64_t pos) {
      for (int64_t i = 0; i < n; ++i) {
        const C* src = row;
        if (native)
          src = reinterpret_cast<const C*>(p[0] + i * s[0]);
        else
          load_run(g.cdt, g.in_dtype, p[0] + i * s[0], o.in_step, o.count, row);
        const int64_t r = pos - rb + i;
        for (int64_t j = 0; j < o.count; ++j) tile[j * kTileRows + r] = src[j];
      }
    });
    for (int64_t j = 0; j < o.count; ++j) states[j].add(tile + j * kTileRows, m, rb);
  }
}

// Calls f(Outputs) over every output: in parallel over outputs when there are enough of
// them (tiles of adjacent outputs where the input allows), else one at a time with each
// output's elements split across threads.
template <class F>
void for_outputs(State& st, const Geom& g, const F& f) {
  const bool over_outputs = g.M >= 4 * st.pool.num_threads() || g.M * g.R <= 2 * kGrain;
  const int64_t elem = dtype_size(g.in_dtype);
  const bool rows_contiguous = g.reduced.strides[0][g.reduced.ndim - 1] == elem;
  auto visit = [&](char* const* p, const int64_t* s, int64_t n, bool split) {
    const int64_t step = !split && !rows_contiguous && s[1] == elem ? kTile : 1;
    for (int64_t i = 0; i < n; i += step)
      f(Outputs{p[1] + i * s[1], s[1], p[0] + i * s[0], s[0], std::min(step, n - i), split});
  };
  if (over_outputs) {
    st.pool.parallel_for(g.M, std::max<int64_t>(1, kGrain / g.R), [&](int64_t b, int64_t e) {
      g.kept.for_each_run(b, e, [&](char* const* p, const int64_t* s, int64_t n, int64_t) { visit(p, s, n, false); });
    });
  } else {
    g.kept.for_each_run(0, g.M, [&](char* const* p, const int64_t* s, int64_t n, int64_t) { visit(p, s, n, true); });
  }
}

template <class A>
void store_acc(int32_t dt, char* out, A v) {
  if constexpr (std::is_integral_v<A>) store_int64(dt, out, v);
  else store_double(dt, out, static_cast<double>(v));
}

enum class Red { Sum, Mean, Prod, Max, Min, ArgMax, ArgMin, Var, Std };

template <Red kRed>
void reduce_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  Geom g;
  make_geom(a, g);
  const int32_t out_dt = a->outputs[0].dtype;
  const int64_t correction = a->attrs->correction;
  dispatch_compute(g.cdt, [&](auto z) {
    using C = decltype(z);
    for_outputs(st, g, [&](const Outputs& o) {
      auto store_each = [&](auto&& value) {
        for (int64_t j = 0; j < o.count; ++j) store_acc(out_dt, o.out + j * o.out_step, value(j));
      };
      if constexpr (kRed == Red::Sum || kRed == Red::Mean) {
        SumR<C> r[kTile];
        reduce_many<C>(st, g, o, r);
        if constexpr (kRed == Red::Sum) store_each([&](int64_t j) { return r[j].acc; });
        else store_each([&](int64_t j) { return static_cast<double>(r[j].acc) / static_cast<double>(g.R); });
      } else if constexpr (kRed == Red::Prod) {
        ProdR<C> r[kTile];
        reduce_many<C>(st, g, o, r);
        store_each([&](int64_t j) { return r[j].acc; });
      } else if constexpr (kRed == Red::Max || kRed == Red::Min) {
        ExtremeR<C, kRed == Red::Max> r[kTile];
        reduce_many<C>(st, g, o, r);
        store_each([&](int64_t j) { return r[j].acc; });
      } else if constexpr (kRed == Red::ArgMax || kRed == Red::ArgMin) {
        ArgR<C, kRed == Red::ArgMax> r[kTile];
        reduce_many<C>(st, g, o, r);
        store_each([&](int64_t j) { return r[j].index; });
      } else {  // var/std: mean first, then the squared deviations from it
        SumR<C> sums[kTile];
        reduce_many<C>(st, g, o, sums);
        SqDevR<C> dev[kTile];
        for (int64_t j = 0; j < o.count; ++j) dev[j].mean = static_cast<double>(sums[j].acc) / static_cast<double>(g.R);
        reduce_many<C>(st, g, o, dev);
        const double denom = static_cast<double>(std::max<int64_t>(g.R - correction, 0));
        store_each([&](int64_t j) {
          const double var = dev[j].acc / denom;
          return kRed == Red::Std ? std::sqrt(var) : var;
        });
      }
    });
  });
}

// ---------------------------------------------------------------------------------------
// Softmax

// Outputs of at least this many bytes are written with non-temporal stores: they do not fit
// in the last-level cache anyway, and streaming skips the read for ownership of each line.
constexpr int64_t kStreamBytes = int64_t{32} << 20;

// A float32 row whose output is still to be written: out[i] = a[i] * mul + add, where a is
// the row's exponentials (softmax, mul = 1 / sum) or the row itself (log_softmax, add = -lse).
struct PendingRow {
  float* out;  // nullptr: no row pending
  const float* a;
  float mul, add;
  bool nt;     // non-temporal stores (out is 16-byte aligned)
};

// Writes the pending row's elements [i, i + 16).
TSR_INLINE void put16(const PendingRow& p, int64_t i) {
#if TSR_CPU_X86
  if (p.nt) {
    typedef float F32x4 __attribute__((vector_size(16)));
    for (int k = 0; k < 16; k += 4) {
      F32x4 v;
      std::memcpy(&v, p.a + i + k, sizeof v);
      __builtin_ia32_movntps(p.out + i + k, v * p.mul + p.add);
    }
    return;
  }
#endif
  F32x8 v0, v1;
  std::memcpy(&v0, p.a + i, sizeof v0);
  std::memcpy(&v1, p.a + i + 8, sizeof v1);
  v0 = v0 * p.mul + p.add;
  v1 = v1 * p.mul + p.add;
  std::memcpy(p.out + i, &v0, sizeof v0);
  std::memcpy(p.out + i + 8, &v1, sizeof v1);
}

// Writes the pending row's elements [begin, n).
TSR_INLINE void put_rest(const PendingRow& p, int64_t begin, int64_t n) {
  int64_t i = begin;
  for (; i + 16 <= n; i += 16) put16(p, i);
  for (; i < n; ++i) p.out[i] = p.a[i] * p.mul + p.add;
}

// The exp pass of one float32 row (x, n elements, max m finite), 16 elements per step:
// stores e^(x - m) to e (when kStore) and returns its sum. Meanwhile it writes the pending row's output (its
// write traffic overlaps this row's compute) and prefetches one line of pf0 and pf1 per
// 16 elements: the next row, and where the next writes go.
template <bool kStore>
TSR_INLINE void exp_step(float* dst, const float* src, float m, F32x8& acc0, F32x8& acc1) {  // 16 elements
  F32x8 v0, v1;
  std::memcpy(&v0, src, sizeof v0);
  std::memcpy(&v1, src + 8, sizeof v1);
  v0 = exp_nonpositive(v0 - m);
  v1 = exp_nonpositive(v1 - m);
  if constexpr (kStore) {
    std::memcpy(dst, &v0, sizeof v0);
    std::memcpy(dst + 8, &v1, sizeof v1);
  }
  acc0 += v0;
  acc1 += v1;
}

template <bool kStore>
TSR_INLINE double exp_pass(float* e, const float* x, int64_t n, float m, const PendingRow& pend,
                           const float* pf0, const float* pf1) {
  double total = 0;
  const int64_t n16 = n / 16 * 16;
  for (int64_t b = 0; b < n; b += 4096) {  // float lanes within a block, blocks in double
    const int64_t end = std::min(n16, b + 4096);
    F32x8 acc0 = {}, acc1 = {};
    int64_t i = b;
    if (pend.out != nullptr) {
      for (; i < end; i += 16) {
        __builtin_prefetch(pf0 + i, 0, 2);
        __builtin_prefetch(pf1 + i, 0, 2);
        exp_step<kStore>(e + i, x + i, m, acc0, acc1);
        put16(pend, i);
      }
    } else {
      for (; i < end; i += 16) {
        __builtin_prefetch(pf0 + i, 0, 2);
        __builtin_prefetch(pf1 + i, 0, 2);
        exp_step<kStore>(e + i, x + i, m, acc0, acc1);
      }
    }
    if (i < std::min(n, b + 4096)) {  // the row's tail, padded with -inf (whose exp is 0)
      float buf[16];
      for (int j = 0; j < 16; ++j) buf[j] = i + j < n ? x[i + j] : -INFINITY;
      exp_step<kStore>(buf, buf, m, acc0, acc1);
      if constexpr (kStore) std::memcpy(e + i, buf, (n - i) * sizeof(float));
    }
    acc0 += acc1;
    float s = 0;
    for (int j = 0; j < 8; ++j) s += acc0[j];
    total += s;
  }
  if (pend.out != nullptr) put_rest(pend, n16, n);
  return total;
}

// float32 softmax or log_softmax over `count` rows of n contiguous elements (out may be x),
// pipelined: a max pass over row r (prefetched during row r-1), then one pass that
// computes row r's exponentials into scratch and their sum, writes row r-1's output and
// prefetches row r+1. scratch holds 2n floats; with `stream` the output is written with
// non-temporal stores where 16-byte aligned.
struct SoftmaxRowsF32K {
  static TSR_INLINE void run(char* out, int64_t out_stride, const char* x, int64_t x_stride, int64_t count,
                             int64_t n, bool log, bool stream, float* scratch) {
    PendingRow pend{nullptr, nullptr, 0, 0, false};
    for (int64_t r = 0; r < count; ++r) {
      float* o = reinterpret_cast<float*>(out + r * out_stride);
      const float* xr = reinterpret_cast<const float*>(x + r * x_stride);
      const float* next = r + 1 < count ? reinterpret_cast<const float*>(x + (r + 1) * x_stride) : xr;
      float* e = scratch + (r % 2) * n;
      const float m = row_extreme<float, true>(xr, n, -INFINITY);
      if (!(m - m == 0.0f)) {  // a NaN or infinite max: exp(x - m) sums to NaN, as does every output
        if (pend.out != nullptr) put_rest(pend, 0, n);
        pend.out = nullptr;
        std::fill(o, o + n, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      const float* pf_out = stream ? next : o;  // o is written during the next row's pass
      const double sum = log ? exp_pass<false>(e, xr, n, m, pend, next, pf_out)
                             : exp_pass<true>(e, xr, n, m, pend, next, pf_out);
      const bool nt = stream && reinterpret_cast<uintptr_t>(o) % 16 == 0;
      pend = log ? PendingRow{o, xr, 1.0f, static_cast<float>(-(m + std::log(sum))), nt}
                 : PendingRow{o, e, static_cast<float>(1 / sum), 0.0f, nt};
    }
    if (pend.out != nullptr) put_rest(pend, 0, n);
#if TSR_CPU_X86
    if (stream) __builtin_ia32_sfence();  // streamed stores are globally visible when the rows are done
#endif
  }
};

// float64 softmax or log_softmax over n contiguous elements (out may be x): max, exp and
// sum, output.
struct SoftmaxRowF64K {
  static TSR_INLINE void run(double* out, const double* x, int64_t n, bool log) {
    const double m = row_extreme<double, true>(x, n, -INFINITY);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::exp(x[i] - m);
      if (!log) out[i] = e;
      sum += e;
    }
    if (log) {
      const double lse = m + std::log(sum);
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) out[i] = x[i] - lse;
    } else {
      const double inv = 1 / sum;
      for (int64_t i = 0; i < n; ++i) out[i] *= inv;
    }
  }
};

template <bool kLog>
void softmax_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  TsrTensorDesc& out = a->outputs[0];
  const TsrTensorDesc& in = a->inputs[0];
  const int64_t dim = a->attrs->dim;
  if (in.ndim > 0 && (dim < 0 || dim >= in.ndim))
    raise_error(TSR_ERR_INDEX, "dim %lld out of range for %d dims", static_cast<long long>(dim), in.ndim);
  const int64_t n = in.ndim > 0 ? in.sizes[dim] : 1;
  const int64_t out_step = in.ndim > 0 ? out.strides[dim] * dtype_size(out.dtype) : 0;
  const int64_t in_step = in.ndim > 0 ? in.strides[dim] * dtype_size(in.dtype) : 0;
  TsrTensorDesc out_rows = out, in_rows = in;
  if (in.ndim > 0) out_rows.sizes[dim] = in_rows.sizes[dim] = 1;
  const TsrTensorDesc* descs[2] = {&out_rows, &in_rows};
  NdIter rows;
  rows.init(descs, 2, true);
  const int32_t cdt = compute_dtype(in.dtype);
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    if constexpr (std::is_integral_v<C>) {
      raise_error(TSR_ERR_NOT_IMPLEMENTED, "integer dtypes are not supported");
    } else {
      const bool native = in.dtype == cdt && out.dtype == cdt && in_step == sizeof(C) && out_step == sizeof(C);
      const bool stream = native && rows.numel * n * int64_t{sizeof(C)} >= kStreamBytes;
      // Each task is a contiguous block of rows (parallel_for's split): runs of rows that
      // are pipelined and prefetched one after another.
      st.pool.parallel_for(rows.numel, std::max<int64_t>(1, 8192 / n), [&](int64_t b, int64_t e) {
        constexpr bool kF32 = std::is_same_v<C, float>;
        std::vector<C> row(native ? 0 : n), scratch(kF32 ? 2 * n : 0);  // one per task
        rows.for_each_run(b, e, [&](char* const* p, const int64_t* s, int64_t count, int64_t) {
          if (native && kF32) {
            isa_run<SoftmaxRowsF32K>(p[0], s[0], static_cast<const char*>(p[1]), s[1], count, n, kLog, stream,
                                     reinterpret_cast<float*>(scratch.data()));
            return;
          }
          for (int64_t r = 0; r < count; ++r) {
            char* o = p[0] + r * s[0];
            const char* x = p[1] + r * s[1];
            C* buf = native ? reinterpret_cast<C*>(o) : row.data();
            if (!native) load_run(cdt, in.dtype, x, in_step, n, buf);
            const C* src = native ? reinterpret_cast<const C*>(x) : buf;
            if constexpr (kF32)
              isa_run<SoftmaxRowsF32K>(reinterpret_cast<char*>(buf), int64_t{0}, reinterpret_cast<const char*>(src),
                                       int64_t{0}, int64_t{1}, n, kLog, false, reinterpret_cast<float*>(scratch.data()));
            else
              isa_run<SoftmaxRowF64K>(buf, src, n, kLog);
            if (!native) store_run(cdt, out.dtype, buf, n, o, out_step);
          }
        });
      });
    }
  });
}

}  // namespace

#define TSR_KERNEL(name, ...) \
  int32_t kernel_##name(const TsrKernelArgs* a) { return run_kernel(a, &__VA_ARGS__); }
TSR_KERNEL(sum, reduce_body<Red::Sum>)
TSR_KERNEL(mean, reduce_body<Red::Mean>)
TSR_KERNEL(max, reduce_body<Red::Max>)
TSR_KERNEL(min, reduce_body<Red::Min>)
TSR_KERNEL(argmax, reduce_body<Red::ArgMax>)
TSR_KERNEL(argmin, reduce_body<Red::ArgMin>)
TSR_KERNEL(prod, reduce_body<Red::Prod>)
TSR_KERNEL(var, reduce_body<Red::Var>)
TSR_KERNEL(std, reduce_body<Red::Std>)
TSR_KERNEL(softmax, softmax_body<false>)
TSR_KERNEL(log_softmax, softmax_body<true>)
#undef TSR_KERNEL

}  // namespace tessera_cpu
