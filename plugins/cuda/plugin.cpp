// The CUDA plugin's entry point: the "cuda" device (caching allocator, pinned-staging copies,
// streams, events, graphs, options), the shared helpers of cuda_common.cuh, and the
// registration of one kernel per op. Without a usable GPU it loads, says "no CUDA device"
// and registers nothing.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "allocator.h"
#include "cuda_common.cuh"

namespace tcu {

namespace {

constexpr int kMaxDevices = 16;

const TsrHostApi* g_host = nullptr;
int g_device_count = 0;
int g_sm_count[kMaxDevices] = {};
std::atomic<bool> g_allow_tf32{false};
std::atomic<bool> g_inject_launch_failure{false};  // test hook: the next launch check fails
std::unique_ptr<DeviceAllocator> g_alloc[kMaxDevices];
std::once_flag g_alloc_once[kMaxDevices];
TsrDeviceInterface g_device{};

thread_local cudaStream_t t_stream[kMaxDevices] = {};
thread_local int t_device = -1;  // the device this thread last made current

DeviceAllocator& allocator(int device) {
  std::call_once(g_alloc_once[device], [device] { g_alloc[device] = std::make_unique<DeviceAllocator>(device); });
  return *g_alloc[device];
}

inline void use_device(int device) {
  if (device != t_device) {
    cudaSetDevice(device);
    t_device = device;
  }
}

int32_t set_error(int32_t status, const std::string& msg) { return g_host->set_error(status, msg.c_str()); }
int32_t cuda_error(const char* what, cudaError_t e, int device) {
  cudaGetLastError();  // a failed call also sets the last error: clear it, or the next launch check reports it
  const int32_t status = e == cudaErrorMemoryAllocation ? TSR_ERR_OUT_OF_MEMORY : TSR_ERR_RUNTIME;
  return set_error(status, std::string(what) + " failed: " + cudaGetErrorString(e) + " (cuda:" +
                               std::to_string(device) + ")");
}
#define TRY_DEV(what, expr, device)                                  \
  do {                                                               \
    cudaError_t e_ = (expr);                                         \
    if (e_ != cudaSuccess) return cuda_error(TCU_WHERE(what), e_, (device)); \
  } while (0)

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return st != cudaStreamCaptureStatusNone;
}

// ---- pinned staging for host <-> device copies ------------------------------------------
// Blocks of page-locked host memory, each with the event of its last copy; a block is reused
// once its event has completed. Copies larger than kChunk go through in chunks.
constexpr size_t kChunk = size_t{32} << 20;
constexpr size_t kDirect = size_t{64} << 10;  // H2D up to this: the driver stages it at once

struct Pinned {
  void* p;
  size_t size;
  cudaEvent_t ev;
  bool busy;  // handed out and its event not yet recorded
};
std::mutex g_pinned_mu;
std::vector<Pinned> g_pinned;

Pinned* pinned_acquire(size_t n) {
  std::lock_guard<std::mutex> lock(g_pinned_mu);
  for (Pinned& b : g_pinned) {
    if (b.busy || b.size < n) continue;
    cudaError_t e = cudaEventQuery(b.ev);
    if (e == cudaSuccess) {
      b.busy = true;
      return &b;
    }
    cudaGetLastError();
  }
  size_t size = size_t{1} << 20;
  while (size < n) size <<= 1;
  Pinned b{nullptr, size, nullptr, true};
  if (cudaHostAlloc(&b.p, size, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  if (cudaEventCreateWithFlags(&b.ev, cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(b.p);
    return nullptr;
  }
  g_pinned.reserve(64);
  if (g_pinned.size() == g_pinned.capacity()) {  // keep pointers stable: never reallocate
    cudaEventDestroy(b.ev);
    cudaFreeHost(b.p);
    return nullptr;
  }
  g_pinned.push_back(b);
  return &g_pinned.back();
}

void pinned_release(Pinned* b) {
  std::lock_guard<std::mutex> lock(g_pinned_mu);
  b->busy = false;
}

// Records b's event on s (its copy is enqueued) and hands b back.
cudaError_t pinned_done(Pinned* b, cudaStream_t s) {
  cudaError_t e = cudaEventRecord(b->ev, s);
  pinned_release(b);
  return e;
}

// ---- the device interface ------------------------------------------------------------------

int32_t dev_allocate(void*, int32_t device, size_t nbytes, void** out) {
  std::string oom;
  *out = allocator(device).allocate(nbytes, t_stream[device], &oom);
  if (*out) return TSR_OK;
  return set_error(TSR_ERR_OUT_OF_MEMORY, oom.empty() ? "CUDA out of memory" : oom);
}

void dev_free(void*, int32_t device, void* ptr, size_t) {
  if (ptr) allocator(device).free(ptr);
}

int32_t dev_copy(void*, void* dst, TsrDevice dd, const void* src, TsrDevice sd, size_t n, void* stream_p) {
  cudaStream_t s = static_cast<cudaStream_t>(stream_p);
  const bool to_dev = dd.type != TSR_DEVICE_CPU, from_dev = sd.type != TSR_DEVICE_CPU;
  const int device = to_dev ? dd.index : sd.index;
  use_device(device);
  if (to_dev && from_dev) {
    if (dd.index == sd.index) {
      TRY_DEV("cudaMemcpyAsync (device to device)", cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s), device);
    } else {
      TRY_DEV("cudaMemcpyPeerAsync", cudaMemcpyPeerAsync(dst, dd.index, src, sd.index, n, s), device);
    }
    return TSR_OK;
  }
  if (capturing(s))
    return set_error(TSR_ERR_RUNTIME, std::string("copies between the host and cuda:") + std::to_string(device) +
                                          " cannot be captured in a CUDA graph (copy into a captured tensor before "
                                          "replay instead)");
  if (to_dev) {  // host -> device
    if (n <= kDirect) {
      TRY_DEV("cudaMemcpyAsync (host to device)", cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s), device);
      return TSR_OK;
    }
    for (size_t off = 0; off < n; off += kChunk) {
      const size_t len = std::min(kChunk, n - off);
      Pinned* b = pinned_acquire(len);
      if (!b) {  // no page-locked memory: a synchronous copy from pageable memory
        TRY_DEV("cudaMemcpy (host to device)",
                cudaMemcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, len,
                           cudaMemcpyHostToDevice),
                device);
        continue;
      }
      std::memcpy(b->p, static_cast<const char*>(src) + off, len);
      cudaError_t e = cudaMemcpyAsync(static_cast<char*>(dst) + off, b->p, len, cudaMemcpyHostToDevice, s);
      cudaError_t e2 = pinned_done(b, s);
      TRY_DEV("cudaMemcpyAsync (host to device)", e, device);
      TRY_DEV("cudaEventRecord", e2, device);
    }
    return TSR_OK;
  }
  // device -> host: through staging, waiting for the stream each chunk
  for (size_t off = 0; off < n; off += kChunk) {
    const size_t len = std::min(kChunk, n - off);
    Pinned* b = pinned_acquire(len);
    if (!b) {
      TRY_DEV("cudaStreamSynchronize", cudaStreamSynchronize(s), device);
      TRY_DEV("cudaMemcpy (device to host)",
              cudaMemcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, len,
                         cudaMemcpyDeviceToHost),
              device);
      continue;
    }
    cudaError_t e = cudaMemcpyAsync(b->p, static_cast<const char*>(src) + off, len, cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess) e = cudaEventRecord(b->ev, s);
    if (e == cudaSuccess) e = cudaEventSynchronize(b->ev);
    if (e == cudaSuccess) std::memcpy(static_cast<char*>(dst) + off, b->p, len);
    pinned_release(b);
    TRY_DEV("copying from the device to the host (cudaMemcpyAsync + cudaEventSynchronize)", e, device);
  }
  return TSR_OK;
}

int32_t dev_synchronize(void*, int32_t device) {
  use_device(device);
  TRY_DEV("cudaDeviceSynchronize", cudaDeviceSynchronize(), device);
  return TSR_OK;
}

int32_t stream_create(void*, int32_t device, int32_t priority, void** out) {
  use_device(device);
  int lo = 0, hi = 0;
  cudaDeviceGetStreamPriorityRange(&lo, &hi);  // lo: least urgent (0), hi: most urgent (negative)
  const int p = std::clamp(priority, hi, lo);
  cudaStream_t s = nullptr;
  TRY_DEV("cudaStreamCreateWithPriority", cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, p), device);
  *out = s;
  return TSR_OK;
}
int32_t stream_destroy(void*, int32_t device, void* s) {
  use_device(device);
  TRY_DEV("cudaStreamDestroy", cudaStreamDestroy(static_cast<cudaStream_t>(s)), device);
  return TSR_OK;
}
int32_t stream_synchronize(void*, int32_t device, void* s) {
  use_device(device);
  TRY_DEV("cudaStreamSynchronize", cudaStreamSynchronize(static_cast<cudaStream_t>(s)), device);
  return TSR_OK;
}
int32_t stream_query(void*, int32_t device, void* s, int32_t* idle) {
  use_device(device);
  cudaError_t e = cudaStreamQuery(static_cast<cudaStream_t>(s));
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    *idle = 0;
    return TSR_OK;
  }
  TRY_DEV("cudaStreamQuery", e, device);
  *idle = 1;
  return TSR_OK;
}
int32_t stream_wait_event(void*, int32_t device, void* s, void* ev) {
  use_device(device);
  TRY_DEV("cudaStreamWaitEvent",
          cudaStreamWaitEvent(static_cast<cudaStream_t>(s), static_cast<cudaEvent_t>(ev), 0), device);
  return TSR_OK;
}
int32_t set_current_stream(void*, int32_t device, void* s) {
  t_stream[device] = static_cast<cudaStream_t>(s);
  return TSR_OK;
}
int32_t event_create(void*, int32_t device, int32_t timing, void** out) {
  use_device(device);
  cudaEvent_t ev = nullptr;
  TRY_DEV("cudaEventCreateWithFlags",
          cudaEventCreateWithFlags(&ev, timing ? cudaEventDefault : cudaEventDisableTiming), device);
  *out = ev;
  return TSR_OK;
}
int32_t event_destroy(void*, int32_t device, void* ev) {
  use_device(device);
  TRY_DEV("cudaEventDestroy", cudaEventDestroy(static_cast<cudaEvent_t>(ev)), device);
  return TSR_OK;
}
int32_t event_record(void*, int32_t device, void* ev, void* s) {
  use_device(device);
  TRY_DEV("cudaEventRecord", cudaEventRecord(static_cast<cudaEvent_t>(ev), static_cast<cudaStream_t>(s)), device);
  return TSR_OK;
}
int32_t event_synchronize(void*, int32_t device, void* ev) {
  use_device(device);
  TRY_DEV("cudaEventSynchronize", cudaEventSynchronize(static_cast<cudaEvent_t>(ev)), device);
  return TSR_OK;
}
int32_t event_query(void*, int32_t device, void* ev, int32_t* done) {
  use_device(device);
  cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(ev));
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    *done = 0;
    return TSR_OK;
  }
  TRY_DEV("cudaEventQuery", e, device);
  *done = 1;
  return TSR_OK;
}
int32_t event_elapsed(void*, int32_t device, void* a, void* b, float* ms) {
  use_device(device);
  TRY_DEV("cudaEventElapsedTime",
          cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(a), static_cast<cudaEvent_t>(b)), device);
  return TSR_OK;
}
int32_t record_stream(void*, int32_t device, void* ptr, void* s) {
  allocator(device).record_stream(ptr, static_cast<cudaStream_t>(s));
  return TSR_OK;
}
int32_t memory_stats(void*, int32_t device, TsrMemoryStats* out) {
  allocator(device).stats(out);
  return TSR_OK;
}
int32_t reset_peak(void*, int32_t device) {
  allocator(device).reset_peak();
  return TSR_OK;
}
int32_t empty_cache(void*, int32_t device) {
  use_device(device);
  allocator(device).empty_cache();
  return TSR_OK;
}
int32_t set_fraction(void*, int32_t device, double f) {
  allocator(device).set_fraction(f);
  return TSR_OK;
}
int32_t snapshot(void*, int32_t device, char* buf, size_t size, size_t* needed) {
  const std::string s = allocator(device).snapshot();
  *needed = s.size() + 1;
  if (buf && size >= s.size() + 1) std::memcpy(buf, s.c_str(), s.size() + 1);
  return TSR_OK;
}

struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  Pool* pool = nullptr;
};

int32_t graph_begin(void*, int32_t device, void* sp) {
  cudaStream_t s = static_cast<cudaStream_t>(sp);
  if (!s)
    return set_error(TSR_ERR_INVALID_ARGUMENT, "a CUDA graph cannot be captured on the default stream of cuda:" +
                                                   std::to_string(device) + "; capture on a stream of its own");
  use_device(device);
  allocator(device).begin_capture(s);
  cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  if (e != cudaSuccess) {
    allocator(device).release_pool(allocator(device).end_capture(s));
    return cuda_error("cudaStreamBeginCapture", e, device);
  }
  return TSR_OK;
}

int32_t graph_end(void*, int32_t device, void* sp, void** out) {
  cudaStream_t s = static_cast<cudaStream_t>(sp);
  use_device(device);
  auto g = std::make_unique<Graph>();
  cudaError_t e = cudaStreamEndCapture(s, &g->graph);
  g->pool = allocator(device).end_capture(s);
  if (e == cudaSuccess) e = cudaGraphInstantiate(&g->exec, g->graph, 0);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (g->graph) cudaGraphDestroy(g->graph);
    allocator(device).release_pool(g->pool);
    return cuda_error("capturing the CUDA graph (cudaStreamEndCapture/cudaGraphInstantiate)", e, device);
  }
  *out = g.release();
  return TSR_OK;
}

int32_t graph_replay(void*, int32_t device, void* gp, void* sp) {
  use_device(device);
  TRY_DEV("cudaGraphLaunch", cudaGraphLaunch(static_cast<Graph*>(gp)->exec, static_cast<cudaStream_t>(sp)), device);
  return TSR_OK;
}

int32_t graph_destroy(void*, int32_t device, void* gp) {
  use_device(device);
  Graph* g = static_cast<Graph*>(gp);
  cudaDeviceSynchronize();  // a replay may still run: its memory goes back only afterwards
  cudaGetLastError();
  if (g->exec) cudaGraphExecDestroy(g->exec);
  if (g->graph) cudaGraphDestroy(g->graph);
  allocator(device).release_pool(g->pool);
  delete g;
  return TSR_OK;
}

int32_t set_option(void*, const char* key, int64_t value) {
  if (std::strcmp(key, "allow_tf32") == 0) {
    g_allow_tf32.store(value != 0);
    return TSR_OK;
  }
  if (std::strcmp(key, "inject_launch_failure") == 0) {  // for tests of the error path
    g_inject_launch_failure.store(value != 0);
    return TSR_OK;
  }
  return set_error(TSR_ERR_INVALID_ARGUMENT, std::string("unknown cuda option '") + key +
                                                 "' (known: allow_tf32, inject_launch_failure)");
}
int32_t get_option(void*, const char* key, int64_t* value) {
  if (std::strcmp(key, "allow_tf32") == 0) {
    *value = g_allow_tf32.load() ? 1 : 0;
    return TSR_OK;
  }
  return set_error(TSR_ERR_INVALID_ARGUMENT, std::string("unknown cuda option '") + key + "' (known: allow_tf32)");
}

// ---- kernels -------------------------------------------------------------------------------

// Every kernel is entered here: the call's device made current, exceptions kept inside.
int32_t trampoline(const TsrKernelArgs* a) {
  use_device(a->outputs[0].device.index);
  try {
    return reinterpret_cast<TsrKernelFn>(a->kernel_ctx)(a);
  } catch (const std::bad_alloc&) {
    return fail(a, TSR_ERR_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception& e) {
    return fail(a, TSR_ERR_RUNTIME, "%s", e.what());
  }
}

constexpr uint32_t kMaskANY = TSR_DTYPES_ALL;
constexpr uint32_t kMaskNUM = TSR_DTYPES_ALL & ~TSR_DTYPE_BIT(TSR_BOOL);
constexpr uint32_t kMaskFLOAT = TSR_DTYPES_FLOAT;
constexpr uint32_t kMaskNONE = kMaskNUM;  // arange: every dtype but bool

struct KernelEntry {
  const char* name;
  uint32_t mask;
  TsrKernelFn fn;
};
#define TCU_KERNEL(name, types) {#name, kMask##types, &kernel_##name},
#define TCU_KIND_UNARY TCU_KERNEL
#define TCU_KIND_BINARY TCU_KERNEL
#define TCU_KIND_COMPARE TCU_KERNEL
#define TCU_KIND_WHERE TCU_KERNEL
#define TCU_KIND_CLAMP TCU_KERNEL
#define TCU_KIND_COPY TCU_KERNEL
#define TCU_KIND_FILL TCU_KERNEL
#define TCU_KIND_ARANGE TCU_KERNEL
#define TCU_KIND_REDUCE TCU_KERNEL
#define TCU_KIND_SOFTMAX TCU_KERNEL
#define TCU_KIND_MATMUL TCU_KERNEL
#define TCU_KIND_RANDOM TCU_KERNEL
#define TCU_KIND_VIEW(name, types)
#define TCU_KIND_CONV TCU_KERNEL
#define TCU_KIND_POOL TCU_KERNEL
#define TCU_KIND_OPTIM TCU_KERNEL
#define TCU_KIND_NN TCU_KERNEL
#define TCU_KIND_INDEX TCU_KERNEL
#define TCU_KIND_SAMPLE TCU_KERNEL
#define TCU_KIND_FOREACH TCU_KERNEL
#define TCU_KIND_COMPOSITE(name, types)
#define TSR_OP(name, kind, types, diff) TCU_KIND_##kind(name, types)
const KernelEntry kKernels[] = {
#include "tessera/ops.def"
};
#undef TSR_OP

void plugin_shutdown(void*) {
  for (auto& a : g_alloc) a.reset();
  std::lock_guard<std::mutex> lock(g_pinned_mu);
  for (Pinned& b : g_pinned) {
    cudaEventDestroy(b.ev);
    cudaFreeHost(b.p);
  }
  g_pinned.clear();
  cudaGetLastError();
}

int32_t plugin_init(const TsrHostApi* host, void** plugin_ctx) {
  *plugin_ctx = nullptr;
  g_host = host;
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count <= 0) {
    cudaGetLastError();
    std::string why = "no CUDA device";
    if (e != cudaSuccess) why += std::string(" (") + cudaGetErrorString(e) + ")";
    host->set_unavailable(host->host_ctx, why.c_str());
    return TSR_OK;
  }
  g_device_count = std::min(count, kMaxDevices);
  for (int d = 0; d < g_device_count; ++d) {
    if (cudaDeviceGetAttribute(&g_sm_count[d], cudaDevAttrMultiProcessorCount, d) != cudaSuccess) {
      cudaGetLastError();
      g_sm_count[d] = 1;
    }
  }
  g_allow_tf32.store(host->option_int(host->host_ctx, "allow_tf32", 0) != 0);

  TsrDeviceInterface& d = g_device;
  d.struct_size = sizeof(TsrDeviceInterface);
  d.type_name = "cuda";
  d.device_count = g_device_count;
  d.allocate = dev_allocate;
  d.free = dev_free;
  d.copy = dev_copy;
  d.synchronize = dev_synchronize;
  d.stream_create = stream_create;
  d.stream_destroy = stream_destroy;
  d.stream_synchronize = stream_synchronize;
  d.stream_query = stream_query;
  d.stream_wait_event = stream_wait_event;
  d.set_current_stream = set_current_stream;
  d.event_create = event_create;
  d.event_destroy = event_destroy;
  d.event_record = event_record;
  d.event_synchronize = event_synchronize;
  d.event_query = event_query;
  d.event_elapsed_ms = event_elapsed;
  d.record_stream = record_stream;
  d.memory_stats = memory_stats;
  d.reset_peak_stats = reset_peak;
  d.empty_cache = empty_cache;
  d.set_memory_fraction = set_fraction;
  d.memory_snapshot = snapshot;
  d.graph_capture_begin = graph_begin;
  d.graph_capture_end = graph_end;
  d.graph_replay = graph_replay;
  d.graph_destroy = graph_destroy;
  d.set_option = set_option;
  d.get_option = get_option;
  if (int32_t st = host->register_device(host->host_ctx, &d); st != TSR_OK) return st;
  for (const KernelEntry& k : kKernels) {
    TsrKernelDef def{};
    def.struct_size = sizeof def;
    def.op_name = k.name;
    def.device_type = "cuda";
    def.dtype_mask = k.mask;
    def.fn = trampoline;
    def.ctx = reinterpret_cast<void*>(k.fn);
    if (int32_t st = host->register_kernel(host->host_ctx, &def); st != TSR_OK) return st;
  }
  return TSR_OK;
}

const TsrPlugin kPlugin = {sizeof(TsrPlugin), TSR_PLUGIN_ABI_MAJOR, TSR_PLUGIN_ABI_MINOR, "cuda", "0.1.0",
                           plugin_init, plugin_shutdown};

}  // namespace

// ---- cuda_common.cuh helpers ---------------------------------------------------------------

int32_t fail(const TsrKernelArgs* a, int32_t status, const char* fmt, ...) {
  char body[400];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(body, sizeof body, fmt, ap);
  va_end(ap);
  char msg[520];
  std::snprintf(msg, sizeof msg, "[%s] %s (cuda:%d)", a->op_name, body, a->outputs[0].device.index);
  return g_host->set_error(status, msg);
}

int32_t fail_cuda(const TsrKernelArgs* a, const char* what, cudaError_t e) {
  cudaGetLastError();  // as cuda_error: the next launch check must not see this call's error
  const int32_t status = e == cudaErrorMemoryAllocation ? TSR_ERR_OUT_OF_MEMORY : TSR_ERR_RUNTIME;
  return fail(a, status, "%s failed: %s", what, cudaGetErrorString(e));
}

int32_t check_launch(const TsrKernelArgs* a, const char* kernel_name) {
  cudaError_t e = cudaGetLastError();
  if (g_inject_launch_failure.load(std::memory_order_relaxed) && g_inject_launch_failure.exchange(false))
    e = cudaErrorLaunchFailure;
  if (e == cudaSuccess) [[likely]] return TSR_OK;
  return fail(a, e == cudaErrorMemoryAllocation ? TSR_ERR_OUT_OF_MEMORY : TSR_ERR_RUNTIME,
              "kernel %s failed to launch: %s", kernel_name, cudaGetErrorString(e));
}

int sm_count(int device) { return device >= 0 && device < kMaxDevices && g_sm_count[device] ? g_sm_count[device] : 1; }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }
bool stream_is_capturing(cudaStream_t s) { return capturing(s); }

void* scratch_alloc(int device, size_t nbytes, cudaStream_t s) {
  return allocator(device).allocate(nbytes, s, nullptr);
}
void scratch_free(int device, void* p) { allocator(device).free(p); }

void collapse(const TsrTensorDesc* const* ops, int n, Geometry& g, Strides* strides) {
  const TsrTensorDesc& ref = *ops[0];
  g.ndim = 0;
  for (int32_t d = 0; d < ref.ndim; ++d) {
    if (ref.sizes[d] == 1) continue;
    if (g.ndim > 0) {  // merge into the previous kept dim when every operand allows it
      bool merge = true;
      const int32_t k = g.ndim - 1;
      for (int i = 0; i < n && merge; ++i) merge = strides[i].s[k] == ops[i]->strides[d] * ref.sizes[d];
      if (merge) {
        g.sizes[k] *= ref.sizes[d];
        for (int i = 0; i < n; ++i) strides[i].s[k] = ops[i]->strides[d];
        continue;
      }
    }
    g.sizes[g.ndim] = ref.sizes[d];
    for (int i = 0; i < n; ++i) strides[i].s[g.ndim] = ops[i]->strides[d];
    ++g.ndim;
  }
  for (int32_t k = g.ndim; k < TSR_MAX_DIMS; ++k) {
    g.sizes[k] = 1;
    for (int i = 0; i < n; ++i) strides[i].s[k] = 0;
  }
}

}  // namespace tcu

extern "C" TSR_PLUGIN_EXPORT const TsrPlugin* tsr_plugin_entry(void) { return &tcu::kPlugin; }
