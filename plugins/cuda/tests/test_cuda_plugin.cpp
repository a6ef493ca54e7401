// Tests of what only the CUDA plugin has, through the host C ABI with the build tree's
// config: loading without a GPU, the caching allocator (statistics, reuse, splitting and
// merging, empty_cache, the memory-fraction cap, out-of-memory survival, cross-stream reuse),
// streams, events, graph capture and replay, device options, and bad input. Every test but
// the first skips with "no CUDA device" where there is none.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tessera/tessera.h"

namespace {

const TsrDevice kCuda{TSR_DEVICE_CUDA, 0};
const TsrDevice kCpu{TSR_DEVICE_CPU, 0};

class T {  // an owned tensor handle
 public:
  T() = default;
  explicit T(TsrTensor t) : t_(t) {}
  T(T&& o) noexcept : t_(o.t_) { o.t_ = nullptr; }
  T& operator=(T&& o) noexcept { std::swap(t_, o.t_); return *this; }
  ~T() { tsr_release(t_); }
  TsrTensor get() const { return t_; }
  TsrTensor* out() { tsr_release(t_); t_ = nullptr; return &t_; }
  void reset() { tsr_release(t_); t_ = nullptr; }
 private:
  TsrTensor t_ = nullptr;
};

bool has_cuda() {
  int32_t n = 0;
  return tsr_device_count("cuda", &n) == TSR_OK && n > 0;
}
#define NEED_CUDA() \
  if (!has_cuda()) GTEST_SKIP() << "no CUDA device"

class Cuda : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_EQ(tsr_init(nullptr), TSR_OK) << tsr_last_error(); }
  // Shutting down gives the allocator's cache and the pinned staging buffers back, so
  // compute-sanitizer's leak check sees nothing left.
  static void TearDownTestSuite() { EXPECT_EQ(tsr_shutdown(), TSR_OK) << tsr_last_error(); }
};

T full(std::vector<int64_t> sizes, float v, TsrDevice d = kCuda, int32_t dtype = TSR_FLOAT32) {
  T t;
  EXPECT_EQ(tsr_full(sizes.data(), static_cast<int32_t>(sizes.size()), dtype, d, tsr_scalar_float(v), t.out()),
            TSR_OK)
      << tsr_last_error();
  return t;
}
std::vector<float> host(const T& t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  EXPECT_EQ(tsr_tensor_info(t.get(), &info), TSR_OK);
  std::vector<float> v(static_cast<size_t>(info.numel));
  EXPECT_EQ(tsr_copy_to_host(t.get(), v.data(), v.size() * 4), TSR_OK) << tsr_last_error();
  return v;
}
void* data_of(const T& t) {
  TsrTensorInfo info{};
  info.struct_size = sizeof info;
  EXPECT_EQ(tsr_tensor_info(t.get(), &info), TSR_OK);
  return info.data;
}
TsrMemoryStats stats() {
  TsrMemoryStats s{};
  s.struct_size = sizeof s;
  EXPECT_EQ(tsr_memory_stats(kCuda, &s), TSR_OK) << tsr_last_error();
  return s;
}

TEST_F(Cuda, PluginLoadsAndSaysWhyWhenThereIsNoDevice) {
  const char* json = nullptr;
  ASSERT_EQ(tsr_info_json(&json), TSR_OK);
  const std::string info = json;
  ASSERT_NE(info.find("\"cuda\""), std::string::npos) << info;
  if (!has_cuda()) {
    EXPECT_NE(info.find("no CUDA device"), std::string::npos) << info;
    GTEST_SKIP() << "no CUDA device (the plugin loaded and said so)";
  }
  EXPECT_EQ(info.find("no CUDA device"), std::string::npos);
}

TEST_F(Cuda, RoundTripAndStatistics) {
  NEED_CUDA();
  ASSERT_EQ(tsr_empty_cache(kCuda), TSR_OK);
  const TsrMemoryStats s0 = stats();
  EXPECT_GT(s0.total, int64_t{1} << 30);
  std::vector<float> src(1 << 22);  // 16 MiB: through the pinned staging path
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i % 1000) * 0.5f;
  const int64_t n = static_cast<int64_t>(src.size());
  T t;
  ASSERT_EQ(tsr_from_buffer(src.data(), &n, 1, TSR_FLOAT32, kCuda, t.out()), TSR_OK) << tsr_last_error();
  const TsrMemoryStats s1 = stats();
  EXPECT_GE(s1.allocated - s0.allocated, n * 4);
  EXPECT_GE(s1.reserved_bytes, s1.allocated);
  EXPECT_EQ(host(t), src);
  void* first = data_of(t);
  t.reset();
  const TsrMemoryStats s2 = stats();
  EXPECT_EQ(s2.allocated, s0.allocated);
  EXPECT_EQ(s2.reserved_bytes, s1.reserved_bytes);  // cached, not returned
  // The same size again reuses the cached block without a new device allocation.
  ASSERT_EQ(tsr_from_buffer(src.data(), &n, 1, TSR_FLOAT32, kCuda, t.out()), TSR_OK);
  EXPECT_EQ(data_of(t), first);
  EXPECT_EQ(stats().num_device_allocs, s2.num_device_allocs);
  EXPECT_GT(stats().peak_allocated, s0.allocated);
  t.reset();
  ASSERT_EQ(tsr_empty_cache(kCuda), TSR_OK);
  EXPECT_LT(stats().reserved_bytes, s1.reserved_bytes);
}

TEST_F(Cuda, SmallBlocksSplitOneSegmentAndMergeBack) {
  NEED_CUDA();
  ASSERT_EQ(tsr_empty_cache(kCuda), TSR_OK);
  const int64_t before = stats().num_device_allocs;
  T a = full({1000}, 1.f), b = full({1000}, 2.f), c = full({1000}, 3.f);
  EXPECT_LE(stats().num_device_allocs - before, 1);  // one 2 MiB segment holds all three
  const char* p = static_cast<const char*>(data_of(a));
  const char* q = static_cast<const char*>(data_of(b));
  EXPECT_LT(std::abs(q - p), 1 << 21);
  b.reset();
  a.reset();
  c.reset();
  ASSERT_EQ(tsr_empty_cache(kCuda), TSR_OK);  // only whole free segments can go back
  const char* snap = nullptr;
  ASSERT_EQ(tsr_memory_snapshot(kCuda, &snap), TSR_OK);
  EXPECT_EQ(std::string(snap).find("\"segment_type\": \"small\""), std::string::npos) << snap;
  EXPECT_EQ(stats().allocated, 0);
}

TEST_F(Cuda, OutOfMemoryIsAnErrorTheProcessSurvives) {
  NEED_CUDA();
  T keep = full({256}, 7.f);
  const int64_t ooms = stats().num_ooms;
  const int64_t huge[] = {int64_t{1} << 45};  // 128 TiB of float32
  T t;
  EXPECT_EQ(tsr_empty(huge, 1, TSR_FLOAT32, kCuda, t.out()), TSR_ERR_OUT_OF_MEMORY);
  const std::string msg = tsr_last_error();
  EXPECT_NE(msg.find("out of memory"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
  EXPECT_EQ(stats().num_ooms, ooms + 1);
  EXPECT_GE(stats().num_retries, 1);
  EXPECT_EQ(host(keep), std::vector<float>(256, 7.f));  // other tensors survive
  T again = full({1 << 20}, 1.f);
  EXPECT_EQ(host(again)[12345], 1.f);
}

TEST_F(Cuda, MemoryFractionCapsTheAllocator) {
  NEED_CUDA();
  ASSERT_EQ(tsr_set_memory_fraction(kCuda, 0.01), TSR_OK);
  const int64_t two_gib[] = {int64_t{1} << 29};
  T t;
  EXPECT_EQ(tsr_empty(two_gib, 1, TSR_FLOAT32, kCuda, t.out()), TSR_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(tsr_last_error()).find("memory fraction cap"), std::string::npos) << tsr_last_error();
  EXPECT_GT(stats().limit, 0);
  ASSERT_EQ(tsr_set_memory_fraction(kCuda, 1.0), TSR_OK);
  EXPECT_EQ(tsr_empty(two_gib, 1, TSR_FLOAT32, kCuda, t.out()), TSR_OK) << tsr_last_error();
  EXPECT_EQ(tsr_set_memory_fraction(kCuda, 0.0), TSR_ERR_INVALID_ARGUMENT);
}

TEST_F(Cuda, MixingCpuAndCudaTensorsNamesBothDevices) {
  NEED_CUDA();
  T a = full({4}, 1.f), b = full({4}, 2.f, kCpu), c;
  EXPECT_EQ(tsr_add(a.get(), b.get(), c.out()), TSR_ERR_INVALID_ARGUMENT);
  const std::string msg = tsr_last_error();
  EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[add]"), std::string::npos) << msg;
}

TEST_F(Cuda, StreamsEventsAndCrossStreamLifetime) {
  NEED_CUDA();
  TsrStream s = nullptr;
  ASSERT_EQ(tsr_stream_create(kCuda, 0, &s), TSR_OK) << tsr_last_error();
  TsrEvent start = nullptr, stop = nullptr;
  ASSERT_EQ(tsr_event_create(kCuda, 1, &start), TSR_OK);
  ASSERT_EQ(tsr_event_create(kCuda, 1, &stop), TSR_OK);
  const int64_t n = 2048;
  T a = full({n, n}, 0.001f);
  ASSERT_EQ(tsr_synchronize(kCuda), TSR_OK);
  // Work on the side stream reads `a`, which was made on the default stream; then `a` is
  // dropped at once. Its block must not be handed out again while the side stream runs.
  ASSERT_EQ(tsr_set_current_stream(kCuda, s), TSR_OK);
  ASSERT_EQ(tsr_event_record(kCuda, start, s), TSR_OK);
  T acc = full({n, n}, 0.f);
  for (int i = 0; i < 20; ++i) {
    T m;
    ASSERT_EQ(tsr_matmul(a.get(), a.get(), m.out()), TSR_OK) << tsr_last_error();
    T sum;
    ASSERT_EQ(tsr_add(acc.get(), m.get(), sum.out()), TSR_OK);
    acc = std::move(sum);
  }
  ASSERT_EQ(tsr_event_record(kCuda, stop, s), TSR_OK);
  ASSERT_EQ(tsr_set_current_stream(kCuda, nullptr), TSR_OK);
  void* old = data_of(a);
  a.reset();
  T b = full({n, n}, 5.f);  // default stream, same size: must not land on `a` yet
  int32_t idle = 1;
  ASSERT_EQ(tsr_stream_query(kCuda, s, &idle), TSR_OK);
  if (!idle) {
    EXPECT_NE(data_of(b), old);
  }
  ASSERT_EQ(tsr_stream_synchronize(kCuda, s), TSR_OK);
  float ms = 0;
  ASSERT_EQ(tsr_event_synchronize(kCuda, stop), TSR_OK);
  ASSERT_EQ(tsr_event_elapsed_time(kCuda, start, stop, &ms), TSR_OK) << tsr_last_error();
  EXPECT_GT(ms, 0.f);
  const std::vector<float> r = host(acc);
  EXPECT_NEAR(r[0], 20 * n * 0.001f * 0.001f, 1e-3);
  EXPECT_NEAR(r[r.size() - 1], 20 * n * 0.001f * 0.001f, 1e-3);
  EXPECT_EQ(host(b)[7], 5.f);
  TsrStream cur = reinterpret_cast<TsrStream>(1);
  ASSERT_EQ(tsr_current_stream(kCuda, &cur), TSR_OK);
  EXPECT_EQ(cur, nullptr);
  tsr_event_destroy(kCuda, start);
  tsr_event_destroy(kCuda, stop);
  EXPECT_EQ(tsr_stream_destroy(kCuda, s), TSR_OK);
}

TEST_F(Cuda, GraphCaptureAndReplay) {
  NEED_CUDA();
  TsrStream s = nullptr;
  ASSERT_EQ(tsr_stream_create(kCuda, 0, &s), TSR_OK);
  T x = full({1000}, 1.f);
  ASSERT_EQ(tsr_synchronize(kCuda), TSR_OK);
  ASSERT_EQ(tsr_set_current_stream(kCuda, s), TSR_OK);
  EXPECT_EQ(tsr_graph_capture_begin(kCuda, nullptr), TSR_ERR_INVALID_ARGUMENT);  // not on the default stream
  ASSERT_EQ(tsr_graph_capture_begin(kCuda, s), TSR_OK) << tsr_last_error();
  T y, z;
  ASSERT_EQ(tsr_mul_scalar(x.get(), tsr_scalar_float(2.0), y.out()), TSR_OK) << tsr_last_error();
  ASSERT_EQ(tsr_add_scalar(y.get(), tsr_scalar_float(1.0), z.out()), TSR_OK) << tsr_last_error();
  T r;
  EXPECT_NE(tsr_uniform_(x.get(), tsr_scalar_float(0), tsr_scalar_float(1)), TSR_OK);  // refused inside capture
  TsrGraph g = nullptr;
  ASSERT_EQ(tsr_graph_capture_end(kCuda, s, &g), TSR_OK) << tsr_last_error();
  ASSERT_EQ(tsr_set_current_stream(kCuda, nullptr), TSR_OK);
  for (float v : {3.f, -1.5f}) {
    ASSERT_EQ(tsr_fill_(x.get(), tsr_scalar_float(v)), TSR_OK);
    ASSERT_EQ(tsr_synchronize(kCuda), TSR_OK);
    ASSERT_EQ(tsr_graph_replay(kCuda, g, s), TSR_OK) << tsr_last_error();
    ASSERT_EQ(tsr_stream_synchronize(kCuda, s), TSR_OK);
    EXPECT_EQ(host(z)[999], 2 * v + 1);
  }
  y.reset();
  z.reset();
  EXPECT_EQ(tsr_graph_destroy(kCuda, g), TSR_OK);
  EXPECT_EQ(tsr_stream_destroy(kCuda, s), TSR_OK);
}

TEST_F(Cuda, Tf32OptionRoundTripsAndUnknownOptionsAreRefused) {
  NEED_CUDA();
  int64_t v = -1;
  ASSERT_EQ(tsr_device_get_option("cuda", "allow_tf32", &v), TSR_OK);
  EXPECT_EQ(v, 0);
  ASSERT_EQ(tsr_device_set_option("cuda", "allow_tf32", 1), TSR_OK);
  ASSERT_EQ(tsr_device_get_option("cuda", "allow_tf32", &v), TSR_OK);
  EXPECT_EQ(v, 1);
  ASSERT_EQ(tsr_device_set_option("cuda", "allow_tf32", 0), TSR_OK);
  EXPECT_EQ(tsr_device_set_option("cuda", "allow_fp8", 1), TSR_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tsr_last_error()).find("allow_fp8"), std::string::npos);
}

TEST_F(Cuda, AFailedLaunchIsAnErrorNamingTheKernel) {
  NEED_CUDA();
  T a = full({1 << 16}, 1.f), b = full({1 << 16}, 2.f), c;
  ASSERT_EQ(tsr_device_set_option("cuda", "inject_launch_failure", 1), TSR_OK);  // the next launch check fails
  EXPECT_EQ(tsr_add(a.get(), b.get(), c.out()), TSR_ERR_RUNTIME);
  const std::string msg = tsr_last_error();
  EXPECT_NE(msg.find("[add]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("kernel "), std::string::npos) << msg;
  EXPECT_NE(msg.find("failed to launch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
  ASSERT_EQ(tsr_add(a.get(), b.get(), c.out()), TSR_OK) << tsr_last_error();  // and the next call works
  EXPECT_EQ(host(c)[100], 3.f);
}

TEST_F(Cuda, AFailedCudaCallNamesTheCallAndWhere) {
  NEED_CUDA();
  TsrEvent a = nullptr, b = nullptr;  // without timing: elapsed time is an error of the CUDA runtime
  ASSERT_EQ(tsr_event_create(kCuda, 0, &a), TSR_OK);
  ASSERT_EQ(tsr_event_create(kCuda, 0, &b), TSR_OK);
  ASSERT_EQ(tsr_event_record(kCuda, a, nullptr), TSR_OK);
  ASSERT_EQ(tsr_event_record(kCuda, b, nullptr), TSR_OK);
  ASSERT_EQ(tsr_event_synchronize(kCuda, b), TSR_OK);
  float ms = 0;
  EXPECT_EQ(tsr_event_elapsed_time(kCuda, a, b, &ms), TSR_ERR_RUNTIME);
  const std::string msg = tsr_last_error();
  EXPECT_NE(msg.find("[tsr_event_elapsed_time] cuda:0: cudaEventElapsedTime at "), std::string::npos) << msg;
  EXPECT_NE(msg.find("plugin.cpp:"), std::string::npos) << msg;
  tsr_event_destroy(kCuda, a);
  tsr_event_destroy(kCuda, b);
  T x = full({8}, 1.f), y;  // the failure does not leak into the next launch check
  ASSERT_EQ(tsr_add(x.get(), x.get(), y.out()), TSR_OK) << tsr_last_error();
}

TEST_F(Cuda, EveryDtypeRoundTripsThroughTheDevice) {
  NEED_CUDA();
  for (int32_t dt = 0; dt < TSR_NUM_DTYPES; ++dt) {
    T c = full({3, 5}, 1.f, kCpu, dt), g, back;
    ASSERT_EQ(tsr_to(c.get(), kCuda, -1, g.out()), TSR_OK) << tsr_last_error();
    T tr;
    ASSERT_EQ(tsr_t(g.get(), tr.out()), TSR_OK);
    ASSERT_EQ(tsr_to(tr.get(), kCpu, TSR_FLOAT32, back.out()), TSR_OK) << tsr_dtype_name(dt) << tsr_last_error();
    EXPECT_EQ(host(back), std::vector<float>(15, 1.f)) << tsr_dtype_name(dt);
  }
}

}  // namespace
