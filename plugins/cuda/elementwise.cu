// Elementwise kernels of the CUDA plugin: unary, binary (alpha, scalar operands), compare,
// where, clamp, copy (any dtype pair), fill and arange, with plugins/cpu/elementwise.cpp's
// semantics.
//
// Design. Every map op is a small functor over its compute type C (float for float16/
// bfloat16/float32, double for float64, int64 for the integers and bool: integer results
// wrap through uint64 and are narrowed on store, so bool add is "or", uint8 0 - 1 is 255, as
// on the CPU). Two kernels run a functor. The contiguous one (every tensor operand contiguous,
// of the output's dtype and 16-byte aligned; a scalar operand is a kernel argument) is
// instantiated per storage dtype T: each thread moves 16-byte vectors (4 floats, 8 halves,
// ...; at least 8 elements per thread, all loads issued before any math), one tile of 256
// threads' vectors per block (tens of thousands of blocks for the 64M-element benchmarks),
// the n % V tail done by block 0. The generic one handles everything else (broadcast stride-0
// inputs, strided or misaligned operands, compare's bool output, where's bool condition): it
// is instantiated per compute type only, reads/writes each operand through a warp-uniform
// switch on its dtype, and grid-strides (one wave; 4 elements per thread and step, loads
// first, on the 32-bit path) over the shape collapsed across all
// operands (tcu::collapse), computing every operand's byte offset from one index
// decomposition: 32-bit with multiply-high division when numel and every operand's extent fit
// in 2^31 (bias add [N,C] + [C] costs one umulhi per element; a 1-D collapse none), 64-bit
// division otherwise. Large device math (sin/cos/pow, all double functions) is called, not
// inlined, to keep this file's compile time near 40 s. COPY moves same-dtype contiguous
// tensors with cudaMemcpyAsync, same-dtype strided ones as raw 1/2/4/8-byte words, and
// converts with one kernel per destination type that switches on the source dtype
// (vectorized when both are contiguous and aligned, else per element through two dtype
// switches), with the CPU's rules (one rounding via float32 into 16/32-bit floats, float ->
// integer by int64 truncation, anything -> bool is != 0). FILL uses cudaMemsetAsync when the
// value's bytes are all equal (zeros), else 16-byte pattern stores; ARANGE computes in double
// or int64 like the CPU, without FMA contraction. Integer pow with a negative tensor exponent
// cannot be reported (that needs a host read of device data): it gives PyTorch's result (1 for
// base 1, +-1 for base -1, else 0); a negative scalar exponent fails as on the CPU.
#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cuda_common.cuh"

namespace tcu {
namespace {

constexpr int kThreads = 256;  // threads per block of every kernel here

// 16-byte vectors per thread in the contiguous kernels (V elements each): at least 8
// elements per thread, so every thread has 16-32 bytes per operand in flight.
constexpr int vecs_per_thread(int v) { return v >= 8 ? 1 : 8 / v; }
// Elements per thread and iteration of the generic map kernel (loads batched for latency).
constexpr int kGenericUnroll = 4;

// ---------------------------------------------------------------------------------------
// Storage types and conversions

struct Bool8 {  // TSR_BOOL storage: one byte, 0 or 1 (read as != 0)
  uint8_t v;
};

template <class T>
inline constexpr bool kIsHalfLike = std::is_same_v<T, half> || std::is_same_v<T, bf16>;
template <class T>
inline constexpr bool kIsFloat = std::is_floating_point_v<T> || kIsHalfLike<T>;

template <class T> inline constexpr int32_t kDtypeId = -1;
template <> inline constexpr int32_t kDtypeId<Bool8> = TSR_BOOL;
template <> inline constexpr int32_t kDtypeId<uint8_t> = TSR_UINT8;
template <> inline constexpr int32_t kDtypeId<int32_t> = TSR_INT32;
template <> inline constexpr int32_t kDtypeId<int64_t> = TSR_INT64;
template <> inline constexpr int32_t kDtypeId<half> = TSR_FLOAT16;
template <> inline constexpr int32_t kDtypeId<bf16> = TSR_BFLOAT16;
template <> inline constexpr int32_t kDtypeId<float> = TSR_FLOAT32;
template <> inline constexpr int32_t kDtypeId<double> = TSR_FLOAT64;

// Compute type of a storage type (the CPU plugin's compute_dtype).
template <class T> struct ComputeOf { using type = int64_t; };
template <> struct ComputeOf<half> { using type = float; };
template <> struct ComputeOf<bf16> { using type = float; };
template <> struct ComputeOf<float> { using type = float; };
template <> struct ComputeOf<double> { using type = double; };
template <class T> using compute_of = typename ComputeOf<T>::type;

// Value conversion with the CPU plugin's rules (cpu.h cast): float16/bfloat16 go through
// float, float -> integer truncates through int64 (then wraps), anything -> bool is != 0.
template <class D, class S>
__host__ __device__ __forceinline__ D conv(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<S, Bool8>) {
    return conv<D>(static_cast<int64_t>(s.v != 0));
  } else if constexpr (std::is_same_v<S, half>) {
    return conv<D>(__half2float(s));
  } else if constexpr (std::is_same_v<S, bf16>) {
    return conv<D>(__bfloat162float(s));
  } else if constexpr (std::is_same_v<D, Bool8>) {
    return Bool8{static_cast<uint8_t>(s != S(0))};
  } else if constexpr (std::is_same_v<D, half>) {
    return __float2half_rn(static_cast<float>(s));
  } else if constexpr (std::is_same_v<D, bf16>) {
    return __float2bfloat16_rn(static_cast<float>(s));
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<S>) {
    return static_cast<D>(static_cast<int64_t>(s));
  } else {
    return static_cast<D>(s);
  }
}

// A scalar operand in compute type C, whichever kind it arrived as (cpu.h scalar_as).
template <class C>
C scalar_as(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_FLOAT ? conv<C>(s.v.f) : conv<C>(s.v.i);
}

__host__ __device__ inline bool is_float_dtype(int32_t dt) {
  return dt == TSR_FLOAT16 || dt == TSR_BFLOAT16 || dt == TSR_FLOAT32 || dt == TSR_FLOAT64;
}

const char* dtype_name(int32_t dt) {
  static const char* names[TSR_NUM_DTYPES] = {"bool", "uint8", "int32", "int64",
                                              "float16", "bfloat16", "float32", "float64"};
  return dt >= 0 && dt < TSR_NUM_DTYPES ? names[dt] : "?";
}

int32_t unsupported(const TsrKernelArgs* a, int32_t dt) {
  return fail(a, TSR_ERR_NOT_IMPLEMENTED, "dtype %s is not supported", dtype_name(dt));
}

// Masks of dtypes an op accepts (ops.def's types column).
constexpr unsigned kAny = 0xFFu;
constexpr unsigned kNum = kAny & ~(1u << TSR_BOOL);
constexpr unsigned kFloat = (1u << TSR_FLOAT16) | (1u << TSR_BFLOAT16) | (1u << TSR_FLOAT32) | (1u << TSR_FLOAT64);

template <unsigned Mask, class T>
inline constexpr bool kAllowed = kDtypeId<T> >= 0 && ((Mask >> kDtypeId<T>) & 1u) != 0;

// V elements loaded/stored as one access (16 bytes when V = 16 / sizeof(T)).
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// Reads compute type C from an element of dtype dt (the dtypes whose compute type is C, and
// bool: where's condition). Warp-uniform switch.
template <class C>
__device__ __forceinline__ C load_as(const char* p, int32_t dt) {
  if constexpr (std::is_same_v<C, float>) {
    switch (dt) {
      case TSR_FLOAT32: return *reinterpret_cast<const float*>(p);
      case TSR_FLOAT16: return __half2float(*reinterpret_cast<const half*>(p));
      case TSR_BFLOAT16: return __bfloat162float(*reinterpret_cast<const bf16*>(p));
      default: return *reinterpret_cast<const uint8_t*>(p) != 0 ? 1.0f : 0.0f;
    }
  } else if constexpr (std::is_same_v<C, double>) {
    if (dt == TSR_FLOAT64) return *reinterpret_cast<const double*>(p);
    return *reinterpret_cast<const uint8_t*>(p) != 0 ? 1.0 : 0.0;
  } else {
    switch (dt) {
      case TSR_INT64: return *reinterpret_cast<const int64_t*>(p);
      case TSR_INT32: return *reinterpret_cast<const int32_t*>(p);
      case TSR_UINT8: return *reinterpret_cast<const uint8_t*>(p);
      default: return *reinterpret_cast<const uint8_t*>(p) != 0 ? 1 : 0;
    }
  }
}

// Writes a result of type R (a compute type, or bool for comparisons) as dtype dt.
template <class R>
__device__ __forceinline__ void store_as(char* p, int32_t dt, R v) {
  if constexpr (std::is_same_v<R, bool>) {
    *reinterpret_cast<uint8_t*>(p) = v ? 1 : 0;
  } else if constexpr (std::is_same_v<R, float>) {
    switch (dt) {
      case TSR_FLOAT32: *reinterpret_cast<float*>(p) = v; break;
      case TSR_FLOAT16: *reinterpret_cast<half*>(p) = __float2half_rn(v); break;
      default: *reinterpret_cast<bf16*>(p) = __float2bfloat16_rn(v); break;
    }
  } else if constexpr (std::is_same_v<R, double>) {
    *reinterpret_cast<double*>(p) = v;
  } else {
    switch (dt) {
      case TSR_INT64: *reinterpret_cast<int64_t*>(p) = v; break;
      case TSR_INT32: *reinterpret_cast<int32_t*>(p) = static_cast<int32_t>(v); break;
      case TSR_UINT8: *reinterpret_cast<uint8_t*>(p) = static_cast<uint8_t>(v); break;
      default: *reinterpret_cast<uint8_t*>(p) = v != 0 ? 1 : 0; break;
    }
  }
}

// Any dtype -> C, C -> any dtype (COPY's per-element conversions).
template <class C>
__device__ __forceinline__ C load_any(const char* p, int32_t dt) {
  switch (dt) {
    case TSR_BOOL: return conv<C>(*reinterpret_cast<const Bool8*>(p));
    case TSR_UINT8: return conv<C>(*reinterpret_cast<const uint8_t*>(p));
    case TSR_INT32: return conv<C>(*reinterpret_cast<const int32_t*>(p));
    case TSR_INT64: return conv<C>(*reinterpret_cast<const int64_t*>(p));
    case TSR_FLOAT16: return conv<C>(*reinterpret_cast<const half*>(p));
    case TSR_BFLOAT16: return conv<C>(*reinterpret_cast<const bf16*>(p));
    case TSR_FLOAT32: return conv<C>(*reinterpret_cast<const float*>(p));
    default: return conv<C>(*reinterpret_cast<const double*>(p));
  }
}
template <class C>
__device__ __forceinline__ void store_any(char* p, int32_t dt, C v) {
  switch (dt) {
    case TSR_BOOL: *reinterpret_cast<Bool8*>(p) = conv<Bool8>(v); break;
    case TSR_UINT8: *reinterpret_cast<uint8_t*>(p) = conv<uint8_t>(v); break;
    case TSR_INT32: *reinterpret_cast<int32_t*>(p) = conv<int32_t>(v); break;
    case TSR_INT64: *reinterpret_cast<int64_t*>(p) = conv<int64_t>(v); break;
    case TSR_FLOAT16: *reinterpret_cast<half*>(p) = conv<half>(v); break;
    case TSR_BFLOAT16: *reinterpret_cast<bf16*>(p) = conv<bf16>(v); break;
    case TSR_FLOAT32: *reinterpret_cast<float*>(p) = conv<float>(v); break;
    default: *reinterpret_cast<double*>(p) = conv<double>(v); break;
  }
}

// COPY's compute type (cpu elementwise.cpp copy_body): float into float16/bfloat16/float32,
// double into float64, double from floats into integers/bool, int64 between integers/bool.
template <class S, class D>
using copy_compute = std::conditional_t<
    std::is_same_v<D, double>, double,
    std::conditional_t<kIsFloat<D>, float, std::conditional_t<kIsFloat<S>, double, int64_t>>>;

template <class S, class D>
__device__ __forceinline__ D copy_conv(S s) {
  return conv<D>(conv<copy_compute<S, D>>(s));
}

// ---------------------------------------------------------------------------------------
// Geometry: the operands' shape collapsed together, byte strides, 32- or 64-bit offsets.

// Operand 0 is the output; a null descriptor is a scalar operand (stride 0, never read).
template <int N>
struct Layout {
  int32_t ndim;
  int64_t size[TSR_MAX_DIMS];
  int64_t stride[N][TSR_MAX_DIMS];  // bytes
  int64_t numel;

  void build(const TsrTensorDesc* const* descs) {
    const TsrTensorDesc* present[N];
    int idx[N];
    int m = 0;
    for (int k = 0; k < N; ++k)
      if (descs[k] != nullptr) {
        idx[m] = k;
        present[m++] = descs[k];
      }
    Geometry g;
    Strides st[N];
    collapse(present, m, g, st);
    std::memset(stride, 0, sizeof(stride));
    if (g.ndim == 0) {  // a single element
      ndim = 1;
      size[0] = 1;
      numel = 1;
      return;
    }
    ndim = g.ndim;
    numel = 1;
    for (int d = 0; d < ndim; ++d) {
      size[d] = g.sizes[d];
      numel *= size[d];
    }
    for (int j = 0; j < m; ++j) {
      const int64_t isz = static_cast<int64_t>(itemsize(present[j]->dtype));
      for (int d = 0; d < ndim; ++d) stride[idx[j]][d] = st[j].s[d] * isz;
    }
  }

  // Every index and byte offset below 2^31: the 32-bit path.
  bool fits32() const {
    const int64_t lim = std::numeric_limits<int32_t>::max();
    if (numel > lim) return false;
    for (int k = 0; k < N; ++k) {
      int64_t extent = 0;
      for (int d = 0; d < ndim; ++d) extent += (size[d] - 1) * stride[k][d];
      if (extent > lim) return false;
    }
    return true;
  }
};

// Byte offsets of row-major index i for N operands, 32-bit: q = i / size by multiply-high
// (valid for i, size < 2^31).
template <int N>
struct Calc32 {
  using Idx = uint32_t;
  int32_t ndim;
  uint32_t size[TSR_MAX_DIMS];
  uint32_t magic[TSR_MAX_DIMS];
  uint32_t shift[TSR_MAX_DIMS];
  uint32_t stride[N][TSR_MAX_DIMS];

  explicit Calc32(const Layout<N>& l) : ndim(l.ndim) {
    for (int d = 0; d < TSR_MAX_DIMS; ++d) {
      const uint64_t div = d < ndim ? static_cast<uint64_t>(l.size[d]) : 1;
      uint32_t s = 0;
      while (s < 32 && (uint64_t{1} << s) < div) ++s;
      size[d] = static_cast<uint32_t>(div);
      shift[d] = s;
      magic[d] = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - div)) / div + 1);
      for (int k = 0; k < N; ++k) stride[k][d] = d < ndim ? static_cast<uint32_t>(l.stride[k][d]) : 0;
    }
  }

  __device__ __forceinline__ void offsets(uint32_t i, uint32_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
    for (int d = TSR_MAX_DIMS - 1; d >= 1; --d) {
      if (d < ndim) {
        const uint32_t q = (__umulhi(i, magic[d]) + i) >> shift[d];
        const uint32_t r = i - q * size[d];
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += r * stride[k][d];
        i = q;
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += i * stride[k][0];
  }
};

template <int N>
struct Calc64 {
  using Idx = uint64_t;
  int32_t ndim;
  uint64_t size[TSR_MAX_DIMS];
  uint64_t stride[N][TSR_MAX_DIMS];

  explicit Calc64(const Layout<N>& l) : ndim(l.ndim) {
    for (int d = 0; d < TSR_MAX_DIMS; ++d) {
      size[d] = d < ndim ? static_cast<uint64_t>(l.size[d]) : 1;
      for (int k = 0; k < N; ++k) stride[k][d] = d < ndim ? static_cast<uint64_t>(l.stride[k][d]) : 0;
    }
  }

  __device__ __forceinline__ void offsets(uint64_t i, uint64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
    for (int d = TSR_MAX_DIMS - 1; d >= 1; --d) {
      if (d < ndim) {
        const uint64_t q = i / size[d];
        const uint64_t r = i - q * size[d];
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += r * stride[k][d];
        i = q;
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += i * stride[k][0];
  }
};

// Elements per thread and step of the generic map kernel: 4 on the 32-bit path; 1 on the
// rare 64-bit one, to keep its code (7 inlined 64-bit divisions per element) small.
template <class Calc> inline constexpr int kStepOf = 1;
template <int N> inline constexpr int kStepOf<Calc32<N>> = kGenericUnroll;

template <int N>
struct Ptrs {
  char* p[N];
  int32_t dt[N];
};

// Blocks for `items` at `per_block` each (0 when it exceeds the grid limit).
inline unsigned blocks_for(int64_t items, int64_t per_block) {
  int64_t b = (items + per_block - 1) / per_block;
  if (b < 1) b = 1;
  return b > 0x7FFFFFFF ? 0u : static_cast<unsigned>(b);
}

int32_t too_large(const TsrKernelArgs* a) {
  return fail(a, TSR_ERR_INVALID_ARGUMENT, "tensor too large for one launch");
}

// Grid of a grid-stride kernel over n elements, `per_thread` per thread and iteration: one
// wave of full blocks at most.
unsigned strided_grid(const TsrKernelArgs* a, int64_t n, int per_thread = 1) {
  const int sms = sm_count(device_of(a));
  const int64_t cap = int64_t{sms > 0 ? sms : 132} * (2048 / kThreads);
  const int64_t per_block = int64_t{kThreads} * per_thread;
  int64_t b = (n + per_block - 1) / per_block;
  if (b > cap) b = cap;
  return b < 1 ? 1u : static_cast<unsigned>(b);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---------------------------------------------------------------------------------------
// Functors. C is the compute type; R the result type (C, or bool for comparisons).

template <class C>
__host__ __device__ __forceinline__ C wrap_add(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  else return a + b;
}
template <class C>
__host__ __device__ __forceinline__ C wrap_mul(C a, C b) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
  else return a * b;
}
template <class C>
__host__ __device__ __forceinline__ C wrap_neg(C a) {
  if constexpr (std::is_integral_v<C>) return static_cast<C>(uint64_t{0} - static_cast<uint64_t>(a));
  else return -a;
}

// Float math by compute type. The large ones (sin/cos/pow with their slow argument paths,
// and every double function) are calls, not inlined 8-16 times per kernel: compile time.
__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __noinline__ double m_exp(double x) { return ::exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __noinline__ double m_log(double x) { return ::log(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return ::sqrt(x); }
__device__ __noinline__ float m_sin(float x) { return sinf(x); }
__device__ __noinline__ double m_sin(double x) { return ::sin(x); }
__device__ __noinline__ float m_cos(float x) { return cosf(x); }
__device__ __noinline__ double m_cos(double x) { return ::cos(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __noinline__ double m_tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float m_erf(float x) { return erff(x); }
__device__ __noinline__ double m_erf(double x) { return ::erf(x); }
__device__ __noinline__ float m_pow(float a, float b) { return powf(a, b); }
__device__ __noinline__ double m_pow(double a, double b) { return ::pow(a, b); }

#define TCU_UNARY(Name, expr)                                          \
  template <class CT>                                                  \
  struct Name {                                                        \
    using C = CT;                                                      \
    using R = CT;                                                      \
    explicit Name(const TsrAttrs&) {}                                  \
    __device__ __forceinline__ C operator()(C x) const { return (expr); } \
  };
TCU_UNARY(Neg, wrap_neg(x))
TCU_UNARY(Abs, x < C(0) ? wrap_neg(x) : x)
TCU_UNARY(Exp, m_exp(x))
TCU_UNARY(Log, m_log(x))
TCU_UNARY(Sqrt, m_sqrt(x))
TCU_UNARY(Rsqrt, C(1) / m_sqrt(x))
TCU_UNARY(Sin, m_sin(x))
TCU_UNARY(Cos, m_cos(x))
TCU_UNARY(Tanh, m_tanh(x))
TCU_UNARY(Sigmoid, C(1) / (C(1) + m_exp(-x)))
TCU_UNARY(Relu, x < C(0) ? C(0) : x)  // NaN stays NaN
TCU_UNARY(Silu, x / (C(1) + m_exp(-x)))
#undef TCU_UNARY

template <class CT>
struct Gelu {
  using C = CT;
  using R = CT;
  bool tanh_form;
  explicit Gelu(const TsrAttrs& at) : tanh_form(at.approximate != 0) {}
  __device__ __forceinline__ C operator()(C x) const {
    if (tanh_form) {
      const C inner = C(0.7978845608028654) * (x + C(0.044715) * x * x * x);
      return C(0.5) * x * (C(1) + m_tanh(inner));
    }
    return C(0.5) * x * (C(1) + m_erf(x * C(0.7071067811865476)));
  }
};

// gelu_backward(grad, x) = grad * d/dx gelu(x), in the form attrs.approximate picks.
template <class CT>
struct GeluBackward {
  using C = CT;
  using R = CT;
  bool tanh_form;
  explicit GeluBackward(const TsrAttrs& at) : tanh_form(at.approximate != 0) {}
  __device__ __forceinline__ C operator()(C g, C x) const {
    if (tanh_form) {
      const C k = C(0.7978845608028654), c = C(0.044715);
      const C t = m_tanh(k * (x + c * x * x * x));
      return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k * (C(1) + C(3) * c * x * x));
    }
    const C cdf = C(0.5) * (C(1) + m_erf(x * C(0.7071067811865476)));
    const C pdf = C(0.3989422804014327) * m_exp(C(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
};

template <class CT>
struct Clamp {
  using C = CT;
  using R = CT;
  C lo, hi;  // absent bounds are -inf/+inf (lowest/max for integers)
  explicit Clamp(const TsrAttrs& at)
      : lo(at.has_scalar ? scalar_as<C>(at.scalar) : bound(false)),
        hi(at.has_scalar2 ? scalar_as<C>(at.scalar2) : bound(true)) {}
  static C bound(bool upper) {
    if constexpr (std::is_integral_v<C>)
      return upper ? std::numeric_limits<C>::max() : std::numeric_limits<C>::lowest();
    else
      return upper ? std::numeric_limits<C>::infinity() : -std::numeric_limits<C>::infinity();
  }
  __device__ __forceinline__ C operator()(C x) const {  // NaN in x or in a bound gives NaN
    x = (x < lo || lo != lo) ? lo : x;
    return (x > hi || hi != hi) ? hi : x;
  }
};

template <class CT>
struct Add {
  using C = CT;
  using R = CT;
  C alpha;
  explicit Add(const TsrAttrs& at) : alpha(scalar_as<C>(at.alpha)) {}
  __device__ __forceinline__ C operator()(C a, C b) const { return wrap_add(a, wrap_mul(alpha, b)); }
};
template <class CT>
struct Sub {
  using C = CT;
  using R = CT;
  C alpha;
  explicit Sub(const TsrAttrs& at) : alpha(scalar_as<C>(at.alpha)) {}
  __device__ __forceinline__ C operator()(C a, C b) const { return wrap_add(a, wrap_neg(wrap_mul(alpha, b))); }
};

#define TCU_BINARY(Name, RT, expr)                                          \
  template <class CT>                                                       \
  struct Name {                                                             \
    using C = CT;                                                           \
    using R = RT;                                                           \
    explicit Name(const TsrAttrs&) {}                                       \
    __device__ __forceinline__ R operator()(C a, C b) const { return (expr); } \
  };
TCU_BINARY(Mul, CT, wrap_mul(a, b))
TCU_BINARY(Div, CT, a / b)
// NaN propagates: a NaN operand is returned.
TCU_BINARY(Maximum, CT, (a > b || a != a) ? a : b)
TCU_BINARY(Minimum, CT, (a < b || a != a) ? a : b)
TCU_BINARY(Eq, bool, a == b)
TCU_BINARY(Ne, bool, a != b)
TCU_BINARY(Lt, bool, a < b)
TCU_BINARY(Le, bool, a <= b)
TCU_BINARY(Gt, bool, a > b)
TCU_BINARY(Ge, bool, a >= b)
#undef TCU_BINARY

template <class CT>
struct Pow {
  using C = CT;
  using R = CT;
  explicit Pow(const TsrAttrs&) {}
  __device__ __forceinline__ C operator()(C a, C b) const {
    if constexpr (std::is_integral_v<C>) {
      if (b < 0) {  // only from a tensor exponent (a scalar one fails on the host): PyTorch's
        if (a == 1) return 1;
        if (a == -1) return (b & 1) ? -1 : 1;
        return 0;
      }
      uint64_t r = 1, x = static_cast<uint64_t>(a);
      for (int64_t e = b; e > 0; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
      }
      return static_cast<C>(r);
    } else {
      return m_pow(a, b);
    }
  }
};

template <class CT>
struct Where {
  using C = CT;
  using R = CT;
  explicit Where(const TsrAttrs&) {}
  __device__ __forceinline__ C operator()(C cond, C a, C b) const { return cond != C(0) ? a : b; }
};

template <class Op, class C, int N>
__device__ __forceinline__ typename Op::R apply(const Op& op, const C (&v)[N]) {
  if constexpr (N == 1) return op(v[0]);
  else if constexpr (N == 2) return op(v[0], v[1]);
  else return op(v[0], v[1], v[2]);
}

// ---------------------------------------------------------------------------------------
// Map kernels

template <class T, int NIN>
struct InPtrs {
  const T* p[NIN];  // nullptr at the scalar operand
};

// Every tensor operand contiguous, of storage type T, 16-byte aligned; operand `slot` (or
// none, -1) is `scalar`. Block b covers vectors [b * kThreads * P, ...) of V elements.
template <class Op, class T, int NIN>
__global__ void __launch_bounds__(kThreads)
    contig_kernel(Op op, T* out, InPtrs<T, NIN> in, typename Op::C scalar, int slot, int64_t n) {
  using C = typename Op::C;
  constexpr int V = 16 / static_cast<int>(sizeof(T));
  constexpr int P = vecs_per_thread(V);
  using VT = Vec<T, V>;
  const int64_t nvec = n / V;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * (kThreads * P) + threadIdx.x;
  VT x[P][NIN];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t vi = base + j * kThreads;
    if (vi < nvec) {
#pragma unroll
      for (int k = 0; k < NIN; ++k)
        if (k != slot) x[j][k] = reinterpret_cast<const VT*>(in.p[k])[vi];
    }
  }
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t vi = base + j * kThreads;
    if (vi < nvec) {
      VT r;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        C v[NIN];
#pragma unroll
        for (int k = 0; k < NIN; ++k) v[k] = k == slot ? scalar : conv<C>(x[j][k].v[e]);
        r.v[e] = conv<T>(apply(op, v));
      }
      reinterpret_cast<VT*>(out)[vi] = r;
    }
  }
  if (blockIdx.x == 0) {  // the n % V tail
    const int64_t i = nvec * V + threadIdx.x;
    if (i < n) {
      C v[NIN];
#pragma unroll
      for (int k = 0; k < NIN; ++k) v[k] = k == slot ? scalar : conv<C>(in.p[k][i]);
      out[i] = conv<T>(apply(op, v));
    }
  }
}

// Any strides and dtypes of Op's compute family. Operand 0 is the output.
template <class Op, int NIN, class Calc>
__global__ void __launch_bounds__(kThreads)
    generic_kernel(Op op, Calc calc, Ptrs<NIN + 1> ptr, typename Op::C scalar, int slot, typename Calc::Idx n) {
  using C = typename Op::C;
  using Idx = typename Calc::Idx;
  constexpr int G = kStepOf<Calc>;
  const Idx step = static_cast<Idx>(gridDim.x) * (kThreads * G);
#pragma unroll 1
  for (Idx base = static_cast<Idx>(blockIdx.x) * (kThreads * G) + threadIdx.x; base < n; base += step) {
    C v[G][NIN];
    Idx out_off[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {  // every load of the group before any math
      const Idx i = base + static_cast<Idx>(g * kThreads);
      if (i < n) {
        Idx off[NIN + 1];
        calc.offsets(i, off);
        out_off[g] = off[0];
#pragma unroll
        for (int k = 0; k < NIN; ++k)
          v[g][k] = k == slot ? scalar : load_as<C>(ptr.p[k + 1] + off[k + 1], ptr.dt[k + 1]);
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      if (base + static_cast<Idx>(g * kThreads) < n) store_as(ptr.p[0] + out_off[g], ptr.dt[0], apply(op, v[g]));
    }
  }
}

// Runs op over outputs[0] and the operands (NIN, null = the scalar operand at `slot`). T is
// the storage type of the output and of every tensor operand when kContig (the contiguous
// kernel is only instantiated then).
template <bool kContig, class T, class Op, int NIN>
int32_t run_map(const TsrKernelArgs* a, const Op& op, const TsrTensorDesc* const (&opnds)[NIN],
                typename Op::C scalar, int slot) {
  TsrTensorDesc& out = a->outputs[0];
  const cudaStream_t s = stream_of(a);
  if constexpr (kContig) {
    bool ok = out.dtype == kDtypeId<T> && is_contiguous(out) && aligned16(out.data);
    InPtrs<T, NIN> in{};
    for (int k = 0; k < NIN && ok; ++k) {
      if (opnds[k] == nullptr) continue;
      ok = opnds[k]->dtype == kDtypeId<T> && is_contiguous(*opnds[k]) && aligned16(opnds[k]->data);
      in.p[k] = static_cast<const T*>(opnds[k]->data);
    }
    if (ok) {
      const int64_t n = numel(out);
      constexpr int V = 16 / static_cast<int>(sizeof(T));
      const unsigned grid = blocks_for(n / V, int64_t{kThreads} * vecs_per_thread(V));
      if (grid == 0) return too_large(a);
      contig_kernel<Op, T, NIN><<<grid, kThreads, 0, s>>>(op, static_cast<T*>(out.data), in, scalar, slot, n);
      return check_launch(a, "elementwise_contig");
    }
  }
  const TsrTensorDesc* descs[NIN + 1];
  descs[0] = &out;
  Ptrs<NIN + 1> ptr;
  ptr.p[0] = static_cast<char*>(out.data);
  ptr.dt[0] = out.dtype;
  for (int k = 0; k < NIN; ++k) {
    descs[k + 1] = opnds[k];
    ptr.p[k + 1] = opnds[k] ? static_cast<char*>(opnds[k]->data) : nullptr;
    ptr.dt[k + 1] = opnds[k] ? opnds[k]->dtype : out.dtype;
  }
  Layout<NIN + 1> l;
  l.build(descs);
  if (l.fits32()) {
    const unsigned grid = strided_grid(a, l.numel, kStepOf<Calc32<NIN + 1>>);
    generic_kernel<Op, NIN, Calc32<NIN + 1>><<<grid, kThreads, 0, s>>>(
        op, Calc32<NIN + 1>(l), ptr, scalar, slot, static_cast<uint32_t>(l.numel));
  } else {
    const unsigned grid = strided_grid(a, l.numel, kStepOf<Calc64<NIN + 1>>);
    generic_kernel<Op, NIN, Calc64<NIN + 1>><<<grid, kThreads, 0, s>>>(
        op, Calc64<NIN + 1>(l), ptr, scalar, slot, static_cast<uint64_t>(l.numel));
  }
  return check_launch(a, "elementwise_strided");
}

// The op's operands in order: the scalar one (slot, from attrs->scalar_arg; -1 = none) is
// null, the others are args->inputs in order.
template <int NIN>
int32_t gather(const TsrKernelArgs* a, int slot, const TsrTensorDesc* (&opnds)[NIN]) {
  int next = 0;
  for (int k = 0; k < NIN; ++k) {
    if (k == slot) {
      opnds[k] = nullptr;
    } else {
      if (next >= a->num_inputs) break;
      opnds[k] = &a->inputs[next++];
    }
  }
  const int expected = slot >= 0 ? NIN - 1 : NIN;
  if (next != expected || a->num_inputs != expected)
    return fail(a, TSR_ERR_INVALID_ARGUMENT, "expected %d tensor inputs, got %d", expected, a->num_inputs);
  return TSR_OK;
}

inline int scalar_slot(const TsrKernelArgs* a, int nin) {
  const int s = a->attrs->scalar_arg;
  return s >= 0 && s < nin ? s : -1;
}

// UNARY and CLAMP: one tensor operand of the output's dtype.
template <template <class> class Op, unsigned Mask>
int32_t unary_call(const TsrKernelArgs* a) {
  const TsrTensorDesc* opnds[1];
  if (int32_t st = gather<1>(a, -1, opnds)) return st;
  const int32_t dt = a->outputs[0].dtype;
  int32_t status = TSR_OK;
  if (!dispatch_dtype<Bool8>(dt, [&](auto t) {
        using T = decltype(t);
        if constexpr (kAllowed<Mask, T>) {
          using C = compute_of<T>;
          status = run_map<true, T>(a, Op<C>(*a->attrs), opnds, C(0), -1);
        } else {
          status = unsupported(a, dt);
        }
      }))
    status = unsupported(a, dt);
  return status;
}

template <template <class> class Op, unsigned Mask>
int32_t binary_call(const TsrKernelArgs* a) {
  const int slot = scalar_slot(a, 2);
  const TsrTensorDesc* opnds[2];
  if (int32_t st = gather<2>(a, slot, opnds)) return st;
  const int32_t dt = a->outputs[0].dtype;
  int32_t status = TSR_OK;
  if (!dispatch_dtype<Bool8>(dt, [&](auto t) {
        using T = decltype(t);
        if constexpr (kAllowed<Mask, T>) {
          using C = compute_of<T>;
          const C scalar = scalar_as<C>(a->attrs->scalar);
          if constexpr (std::is_integral_v<C> && std::is_same_v<Op<C>, Pow<C>>) {
            if (slot == 1 && scalar < 0) {
              status = fail(a, TSR_ERR_RUNTIME, "Integers to negative integer powers are not allowed");
              return;
            }
          }
          status = run_map<true, T>(a, Op<C>(*a->attrs), opnds, scalar, slot);
        } else {
          status = unsupported(a, dt);
        }
      }))
    status = unsupported(a, dt);
  return status;
}

// COMPARE: operands of one dtype (the first tensor's), bool output.
template <template <class> class Op>
int32_t compare_call(const TsrKernelArgs* a) {
  const int slot = scalar_slot(a, 2);
  const TsrTensorDesc* opnds[2];
  if (int32_t st = gather<2>(a, slot, opnds)) return st;
  const int32_t dt = opnds[slot == 0 ? 1 : 0]->dtype;
  int32_t status = TSR_OK;
  if (!dispatch_dtype<Bool8>(dt, [&](auto t) {
        using C = compute_of<decltype(t)>;
        status = run_map<false, void>(a, Op<C>(*a->attrs), opnds, scalar_as<C>(a->attrs->scalar), slot);
      }))
    status = unsupported(a, dt);
  return status;
}

int32_t where_call(const TsrKernelArgs* a) {
  const int slot = scalar_slot(a, 3);
  const TsrTensorDesc* opnds[3];
  if (int32_t st = gather<3>(a, slot, opnds)) return st;
  const int32_t dt = a->outputs[0].dtype;
  int32_t status = TSR_OK;
  if (!dispatch_dtype<Bool8>(dt, [&](auto t) {
        using C = compute_of<decltype(t)>;
        status = run_map<false, void>(a, Where<C>(*a->attrs), opnds, scalar_as<C>(a->attrs->scalar), slot);
      }))
    status = unsupported(a, dt);
  return status;
}

// ---------------------------------------------------------------------------------------
// COPY

// Same dtype, any strides: U-sized words moved as they are. Operand 0 = out, 1 = in.
template <class U, class Calc>
__global__ void __launch_bounds__(kThreads)
    copy_words_kernel(Calc calc, char* out, const char* in, typename Calc::Idx n) {
  using Idx = typename Calc::Idx;
  const Idx step = static_cast<Idx>(gridDim.x) * kThreads;
#pragma unroll 1
  for (Idx i = static_cast<Idx>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    Idx off[2];
    calc.offsets(i, off);
    *reinterpret_cast<U*>(out + off[0]) = *reinterpret_cast<const U*>(in + off[1]);
  }
}

// Converting, any strides: two dtype switches per element.
__device__ __forceinline__ void convert_one(char* dst, int32_t ddt, const char* src, int32_t sdt) {
  if (ddt == TSR_FLOAT64) {
    store_any(dst, ddt, load_any<double>(src, sdt));
  } else if (is_float_dtype(ddt)) {
    store_any(dst, ddt, load_any<float>(src, sdt));
  } else if (is_float_dtype(sdt)) {
    store_any(dst, ddt, load_any<double>(src, sdt));
  } else {
    store_any(dst, ddt, load_any<int64_t>(src, sdt));
  }
}

template <class Calc>
__global__ void __launch_bounds__(kThreads)
    convert_strided_kernel(Calc calc, char* out, int32_t ddt, const char* in, int32_t sdt, typename Calc::Idx n) {
  using Idx = typename Calc::Idx;
  const Idx step = static_cast<Idx>(gridDim.x) * kThreads;
#pragma unroll 1
  for (Idx i = static_cast<Idx>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    Idx off[2];
    calc.offsets(i, off);
    convert_one(out + off[0], ddt, in + off[1], sdt);
  }
}

// Converting, both contiguous and 16-byte aligned: V = 16 / max(sizeof S, sizeof D)
// elements per access.
template <class S, class D>
__device__ __forceinline__ void convert_contig_body(D* out, const S* in, int64_t n) {
  constexpr int V = 16 / static_cast<int>(sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
  constexpr int P = vecs_per_thread(V);
  using VS = Vec<S, V>;
  using VD = Vec<D, V>;
  const int64_t nvec = n / V;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * (kThreads * P) + threadIdx.x;
  VS x[P];
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t vi = base + j * kThreads;
    if (vi < nvec) x[j] = reinterpret_cast<const VS*>(in)[vi];
  }
#pragma unroll
  for (int j = 0; j < P; ++j) {
    const int64_t vi = base + j * kThreads;
    if (vi < nvec) {
      VD r;
#pragma unroll
      for (int e = 0; e < V; ++e) r.v[e] = copy_conv<S, D>(x[j].v[e]);
      reinterpret_cast<VD*>(out)[vi] = r;
    }
  }
  if (blockIdx.x == 0) {
    const int64_t i = nvec * V + threadIdx.x;
    if (i < n) out[i] = copy_conv<S, D>(in[i]);
  }
}

template <class D>
__global__ void __launch_bounds__(kThreads) convert_contig_kernel(D* out, const void* in, int32_t sdt, int64_t n) {
  switch (sdt) {
    case TSR_BOOL: convert_contig_body<Bool8, D>(out, static_cast<const Bool8*>(in), n); break;
    case TSR_UINT8: convert_contig_body<uint8_t, D>(out, static_cast<const uint8_t*>(in), n); break;
    case TSR_INT32: convert_contig_body<int32_t, D>(out, static_cast<const int32_t*>(in), n); break;
    case TSR_INT64: convert_contig_body<int64_t, D>(out, static_cast<const int64_t*>(in), n); break;
    case TSR_FLOAT16: convert_contig_body<half, D>(out, static_cast<const half*>(in), n); break;
    case TSR_BFLOAT16: convert_contig_body<bf16, D>(out, static_cast<const bf16*>(in), n); break;
    case TSR_FLOAT32: convert_contig_body<float, D>(out, static_cast<const float*>(in), n); break;
    default: convert_contig_body<double, D>(out, static_cast<const double*>(in), n); break;
  }
}

// Same data and the same strides wherever the size is not 1.
bool same_view(const TsrTensorDesc& x, const TsrTensorDesc& y) {
  if (x.data != y.data || x.ndim != y.ndim) return false;
  for (int d = 0; d < x.ndim; ++d)
    if (x.sizes[d] != y.sizes[d] || (x.sizes[d] != 1 && x.strides[d] != y.strides[d])) return false;
  return true;
}

int32_t copy_call(const TsrKernelArgs* a) {
  if (a->num_inputs != 1) return fail(a, TSR_ERR_INVALID_ARGUMENT, "copy takes one input, got %d", a->num_inputs);
  TsrTensorDesc& out = a->outputs[0];
  const TsrTensorDesc& in = a->inputs[0];
  if (out.dtype < 0 || out.dtype >= TSR_NUM_DTYPES) return unsupported(a, out.dtype);
  if (in.dtype < 0 || in.dtype >= TSR_NUM_DTYPES) return unsupported(a, in.dtype);
  const cudaStream_t s = stream_of(a);
  const int64_t n = numel(out);
  const bool contiguous = is_contiguous(out) && is_contiguous(in);
  if (out.dtype == in.dtype) {
    if (same_view(out, in)) return TSR_OK;
    if (contiguous) {
      TCU_TRY(a, cudaMemcpyAsync(out.data, in.data, static_cast<size_t>(n) * itemsize(out.dtype),
                                 cudaMemcpyDeviceToDevice, s));
      return TSR_OK;
    }
    const TsrTensorDesc* descs[2] = {&out, &in};
    Layout<2> l;
    l.build(descs);
    const unsigned grid = strided_grid(a, l.numel);
    char* o = static_cast<char*>(out.data);
    const char* i = static_cast<const char*>(in.data);
    const bool f32 = l.fits32();
    auto launch = [&](auto word) {
      using U = decltype(word);
      if (f32)
        copy_words_kernel<U, Calc32<2>><<<grid, kThreads, 0, s>>>(Calc32<2>(l), o, i, static_cast<uint32_t>(l.numel));
      else
        copy_words_kernel<U, Calc64<2>><<<grid, kThreads, 0, s>>>(Calc64<2>(l), o, i, static_cast<uint64_t>(l.numel));
    };
    switch (itemsize(out.dtype)) {
      case 1: launch(uint8_t{}); break;
      case 2: launch(uint16_t{}); break;
      case 4: launch(uint32_t{}); break;
      default: launch(uint64_t{}); break;
    }
    return check_launch(a, "copy_strided");
  }
  if (contiguous && aligned16(out.data) && aligned16(in.data)) {
    const int width = 16 / static_cast<int>(std::max(itemsize(out.dtype), itemsize(in.dtype)));
    const unsigned grid = blocks_for(n / width, int64_t{kThreads} * vecs_per_thread(width));
    if (grid == 0) return too_large(a);
    dispatch_dtype<Bool8>(out.dtype, [&](auto t) {
      using D = decltype(t);
      convert_contig_kernel<D><<<grid, kThreads, 0, s>>>(static_cast<D*>(out.data), in.data, in.dtype, n);
    });
    return check_launch(a, "convert_contig");
  }
  const TsrTensorDesc* descs[2] = {&out, &in};
  Layout<2> l;
  l.build(descs);
  const unsigned grid = strided_grid(a, l.numel);
  char* o = static_cast<char*>(out.data);
  const char* i = static_cast<const char*>(in.data);
  if (l.fits32())
    convert_strided_kernel<Calc32<2>><<<grid, kThreads, 0, s>>>(Calc32<2>(l), o, out.dtype, i, in.dtype,
                                                                static_cast<uint32_t>(l.numel));
  else
    convert_strided_kernel<Calc64<2>><<<grid, kThreads, 0, s>>>(Calc64<2>(l), o, out.dtype, i, in.dtype,
                                                                static_cast<uint64_t>(l.numel));
  return check_launch(a, "convert_strided");
}

// ---------------------------------------------------------------------------------------
// FILL

constexpr int kFillVecs = 4;  // 16-byte stores per thread

// Contiguous: `head` U's up to the first 16-byte boundary, then 16-byte stores of `pattern`
// (the value repeated), then the tail.
template <class U>
__global__ void __launch_bounds__(kThreads)
    fill_contig_kernel(U* out, U value, uint4 pattern, int64_t head, int64_t n) {
  constexpr int V = 16 / static_cast<int>(sizeof(U));
  const int64_t nvec = (n - head) / V;
  uint4* body = reinterpret_cast<uint4*>(out + head);
  const int64_t base = static_cast<int64_t>(blockIdx.x) * (kThreads * kFillVecs) + threadIdx.x;
#pragma unroll
  for (int j = 0; j < kFillVecs; ++j) {
    const int64_t vi = base + j * kThreads;
    if (vi < nvec) body[vi] = pattern;
  }
  if (blockIdx.x == 0) {
    if (threadIdx.x < head) out[threadIdx.x] = value;
    const int64_t i = head + nvec * V + threadIdx.x;
    if (i < n) out[i] = value;
  }
}

template <class U, class Calc>
__global__ void __launch_bounds__(kThreads) fill_strided_kernel(Calc calc, char* out, U value, typename Calc::Idx n) {
  using Idx = typename Calc::Idx;
  const Idx step = static_cast<Idx>(gridDim.x) * kThreads;
#pragma unroll 1
  for (Idx i = static_cast<Idx>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += step) {
    Idx off[1];
    calc.offsets(i, off);
    *reinterpret_cast<U*>(out + off[0]) = value;
  }
}

int32_t fill_call(const TsrKernelArgs* a) {
  TsrTensorDesc& out = a->outputs[0];
  const TsrScalar& sc = a->attrs->scalar;
  alignas(8) unsigned char bytes[8] = {};
  if (!dispatch_dtype<Bool8>(out.dtype, [&](auto t) {
        using T = decltype(t);
        const T v = sc.kind == TSR_SCALAR_FLOAT ? conv<T>(sc.v.f) : conv<T>(sc.v.i);
        std::memcpy(bytes, &v, sizeof(T));
      }))
    return unsupported(a, out.dtype);
  const size_t size = itemsize(out.dtype);
  const cudaStream_t s = stream_of(a);
  const int64_t n = numel(out);
  if (is_contiguous(out)) {
    bool uniform = true;
    for (size_t k = 1; k < size; ++k) uniform = uniform && bytes[k] == bytes[0];
    if (uniform) {
      TCU_TRY(a, cudaMemsetAsync(out.data, bytes[0], static_cast<size_t>(n) * size, s));
      return TSR_OK;
    }
    uint4 pattern;
    unsigned char rep[16];
    for (size_t k = 0; k < 16; ++k) rep[k] = bytes[k % size];
    std::memcpy(&pattern, rep, 16);
    const uintptr_t addr = reinterpret_cast<uintptr_t>(out.data);
    int64_t head = static_cast<int64_t>(((16 - (addr & 15u)) & 15u) / size);
    if (head > n) head = n;
    const unsigned grid = blocks_for((n - head) / static_cast<int64_t>(16 / size), kThreads * kFillVecs);
    if (grid == 0) return too_large(a);
    auto launch = [&](auto word) {
      using U = decltype(word);
      U v;
      std::memcpy(&v, bytes, sizeof(U));
      fill_contig_kernel<U><<<grid, kThreads, 0, s>>>(static_cast<U*>(out.data), v, pattern, head, n);
    };
    switch (size) {
      case 1: launch(uint8_t{}); break;
      case 2: launch(uint16_t{}); break;
      case 4: launch(uint32_t{}); break;
      default: launch(uint64_t{}); break;
    }
    return check_launch(a, "fill_contig");
  }
  const TsrTensorDesc* descs[1] = {&out};
  Layout<1> l;
  l.build(descs);
  const unsigned grid = strided_grid(a, l.numel);
  char* o = static_cast<char*>(out.data);
  const bool f32 = l.fits32();
  auto launch = [&](auto word) {
    using U = decltype(word);
    U v;
    std::memcpy(&v, bytes, sizeof(U));
    if (f32)
      fill_strided_kernel<U, Calc32<1>><<<grid, kThreads, 0, s>>>(Calc32<1>(l), o, v, static_cast<uint32_t>(l.numel));
    else
      fill_strided_kernel<U, Calc64<1>><<<grid, kThreads, 0, s>>>(Calc64<1>(l), o, v, static_cast<uint64_t>(l.numel));
  };
  switch (size) {
    case 1: launch(uint8_t{}); break;
    case 2: launch(uint16_t{}); break;
    case 4: launch(uint32_t{}); break;
    default: launch(uint64_t{}); break;
  }
  return check_launch(a, "fill_strided");
}

// ---------------------------------------------------------------------------------------
// ARANGE: out[i] = start + i * step, in double for float dtypes and wrapping int64 otherwise
// (the CPU's arithmetic: no fused multiply-add), then converted.

template <class T>
__global__ void __launch_bounds__(kThreads)
    arange_kernel(T* out, int64_t stride, int64_t n, double fstart, double fstep, int64_t istart, int64_t istep) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= n) return;
  if constexpr (kIsFloat<T>) {
    out[i * stride] = conv<T>(__dadd_rn(fstart, __dmul_rn(static_cast<double>(i), fstep)));
  } else {
    out[i * stride] = conv<T>(wrap_add(istart, wrap_mul(i, istep)));
  }
}

int32_t arange_call(const TsrKernelArgs* a) {
  TsrTensorDesc& out = a->outputs[0];
  const TsrAttrs& at = *a->attrs;
  const int64_t n = out.ndim == 0 ? 1 : out.sizes[0];
  const int64_t stride = out.ndim == 0 ? 1 : out.strides[0];
  const unsigned grid = blocks_for(n, kThreads);
  if (grid == 0) return too_large(a);
  const double fstart = scalar_as<double>(at.scalar), fstep = scalar_as<double>(at.scalar3);
  const int64_t istart = scalar_as<int64_t>(at.scalar), istep = scalar_as<int64_t>(at.scalar3);
  if (!dispatch_dtype<Bool8>(out.dtype, [&](auto t) {
        using T = decltype(t);
        arange_kernel<T><<<grid, kThreads, 0, stream_of(a)>>>(static_cast<T*>(out.data), stride, n, fstart, fstep,
                                                              istart, istep);
      }))
    return unsupported(a, out.dtype);
  return check_launch(a, "arange");
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Entry points

int32_t kernel_neg(const TsrKernelArgs* a) { return unary_call<Neg, kNum>(a); }
int32_t kernel_abs(const TsrKernelArgs* a) { return unary_call<Abs, kNum>(a); }
int32_t kernel_exp(const TsrKernelArgs* a) { return unary_call<Exp, kFloat>(a); }
int32_t kernel_log(const TsrKernelArgs* a) { return unary_call<Log, kFloat>(a); }
int32_t kernel_sqrt(const TsrKernelArgs* a) { return unary_call<Sqrt, kFloat>(a); }
int32_t kernel_rsqrt(const TsrKernelArgs* a) { return unary_call<Rsqrt, kFloat>(a); }
int32_t kernel_sin(const TsrKernelArgs* a) { return unary_call<Sin, kFloat>(a); }
int32_t kernel_cos(const TsrKernelArgs* a) { return unary_call<Cos, kFloat>(a); }
int32_t kernel_tanh(const TsrKernelArgs* a) { return unary_call<Tanh, kFloat>(a); }
int32_t kernel_sigmoid(const TsrKernelArgs* a) { return unary_call<Sigmoid, kFloat>(a); }
int32_t kernel_relu(const TsrKernelArgs* a) { return unary_call<Relu, kNum>(a); }
int32_t kernel_gelu(const TsrKernelArgs* a) { return unary_call<Gelu, kFloat>(a); }
int32_t kernel_silu(const TsrKernelArgs* a) { return unary_call<Silu, kFloat>(a); }
int32_t kernel_add(const TsrKernelArgs* a) { return binary_call<Add, kAny>(a); }
int32_t kernel_sub(const TsrKernelArgs* a) { return binary_call<Sub, kNum>(a); }
int32_t kernel_mul(const TsrKernelArgs* a) { return binary_call<Mul, kAny>(a); }
int32_t kernel_div(const TsrKernelArgs* a) { return binary_call<Div, kFloat>(a); }
int32_t kernel_pow(const TsrKernelArgs* a) { return binary_call<Pow, kNum>(a); }
int32_t kernel_maximum(const TsrKernelArgs* a) { return binary_call<Maximum, kAny>(a); }
int32_t kernel_minimum(const TsrKernelArgs* a) { return binary_call<Minimum, kAny>(a); }
int32_t kernel_gelu_backward(const TsrKernelArgs* a) { return binary_call<GeluBackward, kFloat>(a); }
int32_t kernel_eq(const TsrKernelArgs* a) { return compare_call<Eq>(a); }
int32_t kernel_ne(const TsrKernelArgs* a) { return compare_call<Ne>(a); }
int32_t kernel_lt(const TsrKernelArgs* a) { return compare_call<Lt>(a); }
int32_t kernel_le(const TsrKernelArgs* a) { return compare_call<Le>(a); }
int32_t kernel_gt(const TsrKernelArgs* a) { return compare_call<Gt>(a); }
int32_t kernel_ge(const TsrKernelArgs* a) { return compare_call<Ge>(a); }
int32_t kernel_where(const TsrKernelArgs* a) { return where_call(a); }
int32_t kernel_clamp(const TsrKernelArgs* a) { return unary_call<Clamp, kNum>(a); }
int32_t kernel_copy(const TsrKernelArgs* a) { return copy_call(a); }
int32_t kernel_fill(const TsrKernelArgs* a) { return fill_call(a); }
int32_t kernel_arange(const TsrKernelArgs* a) { return arange_call(a); }

}  // namespace tcu
