// Helpers shared by the core tests: owning handles, tensors from vectors, reading them back.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "tessera/tessera.h"

inline constexpr TsrDevice kCpu{TSR_DEVICE_CPU, 0};

#define EXPECT_OK(expr) EXPECT_EQ((expr), TSR_OK) << tsr_last_error()
#define ASSERT_OK(expr) ASSERT_EQ((expr), TSR_OK) << tsr_last_error()

// Owns one reference to a tensor.
struct Owned {
  TsrTensor t = nullptr;
  Owned() = default;
  explicit Owned(TsrTensor x) : t(x) {}
  Owned(Owned&& o) noexcept : t(std::exchange(o.t, nullptr)) {}
  Owned& operator=(Owned&& o) noexcept {
    std::swap(t, o.t);
    return *this;
  }
  ~Owned() { tsr_release(t); }
  TsrTensor* out() {
    tsr_release(std::exchange(t, nullptr));
    return &t;
  }
  operator TsrTensor() const { return t; }
};

template <class T>
Owned make(const std::vector<T>& v, const std::vector<int64_t>& shape, int32_t dtype) {
  Owned r;
  EXPECT_OK(tsr_from_buffer(v.data(), shape.data(), static_cast<int32_t>(shape.size()), dtype, kCpu, r.out()));
  return r;
}
inline Owned f32(const std::vector<float>& v, const std::vector<int64_t>& shape) { return make(v, shape, TSR_FLOAT32); }
inline Owned i32(const std::vector<int32_t>& v, const std::vector<int64_t>& shape) { return make(v, shape, TSR_INT32); }

inline TsrTensorInfo info(TsrTensor t) {
  TsrTensorInfo i{};
  i.struct_size = sizeof i;
  EXPECT_OK(tsr_tensor_info(t, &i));
  return i;
}
inline std::vector<int64_t> sizes(TsrTensor t) {
  TsrTensorInfo i = info(t);
  return {i.sizes, i.sizes + i.ndim};
}
inline std::vector<int64_t> strides(TsrTensor t) {
  TsrTensorInfo i = info(t);
  return {i.strides, i.strides + i.ndim};
}

template <class T>
std::vector<T> read(TsrTensor t) {
  TsrTensorInfo i = info(t);
  std::vector<T> v(static_cast<size_t>(i.numel));
  size_t isz = 0;
  EXPECT_OK(tsr_dtype_itemsize(i.dtype, &isz));
  EXPECT_EQ(isz, sizeof(T));
  EXPECT_OK(tsr_copy_to_host(t, v.data(), v.size() * sizeof(T)));
  return v;
}

// Expects `status` with a message containing every one of `parts`.
inline void expect_error(int32_t status, int32_t want, const std::vector<std::string>& parts) {
  EXPECT_EQ(status, want) << tsr_last_error();
  std::string msg = tsr_last_error();
  for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}
