// The example plugin through tessera.h: its device "example" holds tensors, and its one
// kernel (float32 add) handles broadcast, strided and scalar operands.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "tessera/tessera.h"

namespace {

class Example : public ::testing::Test {
 protected:
  // One config for the whole suite: the cpu plugin if built (optional), the example plugin.
  static void SetUpTestSuite() {
    nlohmann::json config = {
        {"plugins",
         {{{"name", "cpu"}, {"path", std::getenv("TSR_CPU_PLUGIN")}, {"required", false}},
          {{"name", "example"},
           {"path", std::getenv("TSR_EXAMPLE_PLUGIN")},
           {"required", true},
           {"options", {{"device_count", 2}}}}}}};
    char tmpl[] = "/tmp/tessera-example-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::ofstream(dir_ + "/config.json") << config.dump();
    ASSERT_EQ(tsr_init((dir_ + "/config.json").c_str()), TSR_OK) << tsr_last_error();
  }
  static void TearDownTestSuite() {
    tsr_shutdown();
    std::filesystem::remove_all(dir_);
  }

  // A float32 tensor on example:0 from host values.
  static TsrTensor make(std::vector<float> values, std::vector<int64_t> sizes) {
    TsrDevice device;
    EXPECT_EQ(tsr_device_parse("example", &device), TSR_OK) << tsr_last_error();
    TsrTensor t = nullptr;
    EXPECT_EQ(tsr_from_buffer(values.data(), sizes.data(), (int32_t)sizes.size(), TSR_FLOAT32, device, &t),
              TSR_OK)
        << tsr_last_error();
    return t;
  }
  static std::vector<float> host(TsrTensor t, size_t n) {
    std::vector<float> out(n);
    EXPECT_EQ(tsr_copy_to_host(t, out.data(), n * sizeof(float)), TSR_OK) << tsr_last_error();
    return out;
  }

  static inline std::string dir_;
};

TEST_F(Example, InfoShowsTheDeviceAndItsKernel) {
  const char* text = nullptr;
  ASSERT_EQ(tsr_info_json(&text), TSR_OK);
  const auto info = nlohmann::json::parse(text);
  bool found = false;
  for (const auto& d : info["devices"]) {
    if (d["type"] == "example") found = d["count"] == 2 && d["plugin"] == "example";
  }
  EXPECT_TRUE(found) << text;
  bool has_add = false;
  for (const auto& t : info["ops"]["add"]) has_add = has_add || t == "example";
  EXPECT_TRUE(has_add) << text;
  int32_t count = 0;
  EXPECT_EQ(tsr_device_count("example", &count), TSR_OK);
  EXPECT_EQ(count, 2);
}

TEST_F(Example, AddContiguousAndBroadcast) {
  TsrTensor a = make({1, 2, 3, 4, 5, 6}, {2, 3});        // a is (2,3)
  TsrTensor b = make({10, 20, 30, 40, 50, 60}, {2, 3});  // b is (2,3)
  TsrTensor row = make({100, 200, 300}, {3});            // row is (3,), broadcast
  TsrTensor sum = nullptr, bsum = nullptr;
  ASSERT_EQ(tsr_add(a, b, &sum), TSR_OK) << tsr_last_error();
  EXPECT_EQ(host(sum, 6), std::vector<float>({11, 22, 33, 44, 55, 66}));
  ASSERT_EQ(tsr_add(a, row, &bsum), TSR_OK) << tsr_last_error();
  EXPECT_EQ(host(bsum, 6), std::vector<float>({101, 202, 303, 104, 205, 306}));
  for (TsrTensor t : {a, b, row, sum, bsum}) tsr_release(t);
}

TEST_F(Example, AddStridedAndScalar) {
  TsrTensor a = make({1, 2, 3, 4, 5, 6}, {2, 3});  // a is (2,3)
  TsrTensor c = make({0, 0, 0, 0, 0, 0}, {3, 2});  // c is (3,2)
  TsrTensor at = nullptr, sum = nullptr, plus = nullptr;
  ASSERT_EQ(tsr_transpose(a, 0, 1, &at), TSR_OK) << tsr_last_error();  // at is (3,2), strides (1,3)
  ASSERT_EQ(tsr_add(at, c, &sum), TSR_OK) << tsr_last_error();
  EXPECT_EQ(host(sum, 6), std::vector<float>({1, 4, 2, 5, 3, 6}));
  ASSERT_EQ(tsr_add_scalar(a, tsr_scalar_float(0.5), &plus), TSR_OK) << tsr_last_error();
  EXPECT_EQ(host(plus, 6), std::vector<float>({1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f}));
  for (TsrTensor t : {a, c, at, sum, plus}) tsr_release(t);
}

TEST_F(Example, WhatItLacksIsAnErrorNotACrash) {
  TsrTensor a = make({1, 2}, {2});
  TsrTensor out = nullptr;
  EXPECT_NE(tsr_mul(a, a, &out), TSR_OK);  // no mul kernel on "example"
  EXPECT_NE(std::string(tsr_last_error()).find("example"), std::string::npos) << tsr_last_error();
  tsr_release(a);
}

}  // namespace
