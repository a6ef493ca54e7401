// Tensors: creation, metadata, host round trips, borrowed memory, conversions, refcounts, versions.
#include "helpers.h"

TEST(Tensor, EmptyMetadata) {
  int64_t shape[] = {2, 3, 4};
  Owned t;
  ASSERT_OK(tsr_empty(shape, 3, TSR_FLOAT64, kCpu, t.out()));
  TsrTensorInfo i = info(t);
  EXPECT_EQ(i.struct_size, sizeof(TsrTensorInfo));
  EXPECT_EQ(i.dtype, TSR_FLOAT64);
  EXPECT_EQ(i.device.type, TSR_DEVICE_CPU);
  EXPECT_EQ(i.ndim, 3);
  EXPECT_EQ(sizes(t), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(strides(t), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(i.numel, 24);
  EXPECT_EQ(i.storage_offset, 0);
  EXPECT_TRUE(i.is_contiguous);
  EXPECT_EQ(i.version, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(i.data) % 64, 0u);

  Owned scalar, zero;
  ASSERT_OK(tsr_empty(nullptr, 0, TSR_INT32, kCpu, scalar.out()));
  EXPECT_EQ(info(scalar).numel, 1);
  int64_t zshape[] = {0, 5};
  ASSERT_OK(tsr_empty(zshape, 2, TSR_BOOL, kCpu, zero.out()));
  EXPECT_EQ(info(zero).numel, 0);
  EXPECT_TRUE(read<uint8_t>(zero).empty());
}

TEST(Tensor, BufferRoundTripEveryDType) {
  std::vector<uint8_t> bytes(6 * 8);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i % 2 ? 0 : 1);  // valid bools too
  int64_t shape[] = {2, 3};
  for (int32_t dt = 0; dt < TSR_NUM_DTYPES; ++dt) {
    size_t isz = 0;
    ASSERT_OK(tsr_dtype_itemsize(dt, &isz));
    Owned t;
    ASSERT_OK(tsr_from_buffer(bytes.data(), shape, 2, dt, kCpu, t.out()));
    std::vector<uint8_t> back(6 * isz);
    ASSERT_OK(tsr_copy_to_host(t, back.data(), back.size()));
    EXPECT_EQ(0, std::memcmp(back.data(), bytes.data(), back.size())) << tsr_dtype_name(dt);
  }
}

TEST(Tensor, FullAndFill) {
  int64_t shape[] = {2, 2};
  Owned a, b, c;
  ASSERT_OK(tsr_full(shape, 2, TSR_FLOAT32, kCpu, tsr_scalar_float(1.5), a.out()));
  EXPECT_EQ(read<float>(a), (std::vector<float>{1.5f, 1.5f, 1.5f, 1.5f}));
  EXPECT_EQ(info(a).version, 0u);
  ASSERT_OK(tsr_full(shape, 2, TSR_INT64, kCpu, tsr_scalar_int(-7), b.out()));
  EXPECT_EQ(read<int64_t>(b), (std::vector<int64_t>{-7, -7, -7, -7}));
  ASSERT_OK(tsr_full(shape, 2, TSR_BOOL, kCpu, tsr_scalar_bool(1), c.out()));
  EXPECT_EQ(read<uint8_t>(c), (std::vector<uint8_t>{1, 1, 1, 1}));
  ASSERT_OK(tsr_fill_(a, tsr_scalar_int(3)));
  EXPECT_EQ(read<float>(a), (std::vector<float>{3, 3, 3, 3}));
  EXPECT_EQ(info(a).version, 1u);
}

namespace {
int g_deleted = 0;
void count_delete(void* ctx) { g_deleted += *static_cast<int*>(ctx); }
}  // namespace

TEST(Tensor, BorrowedMemory) {
  float data[6] = {0, 1, 2, 3, 4, 5};  // viewed as (3, 2) column-major: strides (1, 3)
  int64_t shape[] = {3, 2}, st[] = {1, 3};
  int one = 1;
  g_deleted = 0;
  {
    Owned t, v;
    ASSERT_OK(tsr_from_borrowed(data, shape, st, 2, TSR_FLOAT32, kCpu, count_delete, &one, t.out()));
    EXPECT_EQ(info(t).data, static_cast<void*>(data));
    EXPECT_FALSE(info(t).is_contiguous);
    EXPECT_EQ(read<float>(t), (std::vector<float>{0, 3, 1, 4, 2, 5}));
    ASSERT_OK(tsr_t(t, v.out()));
    tsr_release(std::exchange(t.t, nullptr));
    EXPECT_EQ(g_deleted, 0);  // the view keeps the storage alive
    EXPECT_EQ(read<float>(v), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  }
  EXPECT_EQ(g_deleted, 1);
  int64_t bad[] = {-1, 1};
  Owned t;
  expect_error(tsr_from_borrowed(data, shape, bad, 2, TSR_FLOAT32, kCpu, nullptr, nullptr, t.out()),
               TSR_ERR_INVALID_ARGUMENT, {"[from_borrowed]", "negative strides"});
}

TEST(Tensor, RetainRelease) {
  Owned t = f32({1, 2}, {2});
  ASSERT_OK(tsr_retain(t));
  EXPECT_OK(tsr_release(t));
  EXPECT_EQ(read<float>(t), (std::vector<float>{1, 2}));
  EXPECT_OK(tsr_release(nullptr));
}

TEST(Tensor, ToCloneContiguous) {
  Owned a = f32({1.7f, -2.2f, 3.5f, 4.0f}, {2, 2});
  Owned same, i, h, back, c, at, ac, ac2;
  ASSERT_OK(tsr_to(a, kCpu, -1, same.out()));
  EXPECT_EQ(same.t, a.t);
  ASSERT_OK(tsr_to(a, kCpu, TSR_INT32, i.out()));
  EXPECT_EQ(read<int32_t>(i), (std::vector<int32_t>{1, -2, 3, 4}));
  ASSERT_OK(tsr_to(a, kCpu, TSR_FLOAT16, h.out()));
  ASSERT_OK(tsr_to(h, kCpu, TSR_FLOAT32, back.out()));
  EXPECT_EQ(read<float>(back), (std::vector<float>{1.7001953125f, -2.19921875f, 3.5f, 4.0f}));

  ASSERT_OK(tsr_clone(a, c.out()));
  EXPECT_NE(info(c).data, info(a).data);
  ASSERT_OK(tsr_fill_(c, tsr_scalar_int(0)));
  EXPECT_EQ(read<float>(a)[0], 1.7f);
  EXPECT_EQ(info(a).version, 0u);

  ASSERT_OK(tsr_t(a, at.out()));
  ASSERT_OK(tsr_contiguous(at, ac.out()));
  EXPECT_NE(ac.t, at.t);
  EXPECT_TRUE(info(ac).is_contiguous);
  EXPECT_EQ(read<float>(ac), (std::vector<float>{1.7f, 3.5f, -2.2f, 4.0f}));
  ASSERT_OK(tsr_contiguous(ac, ac2.out()));
  EXPECT_EQ(ac2.t, ac.t);
}

TEST(Tensor, CopyToHostChecksSize) {
  Owned a = f32({1, 2, 3}, {3});
  float buf[4];
  expect_error(tsr_copy_to_host(a, buf, sizeof buf), TSR_ERR_INVALID_ARGUMENT, {"[tsr_copy_to_host]", "[3] float32"});
}

TEST(Tensor, CopyBroadcastsAndConverts) {
  Owned dst = f32({0, 0, 0, 0, 0, 0}, {2, 3});
  Owned src = i32({1, 2, 3}, {3});
  ASSERT_OK(tsr_copy_(dst, src));
  EXPECT_EQ(read<float>(dst), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  EXPECT_EQ(info(dst).version, 1u);
  Owned bad = f32({1, 2}, {2});
  expect_error(tsr_copy_(dst, bad), TSR_ERR_INVALID_ARGUMENT, {"[copy]", "[2, 3]", "[2] float32"});
}

TEST(Runtime, DevicesAttrsOps) {
  TsrDevice d{};
  ASSERT_OK(tsr_device_parse("cpu", &d));
  EXPECT_EQ(d.type, TSR_DEVICE_CPU);
  EXPECT_EQ(d.index, 0);
  ASSERT_OK(tsr_device_parse("cuda:1", &d));
  EXPECT_EQ(d.type, TSR_DEVICE_CUDA);
  EXPECT_EQ(d.index, 1);
  char name[16];
  ASSERT_OK(tsr_device_name(d, name, sizeof name));
  EXPECT_STREQ(name, "cuda:1");
  ASSERT_OK(tsr_device_name(kCpu, name, sizeof name));
  EXPECT_STREQ(name, "cpu");
  expect_error(tsr_device_parse("tpu", &d), TSR_ERR_INVALID_ARGUMENT, {"unknown device type 'tpu'"});
  expect_error(tsr_device_parse("cuda:x", &d), TSR_ERR_INVALID_ARGUMENT, {"cuda:x"});
  int32_t count = 0;
  ASSERT_OK(tsr_device_count("cpu", &count));
  EXPECT_GE(count, 1);
  EXPECT_OK(tsr_synchronize(kCpu));

  TsrAttrs a;
  tsr_attrs_init(&a);
  EXPECT_EQ(a.struct_size, sizeof(TsrAttrs));
  EXPECT_EQ(a.dtype, -1);
  EXPECT_EQ(a.scalar_arg, -1);
  EXPECT_EQ(a.alpha.v.i, 1);
  EXPECT_EQ(a.scalar3.v.i, 1);
  EXPECT_EQ(a.correction, 1);

  uint32_t major = 0, minor = 0;
  ASSERT_OK(tsr_abi_version(&major, &minor));
  EXPECT_EQ(major, TSR_ABI_MAJOR);
  EXPECT_GT(tsr_op_count(), 0);
  int32_t op = -1;
  ASSERT_OK(tsr_op_lookup("matmul", &op));
  EXPECT_STREQ(tsr_op_name(op), "matmul");
  EXPECT_EQ(tsr_op_name(tsr_op_count()), nullptr);
  expect_error(tsr_op_lookup("nope", &op), TSR_ERR_INVALID_ARGUMENT, {"unknown op 'nope'"});
  const char* json = nullptr;
  ASSERT_OK(tsr_info_json(&json));
  EXPECT_EQ(json[0], '{');
}
