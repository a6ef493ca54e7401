// The CPU plugin's entry point: TsrPlugin, the "cpu" device (a 64-byte aligned allocator
// that caches large blocks, memcpy copies) and the registration of one kernel per op.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include <cblas.h>

#include "cpu.h"

namespace tessera_cpu {

// Blocks of at least kCacheMin bytes are rounded up to a size bucket (4 per power of two)
// and kept on a free list when freed, up to limit bytes in all, so a fresh large output
// reuses pages that are already mapped instead of faulting them in again every call.
// Smaller blocks come from malloc (its per-thread caches are fast from any thread, where
// aligned_alloc takes a slow path: 208 vs 31 ns for 64 bytes), with 64 bytes to spare
// to align the block; the byte before the block holds its distance from malloc's pointer.
class Allocator {
 public:
  explicit Allocator(size_t limit) : limit_(limit) {}
  ~Allocator() { trim(); }

  void* allocate(size_t nbytes) {
    if (nbytes < kCacheMin) {
      char* base = static_cast<char*>(std::malloc((nbytes + 63) / 64 * 64 + 64));
      if (base == nullptr) return nullptr;
      char* p = base + 64 - reinterpret_cast<uintptr_t>(base) % 64;
      p[-1] = static_cast<char>(p - base);  // 1..64
      return p;
    }
    const size_t size = bucket(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= size;
        return p;
      }
    }
    void* p = aligned(size >= kHuge ? kHuge : 64, size);
    if (p == nullptr) {  // give the cache back to the system and try once more
      trim();
      p = aligned(size >= kHuge ? kHuge : 64, size);
    }
    if (p != nullptr && size >= kHuge) madvise(p, size, MADV_HUGEPAGE);
    return p;
  }

  void free(void* p, size_t nbytes) {
    if (nbytes < kCacheMin) {
      char* c = static_cast<char*>(p);
      return std::free(c - static_cast<uint8_t>(c[-1]));
    }
    const size_t size = bucket(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + size <= limit_) {
        free_[size].push_back(p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  void trim() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_ = 0;
  }

 private:
  static constexpr size_t kCacheMin = size_t{1} << 20;
  static constexpr size_t kHuge = size_t{2} << 20;

  // posix_memalign, as bucket sizes need not be multiples of the alignment (aligned_alloc's
  // requirement, which ASan enforces)
  static void* aligned(size_t alignment, size_t size) {
    void* p = nullptr;
    return posix_memalign(&p, alignment, size) == 0 ? p : nullptr;
  }

  static size_t bucket(size_t n) {
    const int top = 63 - __builtin_clzll(n);  // n >= 2^top
    const size_t step = size_t{1} << (top - 2);
    return (n + step - 1) / step * step;
  }

  const size_t limit_;
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // bucket size -> blocks
  size_t cached_ = 0;
};

namespace {

constexpr uint32_t kMaskANY = TSR_DTYPES_ALL;
constexpr uint32_t kMaskNUM = TSR_DTYPES_ALL & ~TSR_DTYPE_BIT(TSR_BOOL);
constexpr uint32_t kMaskFLOAT = TSR_DTYPES_FLOAT;
constexpr uint32_t kMaskNONE = kMaskNUM;  // arange: every dtype but bool

struct KernelEntry {
  const char* name;
  uint32_t dtype_mask;
  TsrKernelFn fn;
};

#define TSR_CPU_KERNEL(name, types) {#name, kMask##types, &kernel_##name},
#define TSR_CPU_KIND_UNARY TSR_CPU_KERNEL
#define TSR_CPU_KIND_BINARY TSR_CPU_KERNEL
#define TSR_CPU_KIND_COMPARE TSR_CPU_KERNEL
#define TSR_CPU_KIND_WHERE TSR_CPU_KERNEL
#define TSR_CPU_KIND_CLAMP TSR_CPU_KERNEL
#define TSR_CPU_KIND_COPY TSR_CPU_KERNEL
#define TSR_CPU_KIND_FILL TSR_CPU_KERNEL
#define TSR_CPU_KIND_ARANGE TSR_CPU_KERNEL
#define TSR_CPU_KIND_REDUCE TSR_CPU_KERNEL
#define TSR_CPU_KIND_SOFTMAX TSR_CPU_KERNEL
#define TSR_CPU_KIND_MATMUL TSR_CPU_KERNEL
#define TSR_CPU_KIND_RANDOM TSR_CPU_KERNEL
#define TSR_CPU_KIND_VIEW(name, types)
#define TSR_CPU_KIND_CONV TSR_CPU_KERNEL
#define TSR_CPU_KIND_POOL TSR_CPU_KERNEL
#define TSR_CPU_KIND_OPTIM TSR_CPU_KERNEL
#define TSR_CPU_KIND_NN TSR_CPU_KERNEL
#define TSR_CPU_KIND_INDEX TSR_CPU_KERNEL
#define TSR_CPU_KIND_SAMPLE TSR_CPU_KERNEL
#define TSR_CPU_KIND_FOREACH TSR_CPU_KERNEL
#define TSR_CPU_KIND_COMPOSITE(name, types)
#define TSR_OP(name, kind, types, diff) TSR_CPU_KIND_##kind(name, types)
const KernelEntry kKernels[] = {
#include "tessera/ops.def"
};
#undef TSR_OP

int32_t device_allocate(void* ctx, int32_t /*device_index*/, size_t nbytes, void** out_ptr) {
  State* st = static_cast<State*>(ctx);
  *out_ptr = st->allocator->allocate(nbytes);
  if (*out_ptr != nullptr) return TSR_OK;
  char msg[160];
  std::snprintf(msg, sizeof(msg), "[allocate] out of memory allocating %zu bytes (cpu)", nbytes);
  return st->host->set_error(TSR_ERR_OUT_OF_MEMORY, msg);
}

void device_free(void* ctx, int32_t /*device_index*/, void* ptr, size_t nbytes) {
  if (ptr != nullptr) static_cast<State*>(ctx)->allocator->free(ptr, nbytes);
}

int32_t device_copy(void* /*ctx*/, void* dst, TsrDevice /*dst_device*/, const void* src,
                    TsrDevice /*src_device*/, size_t nbytes, void* /*stream*/) {
  if (nbytes > 0 && dst != src) std::memcpy(dst, src, nbytes);
  return TSR_OK;
}

int32_t device_synchronize(void* /*ctx*/, int32_t /*device_index*/) { return TSR_OK; }

void plugin_shutdown(void* plugin_ctx) {
  State* st = static_cast<State*>(plugin_ctx);
  if (st == nullptr) return;
  delete st->allocator;
  delete st;
}

int32_t plugin_init(const TsrHostApi* host, void** plugin_ctx) {
  *plugin_ctx = nullptr;
  const int64_t threads = host->option_int(host->host_ctx, "num_threads", 0);
  const int64_t cache_mb = host->option_int(host->host_ctx, "cache_limit_mb", 1024);
  if (threads < 0 || threads > 1024 || cache_mb < 0)
    return host->set_error(TSR_ERR_INVALID_ARGUMENT,
                           "[cpu] options: num_threads must be in [0, 1024] and cache_limit_mb >= 0");
  State* st = nullptr;
  try {
    auto allocator = std::make_unique<Allocator>(static_cast<size_t>(cache_mb) << 20);
    st = new State{host, ThreadPool(static_cast<int>(threads)), nullptr, {}};
    st->allocator = allocator.release();
  } catch (const std::exception&) {
    return host->set_error(TSR_ERR_RUNTIME, "[cpu] could not start the thread pool");
  }
  if (threads > 0) openblas_set_num_threads(static_cast<int>(threads));

  st->device = {sizeof(TsrDeviceInterface), "cpu", 1, st, &device_allocate, &device_free,
                &device_copy, &device_synchronize};
  int32_t status = host->register_device(host->host_ctx, &st->device);
  for (const KernelEntry& k : kKernels) {
    if (status != TSR_OK) break;
    const TsrKernelDef def = {sizeof(TsrKernelDef), k.name, "cpu", k.dtype_mask, k.fn, st};
    status = host->register_kernel(host->host_ctx, &def);
  }
  if (status != TSR_OK) {
    plugin_shutdown(st);
    return status;
  }
  char msg[128];
  std::snprintf(msg, sizeof(msg), "cpu plugin: %d threads, %s kernels", st->pool.num_threads(),
                g_has_avx2 ? "avx2" : "baseline");
  host->log(TSR_LOG_INFO, msg);
  *plugin_ctx = st;
  return TSR_OK;
}

}  // namespace
}  // namespace tessera_cpu

extern "C" TSR_PLUGIN_EXPORT const TsrPlugin* tsr_plugin_entry(void) {
  static const TsrPlugin plugin = {sizeof(TsrPlugin), TSR_PLUGIN_ABI_MAJOR, TSR_PLUGIN_ABI_MINOR, "cpu",
                                   "0.1.0", &tessera_cpu::plugin_init, &tessera_cpu::plugin_shutdown};
  return &plugin;
}
