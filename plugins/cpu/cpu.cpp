// Out-of-line parts of cpu.h: kernel errors, dtype-converting strided loads/stores and
// NdIter's dim collapsing.
#include "cpu.h"

#include <cstdarg>
#include <cstdio>
#include <new>

namespace tessera_cpu {

bool g_has_avx2 = [] {
#if TSR_CPU_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}();

void raise_error(int32_t status, const char* fmt, ...) {
  KernelError e;
  e.status = status;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(e.message, sizeof(e.message), fmt, ap);
  va_end(ap);
  throw e;
}

int32_t run_kernel(const TsrKernelArgs* args, void (*body)(const TsrKernelArgs*)) {
  const TsrHostApi* host = state_of(args).host;
  char msg[320];
  try {
    body(args);
    return TSR_OK;
  } catch (const KernelError& e) {
    std::snprintf(msg, sizeof(msg), "[%s] %s (cpu)", args->op_name, e.message);
    return host->set_error(e.status, msg);
  } catch (const std::bad_alloc&) {
    std::snprintf(msg, sizeof(msg), "[%s] out of memory for a temporary buffer (cpu)", args->op_name);
    return host->set_error(TSR_ERR_OUT_OF_MEMORY, msg);
  }
}

namespace {

template <class C, class S>
struct LoadK {
  static TSR_INLINE void run(const char* src, int64_t stride, int64_t n, C* dst) {
    if (stride == static_cast<int64_t>(sizeof(S))) {
      const S* s = reinterpret_cast<const S*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = cast<C>(s[i]);
    } else if (stride == 0) {
      S s;
      std::memcpy(&s, src, sizeof(S));
      const C v = cast<C>(s);
      for (int64_t i = 0; i < n; ++i) dst[i] = v;
    } else {
      for (int64_t i = 0; i < n; ++i) {
        S s;
        std::memcpy(&s, src + i * stride, sizeof(S));
        dst[i] = cast<C>(s);
      }
    }
  }
};

template <class C, class D>
struct StoreK {
  static TSR_INLINE void run(const C* src, int64_t n, char* dst, int64_t stride) {
    if (stride == static_cast<int64_t>(sizeof(D))) {
      D* d = reinterpret_cast<D*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = cast<D>(src[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const D d = cast<D>(src[i]);
        std::memcpy(dst + i * stride, &d, sizeof(D));
      }
    }
  }
};

// dispatch_compute plus the 0/1-byte bool compute type.
template <class F>
void dispatch_load_store(int32_t cdt, F&& f) {
  if (cdt == TSR_BOOL)
    f(uint8_t{});
  else
    dispatch_compute(cdt, f);
}

}  // namespace

void load_run(int32_t cdt, int32_t src_dt, const char* src, int64_t stride, int64_t n, void* dst) {
  dispatch_load_store(cdt, [&](auto c) {
    using C = decltype(c);
    dispatch_storage(src_dt, [&](auto s) {
      isa_run<LoadK<C, decltype(s)>>(src, stride, n, static_cast<C*>(dst));
    });
  });
}

void store_run(int32_t cdt, int32_t dst_dt, const void* src, int64_t n, char* dst, int64_t stride) {
  dispatch_load_store(cdt, [&](auto c) {
    using C = decltype(c);
    dispatch_storage(dst_dt, [&](auto d) {
      isa_run<StoreK<C, decltype(d)>>(static_cast<const C*>(src), n, dst, stride);
    });
  });
}

void NdIter::init(const TsrTensorDesc* const* descs, int n_ops, bool reorder) {
  num_ops = n_ops;
  const TsrTensorDesc& d0 = *descs[0];
  int order[TSR_MAX_DIMS];
  int nd = 0;
  numel = 1;
  for (int d = 0; d < d0.ndim; ++d) {
    numel *= d0.sizes[d];
    if (d0.sizes[d] != 1) order[nd++] = d;
  }
  if (reorder) {  // stable insertion sort, largest stride of operand 0 first
    for (int i = 1; i < nd; ++i) {
      const int v = order[i];
      int j = i;
      for (; j > 0 && d0.strides[order[j - 1]] < d0.strides[v]; --j) order[j] = order[j - 1];
      order[j] = v;
    }
  }
  for (int k = 0; k < n_ops; ++k) data[k] = static_cast<char*>(descs[k]->data);
  ndim = 0;
  for (int i = 0; i < nd; ++i) {
    const int d = order[i];
    bool merge = ndim > 0;
    for (int k = 0; k < n_ops && merge; ++k) {
      const int64_t stride = descs[k]->strides[d] * dtype_size(descs[k]->dtype);
      merge = strides[k][ndim - 1] == stride * d0.sizes[d];
    }
    if (merge) {
      sizes[ndim - 1] *= d0.sizes[d];
      for (int k = 0; k < n_ops; ++k) strides[k][ndim - 1] = descs[k]->strides[d] * dtype_size(descs[k]->dtype);
    } else {
      sizes[ndim] = d0.sizes[d];
      for (int k = 0; k < n_ops; ++k) strides[k][ndim] = descs[k]->strides[d] * dtype_size(descs[k]->dtype);
      ++ndim;
    }
  }
  if (ndim == 0) {  // a scalar, or all sizes 1
    ndim = 1;
    sizes[0] = 1;
    for (int k = 0; k < n_ops; ++k) strides[k][0] = dtype_size(descs[k]->dtype);
  }
}

}  // namespace tessera_cpu
