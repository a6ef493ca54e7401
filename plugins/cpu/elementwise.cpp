// Elementwise kernels of the CPU plugin: unary, binary (alpha, scalar operands), compare,
// where, clamp, copy, fill and arange. One engine walks the operands (any strides, any
// dtypes) and feeds contiguous compute-typed blocks to a vectorized functor loop.
#include <limits>

#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kBlock = 1024;         // elements per buffered block
constexpr int64_t kGrainCheap = 32768;   // elements per task: add, copy, ...
constexpr int64_t kGrainHeavy = 4096;    // elements per task: exp, sin, pow, ...

// ---------------------------------------------------------------------------------------
// The engine

// out[0..n) = op(in0[0..n), ...) on compute-typed pointers.
using BlockFn = void (*)(void* out, const void* const* in, int64_t n, const void* op);

template <class Op, class R, class A>
struct Map1 {
  static TSR_INLINE void run(void* out, const void* const* in, int64_t n, const void* opp) {
    const Op op = *static_cast<const Op*>(opp);
    R* o = static_cast<R*>(out);
    const A* a = static_cast<const A*>(in[0]);
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = op(a[i]);
  }
};

template <class Op, class R, class A, class B>
struct Map2 {
  static TSR_INLINE void run(void* out, const void* const* in, int64_t n, const void* opp) {
    const Op op = *static_cast<const Op*>(opp);
    R* o = static_cast<R*>(out);
    const A* a = static_cast<const A*>(in[0]);
    const B* b = static_cast<const B*>(in[1]);
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = op(a[i], b[i]);
  }
};

template <class Op, class R, class A, class B, class D>
struct Map3 {
  static TSR_INLINE void run(void* out, const void* const* in, int64_t n, const void* opp) {
    const Op op = *static_cast<const Op*>(opp);
    R* o = static_cast<R*>(out);
    const A* a = static_cast<const A*>(in[0]);
    const B* b = static_cast<const B*>(in[1]);
    const D* d = static_cast<const D*>(in[2]);
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = op(a[i], b[i], d[i]);
  }
};

template <class K>
void block_fn(void* out, const void* const* in, int64_t n, const void* op) {
  isa_run<K>(out, in, n, op);
}

struct EwCall {
  TsrTensorDesc* out;
  int32_t out_cdt;
  int num_in = 0;
  const TsrTensorDesc* in[3] = {};
  int32_t in_cdt[3] = {};
  const void* constant[3] = {};  // non-null: operand k is this compute-typed scalar
  BlockFn fn = nullptr;
  const void* op = nullptr;
  int64_t grain = kGrainCheap;
};

bool is_contiguous(const TsrTensorDesc& d) {
  int64_t expected = 1;
  for (int i = d.ndim - 1; i >= 0; --i) {
    if (d.sizes[i] != 1 && d.strides[i] != expected) return false;
    expected *= d.sizes[i];
  }
  return true;
}

int64_t numel_of(const TsrTensorDesc& d) {
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  return n;
}

// Every operand a contiguous tensor of its compute dtype: no iterator, no buffers.
bool run_contiguous(State& st, const EwCall& c) {
  if (c.out->dtype != c.out_cdt || !is_contiguous(*c.out)) return false;
  for (int k = 0; k < c.num_in; ++k)
    if (c.constant[k] != nullptr || c.in[k]->dtype != c.in_cdt[k] || !is_contiguous(*c.in[k])) return false;
  st.pool.parallel_for(numel_of(*c.out), c.grain, [&](int64_t begin, int64_t end) {
    const void* ins[3];
    for (int k = 0; k < c.num_in; ++k)
      ins[k] = static_cast<const char*>(c.in[k]->data) + begin * dtype_size(c.in_cdt[k]);
    c.fn(static_cast<char*>(c.out->data) + begin * dtype_size(c.out_cdt), ins, end - begin, c.op);
  });
  return true;
}

void run_elementwise(State& st, const EwCall& c) {
  if (run_contiguous(st, c)) return;
  const TsrTensorDesc* descs[kMaxOperands] = {c.out};
  int slot[3] = {-1, -1, -1};  // operand -> iterator operand, -1 for constants
  int num_ops = 1;
  for (int k = 0; k < c.num_in; ++k)
    if (c.constant[k] == nullptr) {
      slot[k] = num_ops;
      descs[num_ops++] = c.in[k];
    }
  NdIter it;
  it.init(descs, num_ops, true);
  const int64_t out_size = dtype_size(c.out_cdt);
  st.pool.parallel_for(it.numel, c.grain, [&](int64_t begin, int64_t end) {
    alignas(64) char bufs[4][kBlock * 8];  // [0] output, [1 + k] operand k
    for (int k = 0; k < c.num_in; ++k) {
      if (c.constant[k] == nullptr) continue;
      const int64_t n = std::min(kBlock, end - begin);
      const int64_t size = dtype_size(c.in_cdt[k]);
      for (int64_t i = 0; i < n; ++i) std::memcpy(bufs[1 + k] + i * size, c.constant[k], size);
    }
    it.for_each_run(begin, end, [&](char* const* p, const int64_t* s, int64_t n, int64_t) {
      bool direct[3];
      bool all_direct = c.out->dtype == c.out_cdt && s[0] == out_size;
      for (int k = 0; k < c.num_in; ++k) {
        const int j = slot[k];
        direct[k] = j >= 0 && c.in[k]->dtype == c.in_cdt[k] && s[j] == dtype_size(c.in_cdt[k]);
        all_direct = all_direct && direct[k];
      }
      const int64_t step = all_direct ? n : kBlock;
      for (int64_t off = 0; off < n; off += step) {
        const int64_t m = std::min(step, n - off);
        const void* ins[3];
        for (int k = 0; k < c.num_in; ++k) {
          const int j = slot[k];
          if (j < 0) {
            ins[k] = bufs[1 + k];
          } else if (direct[k]) {
            ins[k] = p[j] + off * s[j];
          } else {
            load_run(c.in_cdt[k], c.in[k]->dtype, p[j] + off * s[j], s[j], m, bufs[1 + k]);
            ins[k] = bufs[1 + k];
          }
        }
        const bool out_direct = c.out->dtype == c.out_cdt && s[0] == out_size;
        c.fn(out_direct ? p[0] + off * s[0] : bufs[0], ins, m, c.op);
        if (!out_direct) store_run(c.out_cdt, c.out->dtype, bufs[0], m, p[0] + off * s[0], s[0]);
      }
    });
  });
}

// Operands of a kernel call in op order: the scalar operand (attrs->scalar_arg) sits in
// `scalar`, the rest are args->inputs in order.
void set_operands(EwCall& c, const TsrKernelArgs* a, int num_operands, const int32_t* cdts,
                  const void* scalar) {
  c.out = &a->outputs[0];
  c.num_in = num_operands;
  int next = 0;
  for (int k = 0; k < num_operands; ++k) {
    c.in_cdt[k] = cdts[k];
    if (scalar != nullptr && k == a->attrs->scalar_arg)
      c.constant[k] = scalar;
    else
      c.in[k] = &a->inputs[next++];
  }
  if (next != a->num_inputs)
    raise_error(TSR_ERR_INVALID_ARGUMENT, "expected %d tensor inputs, got %d", next, a->num_inputs);
}

template <class K, class Op>
void run_op(State& st, EwCall& c, const Op& op) {
  c.fn = &block_fn<K>;
  c.op = &op;
  run_elementwise(st, c);
}

[[noreturn]] void unsupported(int32_t dt) {
  static const char* names[TSR_NUM_DTYPES] = {"bool", "uint8", "int32", "int64",
                                              "float16", "bfloat16", "float32", "float64"};
  raise_error(TSR_ERR_NOT_IMPLEMENTED, "dtype %s is not supported",
              dt >= 0 && dt < TSR_NUM_DTYPES ? names[dt] : "?");
}

// ---------------------------------------------------------------------------------------
// Functors. Integer arithmetic wraps (computed in uint64_t, narrowed on store).

template <class C>
TSR_INLINE C wrap_add(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  else return a + b;
}
template <class C>
TSR_INLINE C wrap_mul(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
  else return a * b;
}
template <class C>
TSR_INLINE C wrap_neg(C a) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(uint64_t{0} - static_cast<uint64_t>(a));
  else return -a;
}

#define TSR_UNARY_FUNCTOR(Name, expr)                      \
  template <class C>                                      \
  struct Name {                                           \
    explicit Name(const TsrAttrs&) {}                     \
    TSR_INLINE C operator()(C x) const { return (expr); } \
  };
TSR_UNARY_FUNCTOR(Neg, wrap_neg(x))
TSR_UNARY_FUNCTOR(Abs, x < C(0) ? wrap_neg(x) : x)
TSR_UNARY_FUNCTOR(Exp, exp_c(x))
TSR_UNARY_FUNCTOR(Log, std::log(x))
TSR_UNARY_FUNCTOR(Sqrt, std::sqrt(x))
TSR_UNARY_FUNCTOR(Rsqrt, C(1) / std::sqrt(x))
TSR_UNARY_FUNCTOR(Sin, std::sin(x))
TSR_UNARY_FUNCTOR(Cos, std::cos(x))
TSR_UNARY_FUNCTOR(Tanh, std::tanh(x))
TSR_UNARY_FUNCTOR(Sigmoid, C(1) / (C(1) + exp_c(-x)))
TSR_UNARY_FUNCTOR(Relu, x < C(0) ? C(0) : x)  // NaN stays NaN
TSR_UNARY_FUNCTOR(Silu, x / (C(1) + exp_c(-x)))
TSR_UNARY_FUNCTOR(Identity, x)
#undef TSR_UNARY_FUNCTOR

template <class C>
struct Gelu {
  bool tanh_form;
  explicit Gelu(const TsrAttrs& at) : tanh_form(at.approximate != 0) {}
  TSR_INLINE C operator()(C x) const {
    if (tanh_form) {
      const C inner = C(0.7978845608028654) * (x + C(0.044715) * x * x * x);
      return C(0.5) * x * (C(1) + std::tanh(inner));
    }
    return C(0.5) * x * (C(1) + std::erf(x * C(0.7071067811865476)));
  }
};

// gelu_backward(grad, x) = grad * d/dx gelu(x), in the form attrs.approximate picks.
template <class C>
struct GeluBackward {
  bool tanh_form;
  explicit GeluBackward(const TsrAttrs& at) : tanh_form(at.approximate != 0) {}
  TSR_INLINE C operator()(C g, C x) const {
    if (tanh_form) {
      const C k = C(0.7978845608028654), c = C(0.044715);
      const C t = std::tanh(k * (x + c * x * x * x));
      return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k * (C(1) + C(3) * c * x * x));
    }
    const C cdf = C(0.5) * (C(1) + std::erf(x * C(0.7071067811865476)));
    const C pdf = C(0.3989422804014327) * std::exp(C(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};

template <class C>
struct Clamp {
  C lo, hi;  // absent bounds are -inf/+inf (lowest/max for integers)
  explicit Clamp(const TsrAttrs& at)
      : lo(at.has_scalar ? scalar_as<C>(at.scalar) : bound(false)),
        hi(at.has_scalar2 ? scalar_as<C>(at.scalar2) : bound(true)) {}
  static C bound(bool upper) {
    if constexpr (std::is_integral_v<C>) return upper ? std::numeric_limits<C>::max() : std::numeric_limits<C>::lowest();
    else return upper ? C(INFINITY) : C(-INFINITY);
  }
  TSR_INLINE C operator()(C x) const {  // NaN in x or in a bound gives NaN, as PyTorch does
    x = (x < lo || lo != lo) ? lo : x;
    return (x > hi || hi != hi) ? hi : x;
  }
};

template <class C>
struct Add {
  C alpha;
  explicit Add(const TsrAttrs& at) : alpha(scalar_as<C>(at.alpha)) {}
  TSR_INLINE C operator()(C a, C b) const { return wrap_add(a, wrap_mul(alpha, b)); }
};
template <class C>
struct Sub {
  C alpha;
  explicit Sub(const TsrAttrs& at) : alpha(scalar_as<C>(at.alpha)) {}
  TSR_INLINE C operator()(C a, C b) const { return wrap_add(a, wrap_neg(wrap_mul(alpha, b))); }
};

#define TSR_BINARY_FUNCTOR(Name, R, expr)                        \
  template <class C>                                            \
  struct Name {                                                 \
    explicit Name(const TsrAttrs&) {}                           \
    TSR_INLINE R operator()(C a, C b) const { return (expr); }  \
  };
TSR_BINARY_FUNCTOR(Mul, C, wrap_mul(a, b))
TSR_BINARY_FUNCTOR(Div, C, a / b)
// NaN propagates: a NaN operand is returned.
TSR_BINARY_FUNCTOR(Maximum, C, (a > b || a != a) ? a : b)
TSR_BINARY_FUNCTOR(Minimum, C, (a < b || a != a) ? a : b)
TSR_BINARY_FUNCTOR(Eq, uint8_t, a == b)
TSR_BINARY_FUNCTOR(Ne, uint8_t, a != b)
TSR_BINARY_FUNCTOR(Lt, uint8_t, a < b)
TSR_BINARY_FUNCTOR(Le, uint8_t, a <= b)
TSR_BINARY_FUNCTOR(Gt, uint8_t, a > b)
TSR_BINARY_FUNCTOR(Ge, uint8_t, a >= b)
#undef TSR_BINARY_FUNCTOR

template <class C>
struct Pow {
  explicit Pow(const TsrAttrs&) {}
  TSR_INLINE C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) {  // exponents were checked non-negative
      uint64_t r = 1, x = static_cast<uint64_t>(a);
      for (int64_t e = b; e > 0; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
      }
      return static_cast<C>(r);
    } else {
      return std::pow(a, b);
    }
  }
};

template <class C>
struct Where {
  explicit Where(const TsrAttrs&) {}
  TSR_INLINE C operator()(uint8_t cond, C a, C b) const { return cond ? a : b; }
};

// ---------------------------------------------------------------------------------------
// Kernel bodies per kind

// Ints: whether the op has an integer (int64 compute) form; Heavy: transcendental cost.
template <template <class> class Op, bool Ints, bool Heavy>
void unary_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  const int32_t cdt = compute_dtype(a->outputs[0].dtype);
  EwCall c;
  c.out_cdt = cdt;
  c.grain = Heavy ? kGrainHeavy : kGrainCheap;
  set_operands(c, a, 1, &cdt, nullptr);
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    if constexpr (std::is_integral_v<C> && !Ints) {
      unsupported(a->outputs[0].dtype);
    } else {
      run_op<Map1<Op<C>, C, C>>(st, c, Op<C>(*a->attrs));
    }
  });
}

// Raises the PyTorch error when an integer exponent is negative.
void check_int_exponents(const TsrKernelArgs* a) {
  const TsrAttrs& at = *a->attrs;
  if (at.scalar_arg == 1) {
    if (scalar_as<int64_t>(at.scalar) < 0)
      raise_error(TSR_ERR_RUNTIME, "Integers to negative integer powers are not allowed");
    return;
  }
  const TsrTensorDesc* e = &a->inputs[a->num_inputs - 1];
  NdIter it;
  it.init(&e, 1, true);
  bool negative = false;
  int64_t buf[kBlock];
  it.for_each_run(0, it.numel, [&](char* const* p, const int64_t* s, int64_t n, int64_t) {
    for (int64_t off = 0; off < n && !negative; off += kBlock) {
      const int64_t m = std::min(kBlock, n - off);
      load_run(TSR_INT64, e->dtype, p[0] + off * s[0], s[0], m, buf);
      for (int64_t i = 0; i < m; ++i) negative |= buf[i] < 0;
    }
  });
  if (negative) raise_error(TSR_ERR_RUNTIME, "Integers to negative integer powers are not allowed");
}

template <template <class> class Op, bool Ints, bool Heavy>
void binary_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  const int32_t cdt = compute_dtype(a->outputs[0].dtype);
  const int32_t cdts[2] = {cdt, cdt};
  EwCall c;
  c.out_cdt = cdt;
  c.grain = Heavy ? kGrainHeavy : kGrainCheap;
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    if constexpr (std::is_integral_v<C> && !Ints) {
      unsupported(a->outputs[0].dtype);
    } else {
      if constexpr (std::is_integral_v<C> && std::is_same_v<Op<C>, Pow<C>>) check_int_exponents(a);
      const C scalar = scalar_as<C>(a->attrs->scalar);
      set_operands(c, a, 2, cdts, &scalar);
      run_op<Map2<Op<C>, C, C, C>>(st, c, Op<C>(*a->attrs));
    }
  });
}

template <template <class> class Op>
void compare_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  const int32_t cdt = compute_dtype(a->inputs[0].dtype);
  const int32_t cdts[2] = {cdt, cdt};
  EwCall c;
  c.out_cdt = TSR_BOOL;
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    const C scalar = scalar_as<C>(a->attrs->scalar);
    set_operands(c, a, 2, cdts, &scalar);
    run_op<Map2<Op<C>, uint8_t, C, C>>(st, c, Op<C>(*a->attrs));
  });
}

void where_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  const int32_t cdt = compute_dtype(a->outputs[0].dtype);
  const int32_t cdts[3] = {TSR_BOOL, cdt, cdt};
  EwCall c;
  c.out_cdt = cdt;
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    const C scalar = scalar_as<C>(a->attrs->scalar);
    set_operands(c, a, 3, cdts, &scalar);
    run_op<Map3<Where<C>, C, uint8_t, C, C>>(st, c, Where<C>(*a->attrs));
  });
}

void clamp_body(const TsrKernelArgs* a) { unary_body<Clamp, true, false>(a); }

// Same dtype: bytes move as they are (memmove per contiguous run).
template <class U>
void copy_elements(char* dst, int64_t ds, const char* src, int64_t ss, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    U v;
    std::memcpy(&v, src + i * ss, sizeof(U));
    std::memcpy(dst + i * ds, &v, sizeof(U));
  }
}

void copy_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  TsrTensorDesc& out = a->outputs[0];
  const TsrTensorDesc& in = a->inputs[0];
  if (out.dtype == in.dtype) {
    const TsrTensorDesc* descs[2] = {&out, &in};
    NdIter it;
    it.init(descs, 2, true);
    const int64_t size = dtype_size(out.dtype);
    st.pool.parallel_for(it.numel, kGrainCheap * 2, [&](int64_t begin, int64_t end) {
      it.for_each_run(begin, end, [&](char* const* p, const int64_t* s, int64_t n, int64_t) {
        if (p[0] == p[1] && s[0] == s[1]) return;
        if (s[0] == size && s[1] == size) {
          std::memmove(p[0], p[1], n * size);
          return;
        }
        switch (size) {
          case 1: copy_elements<uint8_t>(p[0], s[0], p[1], s[1], n); break;
          case 2: copy_elements<uint16_t>(p[0], s[0], p[1], s[1], n); break;
          case 4: copy_elements<uint32_t>(p[0], s[0], p[1], s[1], n); break;
          default: copy_elements<uint64_t>(p[0], s[0], p[1], s[1], n); break;
        }
      });
    });
    return;
  }
  // Converting: through float32 into float16/bfloat16/float32 (one rounding, as PyTorch),
  // float64 into float64, int64 between integers/bool, float64 from floats into integers.
  int32_t cdt;
  if (is_float_dtype(out.dtype))
    cdt = out.dtype == TSR_FLOAT64 ? TSR_FLOAT64 : TSR_FLOAT32;
  else
    cdt = is_float_dtype(in.dtype) ? TSR_FLOAT64 : TSR_INT64;
  EwCall c;
  c.out_cdt = cdt;
  set_operands(c, a, 1, &cdt, nullptr);
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    run_op<Map1<Identity<C>, C, C>>(st, c, Identity<C>(*a->attrs));
  });
}

template <class U>
void fill_elements(char* dst, int64_t stride, int64_t n, const void* value) {
  U v;
  std::memcpy(&v, value, sizeof(U));
  if (stride == sizeof(U)) {
    U* d = reinterpret_cast<U*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = v;
  } else {
    for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * stride, &v, sizeof(U));
  }
}

void fill_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  TsrTensorDesc& out = a->outputs[0];
  const TsrScalar& s = a->attrs->scalar;
  alignas(8) char value[8];
  if (s.kind == TSR_SCALAR_FLOAT)
    store_double(out.dtype, value, s.v.f);
  else
    store_int64(out.dtype, value, s.v.i);
  const TsrTensorDesc* descs[1] = {&out};
  NdIter it;
  it.init(descs, 1, true);
  const int64_t size = dtype_size(out.dtype);
  st.pool.parallel_for(it.numel, kGrainCheap * 2, [&](int64_t begin, int64_t end) {
    it.for_each_run(begin, end, [&](char* const* p, const int64_t* st_, int64_t n, int64_t) {
      switch (size) {
        case 1: fill_elements<uint8_t>(p[0], st_[0], n, value); break;
        case 2: fill_elements<uint16_t>(p[0], st_[0], n, value); break;
        case 4: fill_elements<uint32_t>(p[0], st_[0], n, value); break;
        default: fill_elements<uint64_t>(p[0], st_[0], n, value); break;
      }
    });
  });
}

void arange_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  TsrTensorDesc& out = a->outputs[0];
  const TsrAttrs& at = *a->attrs;
  const int64_t n = out.ndim == 0 ? 1 : out.sizes[0];
  const int64_t stride = (out.ndim == 0 ? 1 : out.strides[0]) * dtype_size(out.dtype);
  const int32_t cdt = is_float_dtype(out.dtype) ? TSR_FLOAT64 : TSR_INT64;
  dispatch_compute(cdt, [&](auto z) {
    using C = decltype(z);
    const C start = scalar_as<C>(at.scalar), step = scalar_as<C>(at.scalar3);
    st.pool.parallel_for(n, kGrainCheap, [&](int64_t begin, int64_t end) {
      C buf[kBlock];
      for (int64_t off = begin; off < end; off += kBlock) {
        const int64_t m = std::min(kBlock, end - off);
        for (int64_t i = 0; i < m; ++i) buf[i] = wrap_add(start, wrap_mul(static_cast<C>(off + i), step));
        store_run(cdt, out.dtype, buf, m, static_cast<char*>(out.data) + off * stride, stride);
      }
    });
  });
}

}  // namespace

#define TSR_KERNEL(name, ...) \
  int32_t kernel_##name(const TsrKernelArgs* a) { return run_kernel(a, &__VA_ARGS__); }
TSR_KERNEL(neg, unary_body<Neg, true, false>)
TSR_KERNEL(abs, unary_body<Abs, true, false>)
TSR_KERNEL(exp, unary_body<Exp, false, true>)
TSR_KERNEL(log, unary_body<Log, false, true>)
TSR_KERNEL(sqrt, unary_body<Sqrt, false, false>)
TSR_KERNEL(rsqrt, unary_body<Rsqrt, false, false>)
TSR_KERNEL(sin, unary_body<Sin, false, true>)
TSR_KERNEL(cos, unary_body<Cos, false, true>)
TSR_KERNEL(tanh, unary_body<Tanh, false, true>)
TSR_KERNEL(sigmoid, unary_body<Sigmoid, false, true>)
TSR_KERNEL(relu, unary_body<Relu, true, false>)
TSR_KERNEL(gelu, unary_body<Gelu, false, true>)
TSR_KERNEL(silu, unary_body<Silu, false, true>)
TSR_KERNEL(add, binary_body<Add, true, false>)
TSR_KERNEL(sub, binary_body<Sub, true, false>)
TSR_KERNEL(mul, binary_body<Mul, true, false>)
TSR_KERNEL(div, binary_body<Div, false, false>)
TSR_KERNEL(pow, binary_body<Pow, true, true>)
TSR_KERNEL(maximum, binary_body<Maximum, true, false>)
TSR_KERNEL(minimum, binary_body<Minimum, true, false>)
TSR_KERNEL(gelu_backward, binary_body<GeluBackward, false, true>)
TSR_KERNEL(eq, compare_body<Eq>)
TSR_KERNEL(ne, compare_body<Ne>)
TSR_KERNEL(lt, compare_body<Lt>)
TSR_KERNEL(le, compare_body<Le>)
TSR_KERNEL(gt, compare_body<Gt>)
TSR_KERNEL(ge, compare_body<Ge>)
TSR_KERNEL(where, where_body)
TSR_KERNEL(clamp, clamp_body)
TSR_KERNEL(copy, copy_body)
TSR_KERNEL(fill, fill_body)
TSR_KERNEL(arange, arange_body)
#undef TSR_KERNEL

}  // namespace tessera_cpu
