// Tests of what only the CPU plugin has: registration, thread pool, allocator, BLAS
// layouts, Philox, strided/aliased outputs, float16/bfloat16 conversion, exp accuracy.
// The plugin is dlopened and driven through a fake host; no runtime involved.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tessera/plugin.h"
#include "thread_pool.h"

namespace {

// ---------------------------------------------------------------------------------------
// Fake host

struct FakeHost {
  std::map<std::string, TsrKernelDef> kernels;
  std::vector<std::string> devices;
  TsrDeviceInterface device{};
  std::vector<std::string> logs;
  std::map<std::string, int64_t> options;
  std::string last_error;
};
FakeHost* g_host = nullptr;

int32_t fake_register_device(void*, const TsrDeviceInterface* d) {
  g_host->devices.push_back(d->type_name);
  g_host->device = *d;
  return TSR_OK;
}
int32_t fake_register_kernel(void*, const TsrKernelDef* k) {
  if (g_host->kernels.count(k->op_name)) return TSR_ERR_RUNTIME;
  g_host->kernels[k->op_name] = *k;
  return TSR_OK;
}
int32_t fake_set_error(int32_t status, const char* message) {
  g_host->last_error = message;
  return status;
}
void fake_log(int32_t, const char* message) { g_host->logs.push_back(message); }
int64_t fake_option_int(void*, const char* key, int64_t def) {
  auto it = g_host->options.find(key);
  return it == g_host->options.end() ? def : it->second;
}
void fake_set_unavailable(void*, const char*) {}

const TsrPlugin* plugin() {
  static const TsrPlugin* p = [] {
    void* handle = dlopen(TSR_CPU_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) return static_cast<const TsrPlugin*>(nullptr);
    auto entry = reinterpret_cast<TsrPluginEntryFn>(dlsym(handle, TSR_PLUGIN_ENTRY_SYMBOL));
    return entry ? entry() : nullptr;
  }();
  return p;
}

// The plugin initialized against a fresh fake host; shut down on destruction.
class Loaded {
 public:
  explicit Loaded(int64_t num_threads = 0) {
    host_.options["num_threads"] = num_threads;
    g_host = &host_;
    api_ = {sizeof(TsrHostApi), TSR_PLUGIN_ABI_MAJOR, TSR_PLUGIN_ABI_MINOR, this, &fake_register_device,
            &fake_register_kernel, &fake_set_error, &fake_log, &fake_option_int, &fake_set_unavailable};
    status_ = plugin()->init(&api_, &ctx_);
  }
  ~Loaded() {
    if (status_ == TSR_OK) plugin()->shutdown(ctx_);
    g_host = nullptr;
  }
  int32_t status() const { return status_; }
  FakeHost& host() { return host_; }

  int32_t call(const char* op, std::vector<TsrTensorDesc> outs, std::vector<TsrTensorDesc> ins,
               const TsrAttrs& attrs) {
    const TsrKernelDef& k = host_.kernels.at(op);
    TsrKernelArgs args{sizeof(TsrKernelArgs), 0, op, static_cast<int32_t>(outs.size()),
                       static_cast<int32_t>(ins.size()), outs.data(), ins.data(), &attrs, nullptr, k.ctx};
    return k.fn(&args);
  }

 private:
  FakeHost host_;
  TsrHostApi api_{};
  void* ctx_ = nullptr;
  int32_t status_;
};

TsrAttrs default_attrs() {
  TsrAttrs a;
  std::memset(&a, 0, sizeof(a));
  a.struct_size = sizeof(TsrAttrs);
  a.scalar_arg = -1;
  a.dtype = -1;
  a.alpha.kind = TSR_SCALAR_FLOAT;
  a.alpha.v.f = 1.0;
  return a;
}

// A tensor descriptor over caller-owned memory; contiguous unless strides are given.
TsrTensorDesc desc(void* data, int32_t dtype, std::vector<int64_t> sizes, std::vector<int64_t> strides = {}) {
  TsrTensorDesc d;
  std::memset(&d, 0, sizeof(d));
  d.struct_size = sizeof(TsrTensorDesc);
  d.dtype = dtype;
  d.data = data;
  d.ndim = static_cast<int32_t>(sizes.size());
  int64_t stride = 1;
  for (int i = d.ndim - 1; i >= 0; --i) {
    d.sizes[i] = sizes[i];
    d.strides[i] = strides.empty() ? stride : strides[i];
    stride *= sizes[i];
  }
  return d;
}

// ---------------------------------------------------------------------------------------
// Registration and options

TEST(CpuPlugin, RegistersOneKernelPerNonViewOp) {
  ASSERT_NE(plugin(), nullptr) << dlerror();
  EXPECT_EQ(plugin()->abi_major, TSR_PLUGIN_ABI_MAJOR);
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  EXPECT_EQ(p.host().devices, std::vector<std::string>{"cpu"});
  std::set<std::string> expected;
#define TSR_OP(name, kind, types, diff) \
  if (std::string(#kind) != "VIEW" && std::string(#kind) != "COMPOSITE") expected.insert(#name);
#include "tessera/ops.def"
#undef TSR_OP
  std::set<std::string> got;
  for (const auto& [name, k] : p.host().kernels) {
    got.insert(name);
    EXPECT_NE(k.dtype_mask, 0u) << name;
    EXPECT_STREQ(k.device_type, "cpu");
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(p.host().kernels.at("exp").dtype_mask, static_cast<uint32_t>(TSR_DTYPES_FLOAT));
  EXPECT_EQ(p.host().kernels.at("add").dtype_mask, static_cast<uint32_t>(TSR_DTYPES_ALL));
  EXPECT_EQ(p.host().kernels.at("matmul").dtype_mask & TSR_DTYPE_BIT(TSR_BOOL), 0u);
}

TEST(CpuPlugin, NumThreadsOptionIsRespected) {
  Loaded p(3);
  ASSERT_EQ(p.status(), TSR_OK);
  bool found = false;
  for (const auto& m : p.host().logs) found |= m.find(" 3 threads") != std::string::npos;
  EXPECT_TRUE(found);
}

TEST(CpuPlugin, RejectsBadOptions) {
  Loaded p(-2);
  EXPECT_EQ(p.status(), TSR_ERR_INVALID_ARGUMENT);
  EXPECT_NE(p.host().last_error.find("num_threads"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Thread pool (compiled into this test directly)

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 4, 7}) {
    tessera_cpu::ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {1, 5, 999, 100003}) {
      std::vector<std::atomic<int>> hits(n);
      pool.parallel_for(n, 16, [&](int64_t b, int64_t e) {
        EXPECT_LE(b, e);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, SmallWorkStaysOnCallingThread) {
  tessera_cpu::ThreadPool pool(4);
  const auto me = std::this_thread::get_id();
  int calls = 0;
  pool.parallel_for(100, 1000, [&](int64_t b, int64_t e) {
    EXPECT_EQ(std::this_thread::get_id(), me);
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 100);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

TEST(ThreadPool, NestedAndConcurrentCallsComplete) {
  tessera_cpu::ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  pool.parallel_for(64, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(1000, 10, [&](int64_t ib, int64_t ie) { total += ie - ib; });
  });
  EXPECT_EQ(total.load(), 64000);
  std::atomic<int64_t> sums[2] = {0, 0};
  auto caller = [&](int k) {
    for (int rep = 0; rep < 200; ++rep)
      pool.parallel_for(10000, 100, [&](int64_t b, int64_t e) { sums[k] += e - b; });
  };
  std::thread t0(caller, 0), t1(caller, 1);
  t0.join();
  t1.join();
  EXPECT_EQ(sums[0].load(), 2000000);
  EXPECT_EQ(sums[1].load(), 2000000);
}

// ---------------------------------------------------------------------------------------
// Allocator

TEST(CpuDevice, AllocatorAlignsAndReusesLargeBlocks) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  const TsrDeviceInterface& d = p.host().device;
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{4096}, (size_t{1} << 20) + 1, size_t{8} << 20}) {
    void* ptr = nullptr;
    ASSERT_EQ(d.allocate(d.ctx, 0, n, &ptr), TSR_OK);
    ASSERT_NE(ptr, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(ptr) % 64, 0u) << n;
    std::memset(ptr, 1, n);
    d.free(d.ctx, 0, ptr, n);
  }
  void* a = nullptr;
  void* b = nullptr;
  ASSERT_EQ(d.allocate(d.ctx, 0, size_t{64} << 20, &a), TSR_OK);
  d.free(d.ctx, 0, a, size_t{64} << 20);
  ASSERT_EQ(d.allocate(d.ctx, 0, size_t{64} << 20, &b), TSR_OK);
  EXPECT_EQ(a, b);  // the cached block comes back
  d.free(d.ctx, 0, b, size_t{64} << 20);
  float src[3] = {1, 2, 3}, dst[3] = {};
  const TsrDevice cpu{TSR_DEVICE_CPU, 0};
  EXPECT_EQ(d.copy(d.ctx, dst, cpu, src, cpu, sizeof(src), nullptr), TSR_OK);
  EXPECT_EQ(dst[2], 3.0f);
  EXPECT_EQ(d.synchronize(d.ctx, 0), TSR_OK);
}

// ---------------------------------------------------------------------------------------
// BLAS layouts vs a naive loop

void naive_matmul(const float* a, int64_t ars, int64_t acs, const float* b, int64_t brs, int64_t bcs,
                  float* c, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double{a[i * ars + k * acs]} * b[k * brs + j * bcs];
      c[i * N + j] = static_cast<float>(s);
    }
}

TEST(CpuMatmul, StridedTransposedAndBroadcastOperands) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  const int64_t B = 3, M = 5, K = 7, N = 4;
  std::vector<float> a(B * M * K * 2), b(K * N * 3);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 37) % 11) - 5;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>((i * 53) % 13) - 6;
  struct Case {
    const char* name;
    std::vector<int64_t> a_strides, b_strides;  // (batch, rows, cols)
  };
  const Case cases[] = {
      {"contiguous", {M * K, K, 1}, {0, N, 1}},
      {"a transposed", {M * K, 1, M}, {0, N, 1}},
      {"b transposed", {M * K, K, 1}, {0, 1, K}},
      {"a padded rows", {M * 2 * K, 2 * K, 1}, {0, N, 1}},
      {"neither stride 1", {M * K * 2, 2 * K, 2}, {0, 3 * N, 3}},
  };
  for (const Case& c : cases) {
    std::vector<float> out(B * M * N, -1), ref(M * N);
    ASSERT_EQ(p.call("matmul", {desc(out.data(), TSR_FLOAT32, {B, M, N})},
                     {desc(a.data(), TSR_FLOAT32, {B, M, K}, c.a_strides),
                      desc(b.data(), TSR_FLOAT32, {B, K, N}, c.b_strides)},
                     default_attrs()),
              TSR_OK)
        << c.name << ": " << p.host().last_error;
    for (int64_t bi = 0; bi < B; ++bi) {
      naive_matmul(a.data() + bi * c.a_strides[0], c.a_strides[1], c.a_strides[2], b.data(), c.b_strides[1],
                   c.b_strides[2], ref.data(), M, N, K);
      for (int64_t i = 0; i < M * N; ++i) ASSERT_FLOAT_EQ(out[bi * M * N + i], ref[i]) << c.name << " batch " << bi;
    }
  }
}

TEST(CpuMatmul, HalfAndIntegerPaths) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  // int32: (2, 3) @ (3, 2)
  int32_t a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {7, 8, 9, 10, 11, 12}, c[4];
  ASSERT_EQ(p.call("matmul", {desc(c, TSR_INT32, {2, 2})}, {desc(a, TSR_INT32, {2, 3}), desc(b, TSR_INT32, {3, 2})},
                   default_attrs()),
            TSR_OK);
  EXPECT_EQ(c[0], 58);
  EXPECT_EQ(c[1], 64);
  EXPECT_EQ(c[2], 139);
  EXPECT_EQ(c[3], 154);
  // bfloat16 with a transposed: small integers are exact
  const uint16_t one = 0x3F80, two = 0x4000;
  uint16_t ha[4] = {one, two, two, one}, hb[4] = {one, one, two, two}, hc[4];
  ASSERT_EQ(p.call("matmul", {desc(hc, TSR_BFLOAT16, {2, 2})},
                   {desc(ha, TSR_BFLOAT16, {2, 2}, {1, 2}), desc(hb, TSR_BFLOAT16, {2, 2})}, default_attrs()),
            TSR_OK);
  // a = [[1, 2], [2, 1]] -> a @ [[1, 1], [2, 2]] = [[5, 5], [4, 4]]
  EXPECT_EQ(hc[0], 0x40A0);
  EXPECT_EQ(hc[1], 0x40A0);
  EXPECT_EQ(hc[2], 0x4080);
  EXPECT_EQ(hc[3], 0x4080);
}

// ---------------------------------------------------------------------------------------
// Philox

std::vector<double> uniform_f64(Loaded& p, int64_t n, uint64_t seed, uint64_t offset) {
  std::vector<double> out(n);
  TsrAttrs at = default_attrs();
  at.scalar = {TSR_SCALAR_FLOAT, 0, {0.0}};
  at.scalar2 = {TSR_SCALAR_FLOAT, 0, {1.0}};
  at.seed = seed;
  at.offset = offset;
  EXPECT_EQ(p.call("uniform", {desc(out.data(), TSR_FLOAT64, {n})}, {}, at), TSR_OK);
  return out;
}

TEST(CpuRandom, PhiloxKnownAnswer) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  // Random123 kat: philox4x32-10, key {0, 0}, counter {0, 0, 0, 0}.
  const std::vector<double> u = uniform_f64(p, 8, 0, 0);
  const uint32_t expected[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(u[i] * 0x1.0p32 - 0.5, static_cast<double>(expected[i])) << i;
  // offset counts blocks of four numbers
  const std::vector<double> shifted = uniform_f64(p, 4, 0, 1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(shifted[i], u[4 + i]);
}

std::vector<uint32_t> random_bits(int64_t threads, const char* op, bool strided) {
  Loaded p(threads);
  EXPECT_EQ(p.status(), TSR_OK);
  const int64_t rows = 317, cols = 211;  // odd sizes: runs do not align with counters
  std::vector<float> out(rows * cols);
  TsrAttrs at = default_attrs();
  at.scalar = {TSR_SCALAR_FLOAT, 0, {std::string(op) == "bernoulli" ? 0.3 : -1.0}};
  at.scalar2 = {TSR_SCALAR_FLOAT, 0, {2.0}};
  at.seed = 0x123456789abcdefull;
  at.offset = 77;
  const TsrTensorDesc d = strided ? desc(out.data(), TSR_FLOAT32, {cols, rows}, {1, cols})
                                  : desc(out.data(), TSR_FLOAT32, {rows, cols});
  EXPECT_EQ(p.call(op, {d}, {}, at), TSR_OK);
  std::vector<uint32_t> bits(out.size());
  std::memcpy(bits.data(), out.data(), out.size() * 4);
  return bits;
}

TEST(CpuRandom, SameBitsWhateverTheThreadCount) {
  for (const char* op : {"uniform", "normal", "bernoulli"})
    for (bool strided : {false, true}) {
      const auto one = random_bits(1, op, strided);
      EXPECT_EQ(one, random_bits(2, op, strided)) << op;
      EXPECT_EQ(one, random_bits(4, op, strided)) << op;
    }
}

TEST(CpuRandom, StridedOutputFollowsRowMajorIndex) {
  // A transposed output view: element (i, j) of the view has row-major index i * rows + j.
  const auto plain = random_bits(2, "uniform", false);
  const auto strided = random_bits(2, "uniform", true);
  const int64_t rows = 317, cols = 211;
  for (int64_t i = 0; i < cols; i += 13)
    for (int64_t j = 0; j < rows; j += 7) ASSERT_EQ(strided[j * cols + i], plain[i * rows + j]);
}

// ---------------------------------------------------------------------------------------
// Strided and aliased outputs

// conv2d and its two gradients (batch 20: 3 partial weight gradients), with the geometry of
// attrs, on a pool of `threads` threads; the three results' bits, concatenated.
std::vector<uint32_t> conv_bits(int64_t threads) {
  Loaded p(threads);
  EXPECT_EQ(p.status(), TSR_OK);
  const int64_t N = 20, C = 4, H = 9, W = 8, O = 6, k = 3, Ho = 5, Wo = 4;  // stride 2, padding 1, groups 2
  TsrAttrs a = default_attrs();
  a.stride2[0] = a.stride2[1] = 2;
  a.padding[0] = a.padding[1] = 1;
  a.dilation[0] = a.dilation[1] = 1;
  a.groups = 2;
  std::vector<float> x(N * C * H * W), w(O * C / 2 * k * k), bias(O), gy(N * O * Ho * Wo);
  for (auto* v : {&x, &w, &bias, &gy})
    for (size_t i = 0; i < v->size(); ++i) (*v)[i] = std::sin(0.37f * static_cast<float>(i + v->size()));
  std::vector<float> y(gy.size()), dx(x.size()), dw(w.size());
  const TsrTensorDesc xd = desc(x.data(), TSR_FLOAT32, {N, C, H, W}), wd = desc(w.data(), TSR_FLOAT32, {O, C / 2, k, k});
  const TsrTensorDesc gd = desc(gy.data(), TSR_FLOAT32, {N, O, Ho, Wo});
  EXPECT_EQ(p.call("conv2d", {desc(y.data(), TSR_FLOAT32, {N, O, Ho, Wo})},
                   {xd, wd, desc(bias.data(), TSR_FLOAT32, {O})}, a),
            TSR_OK) << p.host().last_error;
  EXPECT_EQ(p.call("conv2d_backward_input", {desc(dx.data(), TSR_FLOAT32, {N, C, H, W})}, {gd, wd}, a), TSR_OK);
  EXPECT_EQ(p.call("conv2d_backward_weight", {desc(dw.data(), TSR_FLOAT32, {O, C / 2, k, k})}, {gd, xd}, a), TSR_OK);
  std::vector<uint32_t> bits;
  for (const auto* v : {&y, &dx, &dw})
    for (float f : *v) bits.push_back(std::bit_cast<uint32_t>(f));
  return bits;
}

TEST(CpuConv, SameBitsWhateverTheThreadCount) {
  const auto one = conv_bits(1);
  EXPECT_EQ(one, conv_bits(2));
  EXPECT_EQ(one, conv_bits(3));
}

TEST(CpuElementwise, AliasedAndStridedOutputs) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  const int64_t R = 64, C = 300;
  std::vector<float> x(R * C), bias(C);
  for (int64_t i = 0; i < R * C; ++i) x[i] = static_cast<float>(i % 97);
  for (int64_t j = 0; j < C; ++j) bias[j] = static_cast<float>(j) * 0.5f;
  std::vector<float> x0 = x;
  // in place: out aliases input 0 exactly, bias broadcast along rows (stride 0)
  TsrTensorDesc xd = desc(x.data(), TSR_FLOAT32, {R, C});
  ASSERT_EQ(p.call("add", {xd}, {xd, desc(bias.data(), TSR_FLOAT32, {R, C}, {0, 1})}, default_attrs()), TSR_OK);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) ASSERT_EQ(x[i * C + j], x0[i * C + j] + bias[j]);
  // converting copy into a transposed float16 view, then 3 * view (scalar first operand)
  std::vector<uint16_t> h(R * C), h3(R * C);
  const TsrTensorDesc ht = desc(h.data(), TSR_FLOAT16, {R, C}, {1, R});
  ASSERT_EQ(p.call("copy", {ht}, {desc(x0.data(), TSR_FLOAT32, {R, C})}, default_attrs()), TSR_OK);
  TsrAttrs at = default_attrs();
  at.scalar_arg = 0;
  at.scalar = {TSR_SCALAR_FLOAT, 0, {3.0}};
  ASSERT_EQ(p.call("mul", {desc(h3.data(), TSR_FLOAT16, {R, C})}, {ht}, at), TSR_OK);
  std::vector<float> back(R * C);
  ASSERT_EQ(p.call("copy", {desc(back.data(), TSR_FLOAT32, {R, C})}, {desc(h3.data(), TSR_FLOAT16, {R, C})},
                   default_attrs()),
            TSR_OK);
  for (int64_t i = 0; i < R * C; ++i) ASSERT_EQ(back[i], 3 * x0[i]) << i;
  // where(cond broadcast over columns, x, scalar 7) into a strided int32 output
  std::vector<uint8_t> cond(R);
  for (int64_t i = 0; i < R; ++i) cond[i] = i % 3 == 0;
  std::vector<int32_t> xi(R * C), wi(R * C * 2, -1);
  for (int64_t i = 0; i < R * C; ++i) xi[i] = static_cast<int32_t>(i);
  TsrAttrs wat = default_attrs();
  wat.scalar_arg = 2;
  wat.scalar = {TSR_SCALAR_INT, 0, {.i = 7}};
  ASSERT_EQ(p.call("where", {desc(wi.data(), TSR_INT32, {R, C}, {2 * C, 2})},
                   {desc(cond.data(), TSR_BOOL, {R, C}, {1, 0}), desc(xi.data(), TSR_INT32, {R, C})}, wat),
            TSR_OK);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) {
      ASSERT_EQ(wi[i * 2 * C + 2 * j], cond[i] ? xi[i * C + j] : 7);
      ASSERT_EQ(wi[i * 2 * C + 2 * j + 1], -1);  // gaps untouched
    }
}

TEST(CpuElementwise, IntegerPowerRejectsNegativeExponents) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  int64_t base[3] = {2, 3, 4}, expo[3] = {3, -1, 2}, out[3] = {};
  EXPECT_NE(p.call("pow", {desc(out, TSR_INT64, {3})}, {desc(base, TSR_INT64, {3}), desc(expo, TSR_INT64, {3})},
                   default_attrs()),
            TSR_OK);
  EXPECT_NE(p.host().last_error.find("Integers to negative integer powers are not allowed"), std::string::npos)
      << p.host().last_error;
  expo[1] = 5;
  ASSERT_EQ(p.call("pow", {desc(out, TSR_INT64, {3})}, {desc(base, TSR_INT64, {3}), desc(expo, TSR_INT64, {3})},
                   default_attrs()),
            TSR_OK);
  EXPECT_EQ(out[0], 8);
  EXPECT_EQ(out[1], 243);
  EXPECT_EQ(out[2], 16);
}

// ---------------------------------------------------------------------------------------
// float16 / bfloat16 conversion

// Converts n values from one dtype to another with the copy kernel.
template <class D, class S>
std::vector<D> convert(Loaded& p, const std::vector<S>& src, int32_t src_dt, int32_t dst_dt) {
  std::vector<D> dst(src.size());
  const int64_t n = static_cast<int64_t>(src.size());
  EXPECT_EQ(p.call("copy", {desc(dst.data(), dst_dt, {n})}, {desc(const_cast<S*>(src.data()), src_dt, {n})},
                   default_attrs()),
            TSR_OK);
  return dst;
}

TEST(CpuConvert, HalfAndBfloat16RoundTripEveryPattern) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  for (int32_t dt : {TSR_FLOAT16, TSR_BFLOAT16}) {
    const auto f = convert<float>(p, all, dt, TSR_FLOAT32);
    const auto back = convert<uint16_t>(p, f, TSR_FLOAT32, dt);
    for (uint32_t i = 0; i < 65536; ++i) {
      if (std::isnan(f[i])) {
        ASSERT_TRUE(dt == TSR_FLOAT16 ? (back[i] & 0x7C00) == 0x7C00 && (back[i] & 0x3FF)
                                      : (back[i] & 0x7F80) == 0x7F80 && (back[i] & 0x7F))
            << std::hex << i;
      } else {
        ASSERT_EQ(back[i], all[i]) << std::hex << "dtype " << dt << " pattern " << i;
      }
    }
  }
  // exact values of a few half patterns
  const auto f = convert<float>(p, std::vector<uint16_t>{0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00}, TSR_FLOAT16,
                                TSR_FLOAT32);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -2.0f);
  EXPECT_EQ(f[2], 65504.0f);
  EXPECT_EQ(f[3], std::ldexp(1.0f, -24));
  EXPECT_EQ(f[4], INFINITY);
}

TEST(CpuConvert, RoundsToNearestEven) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  const std::vector<float> in = {
      1.0f + std::ldexp(1.0f, -11),      // half: tie -> 1.0 (even)
      1.0f + 3 * std::ldexp(1.0f, -11),  // half: tie -> 1 + 2^-9 (even)
      65519.0f, 65520.0f,                // half: largest finite / overflow to inf
      std::ldexp(1.0f, -25),             // half: tie between 0 and the smallest subnormal -> 0
      std::ldexp(3.0f, -25),             // half: tie between 1 and 2 subnormal ulps -> 2
  };
  const auto h = convert<uint16_t>(p, in, TSR_FLOAT32, TSR_FLOAT16);
  EXPECT_EQ(h[0], 0x3C00);
  EXPECT_EQ(h[1], 0x3C02);
  EXPECT_EQ(h[2], 0x7BFF);
  EXPECT_EQ(h[3], 0x7C00);
  EXPECT_EQ(h[4], 0x0000);
  EXPECT_EQ(h[5], 0x0002);
  const std::vector<float> bin = {1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8), -NAN};
  const auto b = convert<uint16_t>(p, bin, TSR_FLOAT32, TSR_BFLOAT16);
  EXPECT_EQ(b[0], 0x3F80);
  EXPECT_EQ(b[1], 0x3F82);
  EXPECT_EQ(b[2] & 0x7F80, 0x7F80);
  EXPECT_NE(b[2] & 0x7F, 0);
  // float -> int truncates toward zero; -> bool is != 0
  const auto i = convert<int32_t>(p, std::vector<float>{-2.7f, 2.7f, -0.5f}, TSR_FLOAT32, TSR_INT32);
  EXPECT_EQ(i, (std::vector<int32_t>{-2, 2, 0}));
  const auto z = convert<uint8_t>(p, std::vector<float>{0.0f, -0.0f, 0.25f, NAN}, TSR_FLOAT32, TSR_BOOL);
  EXPECT_EQ(z, (std::vector<uint8_t>{0, 0, 1, 1}));
}

// ---------------------------------------------------------------------------------------
// exp accuracy (the vectorized polynomial is shared by exp, sigmoid, silu and softmax)

int64_t ulp_distance(float a, float b) {
  if (a == b) return 0;
  auto key = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  return std::llabs(key(a) - key(b));
}

TEST(CpuExp, WithinTwoUlpOverTheFloatRange) {
  Loaded p;
  ASSERT_EQ(p.status(), TSR_OK);
  std::vector<float> x;
  for (float v = -110.0f; v < 90.0f; v += 0.0137f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 88.72f, 88.7229f, -87.33f, -103.9f, -104.0f}) x.push_back(v);
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> y(n);
  ASSERT_EQ(p.call("exp", {desc(y.data(), TSR_FLOAT32, {n})}, {desc(x.data(), TSR_FLOAT32, {n})}, default_attrs()),
            TSR_OK);
  int64_t worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float ref = static_cast<float>(std::exp(static_cast<double>(x[i])));
    const int64_t d = ulp_distance(y[i], ref);
    // subnormal results carry absolute, not relative, error
    if (std::fabs(ref) >= 1.1754944e-38f) worst = std::max(worst, d);
    else ASSERT_LE(d, 1) << x[i];
  }
  EXPECT_LE(worst, 2);
  std::vector<float> s = {INFINITY, -INFINITY, NAN, 89.0f, -200.0f}, t(5);
  ASSERT_EQ(p.call("exp", {desc(t.data(), TSR_FLOAT32, {5})}, {desc(s.data(), TSR_FLOAT32, {5})}, default_attrs()),
            TSR_OK);
  EXPECT_EQ(t[0], INFINITY);
  EXPECT_EQ(t[1], 0.0f);
  EXPECT_TRUE(std::isnan(t[2]));
  EXPECT_EQ(t[3], INFINITY);
  EXPECT_EQ(t[4], 0.0f);
}

}  // namespace
