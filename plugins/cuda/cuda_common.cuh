// Shared by the CUDA plugin's files: the kernel entry points, errors at the kernel
// boundary, dtype traits (float16/bfloat16 compute in float32), stream-ordered scratch
// memory from the caching allocator, and strided N-d offsets. Includes only plugin.h from
// Tessera.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tessera/plugin.h"

namespace tcu {

// ---------------------------------------------------------------------------------------
// Kernel entry points: every non-view op of ops.def has exactly one, defined in the file of
// its family and registered by plugin.cpp with the dtype mask of ops.def's types column
// (ANY: every dtype; NUM: all but bool; FLOAT: float16, bfloat16, float32, float64).
#define TSR_OP(name, kind, types, diff) int32_t kernel_##name(const TsrKernelArgs* args);
#include "tessera/ops.def"
#undef TSR_OP

// ---------------------------------------------------------------------------------------
// Errors. Kernels return TSR_OK or the status of one of these, which record the message
// "[op] <message> (cuda:N)" through the host's set_error. Kernels never throw or abort.
int32_t fail(const TsrKernelArgs* a, int32_t status, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
// A failed CUDA runtime call: "[op] <what> failed: <cudaGetErrorString> (cuda:N)"; an
// out-of-memory error maps to TSR_ERR_OUT_OF_MEMORY, everything else to TSR_ERR_RUNTIME.
int32_t fail_cuda(const TsrKernelArgs* a, const char* what, cudaError_t e);
// After a <<<>>> launch: cudaGetLastError(), reported as "kernel <name> failed to launch".
int32_t check_launch(const TsrKernelArgs* a, const char* kernel_name);

// "<call> at <file>:<line>", for messages of failed library calls.
#define TCU_STR2(x) #x
#define TCU_STR(x) TCU_STR2(x)
#define TCU_WHERE(call) call " at " __FILE__ ":" TCU_STR(__LINE__)

#define TCU_TRY(args, expr)                                                             \
  do {                                                                                  \
    cudaError_t tcu_e_ = (expr);                                                        \
    if (tcu_e_ != cudaSuccess) return ::tcu::fail_cuda((args), TCU_WHERE(#expr), tcu_e_); \
  } while (0)

// The stream a kernel runs on (the calling thread's current stream; NULL = legacy default).
inline cudaStream_t stream_of(const TsrKernelArgs* a) { return static_cast<cudaStream_t>(a->stream); }
// The device of the call's first output.
inline int device_of(const TsrKernelArgs* a) { return a->outputs[0].device.index; }

// ---------------------------------------------------------------------------------------
// Plugin-wide facts and switches (plugin.cpp).
int sm_count(int device);                 // multiprocessors of the device
bool allow_tf32();                        // option "allow_tf32" (float32 matmul/conv on TF32 units)
bool stream_is_capturing(cudaStream_t s); // inside a CUDA graph capture on s

// ---------------------------------------------------------------------------------------
// Scratch memory from the plugin's stream-ordered caching allocator (allocator.cpp): safe to
// free right after the launches that use it were enqueued on `s`, and inside a graph capture
// it comes from the graph's private pool. Returns nullptr when the device is out of memory.
void* scratch_alloc(int device, size_t nbytes, cudaStream_t s);
void scratch_free(int device, void* p);

// RAII scratch buffer: `if (!buf) return fail(...)` after constructing it.
class Scratch {
 public:
  Scratch(int device, size_t nbytes, cudaStream_t s) : device_(device), p_(scratch_alloc(device, nbytes, s)) {}
  ~Scratch() { if (p_) scratch_free(device_, p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return p_; }
  template <class T> T* as() const { return static_cast<T*>(p_); }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  int device_;
  void* p_;
};

// ---------------------------------------------------------------------------------------
// Dtypes. Storage type per TsrDType; float16 and bfloat16 compute (and accumulate) in float.
using half = __half;
using bf16 = __nv_bfloat16;

template <class T> struct Compute { using type = T; };
template <> struct Compute<half> { using type = float; };
template <> struct Compute<bf16> { using type = float; };
template <> struct Compute<bool> { using type = bool; };
template <class T> using compute_t = typename Compute<T>::type;

template <class To, class From>
__host__ __device__ __forceinline__ To cast(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, half>) {
    return cast<To>(__half2float(v));
  } else if constexpr (std::is_same_v<From, bf16>) {
    return cast<To>(__bfloat162float(v));
  } else if constexpr (std::is_same_v<To, half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bf16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

// Calls f(T{}) with T the storage type of dtype (BoolT for bool: elementwise.cu's one-byte
// Bool8); returns false for an unknown dtype.
template <class BoolT = bool, class F>
bool dispatch_dtype(int32_t dtype, F&& f) {
  switch (dtype) {
    case TSR_BOOL: f(BoolT{}); return true;
    case TSR_UINT8: f(uint8_t{}); return true;
    case TSR_INT32: f(int32_t{}); return true;
    case TSR_INT64: f(int64_t{}); return true;
    case TSR_FLOAT16: f(half{}); return true;
    case TSR_BFLOAT16: f(bf16{}); return true;
    case TSR_FLOAT32: f(float{}); return true;
    case TSR_FLOAT64: f(double{}); return true;
    default: return false;
  }
}
// Floating dtypes only.
template <class F>
bool dispatch_float(int32_t dtype, F&& f) {
  switch (dtype) {
    case TSR_FLOAT16: f(half{}); return true;
    case TSR_BFLOAT16: f(bf16{}); return true;
    case TSR_FLOAT32: f(float{}); return true;
    case TSR_FLOAT64: f(double{}); return true;
    default: return false;
  }
}

inline size_t itemsize(int32_t dtype) {
  switch (dtype) {
    case TSR_BOOL: case TSR_UINT8: return 1;
    case TSR_FLOAT16: case TSR_BFLOAT16: return 2;
    case TSR_INT32: case TSR_FLOAT32: return 4;
    default: return 8;
  }
}

// ---------------------------------------------------------------------------------------
// Geometry. A tensor's sizes and element strides with unit dims dropped and contiguous-
// compatible neighbours merged (across every operand of a call at once), passed to
// kernels by value.
struct Geometry {
  int32_t ndim;
  int64_t sizes[TSR_MAX_DIMS];
};
struct Strides {
  int64_t s[TSR_MAX_DIMS];
};

inline int64_t numel(const TsrTensorDesc& d) {
  int64_t n = 1;
  for (int32_t i = 0; i < d.ndim; ++i) n *= d.sizes[i];
  return n;
}
inline bool is_contiguous(const TsrTensorDesc& d) {
  int64_t expect = 1;
  for (int32_t i = d.ndim - 1; i >= 0; --i) {
    if (d.sizes[i] != 1 && d.strides[i] != expect) return false;
    expect *= d.sizes[i];
  }
  return true;
}

// Collapses the shared geometry of n operands (all of the same sizes): drops size-1 dims and
// merges dim i into i+1 where every operand's stride allows it. Writes the geometry and
// each operand's strides (in elements). ndim 0 means a single element.
void collapse(const TsrTensorDesc* const* ops, int n, Geometry& g, Strides* strides);

// Element offset of row-major linear index i over n collapsed dims (sizes sz, strides st).
__device__ __forceinline__ int64_t offset_nd(int64_t i, int n, const int64_t* sz, const int64_t* st) {
  if (n <= 1) return n == 0 ? 0 : i * st[0];
  int64_t off = 0;
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int d = TSR_MAX_DIMS - 1; d >= 0; --d) {
    if (d < n) {
      const int64_t q = i / sz[d];
      off += (i - q * sz[d]) * st[d];
      i = q;
    }
  }
  return off;
}
__device__ __forceinline__ int64_t offset_of(int64_t i, const Geometry& g, const Strides& st) {
  return offset_nd(i, g.ndim, g.sizes, st.s);
}

// FNV-1a style hash of a fixed-size key of integers (plan caches keyed by shapes).
struct KeyHash {
  template <class Array>
  size_t operator()(const Array& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : k) {
      h ^= static_cast<uint64_t>(v);
      h *= 1099511628211ull;
      h ^= h >> 29;
    }
    return static_cast<size_t>(h);
  }
};

// Blocks for n elements at `threads` per block and `per_thread` elements each, capped for a
// grid-stride loop.
inline unsigned grid_for(int64_t n, int threads, int per_thread = 1) {
  int64_t b = (n + int64_t(threads) * per_thread - 1) / (int64_t(threads) * per_thread);
  if (b < 1) b = 1;
  if (b > (int64_t(1) << 30)) b = int64_t(1) << 30;
  return static_cast<unsigned>(b);
}

// ---------------------------------------------------------------------------------------
// Philox4x32-10 (Salmon et al., Random123) as plugin.h's RANDOM rule and the CPU plugin: key
// (lo32(seed), hi32(seed)), counter (lo32(counter), hi32(counter), 0, 0). Element e of a
// one-lane-per-element draw takes counter offset + e/4, lane e%4, u = (x + 0.5) * 2^-32.
// Device code only (.cu files; plugin.cpp includes this header through the host compiler).
#ifdef __CUDACC__
__device__ __forceinline__ void philox4x32_10(uint64_t seed, uint64_t counter, uint32_t (&out)[4]) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// u = (x + 0.5) * 2^-32, in (0, 1): exact in double.
__device__ __forceinline__ double philox_unit(uint32_t x) { return (static_cast<double>(x) + 0.5) * 0x1.0p-32; }

// u of element e (one lane per element).
__device__ __forceinline__ double philox_uniform(uint64_t seed, uint64_t offset, uint64_t e) {
  uint32_t x[4];
  philox4x32_10(seed, offset + (e >> 2), x);
  const uint32_t l = static_cast<uint32_t>(e & 3);
  return philox_unit(l == 0 ? x[0] : l == 1 ? x[1] : l == 2 ? x[2] : x[3]);
}
#endif  // __CUDACC__

}  // namespace tcu
