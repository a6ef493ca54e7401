// Finding and reading the JSON config: lookup order, type checks, relative plugin paths.
#include "config.h"

#include <dlfcn.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "error.h"
#include "log.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

// <directory of libtessera.so>/tessera/default.json, found from one of our own functions.
std::string default_config_path() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&config_load), &info) == 0 || info.dli_fname == nullptr) {
    fail(TSR_ERR_RUNTIME, "config: cannot locate libtessera.so (dladdr failed); set $TESSERA_CONFIG");
  }
  return (fs::absolute(info.dli_fname).parent_path() / "tessera" / "default.json").string();
}

[[noreturn]] void bad_config(const std::string& path, const std::string& problem) {
  fail(TSR_ERR_RUNTIME, "config " + path + ": " + problem);
}

// Checks j's JSON type and names the key and the type found otherwise.
void expect(const std::string& path, const nlohmann::json& j, nlohmann::json::value_t type,
            const char* type_name, const std::string& key) {
  bool ok = j.type() == type || (type == nlohmann::json::value_t::number_integer && j.is_number_unsigned());
  if (!ok) bad_config(path, key + " must be " + type_name + ", not " + j.type_name());
}

void warn_unknown_keys(const std::string& path, const nlohmann::json& object,
                       std::initializer_list<const char*> known, const std::string& where) {
  for (const auto& [key, value] : object.items()) {
    bool found = false;
    for (const char* k : known) found = found || key == k;
    if (!found) log().warn("config {}: unknown key \"{}\"{} ignored", path, key, where);
  }
}

PluginConfig parse_plugin(const std::string& path, const nlohmann::json& j, size_t index) {
  using V = nlohmann::json::value_t;
  const std::string where = "plugins[" + std::to_string(index) + "]";
  expect(path, j, V::object, "an object", where);
  warn_unknown_keys(path, j, {"name", "path", "required", "options", "priority"}, " in " + where);
  PluginConfig p;
  p.priority = static_cast<int>(index);
  if (j.contains("name")) {
    expect(path, j["name"], V::string, "a string", where + ".name");
    p.name = j["name"].get<std::string>();
  }
  if (!j.contains("path")) bad_config(path, where + " has no \"path\"");
  expect(path, j["path"], V::string, "a string", where + ".path");
  // Relative to the config file's directory, never to the current directory.
  fs::path lib = j["path"].get<std::string>();
  p.path = (lib.is_absolute() ? lib : fs::path(path).parent_path() / lib).lexically_normal().string();
  if (j.contains("required")) {
    expect(path, j["required"], V::boolean, "a boolean", where + ".required");
    p.required = j["required"].get<bool>();
  }
  if (j.contains("options")) {
    expect(path, j["options"], V::object, "an object", where + ".options");
    p.options = j["options"];
  }
  if (j.contains("priority")) {
    expect(path, j["priority"], V::number_integer, "an integer", where + ".priority");
    p.priority = j["priority"].get<int>();
  }
  return p;
}

}  // namespace

Config config_load(const char* explicit_path) {
  std::string source = "given to tsr_init";
  std::string path;
  const char* env = std::getenv("TESSERA_CONFIG");
  if (explicit_path != nullptr && *explicit_path != '\0') {
    path = explicit_path;
  } else if (env != nullptr && *env != '\0') {
    path = env;
    source = "from $TESSERA_CONFIG";
  } else {
    path = default_config_path();
    source = "the default beside libtessera.so";
  }
  Config config;
  config.path = fs::absolute(path).lexically_normal().string();
  path = config.path;

  std::ifstream in(path);
  if (!in) bad_config(path, std::string("cannot open (") + source + "): " + std::strerror(errno));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);  // message has the line and column
  } catch (const nlohmann::json::exception& e) {
    bad_config(path, std::string("not valid JSON: ") + e.what());
  }

  using V = nlohmann::json::value_t;
  expect(path, j, V::object, "an object", "the top level");
  warn_unknown_keys(path, j, {"log_level", "fallback", "plugins"}, "");
  if (j.contains("log_level")) {
    expect(path, j["log_level"], V::string, "a string", "\"log_level\"");
    config.log_level = j["log_level"].get<std::string>();
  }
  if (j.contains("fallback")) {
    expect(path, j["fallback"], V::string, "a string", "\"fallback\"");
    const std::string fallback = j["fallback"].get<std::string>();
    if (fallback == "cpu") {
      config.fallback = Fallback::Cpu;
    } else if (fallback != "strict") {
      bad_config(path, "\"fallback\" must be \"strict\" or \"cpu\", not \"" + fallback + "\"");
    }
  }
  if (j.contains("plugins")) {
    expect(path, j["plugins"], V::array, "an array", "\"plugins\"");
    for (size_t i = 0; i < j["plugins"].size(); ++i) {
      config.plugins.push_back(parse_plugin(path, j["plugins"][i], i));
    }
  }
  return config;
}

}  // namespace tessera
