// tessera-info: the ABI version, each plugin (loaded, or why not), the devices and an
// op x device coverage table, through tessera.h only. --json prints one JSON object.
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "tessera/tessera.h"

namespace {

int usage(FILE* out, int code) {
  std::fprintf(out,
               "usage: tessera-info [--json] [--config PATH]\n"
               "  --json         print everything as one JSON object\n"
               "  --config PATH  use this config instead of $TESSERA_CONFIG / the default\n");
  return code;
}

void print_text(const nlohmann::json& info) {
  std::printf("Tessera ABI %s (plugin ABI %s)\n", info["abi"].get<std::string>().c_str(),
              info["plugin_abi"].get<std::string>().c_str());
  std::printf("config   %s (fallback: %s)\n\n", info["config"].get<std::string>().c_str(),
              info["fallback"].get<std::string>().c_str());

  std::printf("plugins\n");
  for (const auto& p : info["plugins"]) {
    const std::string version = p["version"];
    std::printf("  %-12s %-10s %-10s (%s, priority %d)\n      %s\n", p["name"].get<std::string>().c_str(),
                version.empty() ? "-" : version.c_str(), p["loaded"].get<bool>() ? "loaded" : "NOT LOADED",
                p["required"].get<bool>() ? "required" : "optional", p["priority"].get<int>(),
                p["path"].get<std::string>().c_str());
    if (!p["unavailable"].get<std::string>().empty()) {
      std::printf("      unavailable: %s\n", p["unavailable"].get<std::string>().c_str());
    }
    if (!p["error"].get<std::string>().empty())
      std::printf("      error: %s\n", p["error"].get<std::string>().c_str());
  }

  std::printf("\ndevices\n");
  for (const auto& d : info["devices"]) {
    std::printf("  %-10s x%d (plugin %s)\n", d["type"].get<std::string>().c_str(), d["count"].get<int>(),
                d["plugin"].get<std::string>().c_str());
  }

  // Coverage: one row per op, one column per device type; views run everywhere.
  std::printf("\nops %-16s", "");
  for (const auto& d : info["devices"]) std::printf(" %-8s", d["type"].get<std::string>().c_str());
  std::printf("\n");
  int views = 0;
  for (const auto& [op, types] : info["ops"].items()) {
    bool is_view = false;
    for (const auto& v : info["views"]) is_view = is_view || v == op;
    if (is_view) {
      ++views;
      continue;
    }
    std::printf("  %-18s", op.c_str());
    for (const auto& d : info["devices"]) {
      bool has = false;
      for (const auto& t : types) has = has || t == d["type"];
      std::printf(" %-8s", has ? "x" : ".");
    }
    std::printf("\n");
  }
  std::printf("  (+%d view ops, done by the runtime on every device)\n", views);
}

}  // namespace

int main(int argc, char** argv) {
  bool as_json = false;
  const char* config = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      as_json = true;
    } else if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config = argv[++i];
    } else if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      return usage(stdout, 0);
    } else {
      return usage(stderr, 2);
    }
  }

  uint32_t major = 0, minor = 0;
  tsr_abi_version(&major, &minor);
  if (tsr_init(config) != TSR_OK) {
    // A required plugin was refused (or the config is bad): the message says which and why.
    const std::string error = tsr_last_error();
    if (as_json) {
      nlohmann::json out = {{"abi", std::to_string(major) + "." + std::to_string(minor)}, {"error", error}};
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::fprintf(stderr, "tessera-info: initialization failed:\n  %s\n", error.c_str());
    }
    return 1;
  }

  const char* text = nullptr;
  if (tsr_info_json(&text) != TSR_OK) {
    std::fprintf(stderr, "tessera-info: %s\n", tsr_last_error());
    tsr_shutdown();
    return 1;
  }
  nlohmann::json info = nlohmann::json::parse(text);
  if (as_json) {
    std::printf("%s\n", info.dump(2).c_str());
  } else {
    print_text(info);
  }
  tsr_shutdown();
  return 0;
}
