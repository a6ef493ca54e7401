// Initializes the runtime once (the build tree's default config loads the CPU plugin).
#include "helpers.h"

namespace {
struct Runtime : ::testing::Environment {
  void SetUp() override { ASSERT_OK(tsr_init(nullptr)); }
  void TearDown() override { EXPECT_OK(tsr_shutdown()); }
};
const auto* g_env = ::testing::AddGlobalTestEnvironment(new Runtime);
}  // namespace
