// The dispatcher: promotion with scalars, broadcasting, out= and in-place writes, casts,
// empty tensors, reductions, matmul shapes, random state, missing kernels and the CPU fallback.
#include <cmath>
#include <cstdio>

#include "helpers.h"
#include "op_table.h"

using V = std::vector<int64_t>;

TEST(Dispatch, BroadcastShapes) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3}), b = f32({10, 20, 30}, {3}), c = f32({100, 200}, {2, 1}), r;
  ASSERT_OK(tsr_add(a, b, r.out()));
  EXPECT_EQ(read<float>(r), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  ASSERT_OK(tsr_add(b, c, r.out()));
  EXPECT_EQ(sizes(r), (V{2, 3}));
  EXPECT_EQ(read<float>(r), (std::vector<float>{110, 120, 130, 210, 220, 230}));
  Owned d = f32({1, 2, 3, 4}, {4, 1, 1}), e;
  ASSERT_OK(tsr_mul(d, a, e.out()));
  EXPECT_EQ(sizes(e), (V{4, 2, 3}));
}

TEST(Dispatch, ScalarsFollowPyTorchPromotion) {
  Owned i = i32({1, 2, 3}, {3}), r;
  ASSERT_OK(tsr_add_scalar(i, tsr_scalar_int(2), r.out()));
  EXPECT_EQ(info(r).dtype, TSR_INT32);
  EXPECT_EQ(read<int32_t>(r), (std::vector<int32_t>{3, 4, 5}));
  ASSERT_OK(tsr_add_scalar(i, tsr_scalar_float(0.5), r.out()));
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  EXPECT_EQ(read<float>(r), (std::vector<float>{1.5f, 2.5f, 3.5f}));

  Owned b = make<uint8_t>({1, 0}, {2}, TSR_BOOL);
  ASSERT_OK(tsr_add_scalar(b, tsr_scalar_int(1), r.out()));
  EXPECT_EQ(info(r).dtype, TSR_INT64);
  EXPECT_EQ(read<int64_t>(r), (std::vector<int64_t>{2, 1}));

  Owned h, z = make<int64_t>({5}, {}, TSR_INT64);
  ASSERT_OK(tsr_to(i, kCpu, TSR_FLOAT16, h.out()));
  ASSERT_OK(tsr_mul_scalar(h, tsr_scalar_float(2.0), r.out()));
  EXPECT_EQ(info(r).dtype, TSR_FLOAT16);
  ASSERT_OK(tsr_add(i, z, r.out()));  // a zero-dim int64 does not widen an int32 tensor
  EXPECT_EQ(info(r).dtype, TSR_INT32);
  EXPECT_EQ(read<int32_t>(r), (std::vector<int32_t>{6, 7, 8}));

  // Scalar as the first operand (2 - x) and alpha (x + 3 * y) through tsr_call.
  TsrAttrs attrs;
  tsr_attrs_init(&attrs);
  attrs.scalar = tsr_scalar_int(2);
  attrs.scalar_arg = 0;
  TsrTensor in[] = {i};
  TsrTensor out[] = {nullptr};
  ASSERT_OK(tsr_call(tessera::kOp_sub, in, 1, &attrs, out, 1));
  Owned s(out[0]);
  EXPECT_EQ(read<int32_t>(s), (std::vector<int32_t>{1, 0, -1}));
  tsr_attrs_init(&attrs);
  attrs.alpha = tsr_scalar_int(3);
  TsrTensor in2[] = {i, i};
  out[0] = nullptr;
  ASSERT_OK(tsr_call(tessera::kOp_add, in2, 2, &attrs, out, 1));
  Owned s2(out[0]);
  EXPECT_EQ(read<int32_t>(s2), (std::vector<int32_t>{4, 8, 12}));
  attrs.alpha = tsr_scalar_float(0.5);
  expect_error(tsr_call(tessera::kOp_add, in2, 2, &attrs, out, 1), TSR_ERR_TYPE, {"[add]", "alpha", "int32"});
}

// A negative int with a uint8 tensor is computed as uint8, as in PyTorch 1.13: -3 is 253 and
// -1 is 255 (the CPU plugin computes uint8 in int64, so the scalar must arrive wrapped).
TEST(Dispatch, NegativeScalarsWrapIntoUint8) {
  using U = std::vector<uint8_t>;
  Owned x = make<uint8_t>({0, 1, 200, 255}, {4}, TSR_UINT8), r;
  const TsrScalar m3 = tsr_scalar_int(-3), m1 = tsr_scalar_int(-1), one = tsr_scalar_int(1);
  ASSERT_OK(tsr_minimum_scalar(x, m3, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{0, 1, 200, 253}));
  ASSERT_OK(tsr_maximum_scalar(x, m3, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{253, 253, 253, 255}));
  ASSERT_OK(tsr_lt_scalar(x, m3, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{1, 1, 1, 0}));
  ASSERT_OK(tsr_le_scalar(x, m1, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{1, 1, 1, 1}));
  ASSERT_OK(tsr_gt_scalar(x, m3, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{0, 0, 0, 1}));
  ASSERT_OK(tsr_ge_scalar(x, m3, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{0, 0, 0, 1}));
  ASSERT_OK(tsr_eq_scalar(x, m1, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{0, 0, 0, 1}));
  ASSERT_OK(tsr_clamp(x, &m1, &one, r.out()));  // min 255, max 1: every element is 1
  EXPECT_EQ(read<uint8_t>(r), (U{1, 1, 1, 1}));
  ASSERT_OK(tsr_clamp(x, nullptr, &m3, r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{0, 1, 200, 253}));
  // Comparisons wrap any int (256 is 0); clamp bounds, like fill values, must fit (-255..255).
  ASSERT_OK(tsr_lt_scalar(x, tsr_scalar_int(256), r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{0, 0, 0, 0}));
  const TsrScalar big = tsr_scalar_int(256);
  expect_error(tsr_clamp(x, &big, nullptr, r.out()), TSR_ERR_RUNTIME, {"[clamp]", "256", "uint8", "overflow"});
  Owned f = make<uint8_t>({0, 0}, {2}, TSR_UINT8);
  ASSERT_OK(tsr_fill_(f, m3));
  EXPECT_EQ(read<uint8_t>(f), (U{253, 253}));
  expect_error(tsr_fill_(f, tsr_scalar_int(-256)), TSR_ERR_RUNTIME, {"[fill]", "-256", "uint8"});
  // A negative integer exponent is refused before it could wrap into a positive one.
  expect_error(tsr_pow_scalar(x, m3, r.out()), TSR_ERR_RUNTIME, {"[pow]", "negative integer powers"});
  // int32 wraps at 32 bits: 2^32 + 5 compares as 5.
  Owned i = i32({4, 6}, {2});
  ASSERT_OK(tsr_lt_scalar(i, tsr_scalar_int(0x100000005), r.out()));
  EXPECT_EQ(read<uint8_t>(r), (U{1, 0}));
}

TEST(Dispatch, MixedDtypesAndFloatOps) {
  Owned i = i32({1, 2, 3}, {3}), f = f32({0.5f, 0.5f, 0.5f}, {3}), r;
  ASSERT_OK(tsr_add(i, f, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  EXPECT_EQ(read<float>(r), (std::vector<float>{1.5f, 2.5f, 3.5f}));
  ASSERT_OK(tsr_div(i, i, r.out()));  // true division
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  ASSERT_OK(tsr_sqrt(i, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  ASSERT_OK(tsr_neg(i, r.out()));
  EXPECT_EQ(read<int32_t>(r), (std::vector<int32_t>{-1, -2, -3}));
  ASSERT_OK(tsr_gt_scalar(i, tsr_scalar_float(1.5), r.out()));
  EXPECT_EQ(info(r).dtype, TSR_BOOL);
  EXPECT_EQ(read<uint8_t>(r), (std::vector<uint8_t>{0, 1, 1}));

  Owned cond;
  ASSERT_OK(tsr_lt(f, i, cond.out()));
  ASSERT_OK(tsr_where(cond, i, f, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  EXPECT_EQ(read<float>(r), (std::vector<float>{1, 2, 3}));
  TsrScalar lo = tsr_scalar_int(2);
  ASSERT_OK(tsr_clamp(i, &lo, nullptr, r.out()));
  EXPECT_EQ(read<int32_t>(r), (std::vector<int32_t>{2, 2, 3}));
  expect_error(tsr_where(i, i, f, r.out()), TSR_ERR_TYPE, {"[where]", "bool", "int32"});
}

TEST(Dispatch, OutAndInPlace) {
  Owned a = f32({1, 2, 3, 4}, {2, 2}), b = f32({10, 20, 30, 40}, {2, 2});
  // In place: a += b.
  TsrTensor in[] = {a, b};
  TsrTensor out[] = {a};
  ASSERT_OK(tsr_call(tessera::kOp_add, in, 2, nullptr, out, 1));
  EXPECT_EQ(out[0], a.t);
  EXPECT_EQ(read<float>(a), (std::vector<float>{11, 22, 33, 44}));
  EXPECT_EQ(info(a).version, 1u);

  // out= with a wider dtype: computed in float32, cast into float64.
  Owned o64;
  int64_t shape[] = {2, 2};
  ASSERT_OK(tsr_empty(shape, 2, TSR_FLOAT64, kCpu, o64.out()));
  out[0] = o64;
  ASSERT_OK(tsr_call(tessera::kOp_mul, in, 2, nullptr, out, 1));
  EXPECT_EQ(read<double>(o64), (std::vector<double>{110, 440, 990, 1760}));
  EXPECT_EQ(info(o64).version, 1u);

  // Refused: float result into int32, wrong shape.
  Owned oi, o3;
  ASSERT_OK(tsr_empty(shape, 2, TSR_INT32, kCpu, oi.out()));
  out[0] = oi;
  expect_error(tsr_call(tessera::kOp_add, in, 2, nullptr, out, 1), TSR_ERR_TYPE, {"[add]", "float32", "int32"});
  int64_t three[] = {3};
  ASSERT_OK(tsr_empty(three, 1, TSR_FLOAT32, kCpu, o3.out()));
  out[0] = o3;
  expect_error(tsr_call(tessera::kOp_add, in, 2, nullptr, out, 1), TSR_ERR_INVALID_ARGUMENT,
               {"[add]", "output has shape [3]", "[2, 2]"});

  // The output overlaps an input without aliasing it exactly: the result still uses the old values.
  Owned at;
  ASSERT_OK(tsr_t(a, at.out()));
  out[0] = at;  // at = a + b, i.e. a = (a + b)^T
  ASSERT_OK(tsr_call(tessera::kOp_add, in, 2, nullptr, out, 1));
  EXPECT_EQ(read<float>(a), (std::vector<float>{21, 63, 42, 84}));

  // Writing an expanded tensor would write one element twice.
  Owned one = f32({0}, {1}), ex;
  ASSERT_OK(tsr_expand(one, shape, 2, ex.out()));
  out[0] = ex;
  expect_error(tsr_call(tessera::kOp_add, in, 2, nullptr, out, 1), TSR_ERR_INVALID_ARGUMENT, {"[add]", "share memory"});
}

TEST(Dispatch, EmptyTensors) {
  Owned e = f32({}, {0, 3}), b = f32({1, 2, 3}, {3}), r;
  ASSERT_OK(tsr_add(e, b, r.out()));
  EXPECT_EQ(sizes(r), (V{0, 3}));
  ASSERT_OK(tsr_sum(e, nullptr, 0, 0, r.out()));
  EXPECT_EQ(read<float>(r), (std::vector<float>{0}));
  ASSERT_OK(tsr_prod(e, nullptr, 0, 0, r.out()));
  EXPECT_EQ(read<float>(r), (std::vector<float>{1}));
  ASSERT_OK(tsr_mean(e, nullptr, 0, 0, r.out()));
  EXPECT_TRUE(std::isnan(read<float>(r)[0]));
  int64_t d0[] = {0}, d1[] = {1};
  ASSERT_OK(tsr_sum(e, d0, 1, 0, r.out()));
  EXPECT_EQ(read<float>(r), (std::vector<float>{0, 0, 0}));
  ASSERT_OK(tsr_max(e, d1, 1, 0, r.out()));  // nothing to reduce into
  EXPECT_EQ(sizes(r), (V{0}));
  expect_error(tsr_max(e, nullptr, 0, 0, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[max]", "zero-size", "[0, 3]"});
  expect_error(tsr_argmax(e, d0, 1, 0, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[argmax]", "[0, 3]"});
  Owned m = f32({}, {2, 0}), n = f32({}, {0, 3});
  ASSERT_OK(tsr_matmul(m, n, r.out()));  // K == 0: zeros
  EXPECT_EQ(read<float>(r), (std::vector<float>(6, 0.0f)));
}

TEST(Dispatch, Reductions) {
  Owned i = i32({1, 2, 3, 4, 5, 6}, {2, 3}), r;
  ASSERT_OK(tsr_sum(i, nullptr, 0, 0, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_INT64);
  EXPECT_EQ(info(r).ndim, 0);
  EXPECT_EQ(read<int64_t>(r), (std::vector<int64_t>{21}));
  int64_t d[] = {-1};
  ASSERT_OK(tsr_sum(i, d, 1, 1, r.out()));
  EXPECT_EQ(sizes(r), (V{2, 1}));
  EXPECT_EQ(read<int64_t>(r), (std::vector<int64_t>{6, 15}));
  int64_t d0[] = {0};
  ASSERT_OK(tsr_max(i, d0, 1, 0, r.out()));
  EXPECT_EQ(read<int32_t>(r), (std::vector<int32_t>{4, 5, 6}));
  ASSERT_OK(tsr_argmax(i, nullptr, 0, 0, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_INT64);
  EXPECT_EQ(read<int64_t>(r), (std::vector<int64_t>{5}));
  ASSERT_OK(tsr_mean(i, d0, 1, 0, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  EXPECT_EQ(read<float>(r), (std::vector<float>{2.5f, 3.5f, 4.5f}));
  Owned f = f32({1, 2, 3, 4}, {4});
  ASSERT_OK(tsr_var(f, nullptr, 0, 0, r.out()));
  EXPECT_NEAR(read<float>(r)[0], 5.0f / 3.0f, 1e-6);
  int64_t dup[] = {0, -2};
  expect_error(tsr_sum(i, dup, 2, 0, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[sum]", "more than once"});

  Owned s = f32({1, 2, 3, 4}, {2, 2});
  ASSERT_OK(tsr_softmax(s, 1, r.out()));
  std::vector<float> p = read<float>(r);
  EXPECT_NEAR(p[0] + p[1], 1.0f, 1e-6);
  EXPECT_NEAR(p[1], 1.0f / (1.0f + std::exp(-1.0f)), 1e-6);
}

TEST(Dispatch, MatmulShapes) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3}), b = f32({1, 0, 0, 1, 1, 1}, {3, 2}), v = f32({1, 1, 1}, {3}), r;
  ASSERT_OK(tsr_matmul(a, b, r.out()));
  EXPECT_EQ(sizes(r), (V{2, 2}));
  EXPECT_EQ(read<float>(r), (std::vector<float>{4, 5, 10, 11}));
  ASSERT_OK(tsr_matmul(v, v, r.out()));
  EXPECT_EQ(sizes(r), V{});
  EXPECT_EQ(read<float>(r), (std::vector<float>{3}));
  ASSERT_OK(tsr_matmul(a, v, r.out()));
  EXPECT_EQ(read<float>(r), (std::vector<float>{6, 15}));
  ASSERT_OK(tsr_matmul(v, b, r.out()));
  EXPECT_EQ(sizes(r), (V{2}));
  EXPECT_EQ(read<float>(r), (std::vector<float>{2, 2}));

  Owned x = f32(std::vector<float>(2 * 6, 1.0f), {2, 1, 2, 3}), y = f32(std::vector<float>(3 * 6, 1.0f), {3, 3, 2});
  ASSERT_OK(tsr_matmul(x, y, r.out()));
  EXPECT_EQ(sizes(r), (V{2, 3, 2, 2}));
  EXPECT_EQ(read<float>(r), std::vector<float>(24, 3.0f));
  Owned bt, i = i32({1, 2, 3}, {3});
  ASSERT_OK(tsr_t(b, bt.out()));
  ASSERT_OK(tsr_matmul(bt, i, r.out()));  // int32 promoted to float32
  EXPECT_EQ(info(r).dtype, TSR_FLOAT32);
  EXPECT_EQ(read<float>(r), (std::vector<float>{4, 5}));
}

TEST(Dispatch, ArangeAndRandom) {
  Owned r;
  ASSERT_OK(tsr_arange(tsr_scalar_int(0), tsr_scalar_int(10), tsr_scalar_int(3), -1, kCpu, r.out()));
  EXPECT_EQ(info(r).dtype, TSR_INT64);
  EXPECT_EQ(read<int64_t>(r), (std::vector<int64_t>{0, 3, 6, 9}));
  ASSERT_OK(tsr_arange(tsr_scalar_float(1), tsr_scalar_int(0), tsr_scalar_float(-0.25), -1, kCpu, r.out()));
  EXPECT_EQ(read<float>(r), (std::vector<float>{1, 0.75f, 0.5f, 0.25f}));
  expect_error(tsr_arange(tsr_scalar_int(0), tsr_scalar_int(10), tsr_scalar_int(-1), -1, kCpu, r.out()),
               TSR_ERR_INVALID_ARGUMENT, {"[arange]"});

  int64_t shape[] = {1000};
  Owned u1, u2;
  ASSERT_OK(tsr_empty(shape, 1, TSR_FLOAT32, kCpu, u1.out()));
  ASSERT_OK(tsr_empty(shape, 1, TSR_FLOAT32, kCpu, u2.out()));
  ASSERT_OK(tsr_manual_seed(42));
  ASSERT_OK(tsr_uniform_(u1, tsr_scalar_float(-1), tsr_scalar_float(1)));
  ASSERT_OK(tsr_uniform_(u2, tsr_scalar_float(-1), tsr_scalar_float(1)));
  std::vector<float> a = read<float>(u1), b = read<float>(u2);
  EXPECT_NE(a, b);  // the offset advanced
  for (float x : a) ASSERT_TRUE(x >= -1 && x < 1);
  EXPECT_EQ(info(u1).version, 1u);
  ASSERT_OK(tsr_manual_seed(42));
  ASSERT_OK(tsr_uniform_(u2, tsr_scalar_float(-1), tsr_scalar_float(1)));
  EXPECT_EQ(read<float>(u2), a);
  ASSERT_OK(tsr_normal_(u2, tsr_scalar_float(0), tsr_scalar_float(1)));
  Owned iz = i32({0, 0}, {2});
  expect_error(tsr_uniform_(iz, tsr_scalar_float(0), tsr_scalar_float(1)), TSR_ERR_TYPE, {"[uniform]", "int32"});
  ASSERT_OK(tsr_bernoulli_(iz, tsr_scalar_float(1.0), tsr_scalar_float(0)));
  EXPECT_EQ(read<int32_t>(iz), (std::vector<int32_t>{1, 1}));
}

namespace {
// Re-initializes the runtime with the CPU plugin and the example plugin (device "example",
// host memory, one kernel: add for float32) under the given fallback; back to the default after.
struct WithExampleDevice {
  std::string path = ::testing::TempDir() + "tessera_core_example.json";
  explicit WithExampleDevice(const char* fallback) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    std::fprintf(f, R"({"log_level": "error", "fallback": "%s", "plugins": [
      {"name": "cpu", "path": "%s", "required": true},
      {"name": "example", "path": "%s", "required": true}]})",
                 fallback, TSR_CPU_PLUGIN, TSR_EXAMPLE_PLUGIN);
    std::fclose(f);
    EXPECT_OK(tsr_shutdown());
    EXPECT_OK(tsr_init(path.c_str()));
  }
  ~WithExampleDevice() {
    EXPECT_OK(tsr_shutdown());
    EXPECT_OK(tsr_init(nullptr));
    std::remove(path.c_str());
  }
};
}  // namespace

TEST(Dispatch, DeviceMismatchAndMissingKernels) {
  WithExampleDevice env("strict");
  TsrDevice ex{};
  ASSERT_OK(tsr_device_parse("example", &ex));
  Owned a = f32({1, 2}, {2}), ea, r;
  ASSERT_OK(tsr_to(a, ex, -1, ea.out()));
  expect_error(tsr_add(a, ea, r.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[add]", "one device", "cpu", "example:0", "[2] float32"});
  ASSERT_OK(tsr_add(ea, ea, r.out()));  // the example's own kernel
  expect_error(tsr_mul(ea, ea, r.out()), TSR_ERR_NOT_IMPLEMENTED, {"[mul] no kernel for dtype float32 on device example:0"});
  expect_error(tsr_to(ea, ex, TSR_FLOAT64, r.out()), TSR_ERR_NOT_IMPLEMENTED,
               {"[copy] no kernel for dtype float32 -> float64 on device example:0"});
}

TEST(Dispatch, CpuFallback) {
  WithExampleDevice env("cpu");
  TsrDevice ex{};
  ASSERT_OK(tsr_device_parse("example", &ex));
  Owned a = f32({1, 2, 3, 4}, {2, 2}), b = f32({10, 20}, {2}), fa, fb, r, host;
  ASSERT_OK(tsr_to(a, ex, -1, fa.out()));
  ASSERT_OK(tsr_to(b, ex, -1, fb.out()));
  ASSERT_OK(tsr_mul(fa, fb, r.out()));  // no mul kernel on "example": runs on the CPU
  EXPECT_EQ(info(r).device.type, ex.type);
  ASSERT_OK(tsr_to(r, kCpu, -1, host.out()));
  EXPECT_EQ(read<float>(host), (std::vector<float>{10, 40, 30, 80}));
  TsrTensor in[] = {fa, fb};
  TsrTensor out[] = {fa};
  ASSERT_OK(tsr_call(tessera::kOp_sub, in, 2, nullptr, out, 1));  // in place, through the CPU
  ASSERT_OK(tsr_to(fa, kCpu, -1, host.out()));
  EXPECT_EQ(read<float>(host), (std::vector<float>{-9, -18, -7, -16}));
  EXPECT_EQ(info(fa).version, 1u);
  ASSERT_OK(tsr_sum(fa, nullptr, 0, 0, r.out()));
  ASSERT_OK(tsr_to(r, kCpu, TSR_FLOAT64, host.out()));
  EXPECT_EQ(read<double>(host), (std::vector<double>{-50}));
  Owned f64;
  ASSERT_OK(tsr_to(fa, ex, TSR_FLOAT64, f64.out()));  // the cast itself falls back
  EXPECT_EQ(info(f64).dtype, TSR_FLOAT64);
}
