// The abi suite: the loader refuses broken plugins and bad configs cleanly (a message that
// names the file and the reason, nothing half-registered) and resolves kernel priority.
#include <dlfcn.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/tessera.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// Absolute path of a fixture plugin built beside this test (tests/abi/lib<name>.so).
std::string fixture(const std::string& name) {
  return env("TSR_ABI_FIXTURES") + "/lib" + name + ".so";
}

// Each test writes its configs into a fresh temporary directory.
class Abi : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tessera-abi-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    tsr_shutdown();
    fs::remove_all(dir_);
  }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }
  std::string config(const std::vector<json>& plugins, const json& extra = json::object()) {
    json j = extra;
    j["plugins"] = plugins;
    return write("config.json", j.dump(2));
  }
  static json plugin(const std::string& name, const std::string& path, bool required,
                     const json& more = json::object()) {
    json p = more;
    p["name"] = name;
    p["path"] = path;
    p["required"] = required;
    return p;
  }
  static json info() {
    const char* text = nullptr;
    EXPECT_EQ(tsr_info_json(&text), TSR_OK);
    return json::parse(text);
  }
  static const json* find(const json& list, const char* key, const std::string& value) {
    for (const auto& item : list) {
      if (item[key] == value) return &item;
    }
    return nullptr;
  }
  static std::string kernel_owner(const json& info, const std::string& op, const std::string& device) {
    for (const auto& k : info["kernels"]) {
      if (k["op"] == op && k["device"] == device) return k["plugin"];
    }
    return "";
  }
  // What dlopen itself says about a path: the loader must report exactly this text.
  static std::string dlerror_for(const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) dlclose(handle);
    const char* err = dlerror();
    return err != nullptr ? err : "";
  }
  // After a failed init nothing is registered.
  static void expect_empty() {
    const json i = info();
    EXPECT_FALSE(i["initialized"]);
    EXPECT_TRUE(i["plugins"].empty());
    EXPECT_TRUE(i["devices"].empty());
    EXPECT_TRUE(i["kernels"].empty());
  }

  fs::path dir_;
};

using ::testing::HasSubstr;

TEST_F(Abi, RequiredMissingFileGivesExactDlerror) {
  const std::string path = (dir_ / "libnot_there.so").string();
  ASSERT_EQ(tsr_init(config({plugin("ghost", path, true)}).c_str()), TSR_ERR_RUNTIME);
  const std::string error = tsr_last_error();
  EXPECT_THAT(error, HasSubstr(dlerror_for(path)));
  EXPECT_THAT(error, HasSubstr("'ghost'"));
  EXPECT_THAT(error, HasSubstr("required"));
  expect_empty();
}

TEST_F(Abi, OptionalMissingFileIsSkippedAndRecorded) {
  const std::string path = (dir_ / "libnot_there.so").string();
  ASSERT_EQ(tsr_init(config({plugin("toy_a", fixture("toy_a"), true), plugin("ghost", path, false)}).c_str()),
            TSR_OK)
      << tsr_last_error();
  const json i = info();
  const json* ghost = find(i["plugins"], "name", "ghost");
  ASSERT_NE(ghost, nullptr);
  EXPECT_FALSE((*ghost)["loaded"]);
  EXPECT_EQ((*ghost)["error"], dlerror_for(path));
  EXPECT_NE(find(i["devices"], "type", "toy"), nullptr);
}

TEST_F(Abi, NotASharedLibrary) {
  const std::string path = write("libjunk.so", "this is not an ELF file\n");
  ASSERT_EQ(tsr_init(config({plugin("junk", path, true)}).c_str()), TSR_ERR_RUNTIME);
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr(dlerror_for(path)));
  expect_empty();
}

TEST_F(Abi, MissingEntrySymbol) {
  ASSERT_EQ(tsr_init(config({plugin("no_entry", fixture("no_entry"), false)}).c_str()), TSR_OK);
  const json p = info()["plugins"][0];
  EXPECT_FALSE(p["loaded"]);
  EXPECT_THAT(p["error"].get<std::string>(), HasSubstr("tsr_plugin_entry"));
  tsr_shutdown();
  ASSERT_EQ(tsr_init(config({plugin("no_entry", fixture("no_entry"), true)}).c_str()), TSR_ERR_RUNTIME);
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr(fixture("no_entry")));
}

TEST_F(Abi, WrongAbiNamesBothVersionsAndTheFile) {
  ASSERT_EQ(tsr_init(config({plugin("major", fixture("bad_abi_major"), true)}).c_str()), TSR_ERR_RUNTIME);
  std::string error = tsr_last_error();
  EXPECT_THAT(error, HasSubstr("plugin ABI 2.0, runtime ABI 1.3"));
  EXPECT_THAT(error, HasSubstr(fixture("bad_abi_major")));
  expect_empty();
  ASSERT_EQ(tsr_init(config({plugin("minor", fixture("bad_abi_minor"), false)}).c_str()), TSR_OK);
  const json i = info();
  EXPECT_EQ(i["plugins"][0]["error"], "plugin ABI 1.4, runtime ABI 1.3");
  EXPECT_TRUE(i["devices"].empty());
}

TEST_F(Abi, PluginOfAbi11LoadsAndLacksTheDeviceExtensions) {
  // Its TsrDeviceInterface is 64 bytes followed by garbage: streams and memory statistics
  // must be refused by name, never called.
  ASSERT_EQ(tsr_init(config({plugin("old", fixture("old_abi"), true)}).c_str()), TSR_OK) << tsr_last_error();
  TsrDevice dev{};
  ASSERT_EQ(tsr_device_parse("old", &dev), TSR_OK) << tsr_last_error();
  TsrStream s = nullptr;
  EXPECT_EQ(tsr_stream_create(dev, 0, &s), TSR_ERR_NOT_IMPLEMENTED);
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr("[tsr_stream_create] not supported on device old"));
  TsrMemoryStats stats{};
  stats.struct_size = sizeof stats;
  EXPECT_EQ(tsr_memory_stats(dev, &stats), TSR_ERR_NOT_IMPLEMENTED);
  EXPECT_EQ(tsr_set_current_stream(dev, nullptr), TSR_ERR_NOT_IMPLEMENTED);
  EXPECT_EQ(tsr_device_set_option("old", "allow_tf32", 1), TSR_ERR_NOT_IMPLEMENTED);
  EXPECT_EQ(tsr_device_set_option("nope", "allow_tf32", 1), TSR_ERR_INVALID_ARGUMENT);
}

TEST_F(Abi, FailingInitLeavesNothingRegistered) {
  // failing_init registers device "failing", add on it, and add on "toy" at a higher
  // priority than toy_a's, then fails: none of that may remain.
  const std::vector<json> plugins = {plugin("toy_a", fixture("toy_a"), true),
                                     plugin("failing", fixture("failing_init"), false, {{"priority", -1}})};
  ASSERT_EQ(tsr_init(config(plugins).c_str()), TSR_OK) << tsr_last_error();
  const json i = info();
  const json* failing = find(i["plugins"], "name", "failing");
  ASSERT_NE(failing, nullptr);
  EXPECT_FALSE((*failing)["loaded"]);
  EXPECT_THAT((*failing)["error"].get<std::string>(), HasSubstr("deliberate failure after registering"));
  EXPECT_EQ(find(i["devices"], "type", "failing"), nullptr);
  EXPECT_EQ(kernel_owner(i, "add", "toy"), "toy_a");
  for (const auto& k : i["kernels"]) EXPECT_NE(k["plugin"], "failing");
  tsr_shutdown();

  ASSERT_EQ(tsr_init(config({plugin("failing", fixture("failing_init"), true)}).c_str()), TSR_ERR_RUNTIME);
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr("deliberate failure after registering"));
  expect_empty();
}

TEST_F(Abi, DuplicateKernelFromOnePluginIsRefused) {
  ASSERT_EQ(tsr_init(config({plugin("dup", fixture("dup_kernel"), false)}).c_str()), TSR_OK);
  const json i = info();
  EXPECT_FALSE(i["plugins"][0]["loaded"]);
  EXPECT_THAT(i["plugins"][0]["error"].get<std::string>(), HasSubstr("registered twice by plugin 'dup'"));
  EXPECT_TRUE(i["devices"].empty());
  EXPECT_TRUE(i["kernels"].empty());
}

TEST_F(Abi, HigherPriorityKernelWins) {
  // toy_a registers the device and add; toy_b only add. Lower number = higher priority.
  const json b_opts = {{"options", {{"device", 0}}}};
  std::vector<json> plugins = {
      plugin("toy_a", fixture("toy_a"), true, {{"priority", 1}}),
      plugin("toy_b", fixture("toy_b"), true, {{"priority", 0}, {"options", {{"device", 0}}}})};
  ASSERT_EQ(tsr_init(config(plugins).c_str()), TSR_OK) << tsr_last_error();
  EXPECT_EQ(kernel_owner(info(), "add", "toy"), "toy_b");
  tsr_shutdown();

  // Default priority is the order in the list: the first wins, the second still loads.
  plugins = {plugin("toy_a", fixture("toy_a"), true), plugin("toy_b", fixture("toy_b"), true, b_opts)};
  ASSERT_EQ(tsr_init(config(plugins).c_str()), TSR_OK) << tsr_last_error();
  const json i = info();
  EXPECT_EQ(kernel_owner(i, "add", "toy"), "toy_a");
  EXPECT_TRUE((*find(i["plugins"], "name", "toy_b"))["loaded"]);
  EXPECT_EQ(i["ops"]["add"], json({"toy"}));
}

TEST_F(Abi, EqualPriorityNamesBothPlugins) {
  std::vector<json> plugins = {
      plugin("toy_a", fixture("toy_a"), true, {{"priority", 3}}),
      plugin("toy_b", fixture("toy_b"), false, {{"priority", 3}, {"options", {{"device", 0}}}})};
  ASSERT_EQ(tsr_init(config(plugins).c_str()), TSR_OK) << tsr_last_error();
  const json i = info();
  const std::string error = (*find(i["plugins"], "name", "toy_b"))["error"];
  EXPECT_THAT(error, HasSubstr("'toy_a'"));
  EXPECT_THAT(error, HasSubstr("'toy_b'"));
  EXPECT_EQ(kernel_owner(i, "add", "toy"), "toy_a");
  tsr_shutdown();

  plugins[1]["required"] = true;
  ASSERT_EQ(tsr_init(config(plugins).c_str()), TSR_ERR_RUNTIME);
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr("'toy_a'"));
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr("'toy_b'"));
  expect_empty();
}

TEST_F(Abi, DeviceTypeRegisteredTwiceNamesBothPlugins) {
  std::vector<json> plugins = {plugin("toy_a", fixture("toy_a"), true),
                               plugin("toy_b", fixture("toy_b"), true)};
  ASSERT_EQ(tsr_init(config(plugins).c_str()), TSR_ERR_RUNTIME);
  const std::string error = tsr_last_error();
  EXPECT_THAT(error, HasSubstr("device type 'toy' of plugin 'toy_b'"));
  EXPECT_THAT(error, HasSubstr("is already registered by plugin 'toy_a'"));
}

TEST_F(Abi, NullPointersAtThePluginAbiAreRefused) {
  ASSERT_EQ(
      tsr_init(
          config({plugin("toy_a", fixture("toy_a"), true, {{"options", {{"probe_nulls", 1}}}})}).c_str()),
      TSR_OK)
      << tsr_last_error();
  const json i = info();
  EXPECT_NE(find(i["devices"], "type", "probe"), nullptr);
  EXPECT_EQ(kernel_owner(i, "add", "toy"), "toy_a");
  EXPECT_EQ(kernel_owner(i, "add", "probe"), "");
}

TEST_F(Abi, UnavailablePluginLoadsAndSaysWhy) {
  ASSERT_EQ(
      tsr_init(
          config({plugin("toy_a", fixture("toy_a"), true, {{"options", {{"unavailable", 1}}}})}).c_str()),
      TSR_OK);
  const json p = info()["plugins"][0];
  EXPECT_TRUE(p["loaded"]);
  EXPECT_EQ(p["unavailable"], "toy_a has no hardware here");
}

TEST_F(Abi, InvalidJsonNamesFileAndPosition) {
  const std::string path = write("bad.json", "{\n  \"plugins\": [\n    { \"name\": }\n  ]\n}\n");
  ASSERT_EQ(tsr_init(path.c_str()), TSR_ERR_RUNTIME);
  const std::string error = tsr_last_error();
  EXPECT_THAT(error, HasSubstr(path));
  EXPECT_THAT(error, HasSubstr("line 3"));
  expect_empty();
}

TEST_F(Abi, WrongTypesNameFileAndKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"[]", "the top level must be an object"},
      {R"({"plugins": {}})", "\"plugins\" must be an array"},
      {R"({"plugins": [{"path": 3}]})", "plugins[0].path must be a string"},
      {R"({"plugins": [{"name": "x"}]})", "plugins[0] has no \"path\""},
      {R"({"plugins": [{"path": "x.so", "required": "yes"}]})", "plugins[0].required must be a boolean"},
      {R"({"plugins": [{"path": "x.so", "options": 1}]})", "plugins[0].options must be an object"},
      {R"({"plugins": [{"path": "x.so", "priority": 1.5}]})", "plugins[0].priority must be an integer"},
      {R"({"fallback": "gpu"})", "\"fallback\" must be \"strict\" or \"cpu\""},
      {R"({"log_level": 3})", "\"log_level\" must be a string"},
      {R"({"log_level": "loud"})", "unknown log level 'loud'"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string path = write("types.json", text);
    EXPECT_NE(tsr_init(path.c_str()), TSR_OK) << text;
    EXPECT_THAT(std::string(tsr_last_error()), HasSubstr(path)) << text;
    EXPECT_THAT(std::string(tsr_last_error()), HasSubstr(expected)) << text;
    expect_empty();
  }
}

TEST_F(Abi, MissingConfigNamesIt) {
  const std::string path = (dir_ / "nowhere.json").string();
  ASSERT_EQ(tsr_init(path.c_str()), TSR_ERR_RUNTIME);
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr(path));
}

TEST_F(Abi, UnknownKeysOnlyWarn) {
  ASSERT_EQ(tsr_init(config({plugin("toy_a", fixture("toy_a"), true, {{"colour", "red"}})},
                            {{"log_level", "error"}, {"extra", 1}})
                         .c_str()),
            TSR_OK)
      << tsr_last_error();
}

TEST_F(Abi, PluginPathsAreRelativeToTheConfigNotTheCwd) {
  const std::string path = write("nested/deeper/config.json", "{}");
  const std::string rel = fs::relative(fixture("toy_a"), fs::path(path).parent_path()).string();
  write("nested/deeper/config.json", json{{"plugins", json::array({plugin("toy_a", rel, true)})}}.dump());
  const fs::path cwd = fs::current_path();
  fs::current_path("/");
  const int32_t status = tsr_init(path.c_str());
  fs::current_path(cwd);
  ASSERT_EQ(status, TSR_OK) << tsr_last_error();
  EXPECT_EQ(info()["plugins"][0]["path"], fs::path(fixture("toy_a")).lexically_normal().string());
}

TEST_F(Abi, ConfigFromEnvironmentAndInitTwiceIsNoOp) {
  const std::string path = config({plugin("toy_a", fixture("toy_a"), true)});
  setenv("TESSERA_CONFIG", path.c_str(), 1);
  const int32_t status = tsr_init(nullptr);
  unsetenv("TESSERA_CONFIG");
  ASSERT_EQ(status, TSR_OK) << tsr_last_error();
  EXPECT_EQ(info()["config"], path);
  EXPECT_EQ(tsr_init(nullptr), TSR_OK);
  EXPECT_EQ(info()["config"], path);
}

TEST_F(Abi, TesseraLogOverridesAndIsChecked) {
  const std::string path = config({}, {{"log_level", "loud"}});
  setenv("TESSERA_LOG", "error", 1);
  EXPECT_EQ(tsr_init(path.c_str()), TSR_OK) << tsr_last_error();  // env wins over the config
  tsr_shutdown();
  setenv("TESSERA_LOG", "bogus", 1);
  EXPECT_EQ(tsr_init(path.c_str()), TSR_ERR_INVALID_ARGUMENT);
  unsetenv("TESSERA_LOG");
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr("$TESSERA_LOG"));
  EXPECT_THAT(std::string(tsr_last_error()), HasSubstr("'bogus'"));
}

// Runs tessera-info with args; returns its exit status and its output (stdout, and
// stderr too unless json_only).
std::pair<int, std::string> run_info(const std::string& args, bool json_only = false) {
  const std::string redirect = json_only ? " 2>/dev/null" : " 2>&1";
  FILE* pipe = popen((env("TSR_INFO_EXE") + " " + args + redirect).c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST_F(Abi, TesseraInfoShowsPluginsAndFailures) {
  const std::string ghost = (dir_ / "libghost.so").string();
  const std::string ok = config({plugin("toy_a", fixture("toy_a"), true), plugin("ghost", ghost, false)});
  auto [code, out] = run_info("--json --config " + ok, true);
  ASSERT_EQ(code, 0) << out;
  const json j = json::parse(out);
  for (const char* key : {"abi", "plugins", "devices", "ops"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["plugins"][1]["error"], dlerror_for(ghost));
  EXPECT_EQ(j["ops"]["add"], json({"toy"}));

  std::tie(code, out) = run_info("--config " + ok);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr(dlerror_for(ghost)));

  const std::string bad =
      write("required.json", json{{"plugins", json::array({plugin("ghost", ghost, true)})}}.dump());
  std::tie(code, out) = run_info("--config " + bad);
  EXPECT_NE(code, 0);
  EXPECT_THAT(out, HasSubstr(dlerror_for(ghost)));
}

}  // namespace
