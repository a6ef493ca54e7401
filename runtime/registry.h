// The process-wide registry: loaded plugins, device types, and one kernel slot per
// (op, device type). Written only by init/shutdown (loader.cpp); read lock-free by the
// dispatcher on every call, which is safe because nothing changes it between them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "op_table.h"
#include "tessera/plugin.h"

namespace tessera {

struct PluginRecord {
  std::string name;        // from the config, then the plugin's own name
  std::string path;        // absolute path of the shared library
  std::string version;     // the plugin's version string
  std::string error;       // why it did not load (exact dlerror() text where relevant)
  std::string unavailable; // set_unavailable() reason: loaded, but registered nothing
  bool required = false;
  bool loaded = false;
  int priority = 0;        // config order: 0 is the highest
  nlohmann::json options;  // the config's "options" object for this plugin
  void* handle = nullptr;  // dlopen handle
  const TsrPlugin* plugin = nullptr;
  void* ctx = nullptr;     // plugin_ctx from init
};

struct DeviceType {
  int32_t id = -1;
  std::string name;
  TsrDeviceInterface iface{};
  const PluginRecord* plugin = nullptr;
};

struct KernelSlot {
  TsrKernelFn fn = nullptr;
  void* ctx = nullptr;
  uint32_t dtype_mask = 0;
  const PluginRecord* plugin = nullptr;
};

enum class Fallback { Strict, Cpu };

struct Registry {
  bool initialized = false;
  Fallback fallback = Fallback::Strict;
  std::string config_path;  // absolute path of the config in use
  std::vector<std::unique_ptr<PluginRecord>> plugins;
  std::unique_ptr<DeviceType> devices[TSR_MAX_DEVICE_TYPES];  // by device type id
  KernelSlot kernels[kNumOps][TSR_MAX_DEVICE_TYPES];
};

Registry& registry();

// Loads the config and its plugins (config_path may be null: lookup order of DESIGN §5).
// Throws tessera::Error; on failure nothing stays registered.
void runtime_init(const char* config_path);
void runtime_shutdown();

// Hot-path lookups.
inline const KernelSlot& kernel_slot(int32_t op, int32_t device_type) {
  return registry().kernels[op][device_type];
}
inline const DeviceType* device_type(int32_t id) {
  return (id >= 0 && id < TSR_MAX_DEVICE_TYPES) ? registry().devices[id].get() : nullptr;
}
// Id of a registered device type name, or -1 ("cpu" is 0 and "cuda" 1 when registered).
int32_t device_type_id(const char* name);

// The registry as the JSON object tsr_info_json returns.
nlohmann::json info_json();

}  // namespace tessera
