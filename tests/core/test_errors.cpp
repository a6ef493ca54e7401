// Bad input through the C ABI: each call returns a status and a message naming the op,
// the shapes, the dtypes and the device.
#include <cmath>
#include <cstddef>

#include "helpers.h"

TEST(Errors, BroadcastMismatch) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3}), b = f32({1, 2, 3, 4}, {4}), r;
  expect_error(tsr_add(a, b, r.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[add]", "broadcast", "[2, 3] float32 on cpu", "[4] float32 on cpu"});
  EXPECT_EQ(r.t, nullptr);
}

TEST(Errors, MatmulInnerDims) {
  Owned a = f32(std::vector<float>(6, 1), {2, 3}), b = f32(std::vector<float>(20, 1), {4, 5}), r;
  expect_error(tsr_matmul(a, b, r.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[matmul]", "3 != 4", "[2, 3] float32", "[4, 5] float32", "cpu"});
  Owned s = f32({1}, {});
  expect_error(tsr_matmul(s, b, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[matmul]", "at least 1 dim", "[] float32"});
}

TEST(Errors, UnknownDtype) {
  int64_t shape[] = {2};
  Owned r;
  expect_error(tsr_empty(shape, 1, 42, kCpu, r.out()), TSR_ERR_TYPE, {"[empty]", "unknown dtype 42"});
  int32_t dt = 0;
  expect_error(tsr_dtype_parse("float8", &dt), TSR_ERR_TYPE, {"[tsr_dtype_parse]", "float8"});
  Owned a = f32({1}, {1});
  expect_error(tsr_to(a, kCpu, 9, r.out()), TSR_ERR_TYPE, {"unknown dtype 9"});
}

TEST(Errors, BadShapesAndDevices) {
  int64_t neg[] = {2, -3};
  Owned r;
  expect_error(tsr_empty(neg, 2, TSR_FLOAT32, kCpu, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[empty]", "[2, -3]"});
  int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  expect_error(tsr_empty(nine, 9, TSR_FLOAT32, kCpu, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[empty]", "rank 9"});
  expect_error(tsr_empty(neg, 1, TSR_FLOAT32, TsrDevice{TSR_DEVICE_CPU, 7}, r.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[empty]", "cpu:7"});
  expect_error(tsr_empty(neg, 1, TSR_FLOAT32, TsrDevice{5, 0}, r.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[empty]", "not available"});
}

TEST(Errors, OutOfRangeDim) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3}), r;
  expect_error(tsr_transpose(a, 0, 3, r.out()), TSR_ERR_INDEX, {"[transpose]", "dim 3", "2-D", "[2, 3] float32 on cpu"});
  int64_t d[] = {2};
  expect_error(tsr_sum(a, d, 1, 0, r.out()), TSR_ERR_INDEX, {"[sum]", "dim 2", "2-D", "[2, 3] float32"});
  expect_error(tsr_softmax(a, -3, r.out()), TSR_ERR_INDEX, {"[softmax]", "dim -3"});
}

TEST(Errors, ViewForbiddenByStrides) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3}), at, r;
  ASSERT_OK(tsr_t(a, at.out()));
  int64_t shape[] = {6};
  expect_error(tsr_view(at, shape, 1, r.out()), TSR_ERR_INVALID_ARGUMENT,
               {"[view]", "[6]", "sizes [3, 2]", "strides [1, 3]", "float32 on cpu", "reshape"});
}

TEST(Errors, NullPointers) {
  Owned a = f32({1}, {1}), r;
  expect_error(tsr_add(nullptr, a, r.out()), TSR_ERR_NULL_POINTER, {"[tsr_add]", "'a'"});
  expect_error(tsr_add(a, nullptr, r.out()), TSR_ERR_NULL_POINTER, {"[tsr_add]", "'b'"});
  expect_error(tsr_add(a, a, nullptr), TSR_ERR_NULL_POINTER, {"[tsr_add]", "'out'"});
  expect_error(tsr_exp(nullptr, r.out()), TSR_ERR_NULL_POINTER, {"[tsr_exp]", "'x'"});
  expect_error(tsr_where(nullptr, a, a, r.out()), TSR_ERR_NULL_POINTER, {"[tsr_where]", "'cond'"});
  expect_error(tsr_tensor_info(a, nullptr), TSR_ERR_NULL_POINTER, {"[tsr_tensor_info]", "'info'"});
  expect_error(tsr_view(a, nullptr, 1, r.out()), TSR_ERR_NULL_POINTER, {"[tsr_view]", "'sizes'"});
  expect_error(tsr_copy_to_host(a, nullptr, 4), TSR_ERR_NULL_POINTER, {"[tsr_copy_to_host]", "'dst'"});
  expect_error(tsr_fill_(nullptr, tsr_scalar_int(0)), TSR_ERR_NULL_POINTER, {"[tsr_fill_]"});
  expect_error(tsr_sum(a, nullptr, 1, 0, r.out()), TSR_ERR_NULL_POINTER, {"[tsr_sum]", "'dims'"});
  expect_error(tsr_retain(nullptr), TSR_ERR_NULL_POINTER, {"[tsr_retain]"});
  TsrTensor in[] = {a, nullptr};
  TsrTensor out[] = {nullptr};
  int32_t add = -1;
  ASSERT_OK(tsr_op_lookup("add", &add));
  expect_error(tsr_call(add, in, 2, nullptr, nullptr, 1), TSR_ERR_NULL_POINTER, {"[tsr_call]", "'outputs'"});
  expect_error(tsr_call(add, in, 2, nullptr, out, 1), TSR_ERR_NULL_POINTER, {"[add]", "input 1"});
}

TEST(Errors, BadCalls) {
  Owned b = make<uint8_t>({1}, {1}, TSR_BOOL), i = i32({1}, {1}), r;
  expect_error(tsr_sub(b, b, r.out()), TSR_ERR_TYPE, {"[sub]", "bool", "[1] bool on cpu"});
  expect_error(tsr_matmul(b, b, r.out()), TSR_ERR_TYPE, {"[matmul]", "bool"});
  TsrTensor in[] = {i, i, i, i};
  TsrTensor out[] = {nullptr};
  expect_error(tsr_call(-1, in, 1, nullptr, out, 1), TSR_ERR_INVALID_ARGUMENT, {"unknown op id -1"});
  int32_t add = -1;
  ASSERT_OK(tsr_op_lookup("add", &add));
  expect_error(tsr_call(add, in, 3, nullptr, out, 1), TSR_ERR_INVALID_ARGUMENT, {"[add]", "expects 2", "got 3"});
  expect_error(tsr_call(add, in, 2, nullptr, out, 2), TSR_ERR_INVALID_ARGUMENT, {"[add]", "1 output"});
  TsrAttrs attrs;
  tsr_attrs_init(&attrs);
  attrs.scalar_arg = 1;
  attrs.scalar.kind = 9;
  expect_error(tsr_call(add, in, 1, &attrs, out, 1), TSR_ERR_TYPE, {"[add]", "scalar kind 9"});
  expect_error(tsr_clamp(i, nullptr, nullptr, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[clamp]", "min", "[1] int32"});
  int64_t d[] = {0, 1};
  expect_error(tsr_argmax(i, d, 2, 0, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[argmax]", "one dim"});
}

TEST(Errors, ExpandNumelOverflow) {
  Owned one = f32({1}, {1, 1}), r;
  int64_t wraps[] = {3, 6148914691236517206LL};  // 3 * that = 2^64 + 2
  expect_error(tsr_expand(one, wraps, 2, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[expand]", "[3, 6148914691236517206]"});
  int64_t huge[] = {1LL << 40, 1LL << 40};
  expect_error(tsr_expand(one, huge, 2, r.out()), TSR_ERR_INVALID_ARGUMENT, {"[expand]"});
  EXPECT_EQ(r.t, nullptr);
}

TEST(Errors, FillValueOverflow) {
  int64_t shape[] = {2};
  Owned r;
  expect_error(tsr_full(shape, 1, TSR_UINT8, kCpu, tsr_scalar_int(300), r.out()), TSR_ERR_RUNTIME,
               {"[fill]", "300", "uint8", "overflow"});
  expect_error(tsr_full(shape, 1, TSR_INT32, kCpu, tsr_scalar_float(NAN), r.out()), TSR_ERR_RUNTIME,
               {"[fill]", "int32", "overflow"});
  expect_error(tsr_full(shape, 1, TSR_FLOAT16, kCpu, tsr_scalar_float(1e6), r.out()), TSR_ERR_RUNTIME,
               {"[fill]", "float16"});
  ASSERT_OK(tsr_full(shape, 1, TSR_UINT8, kCpu, tsr_scalar_int(255), r.out()));
  EXPECT_EQ(read<uint8_t>(r), (std::vector<uint8_t>{255, 255}));
}

TEST(Errors, TensorInfoHonoursStructSize) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3});
  unsigned char buf[sizeof(TsrTensorInfo)];
  std::memset(buf, 0xAB, sizeof buf);
  TsrTensorInfo* info = reinterpret_cast<TsrTensorInfo*>(buf);
  info->struct_size = offsetof(TsrTensorInfo, sizes);  // an older, smaller struct
  ASSERT_OK(tsr_tensor_info(a, info));
  EXPECT_EQ(info->ndim, 2);
  for (size_t i = offsetof(TsrTensorInfo, sizes); i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "byte " << i;
  info->struct_size = 8;
  expect_error(tsr_tensor_info(a, info), TSR_ERR_INVALID_ARGUMENT, {"[tsr_tensor_info]", "struct_size"});
}

TEST(Errors, NegativeReductionDimCount) {
  Owned a = f32({1, 2, 3, 4, 5, 6}, {2, 3}), r;
  TsrAttrs attrs;
  tsr_attrs_init(&attrs);
  attrs.ndims = -1;
  int32_t op = -1;
  ASSERT_OK(tsr_op_lookup("sum", &op));
  TsrTensor in[] = {a};
  expect_error(tsr_call(op, in, 1, &attrs, r.out(), 1), TSR_ERR_INVALID_ARGUMENT, {"[sum]", "ndims -1", "[2, 3]"});
}
