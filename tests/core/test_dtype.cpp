// dtypes: names, sizes, fp16/bf16 rounding, and PyTorch's promotion and result_type rules.
#include <cmath>

#include "dtype.h"
#include "helpers.h"

using namespace tessera;

TEST(DType, NamesSizesParse) {
  const char* names[] = {"bool", "uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64"};
  const size_t bytes[] = {1, 1, 4, 8, 2, 2, 4, 8};
  for (int32_t dt = 0; dt < TSR_NUM_DTYPES; ++dt) {
    EXPECT_STREQ(tsr_dtype_name(dt), names[dt]);
    int32_t parsed = -1;
    EXPECT_OK(tsr_dtype_parse(names[dt], &parsed));
    EXPECT_EQ(parsed, dt);
    size_t size = 0;
    EXPECT_OK(tsr_dtype_itemsize(dt, &size));
    EXPECT_EQ(size, bytes[dt]);
  }
  EXPECT_EQ(tsr_dtype_name(TSR_NUM_DTYPES), nullptr);
  EXPECT_EQ(tsr_dtype_name(-1), nullptr);
  size_t size = 0;
  expect_error(tsr_dtype_itemsize(99, &size), TSR_ERR_TYPE, {"unknown dtype 99"});
}

TEST(DType, HalfRoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // the tie rounds to even: infinity
  EXPECT_EQ(float_to_half(INFINITY), 0x7c00);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);             // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);             // tie -> 0
  EXPECT_EQ(float_to_half(3 * std::ldexp(1.0f, -25)), 0x0002);         // tie -> 2
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);             // smallest normal
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // nan
    ASSERT_EQ(float_to_half(half_to_float(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(DType, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bfloat16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie -> even
  EXPECT_EQ(float_to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie -> even
  EXPECT_TRUE(std::isnan(bfloat16_to_float(float_to_bfloat16(NAN))));
  EXPECT_EQ(bfloat16_to_float(0x4049), 3.140625f);
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
    ASSERT_EQ(float_to_bfloat16(bfloat16_to_float(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(DType, PromotionTableMatchesPyTorch) {
  enum { B = TSR_BOOL, U8 = TSR_UINT8, I32 = TSR_INT32, I64 = TSR_INT64, F16 = TSR_FLOAT16, BF = TSR_BFLOAT16,
         F32 = TSR_FLOAT32, F64 = TSR_FLOAT64 };
  // torch.promote_types for every pair, written out by hand.
  const int expected[8][8] = {
      /* bool  */ {B, U8, I32, I64, F16, BF, F32, F64},
      /* uint8 */ {U8, U8, I32, I64, F16, BF, F32, F64},
      /* int32 */ {I32, I32, I32, I64, F16, BF, F32, F64},
      /* int64 */ {I64, I64, I64, I64, F16, BF, F32, F64},
      /* f16   */ {F16, F16, F16, F16, F16, F32, F32, F64},
      /* bf16  */ {BF, BF, BF, BF, F32, BF, F32, F64},
      /* f32   */ {F32, F32, F32, F32, F32, F32, F32, F64},
      /* f64   */ {F64, F64, F64, F64, F64, F64, F64, F64},
  };
  for (int a = 0; a < 8; ++a)
    for (int b = 0; b < 8; ++b) EXPECT_EQ(promote_types(a, b), expected[a][b]) << a << " " << b;
}

TEST(DType, ResultTypePriorities) {
  auto rt = [](std::initializer_list<std::pair<int32_t, int32_t>> tensors, std::initializer_list<TsrScalar> scalars) {
    ResultType r;
    for (auto [dt, nd] : tensors) r.add_tensor(dt, nd);
    for (const TsrScalar& s : scalars) r.add_scalar(s);
    return r.result();
  };
  EXPECT_EQ(rt({{TSR_INT32, 1}}, {tsr_scalar_float(2.0)}), TSR_FLOAT32);
  EXPECT_EQ(rt({{TSR_INT32, 1}}, {tsr_scalar_int(2)}), TSR_INT32);
  EXPECT_EQ(rt({{TSR_FLOAT16, 1}}, {tsr_scalar_float(2.0)}), TSR_FLOAT16);
  EXPECT_EQ(rt({{TSR_INT32, 1}, {TSR_INT64, 0}}, {}), TSR_INT32);
  EXPECT_EQ(rt({{TSR_BOOL, 1}}, {tsr_scalar_int(1)}), TSR_INT64);
  EXPECT_EQ(rt({{TSR_BOOL, 1}}, {tsr_scalar_bool(1)}), TSR_BOOL);
  EXPECT_EQ(rt({{TSR_UINT8, 1}, {TSR_FLOAT64, 0}}, {}), TSR_FLOAT64);
  EXPECT_EQ(rt({{TSR_FLOAT32, 1}, {TSR_FLOAT64, 0}}, {}), TSR_FLOAT32);
  EXPECT_EQ(rt({{TSR_INT32, 0}}, {tsr_scalar_float(1.5)}), TSR_FLOAT32);
  EXPECT_EQ(rt({{TSR_INT64, 0}, {TSR_INT32, 0}}, {}), TSR_INT64);
  EXPECT_EQ(rt({{TSR_FLOAT16, 1}, {TSR_BFLOAT16, 1}}, {}), TSR_FLOAT32);
  EXPECT_EQ(rt({{TSR_BOOL, 1}, {TSR_INT32, 0}}, {}), TSR_INT32);
}

TEST(DType, CanCast) {
  EXPECT_TRUE(can_cast(TSR_INT32, TSR_FLOAT16));
  EXPECT_TRUE(can_cast(TSR_FLOAT64, TSR_FLOAT16));
  EXPECT_TRUE(can_cast(TSR_BOOL, TSR_UINT8));
  EXPECT_TRUE(can_cast(TSR_INT64, TSR_UINT8));
  EXPECT_FALSE(can_cast(TSR_FLOAT32, TSR_INT64));
  EXPECT_FALSE(can_cast(TSR_FLOAT32, TSR_BOOL));
  EXPECT_FALSE(can_cast(TSR_INT32, TSR_BOOL));
}

TEST(DType, ScalarConversion) {
  TsrScalar s = scalar_to(tsr_scalar_float(2.7), TSR_INT32);
  EXPECT_EQ(s.kind, TSR_SCALAR_INT);
  EXPECT_EQ(s.v.i, 2);
  s = scalar_to(tsr_scalar_int(3), TSR_FLOAT16);
  EXPECT_EQ(s.kind, TSR_SCALAR_FLOAT);
  EXPECT_EQ(s.v.f, 3.0);
  EXPECT_EQ(scalar_to(tsr_scalar_int(5), TSR_BOOL).v.i, 1);
  // Integers wrap into the dtype's width, as PyTorch's casts do.
  EXPECT_EQ(scalar_to(tsr_scalar_int(-3), TSR_UINT8).v.i, 253);
  EXPECT_EQ(scalar_to(tsr_scalar_int(300), TSR_UINT8).v.i, 44);
  EXPECT_EQ(scalar_to(tsr_scalar_int(0x100000005), TSR_INT32).v.i, 5);
  EXPECT_EQ(scalar_to(tsr_scalar_int(0x80000000), TSR_INT32).v.i, INT32_MIN);
  EXPECT_EQ(scalar_to(tsr_scalar_int(-3), TSR_INT64).v.i, -3);
}
