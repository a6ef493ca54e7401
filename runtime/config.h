// The JSON config (DESIGN §5): where it is found and what it says, validated.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "registry.h"

namespace tessera {

struct PluginConfig {
  std::string name;  // may be empty: the plugin's own name is used
  std::string path;  // absolute; relative paths are resolved against the config's directory
  bool required = false;
  int priority = 0;  // default: index in "plugins"; lower wins
  nlohmann::json options = nlohmann::json::object();
};

struct Config {
  std::string path;  // absolute path of the file read
  std::string log_level = "warn";
  Fallback fallback = Fallback::Strict;
  std::vector<PluginConfig> plugins;
};

// Explicit path, else $TESSERA_CONFIG, else <dir of libtessera.so>/tessera/default.json.
// Throws tessera::Error naming the file and the problem (unreadable, not JSON, wrong types).
Config config_load(const char* explicit_path);

}  // namespace tessera
