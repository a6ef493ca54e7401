// tessera-bench: Tessera's CPU float32 figures beside in-process references (plain C, memcpy, OpenBLAS).
//
// Every figure prints one line
//   figure NAME tessera=VALUE reference=VALUE ratio=VALUE goal=GOAL
// with the unit in NAME, and ratio = tessera / reference always:
//   - throughput figures (GB/s, GFLOP/s): higher is better, PASS when ratio >= goal (e.g. ">=0.8");
//   - latency figures (us per call): lower is better, the goal is absolute on the tessera value
//     (e.g. "<=0.3us", PASS when tessera <= 0.3 us); ratio shows how far above the plain-C floor we are.
//
// Method. Latency: the median over 2001 batches of 100 calls of the batch mean (clock_gettime through
// std::chrono::steady_clock, the two clock reads per batch subtracted). Throughput: one warm-up, then
// the best (shortest) of 10 runs, the run least disturbed by other work on a shared machine. The two
// sides of a figure are measured interleaved, so both see the same load. Both write into an allocated,
// touched output (tsr_call with outputs given; memcpy/cblas into a preallocated buffer); a `note` line
// after the add and softmax figures gives the typed entry point that allocates a fresh output.
// Bandwidth convention: GB = 1e9 bytes, and bytes are what the op must move at minimum (inputs read +
// outputs written). memcpy of n bytes counts 2n (n read + n written), so every reference GB/s is
// 2 * copy_bytes / memcpy_time: traffic per second, the same convention as the op's figure. The
// reference memcpy runs on every core, on persistent threads, as the CPU plugin does.
#include <cblas.h>
#include <sched.h>
#include <tessera/tessera.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr double kGB = 1e9;

struct Options {
  bool quick = false;
  std::string filter;  // substring of figure names to run; empty = all
};

// One measured figure and how to judge it.
struct Figure {
  std::string name;
  std::string goal_text;  // ">=0.8" (ratio) or "<=0.3us" (absolute tessera value)
  bool latency = false;   // lower is better and the goal is on the tessera value
  double goal = 0;
  double tessera = NAN;
  double reference = NAN;
  std::string error;      // non-empty when the figure could not be measured
  std::string note;       // an extra measurement printed after the figure line

  double ratio() const { return tessera / reference; }
  bool pass() const { return error.empty() && (latency ? tessera <= goal : ratio() >= goal); }
};

// Throws with the runtime's message when a Tessera call fails.
void check(int32_t status, const char* what) {
  if (status != TSR_OK) {
    throw std::runtime_error(std::string(what) + " failed (status " + std::to_string(status) +
                             "): " + tsr_last_error());
  }
}
#define CHECK(call) check((call), #call)

// Owns one tensor handle.
struct Tensor {
  TsrTensor handle = nullptr;
  Tensor() = default;
  Tensor(Tensor&& other) noexcept : handle(other.handle) { other.handle = nullptr; }
  Tensor& operator=(Tensor&&) = delete;
  ~Tensor() { tsr_release(handle); }
  TsrTensor* out() { return &handle; }
  float* data() const {
    TsrTensorInfo info{};
    info.struct_size = sizeof info;
    CHECK(tsr_tensor_info(handle, &info));
    return static_cast<float*>(info.data);
  }
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Keeps the compiler from removing work whose result is otherwise unused.
template <class T>
void keep(T* p) {
  asm volatile("" : : "r"(p) : "memory");
}

// The tessera side and the reference side of one figure, measured interleaved (tessera, reference,
// tessera, ...) so that both see the same load when the machine is shared.
struct Pair {
  double tessera, reference;
};

// Latency, in microseconds per call: the median over many short batches (kBatchCalls calls each)
// of the batch's mean, less the cost of reading the clock twice. Short batches keep the median clear
// of batches that a context switch hit, and make the two clock reads (~20 ns) a small, subtracted
// share of each batch.
constexpr int kBatchCalls = 100;

Pair median_batch_mean_us(int batches, void (*tessera)(void*), void* tessera_ctx, void (*reference)(void*),
                          void* reference_ctx) {
  for (int i = 0; i < 20 * kBatchCalls; ++i) tessera(tessera_ctx), reference(reference_ctx);  // warm-up
  std::vector<double> clock_cost(batches), t(batches), r(batches);
  for (int b = 0; b < batches; ++b) {
    double t0 = now_s();
    clock_cost[b] = now_s() - t0;
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  const double overhead = median(clock_cost);
  auto batch_mean = [overhead](void (*call)(void*), void* ctx) {
    double t0 = now_s();
    for (int i = 0; i < kBatchCalls; ++i) call(ctx);
    return (now_s() - t0 - overhead) / kBatchCalls;
  };
  for (int b = 0; b < batches; ++b) {
    t[b] = batch_mean(tessera, tessera_ctx);
    r[b] = batch_mean(reference, reference_ctx);
  }
  return {median(t) * 1e6, median(r) * 1e6};
}

// Throughput, in seconds: one warm-up of each side, then `reps` runs of each, interleaved; the
// shortest of each side.
template <class T, class R>
Pair best_seconds(int reps, T&& tessera, R&& reference) {
  tessera();
  reference();
  Pair best{INFINITY, INFINITY};
  for (int i = 0; i < reps; ++i) {
    double t0 = now_s();
    tessera();
    double t1 = now_s();
    reference();
    double t2 = now_s();
    best.tessera = std::min(best.tessera, t1 - t0);
    best.reference = std::min(best.reference, t2 - t1);
  }
  return best;
}

// Cores this process may run on (as the CPU plugin counts them).
int num_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return std::max(1u, std::thread::hardware_concurrency());
}

// The memcpy reference on every core, on the same footing as the CPU plugin's pool: persistent
// workers (one per core beside the caller, which takes part) parked on a condition variable between
// copies. A copy is cut into 4 MiB chunks claimed from a counter tagged with the copy's generation,
// so a worker the OS is slow to run (a shared machine) only copies less, and never holds the copy up.
class CopyPool {
 public:
  CopyPool() {
    for (int i = 1; i < num_cores(); ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~CopyPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void copy(char* dst, const char* src, size_t n) {
    const Job job{dst, src, n, (n + kChunk - 1) / kChunk};
    uint64_t generation;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      generation = ++generation_;
      pending_ = job.chunks;
      claim_.store(generation << 32);
    }
    wake_.notify_all();
    copy_chunks(job, generation);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
  }

 private:
  static constexpr size_t kChunk = size_t{4} << 20;
  struct Job {
    char* dst;
    const char* src;
    size_t n, chunks;
  };

  // Copies the chunks of copy `generation` that nobody has claimed yet.
  void copy_chunks(const Job& job, uint64_t generation) {
    uint64_t c = claim_.load();
    while ((c >> 32) == generation && (c & 0xffffffff) < job.chunks) {
      if (!claim_.compare_exchange_weak(c, c + 1)) continue;
      const size_t begin = (c & 0xffffffff) * kChunk;
      std::memcpy(job.dst + begin, job.src + begin, std::min(kChunk, job.n - begin));
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--pending_ == 0) done_.notify_one();
      }
      c = claim_.load();
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        job = job_;
        seen = generation_;
      }
      copy_chunks(job, seen);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job job_{};                        // guarded by mutex_, as the three below
  uint64_t generation_ = 0;
  size_t pending_ = 0;               // chunks not yet copied
  bool stop_ = false;
  std::atomic<uint64_t> claim_{0};   // generation << 32 | next unclaimed chunk
  std::vector<std::thread> workers_;
};

// Deterministic pseudo-random floats in [-1, 1).
std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = static_cast<float>(seed >> 8) * (2.0f / 16777216.0f) - 1.0f;
  }
  return v;
}

Tensor from_host(const std::vector<float>& data, std::initializer_list<int64_t> sizes) {
  std::vector<int64_t> s(sizes);
  Tensor t;
  CHECK(tsr_from_buffer(data.data(), s.data(), static_cast<int32_t>(s.size()), TSR_FLOAT32,
                        TsrDevice{TSR_DEVICE_CPU, 0}, t.out()));
  return t;
}

Tensor empty(std::initializer_list<int64_t> sizes) {
  std::vector<int64_t> s(sizes);
  Tensor t;
  CHECK(tsr_empty(s.data(), static_cast<int32_t>(s.size()), TSR_FLOAT32, TsrDevice{TSR_DEVICE_CPU, 0},
                  t.out()));
  return t;
}

// The memcpy reference: copies `bytes` between two touched buffers; its GB/s counts 2 * bytes. The
// buffers are Tessera tensors, so they are the same kind of memory as the op's operands (the CPU
// plugin puts large blocks on 2 MiB-aligned, MADV_HUGEPAGE memory, which copies ~1.5x faster than
// plain 4 KiB pages here): the two sides differ only in the work done.
struct CopyReference {
  Tensor src, dst;  // (bytes / 4,) float32 each
  size_t bytes;
  explicit CopyReference(size_t n) : src(empty({int64_t(n / 4)})), dst(empty({int64_t(n / 4)})), bytes(n) {
    std::memset(src.data(), 1, bytes);
    std::memset(dst.data(), 0, bytes);
  }
  void operator()() {
    static CopyPool pool;
    pool.copy(reinterpret_cast<char*>(dst.data()), reinterpret_cast<const char*>(src.data()), bytes);
  }
  double gbps(double seconds) const { return 2.0 * bytes / seconds / kGB; }
};

// "tessera=X reference=Y ratio=Z" for a note line.
std::string triple(double tessera, double reference) {
  char text[96];
  std::snprintf(text, sizeof text, "tessera=%.4g reference=%.4g ratio=%.3g", tessera, reference, tessera / reference);
  return text;
}

int32_t op_id(const char* name) {
  int32_t op = -1;
  CHECK(tsr_op_lookup(name, &op));
  return op;
}

void expect_near(float got, float want, float tol, const char* what) {
  if (!(std::fabs(got - want) <= tol * (1.0f + std::fabs(want)))) {
    throw std::runtime_error(std::string("wrong result in ") + what + ": got " + std::to_string(got) +
                             ", want " + std::to_string(want));
  }
}

// ---- 1. add of one element ------------------------------------------------------------------

struct AddCtx {
  TsrTensor a, b, out;  // out: a given output for the breakdown
  int32_t add_op;
  const float* pa;
  const float* pb;
};

void tessera_add_1elem(void* p) {
  auto* c = static_cast<AddCtx*>(p);
  TsrTensor out = nullptr;
  if (tsr_add(c->a, c->b, &out) != TSR_OK) throw std::runtime_error(tsr_last_error());
  tsr_release(out);
}

// Breakdown, part 1: the add without allocating its output (tsr_call into a given output).
void tessera_add_1elem_given(void* p) {
  auto* c = static_cast<AddCtx*>(p);
  TsrTensor in[2] = {c->a, c->b};
  if (tsr_call(c->add_op, in, 2, nullptr, &c->out, 1) != TSR_OK) throw std::runtime_error(tsr_last_error());
}

// Breakdown, part 2: allocating and releasing a 1-element tensor alone.
void tessera_empty_1elem(void*) {
  const int64_t size = 1;
  TsrTensor out = nullptr;
  if (tsr_empty(&size, 1, TSR_FLOAT32, TsrDevice{TSR_DEVICE_CPU, 0}, &out) != TSR_OK) {
    throw std::runtime_error(tsr_last_error());
  }
  tsr_release(out);
}

// The floor of the same work in plain C: allocate the output, add, free.
void plain_add_1elem(void* p) {
  auto* c = static_cast<AddCtx*>(p);
  keep(c);
  auto* out = static_cast<float*>(std::malloc(sizeof(float)));
  out[0] = c->pa[0] + c->pb[0];
  keep(out);
  std::free(out);
}

void figure_add_1elem(const Options& opt, Figure& f) {
  std::vector<float> one = {1.5f}, two = {2.25f};
  Tensor a = from_host(one, {1}), b = from_host(two, {1});
  Tensor given = empty({1});
  AddCtx ctx{a.handle, b.handle, given.handle, op_id("add"), one.data(), two.data()};
  int batches = opt.quick ? 201 : 2001;
  Pair us = median_batch_mean_us(batches, tessera_add_1elem, &ctx, plain_add_1elem, &ctx);
  f.tessera = us.tessera;
  f.reference = us.reference;
  Pair parts = median_batch_mean_us(batches, tessera_add_1elem_given, &ctx, tessera_empty_1elem, nullptr);
  char note[160];
  std::snprintf(note, sizeof note, "breakdown us: tsr_call(add) into a given output=%.4g tsr_empty+tsr_release=%.4g",
                parts.tessera, parts.reference);
  f.note = note;
  Tensor out;
  CHECK(tsr_add(a.handle, b.handle, out.out()));
  expect_near(out.data()[0], 3.75f, 0, "add_1elem");
}

// ---- 2. transpose view ----------------------------------------------------------------------

// What a view minimally costs in plain C: a header on the heap with its sizes and strides.
struct PlainHeader {
  int64_t refcount;
  void* storage;
  int32_t dtype, ndim;
  int64_t sizes[TSR_MAX_DIMS], strides[TSR_MAX_DIMS];
  int64_t storage_offset;
};

void tessera_transpose(void* p) {
  TsrTensor out = nullptr;
  if (tsr_transpose(static_cast<TsrTensor>(p), 0, 1, &out) != TSR_OK) {
    throw std::runtime_error(tsr_last_error());
  }
  tsr_release(out);
}

void plain_transpose(void* p) {
  auto* src = static_cast<PlainHeader*>(p);
  keep(src);
  auto* h = static_cast<PlainHeader*>(std::malloc(sizeof(PlainHeader)));
  *h = *src;
  std::swap(h->sizes[0], h->sizes[1]);
  std::swap(h->strides[0], h->strides[1]);
  keep(h);
  std::free(h);
}

void figure_transpose(const Options& opt, Figure& f) {
  Tensor t = empty({2, 3});
  PlainHeader src{1, nullptr, TSR_FLOAT32, 2, {2, 3}, {3, 1}, 0};
  int batches = opt.quick ? 201 : 2001;
  Pair us = median_batch_mean_us(batches, tessera_transpose, t.handle, plain_transpose, &src);
  f.tessera = us.tessera;
  f.reference = us.reference;
  Tensor tt;
  CHECK(tsr_transpose(t.handle, 0, 1, tt.out()));
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  CHECK(tsr_tensor_info(tt.handle, &info));
  if (info.sizes[0] != 3 || info.sizes[1] != 2 || info.strides[0] != 1 || info.strides[1] != 3) {
    throw std::runtime_error("transpose_view: wrong sizes/strides");
  }
}

// ---- 3. add of 16M elements -----------------------------------------------------------------

void figure_add_16m(const Options& opt, Figure& f) {
  const int64_t n = int64_t(16) << 20;                   // 16M elements, 64 MiB per tensor
  const double bytes = 3.0 * n * sizeof(float);          // read a, b; write out
  int reps = opt.quick ? 2 : 10;
  Tensor a = from_host(random_floats(n, 1), {n});
  Tensor b = from_host(random_floats(n, 2), {n});
  Tensor out = empty({n});
  const int32_t add = op_id("add");
  TsrTensor inputs[2] = {a.handle, b.handle};
  CopyReference copy(n * sizeof(float) * 3 / 2);  // 96 MiB copied: 192 MiB moved
  Pair s = best_seconds(reps, [&] { CHECK(tsr_call(add, inputs, 2, nullptr, &out.handle, 1)); }, copy);
  f.tessera = bytes / s.tessera / kGB;
  f.reference = copy.gbps(s.reference);
  for (int64_t i : {int64_t(0), n / 2, n - 1}) {
    expect_near(out.data()[i], a.data()[i] + b.data()[i], 1e-6f, "add_f32_16M");
  }
  Pair fresh_s = best_seconds(reps, [&] {
    Tensor fresh;
    CHECK(tsr_add(a.handle, b.handle, fresh.out()));
  }, copy);
  f.note = "tsr_add allocating its output: " + triple(bytes / fresh_s.tessera / kGB, copy.gbps(fresh_s.reference));
}

// ---- 4. matmul 1024^3 -----------------------------------------------------------------------

void figure_matmul(const Options& opt, Figure& f) {
  const int n = 1024;
  const double flops = 2.0 * n * n * n;
  int reps = opt.quick ? 2 : 10;
  Tensor a = from_host(random_floats(size_t(n) * n, 3), {n, n});
  Tensor b = from_host(random_floats(size_t(n) * n, 4), {n, n});
  Tensor out = empty({n, n});
  const int32_t matmul = op_id("matmul");
  TsrTensor inputs[2] = {a.handle, b.handle};
  std::vector<float> c(size_t(n) * n);  // c is (n, n), row-major, as out
  const float* pa = a.data();
  const float* pb = b.data();
  Pair s = best_seconds(reps, [&] { CHECK(tsr_call(matmul, inputs, 2, nullptr, &out.handle, 1)); }, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, pa, n, pb, n, 0.0f, c.data(), n);
  });
  f.tessera = flops / s.tessera / 1e9;
  f.reference = flops / s.reference / 1e9;
  const float* po = out.data();
  for (size_t i : {size_t(0), size_t(n) * n / 2 + 7, size_t(n) * n - 1}) {
    expect_near(po[i], c[i], 1e-4f, "matmul_f32_1024");
  }
}

// ---- 5. softmax over rows -------------------------------------------------------------------

void figure_softmax(const Options& opt, Figure& f) {
  const int64_t rows = 4096, cols = 4096;
  const double bytes = 2.0 * rows * cols * sizeof(float);  // read x, write out
  int reps = opt.quick ? 2 : 10;
  std::vector<float> host = random_floats(rows * cols, 5);
  Tensor x = from_host(host, {rows, cols});
  Tensor out = empty({rows, cols});
  const int32_t softmax = op_id("softmax");
  TsrAttrs attrs;
  tsr_attrs_init(&attrs);
  attrs.dim = 1;
  CopyReference copy(rows * cols * sizeof(float));  // 64 MiB copied: 128 MiB moved
  Pair s = best_seconds(reps, [&] { CHECK(tsr_call(softmax, &x.handle, 1, &attrs, &out.handle, 1)); }, copy);
  f.tessera = bytes / s.tessera / kGB;
  f.reference = copy.gbps(s.reference);
  for (int64_t r : {int64_t(0), rows - 1}) {
    const float* xr = host.data() + r * cols;
    double denom = 0;
    float mx = *std::max_element(xr, xr + cols);
    for (int64_t j = 0; j < cols; ++j) denom += std::exp(double(xr[j] - mx));
    expect_near(out.data()[r * cols + 5], float(std::exp(double(xr[5] - mx)) / denom), 1e-4f,
                "softmax_rows_f32_4096");
  }
  Pair fresh_s = best_seconds(reps, [&] {
    Tensor fresh;
    CHECK(tsr_softmax(x.handle, 1, fresh.out()));
  }, copy);
  f.note = "tsr_softmax allocating its output: " + triple(bytes / fresh_s.tessera / kGB, copy.gbps(fresh_s.reference));
}

// ---- 6. sum over the last dim ---------------------------------------------------------------

void figure_sum(const Options& opt, Figure& f) {
  const int64_t rows = 4096, cols = 4096;
  const double bytes = double(rows) * cols * sizeof(float) + rows * sizeof(float);  // read x, write out
  int reps = opt.quick ? 2 : 10;
  std::vector<float> host = random_floats(rows * cols, 6);
  Tensor x = from_host(host, {rows, cols});
  Tensor out = empty({rows});
  const int32_t sum = op_id("sum");
  TsrAttrs attrs;
  tsr_attrs_init(&attrs);
  attrs.ndims = 1;
  attrs.dims[0] = 1;
  // The reference is memcpy's traffic per second (64 MiB read + 64 MiB written, 2 * 64 MiB per
  // copy time): the rate at which the machine moves bytes, against which a read-mostly op is judged.
  CopyReference copy(rows * cols * sizeof(float));
  Pair s = best_seconds(reps, [&] { CHECK(tsr_call(sum, &x.handle, 1, &attrs, &out.handle, 1)); }, copy);
  f.tessera = bytes / s.tessera / kGB;
  f.reference = copy.gbps(s.reference);
  for (int64_t r : {int64_t(0), rows - 1}) {
    double want = 0;
    for (int64_t j = 0; j < cols; ++j) want += host[r * cols + j];
    expect_near(out.data()[r], float(want), 1e-3f, "sum_lastdim_f32_4096");
  }
}

// ---- driver -----------------------------------------------------------------------------------

struct Spec {
  const char* name;
  const char* goal_text;
  bool latency;
  double goal;
  void (*run)(const Options&, Figure&);
};

const Spec kSpecs[] = {
    {"add_1elem_us", "<=0.3us", true, 0.3, figure_add_1elem},
    {"transpose_view_us", "<=0.15us", true, 0.15, figure_transpose},
    {"add_f32_16M_GBps", ">=0.8", false, 0.8, figure_add_16m},
    {"matmul_f32_1024_GFLOPs", ">=0.9", false, 0.9, figure_matmul},
    {"softmax_rows_f32_4096_GBps", ">=0.7", false, 0.7, figure_softmax},
    {"sum_lastdim_f32_4096_GBps", ">=0.7", false, 0.7, figure_sum},
};

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

// The first integer after "key": in text, or -1.
int64_t json_int(const std::string& text, const char* key) {
  size_t at = text.find(std::string("\"") + key + "\"");
  if (at == std::string::npos) return -1;
  size_t colon = text.find(':', at);
  return colon == std::string::npos ? -1 : std::atoll(text.c_str() + colon + 1);
}

// The CPU plugin's thread count: "num_threads" from tsr_info_json when it reports one, else from
// the config file it names (0 = one thread per core, as the plugin does); "?" when unknown.
std::string plugin_threads() {
  const char* json = nullptr;
  if (tsr_info_json(&json) != TSR_OK || json == nullptr) return "?";
  std::string info = json;
  int64_t threads = json_int(info, "num_threads");
  size_t at = info.find("\"config\"");
  if (threads < 0 && at != std::string::npos) {
    size_t open = info.find('"', info.find(':', at));
    std::ifstream config(info.substr(open + 1, info.find('"', open + 1) - open - 1));
    threads = json_int(std::string(std::istreambuf_iterator<char>(config), {}), "num_threads");
  }
  if (threads < 0) return "?";
  return std::to_string(threads == 0 ? num_cores() : threads);
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one_minute;
  in >> one_minute;
  return one_minute.empty() ? "?" : one_minute;
}

void print_help() {
  std::printf(
      "usage: tessera-bench [--quick] [--filter NAME] [--help]\n"
      "Tessera CPU float32 figures beside in-process references, one line each:\n"
      "  figure NAME tessera=VALUE reference=VALUE ratio=VALUE goal=GOAL\n"
      "ratio = tessera / reference for every figure.\n"
      "  throughput (GB/s, GFLOP/s; higher is better): PASS when ratio >= goal.\n"
      "    add_f32_16M_GBps            a + b, 16M elements (3 x 64 MiB moved) vs memcpy of 96 MiB  >=0.8\n"
      "    matmul_f32_1024_GFLOPs      1024^3 tsr_matmul vs cblas_sgemm (OpenBLAS), same data     >=0.9\n"
      "    softmax_rows_f32_4096_GBps  softmax(dim=1) of 4096x4096 (2 x 64 MiB) vs memcpy 64 MiB   >=0.7\n"
      "    sum_lastdim_f32_4096_GBps   sum(dim=1) of 4096x4096 (64 MiB + 16 KiB) vs memcpy 64 MiB  >=0.7\n"
      "  latency (us per call; lower is better): PASS when tessera <= goal; the reference is the\n"
      "  plain-C floor of the same work, so ratio says how far above it we are.\n"
      "    add_1elem_us       tsr_add + tsr_release, 1 element vs malloc + add + free          <=0.3us\n"
      "    transpose_view_us  tsr_transpose + tsr_release vs malloc + free of a view header   <=0.15us\n"
      "GB = 1e9 bytes; memcpy of n bytes counts 2n (read + write), run on every core.\n"
      "Each figure's two sides run interleaved (the machine may be shared: see loadavg).\n"
      "Latency: median of 2001 batch means (100 calls each; 201 with --quick). Throughput: best of\n"
      "10 runs (2 with --quick) after a warm-up; both sides write into preallocated outputs.\n"
      "  --quick        fewer reps (smoke run, under ~20 s)\n"
      "  --filter NAME  run only figures whose name contains NAME\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--quick") {
      opt.quick = true;
    } else if (arg == "--filter" && i + 1 < argc) {
      opt.filter = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      print_help();
      return 0;
    } else {
      std::fprintf(stderr, "tessera-bench: unknown argument '%s' (see --help)\n", arg.c_str());
      return 2;
    }
  }
  if (tsr_init(nullptr) != TSR_OK) {
    std::fprintf(stderr, "tessera-bench: tsr_init failed: %s\n", tsr_last_error());
    return 1;
  }
  // loadavg: this machine may be shared; a load above the core count slows every figure.
  std::printf("machine cpu=\"%s\" cores=%d tessera_threads=%s memcpy_threads=%d openblas_threads=%d "
              "loadavg=%s mode=%s\n",
              cpu_model().c_str(), num_cores(), plugin_threads().c_str(), num_cores(),
              openblas_get_num_threads(), load_average().c_str(), opt.quick ? "quick" : "full");
  std::fflush(stdout);

  std::vector<Figure> figures;
  for (const Spec& spec : kSpecs) {
    if (!opt.filter.empty() && std::string(spec.name).find(opt.filter) == std::string::npos) continue;
    Figure f;
    f.name = spec.name;
    f.goal_text = spec.goal_text;
    f.latency = spec.latency;
    f.goal = spec.goal;
    try {
      spec.run(opt, f);
      std::printf("figure %s tessera=%.4g reference=%.4g ratio=%.3g goal=%s\n", f.name.c_str(), f.tessera,
                  f.reference, f.ratio(), f.goal_text.c_str());
      if (!f.note.empty()) std::printf("note %s %s\n", f.name.c_str(), f.note.c_str());
    } catch (const std::exception& e) {
      f.error = e.what();
      std::printf("error %s: %s\n", f.name.c_str(), e.what());
    }
    std::fflush(stdout);
    figures.push_back(f);
  }

  bool any_error = false;
  std::printf("\n%-28s %12s %12s %8s %9s  %s\n", "figure", "tessera", "reference", "ratio", "goal", "result");
  for (const Figure& f : figures) {
    any_error |= !f.error.empty();
    std::printf("%-28s %12.4g %12.4g %8.3g %9s  %s\n", f.name.c_str(), f.tessera, f.reference, f.ratio(),
                f.goal_text.c_str(), !f.error.empty() ? "ERROR" : f.pass() ? "PASS" : "MISS");
  }
  tsr_shutdown();
  return any_error ? 1 : 0;  // a MISS is not a failure: this is a measurement, not a gate
}
