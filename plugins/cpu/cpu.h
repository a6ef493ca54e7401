// Shared by the CPU plugin's kernels: plugin state and errors, AVX2 dispatch, dtypes
// (float16/bfloat16 <-> float, round-to-nearest-even), dtype-converting strided loads and
// stores, N-d iteration over collapsed dims, and the vectorizable float exp.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>
#include <type_traits>

#include "tessera/plugin.h"
#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define TSR_CPU_X86 1
#define TSR_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define TSR_CPU_X86 0
#define TSR_TARGET_AVX2
#endif
#define TSR_INLINE inline __attribute__((always_inline))

namespace tessera_cpu {

// ---------------------------------------------------------------------------------------
// Plugin state and errors

class Allocator;

// One per init(); every kernel gets it back as TsrKernelArgs.kernel_ctx.
struct State {
  const TsrHostApi* host;
  ThreadPool pool;
  Allocator* allocator;
  TsrDeviceInterface device;
};

inline State& state_of(const TsrKernelArgs* args) { return *static_cast<State*>(args->kernel_ctx); }

// Thrown inside a kernel (never inside a parallel region), turned into a status by run_kernel.
struct KernelError {
  int32_t status;
  char message[240];
};
[[noreturn]] void raise_error(int32_t status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// The kernel boundary: runs body(), maps KernelError / bad_alloc to host->set_error.
int32_t run_kernel(const TsrKernelArgs* args, void (*body)(const TsrKernelArgs*));

// Every non-view op of ops.def has exactly one kernel; plugin.cpp registers them by name.
#define TSR_OP(name, kind, types, diff) int32_t kernel_##name(const TsrKernelArgs* args);
#include "tessera/ops.def"
#undef TSR_OP

// ---------------------------------------------------------------------------------------
// ISA dispatch: K::run (TSR_INLINE, as is everything it calls) compiled twice, once for
// the baseline and once for AVX2+FMA, picked at run time.

extern bool g_has_avx2;

template <class K, class... A>
TSR_TARGET_AVX2 auto isa_avx2(A... a) {
  return K::run(a...);
}
template <class K, class... A>
auto isa_base(A... a) {
  return K::run(a...);
}
template <class K, class... A>
TSR_INLINE auto isa_run(A... a) {
#if TSR_CPU_X86
  if (g_has_avx2) return isa_avx2<K>(a...);
#endif
  return isa_base<K>(a...);
}

// ---------------------------------------------------------------------------------------
// Storage types

struct Bool8 { uint8_t v; };       // TSR_BOOL, 0 or 1
struct Half { uint16_t bits; };    // TSR_FLOAT16
struct BFloat16 { uint16_t bits; };// TSR_BFLOAT16

TSR_INLINE float half_to_float(uint16_t h) {
  // Branch-free (after Maratyszcza's FP16): normals by exponent rebias, subnormals by a
  // magic-number subtraction.
  const uint32_t w = uint32_t{h} << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = std::bit_cast<float>((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = std::bit_cast<float>((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t bits = two_w < (1u << 27) ? std::bit_cast<uint32_t>(denormalized)
                                            : std::bit_cast<uint32_t>(normalized);
  return std::bit_cast<float>(sign | bits);
}

TSR_INLINE uint16_t float_to_half(float f) {
  // Rounds to nearest even through float addition; NaN stays NaN, overflow gives inf.
  float base = (std::fabs(f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = std::bit_cast<uint32_t>(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

TSR_INLINE float bf16_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t{b} << 16); }

TSR_INLINE uint16_t float_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(f != f ? ((u >> 16) | 0x40u) : rounded);
}

template <class T>
inline constexpr bool kIsFloat = std::is_floating_point_v<T> || std::is_same_v<T, Half> ||
                                 std::is_same_v<T, BFloat16>;

// Value conversion between storage and compute types, PyTorch's rules: float -> int
// truncates toward zero, anything -> bool is != 0, float16/bfloat16 go through float.
template <class D, class S>
TSR_INLINE D cast(S s) {
  if constexpr (std::is_same_v<S, Half>) {
    return cast<D>(half_to_float(s.bits));
  } else if constexpr (std::is_same_v<S, BFloat16>) {
    return cast<D>(bf16_to_float(s.bits));
  } else if constexpr (std::is_same_v<S, Bool8>) {
    return cast<D>(static_cast<uint8_t>(s.v != 0));
  } else if constexpr (std::is_same_v<D, Half>) {
    return Half{float_to_half(static_cast<float>(s))};
  } else if constexpr (std::is_same_v<D, BFloat16>) {
    return BFloat16{float_to_bf16(static_cast<float>(s))};
  } else if constexpr (std::is_same_v<D, Bool8>) {
    return Bool8{static_cast<uint8_t>(s != S(0))};
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<S>) {
    return static_cast<D>(static_cast<int64_t>(s));
  } else {
    return static_cast<D>(s);
  }
}

inline int64_t dtype_size(int32_t dt) {
  constexpr int64_t sizes[TSR_NUM_DTYPES] = {1, 1, 4, 8, 2, 2, 4, 8};
  return sizes[dt];
}
inline bool is_float_dtype(int32_t dt) {
  return dt == TSR_FLOAT16 || dt == TSR_BFLOAT16 || dt == TSR_FLOAT32 || dt == TSR_FLOAT64;
}

// Calls f(T{}) with T the storage type of dt.
template <class F>
TSR_INLINE decltype(auto) dispatch_storage(int32_t dt, F&& f) {
  switch (dt) {
    case TSR_BOOL: return f(Bool8{});
    case TSR_UINT8: return f(uint8_t{});
    case TSR_INT32: return f(int32_t{});
    case TSR_INT64: return f(int64_t{});
    case TSR_FLOAT16: return f(Half{});
    case TSR_BFLOAT16: return f(BFloat16{});
    case TSR_FLOAT32: return f(float{});
    default: return f(double{});
  }
}

// Calls f(S{}) with S the storage type of a float dtype; NOT_IMPLEMENTED for the others.
template <class F>
void dispatch_float_storage(int32_t dt, F&& f) {
  dispatch_storage(dt, [&](auto s) {
    if constexpr (kIsFloat<decltype(s)>)
      f(s);
    else
      raise_error(TSR_ERR_NOT_IMPLEMENTED, "dtype %d is not supported", dt);
  });
}

// Compute types: float16/bfloat16/float32 compute in float32, float64 in float64, the
// integers and bool in int64 (results are narrowed on store, which wraps like the
// narrow type would). TSR_BOOL as a compute type means 0/1 bytes (comparison results).
inline int32_t compute_dtype(int32_t dt) {
  if (dt == TSR_FLOAT64) return TSR_FLOAT64;
  return is_float_dtype(dt) ? TSR_FLOAT32 : TSR_INT64;
}

// Calls f(C{}) with C the C++ type of arithmetic compute dtype cdt (float32, float64, int64).
template <class F>
TSR_INLINE decltype(auto) dispatch_compute(int32_t cdt, F&& f) {
  switch (cdt) {
    case TSR_FLOAT32: return f(float{});
    case TSR_FLOAT64: return f(double{});
    default: return f(int64_t{});
  }
}

// Reads a scalar operand in compute type C, whichever kind it arrived as.
template <class C>
TSR_INLINE C scalar_as(const TsrScalar& s) {
  return s.kind == TSR_SCALAR_FLOAT ? cast<C>(s.v.f) : cast<C>(s.v.i);
}

// ---------------------------------------------------------------------------------------
// Dtype-converting strided loads and stores (strides in bytes; 0 broadcasts).

// dst[0..n) = src[i * stride] converted from dtype src_dt to compute dtype cdt.
void load_run(int32_t cdt, int32_t src_dt, const char* src, int64_t stride, int64_t n, void* dst);
// dst[i * stride] = src[0..n) converted from compute dtype cdt to dtype dst_dt.
void store_run(int32_t cdt, int32_t dst_dt, const void* src, int64_t n, char* dst, int64_t stride);

inline void store_double(int32_t dst_dt, void* dst, double v) {
  store_run(TSR_FLOAT64, dst_dt, &v, 1, static_cast<char*>(dst), 0);
}
inline void store_int64(int32_t dst_dt, void* dst, int64_t v) {
  store_run(TSR_INT64, dst_dt, &v, 1, static_cast<char*>(dst), 0);
}

// ---------------------------------------------------------------------------------------
// N-d iteration. Operand 0 defines the shape; all operands have its sizes. Size-1 dims
// are dropped and adjacent dims merged where every operand allows it; with `reorder`
// dims are first sorted by operand 0's strides (largest outermost), so the inner loop
// walks memory forward. Without it the linear order is row-major over the given shape.

constexpr int kMaxOperands = 4;

struct NdIter {
  int num_ops = 0;
  int ndim = 1;
  int64_t numel = 1;
  int64_t sizes[TSR_MAX_DIMS];                    // innermost last
  int64_t strides[kMaxOperands][TSR_MAX_DIMS];    // bytes
  char* data[kMaxOperands];

  void init(const TsrTensorDesc* const* descs, int num_ops, bool reorder);

  // Calls fn(ptrs, inner_strides, n, pos) for runs along the innermost dim covering the
  // linear range [begin, end); pos is the linear index of the run's first element.
  template <class F>
  void for_each_run(int64_t begin, int64_t end, F&& fn) const {
    for_each_run_at(data, begin, end, fn);
  }

  // The same walk with other base pointers (same strides), e.g. one reduced row.
  template <class F>
  void for_each_run_at(char* const* base, int64_t begin, int64_t end, F&& fn) const {
    int64_t idx[TSR_MAX_DIMS];
    int64_t rem = begin;
    for (int d = ndim - 1; d >= 0; --d) {
      idx[d] = rem % sizes[d];
      rem /= sizes[d];
    }
    const int last = ndim - 1;
    int64_t inner[kMaxOperands];
    char* ptr[kMaxOperands];
    for (int k = 0; k < num_ops; ++k) inner[k] = strides[k][last];
    int64_t pos = begin;
    while (pos < end) {
      for (int k = 0; k < num_ops; ++k) {
        char* p = base[k];
        for (int d = 0; d < ndim; ++d) p += idx[d] * strides[k][d];
        ptr[k] = p;
      }
      const int64_t n = std::min(sizes[last] - idx[last], end - pos);
      fn(static_cast<char* const*>(ptr), static_cast<const int64_t*>(inner), n, pos);
      pos += n;
      idx[last] = 0;
      for (int d = last - 1; d >= 0; --d) {
        if (++idx[d] < sizes[d]) break;
        idx[d] = 0;
      }
    }
  }
};

// ---------------------------------------------------------------------------------------
// exp for float32 that GCC vectorizes (Cephes expf: n = round(x log2 e), r = x - n ln 2 in
// two parts, degree-7 polynomial for e^r, then scaled by 2^n). Within 2 ulp of the exact
// result on the whole float range; inf/NaN handled. F is float or a GCC vector of floats.

// e^r for |r| <= ln(2)/2, in Horner form: 7 FMAs.
template <class F>
TSR_INLINE F exp_poly(F r) {
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

// Splits x = n ln 2 + r (|x| < 2^22): returns r; t holds n in its low mantissa bits
// (bits(t) - 0x4B400000 = n, and bits(t) << 23 = n << 23 modulo 2^32).
template <class F>
TSR_INLINE F exp_reduce(F x, F& t) {
  t = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23 rounds to integer
  const F nf = t - 12582912.0f;
  const F r = x - nf * 0.693359375f;
  return r - nf * -2.12194440e-4f;
}

TSR_INLINE float exp_f32(float x) {
  // One clamp (max then min: a NaN x passes through both and makes the result NaN) to
  // where e^x rounds to 0 below and overflows to inf above.
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  float t;
  const float p = exp_poly(exp_reduce(xc, t));
  // 2^n in two halves (n in [-150, 128]), so that n = 128 overflows only in the product
  // and subnormal results round once
  const int32_t n = std::bit_cast<int32_t>(t) - 0x4B400000;
  const int32_t n1 = n >> 1, n2 = n - n1;
  const float s1 = std::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = std::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  return (p * s1) * s2;
}

// 8 float lanes: one AVX2 register (two SSE ones in the baseline variant).
typedef float F32x8 __attribute__((vector_size(32)));
typedef uint32_t U32x8 __attribute__((vector_size(32)));

// e^x per lane for x <= 0, including -inf (softmax after subtracting a finite row max):
// results below e^-87 (< 1.7e-38) flush to 0, all others are normal, so 2^n is added to
// the exponent bits of e^r. NaN lanes give garbage: callers keep NaN out.
TSR_INLINE F32x8 exp_nonpositive(F32x8 x) {
  F32x8 t;
  const F32x8 p = exp_poly(exp_reduce(x, t));
  const U32x8 scaled = std::bit_cast<U32x8>(p) + (std::bit_cast<U32x8>(t) << 23);  // wraps
  return x < -87.0f ? F32x8{} : std::bit_cast<F32x8>(scaled);
}

template <class C>
TSR_INLINE C exp_c(C x) {
  if constexpr (std::is_same_v<C, float>) return exp_f32(x);
  else return std::exp(x);
}

// ---------------------------------------------------------------------------------------
// For kernels' messages and checks: dtype names, "[2, 3, 4]" shapes, element counts.

inline const char* dtype_name(int32_t dt) {
  static const char* const names[TSR_NUM_DTYPES] = {"bool",    "uint8",    "int32",   "int64",
                                                    "float16", "bfloat16", "float32", "float64"};
  return dt >= 0 && dt < TSR_NUM_DTYPES ? names[dt] : "unknown dtype";
}

struct ShapeStr {
  char s[8 + TSR_MAX_DIMS * 22];
  explicit ShapeStr(const TsrTensorDesc& d) {
    int n = std::snprintf(s, sizeof(s), "[");
    for (int i = 0; i < d.ndim && i < TSR_MAX_DIMS; ++i)
      n += std::snprintf(s + n, sizeof(s) - n, i ? ", %lld" : "%lld", static_cast<long long>(d.sizes[i]));
    std::snprintf(s + n, sizeof(s) - n, "]");
  }
  const char* c_str() const { return s; }
};

inline int64_t elem_count(const TsrTensorDesc& d) {
  int64_t n = 1;
  for (int i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  return n;
}

// ---------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al., Random123): key (lo32(seed), hi32(seed)), counter
// (lo32(counter), hi32(counter), 0, 0). plugin.h's RANDOM rule: element i takes counter
// offset + i/4, lane i%4, u = (x + 0.5) * 2^-32. Used by random.cpp and the SAMPLE ops.

TSR_INLINE void philox4x32_10(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = uint64_t{0xD2511F53u} * c0;
    const uint64_t p1 = uint64_t{0xCD9E8D57u} * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// bernoulli_'s test u < q (u = (x + 0.5) * 2^-32, compared in double) as an integer one:
// x < philox_threshold(q) exactly when u < q, for every 32-bit x and q in [0, 1].
inline uint64_t philox_threshold(double q) {
  const double c = std::ceil(q * 0x1.0p32 - 0.5);  // q * 2^32 - 0.5 is exact where it matters
  return c <= 0 ? 0 : static_cast<uint64_t>(c);
}

// Scratch memory inside a parallel task, which must not throw: on failure data() is null,
// the task sets a flag and the kernel raises out-of-memory after the parallel region.
template <class T>
class TaskBuffer {
 public:
  explicit TaskBuffer(size_t n) : p_(new (std::nothrow) T[n > 0 ? n : 1]) {}
  ~TaskBuffer() { delete[] p_; }
  TaskBuffer(const TaskBuffer&) = delete;
  TaskBuffer& operator=(const TaskBuffer&) = delete;
  T* data() const { return p_; }

 private:
  T* p_;
};

}  // namespace tessera_cpu
