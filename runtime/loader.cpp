// The plugin loader: dlopen each plugin of the config, negotiate the ABI, run its init
// with the host table, and commit what it registered only if init succeeded.
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "config.h"
#include "error.h"
#include "log.h"
#include "registry.h"

namespace tessera {

Registry& registry() {
  static Registry instance;
  return instance;
}

int32_t op_lookup(const char* name) {
  if (name == nullptr) return -1;
  for (int32_t op = 0; op < kNumOps; ++op) {
    if (std::strcmp(kOpInfo[op].name, name) == 0) return op;
  }
  return -1;
}

namespace {

std::mutex g_init_mutex;  // serializes runtime_init / runtime_shutdown

// What one plugin registered during its init, held back until init returns TSR_OK.
struct StagedKernel {
  int32_t op;
  std::string device;
  KernelSlot slot;
};

struct Staging {
  Registry* target;  // the registry being built (committed plugins so far)
  std::vector<DeviceType> devices;
  std::vector<StagedKernel> kernels;
};

// host_ctx of one plugin: its record, its host table, and its staging area while its
// init runs. Lives as long as the plugin stays loaded (kernels may keep `host`).
struct HostContext {
  TsrHostApi api{};
  PluginRecord* record = nullptr;
  Staging* staging = nullptr;  // null outside init: registering then is refused
};

std::vector<std::unique_ptr<HostContext>> g_hosts;  // one per loaded plugin

std::string describe(const PluginRecord& p) {
  return "plugin '" + p.name + "' (" + p.path + ")";
}

// Device type named `name` among the committed and the staged ones, or null.
const DeviceType* find_device(const Staging& s, const std::string& name) {
  for (const auto& d : s.target->devices) {
    if (d && d->name == name) return d.get();
  }
  for (const auto& d : s.devices) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

int32_t committed_id(const Registry& reg, const std::string& name) {
  for (const auto& d : reg.devices) {
    if (d && d->name == name) return d->id;
  }
  return -1;
}

HostContext& host_of(void* host_ctx, const char* fn) {
  auto* host = static_cast<HostContext*>(host_ctx);
  if (host == nullptr) fail(TSR_ERR_NULL_POINTER, std::string(fn) + ": host_ctx is NULL");
  if (host->staging == nullptr) {
    fail(TSR_ERR_RUNTIME, std::string(fn) + " called outside the plugin's init");
  }
  return *host;
}

// A struct the plugin hands over must be at least as large as the one this runtime reads.
void check_struct_size(const std::string& who, uint32_t got, size_t need) {
  if (got < need)
    fail(TSR_ERR_INVALID_ARGUMENT, who + ": struct_size " + std::to_string(got) + " < " + std::to_string(need));
}

void register_device(HostContext& host, const TsrDeviceInterface* d) {
  const std::string who = "register_device";
  if (d == nullptr) fail(TSR_ERR_NULL_POINTER, who + ": device is NULL");
  // A 1.0/1.1 plugin's interface ends at synchronize: the 1.2 members read as NULL.
  check_struct_size(who, d->struct_size, TSR_DEVICE_INTERFACE_SIZE_1_1);
  if (d->type_name == nullptr || *d->type_name == '\0')
    fail(TSR_ERR_NULL_POINTER, who + ": type_name is NULL or empty");
  const std::string name = d->type_name;
  if (name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
    fail(TSR_ERR_INVALID_ARGUMENT, who + ": type name '" + name + "' must be [a-z0-9_]+");
  }
  if (d->allocate == nullptr || d->free == nullptr || d->copy == nullptr || d->synchronize == nullptr) {
    fail(TSR_ERR_NULL_POINTER, who + " '" + name + "': allocate, free, copy and synchronize must all be set");
  }
  if (d->device_count < 0) fail(TSR_ERR_INVALID_ARGUMENT, who + " '" + name + "': negative device_count");
  Staging& s = *host.staging;
  if (const DeviceType* other = find_device(s, name)) {
    fail(TSR_ERR_INVALID_ARGUMENT, who + ": device type '" + name + "' of " + describe(*host.record) +
                                       " is already registered by " + describe(*other->plugin));
  }
  DeviceType staged;
  staged.name = name;
  std::memcpy(&staged.iface, d, std::min<size_t>(d->struct_size, sizeof(TsrDeviceInterface)));
  staged.plugin = host.record;
  s.devices.push_back(std::move(staged));
}

void register_kernel(HostContext& host, const TsrKernelDef* k) {
  const std::string who = "register_kernel";
  if (k == nullptr) fail(TSR_ERR_NULL_POINTER, who + ": kernel is NULL");
  check_struct_size(who, k->struct_size, sizeof(TsrKernelDef));
  if (k->op_name == nullptr) fail(TSR_ERR_NULL_POINTER, who + ": op_name is NULL");
  const std::string what = who + " '" + k->op_name + "'";
  if (k->device_type == nullptr) fail(TSR_ERR_NULL_POINTER, what + ": device_type is NULL");
  if (k->fn == nullptr) fail(TSR_ERR_NULL_POINTER, what + " on '" + k->device_type + "': fn is NULL");
  const int32_t op = op_lookup(k->op_name);
  if (op < 0) fail(TSR_ERR_INVALID_ARGUMENT, what + ": no op of that name in ops.def");
  if (kOpInfo[op].kind == OpKind::VIEW) {
    fail(TSR_ERR_INVALID_ARGUMENT, what + ": a view op has no kernels (the runtime does views)");
  }
  const uint32_t all = (1u << TSR_NUM_DTYPES) - 1;
  if (k->dtype_mask == 0 || (k->dtype_mask & ~all) != 0) {
    fail(TSR_ERR_INVALID_ARGUMENT,
         what + ": dtype_mask " + std::to_string(k->dtype_mask) + " is empty or has unknown dtype bits");
  }
  Staging& s = *host.staging;
  const std::string device = k->device_type;
  if (find_device(s, device) == nullptr) {
    fail(TSR_ERR_INVALID_ARGUMENT, what + ": device type '" + device + "' is not registered");
  }
  for (const auto& staged : s.kernels) {
    if (staged.op == op && staged.device == device) {
      fail(TSR_ERR_INVALID_ARGUMENT,
           what + " on '" + device + "': registered twice by " + describe(*host.record));
    }
  }
  if (const int32_t id = committed_id(*s.target, device); id >= 0) {
    const KernelSlot& held = s.target->kernels[op][id];
    if (held.fn != nullptr && held.plugin->priority == host.record->priority) {
      fail(TSR_ERR_INVALID_ARGUMENT, what + " on '" + device + "': registered by both " +
                                         describe(*held.plugin) + " and " + describe(*host.record) +
                                         " at the same priority " + std::to_string(host.record->priority));
    }
  }
  s.kernels.push_back({op, device, KernelSlot{k->fn, k->ctx, k->dtype_mask, host.record}});
}

// Catches everything: the callers are plugins, across a C ABI. A refusal is also logged,
// since a plugin that ignores the status would otherwise lose the kernel silently.
int32_t refused(void* host_ctx, int32_t status) {
  if (status != TSR_OK && host_ctx != nullptr) {
    log().warn("{}: {}", describe(*static_cast<HostContext*>(host_ctx)->record), last_error());
  }
  return status;
}
int32_t host_register_device(void* host_ctx, const TsrDeviceInterface* device) {
  return refused(host_ctx, guard([&] { register_device(host_of(host_ctx, "register_device"), device); }));
}
int32_t host_register_kernel(void* host_ctx, const TsrKernelDef* kernel) {
  return refused(host_ctx, guard([&] { register_kernel(host_of(host_ctx, "register_kernel"), kernel); }));
}
int32_t host_set_error(int32_t status, const char* message) {
  set_last_error(status, message != nullptr ? message : "(plugin gave no message)");
  return status;
}
void host_log(int32_t level, const char* message) {
  if (message == nullptr) return;
  static const spdlog::level::level_enum kLevels[] = {spdlog::level::trace, spdlog::level::debug,
                                                      spdlog::level::info, spdlog::level::warn,
                                                      spdlog::level::err};
  log().log(level >= TSR_LOG_TRACE && level <= TSR_LOG_ERROR ? kLevels[level] : spdlog::level::info, "{}",
            message);
}
int64_t host_option_int(void* host_ctx, const char* key, int64_t default_value) {
  auto* host = static_cast<HostContext*>(host_ctx);
  if (host == nullptr || key == nullptr) return default_value;
  const nlohmann::json& options = host->record->options;
  auto it = options.find(key);
  if (it == options.end()) return default_value;
  if (!it->is_number_integer()) {
    log().warn("{}: option \"{}\" is not an integer; using {}", describe(*host->record), key, default_value);
    return default_value;
  }
  return it->get<int64_t>();
}
void host_set_unavailable(void* host_ctx, const char* reason) {
  auto* host = static_cast<HostContext*>(host_ctx);
  if (host == nullptr) return;
  host->record->unavailable = reason != nullptr ? reason : "unavailable";
  log().info("{}: unavailable: {}", describe(*host->record), host->record->unavailable);
}

// Moves a plugin's staged devices and kernels into the registry. The checks were made
// at registration; here only the ids and the priority of kernel slots are settled.
void commit(Staging& s) {
  Registry& reg = *s.target;
  for (auto& d : s.devices) {
    int32_t id = d.name == "cpu" ? TSR_DEVICE_CPU : d.name == "cuda" ? TSR_DEVICE_CUDA : -1;
    for (int32_t i = TSR_DEVICE_FIRST_CUSTOM; id < 0 && i < TSR_MAX_DEVICE_TYPES; ++i) {
      if (!reg.devices[i]) id = i;
    }
    d.id = id;
    reg.devices[id] = std::make_unique<DeviceType>(std::move(d));
  }
  for (auto& k : s.kernels) {
    KernelSlot& slot = reg.kernels[k.op][committed_id(reg, k.device)];
    if (slot.fn == nullptr || k.slot.plugin->priority < slot.plugin->priority) {
      slot = k.slot;
    } else {
      log().debug("{}: kernel '{}' on '{}' not used: {} has priority", describe(*k.slot.plugin),
                  kOpInfo[k.op].name, k.device, describe(*slot.plugin));
    }
  }
}

// Whether the staged custom device types would overflow the device table.
bool device_table_full(const Staging& s) {
  int32_t free_slots = 0;
  for (int32_t i = TSR_DEVICE_FIRST_CUSTOM; i < TSR_MAX_DEVICE_TYPES; ++i)
    free_slots += !s.target->devices[i];
  int32_t custom = 0;
  for (const auto& d : s.devices) custom += d.name != "cpu" && d.name != "cuda";
  return custom > free_slots;
}

void unload(PluginRecord& p) {
  if (p.loaded && p.plugin->shutdown != nullptr) p.plugin->shutdown(p.ctx);
  if (p.handle != nullptr) dlclose(p.handle);
  p.handle = nullptr;
  p.plugin = nullptr;
  p.ctx = nullptr;
  p.loaded = false;
}

void forget_host(const PluginRecord* p) {
  std::erase_if(g_hosts, [&](const auto& h) { return h->record == p; });
}

// Loads one plugin into reg (named by the config, else by itself). Returns "" on success,
// else why it was refused (the caller then unloads it; nothing of it was committed).
std::string load_plugin(Registry& reg, PluginRecord& p, bool use_own_name) {
  p.handle = dlopen(p.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (p.handle == nullptr) {
    const char* err = dlerror();
    return err != nullptr ? err : "dlopen failed";
  }
  dlerror();
  auto entry = reinterpret_cast<TsrPluginEntryFn>(dlsym(p.handle, TSR_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    const char* err = dlerror();
    return std::string("no entry symbol " TSR_PLUGIN_ENTRY_SYMBOL ": ") + (err != nullptr ? err : "NULL");
  }
  const TsrPlugin* plugin = entry();
  if (plugin == nullptr) return TSR_PLUGIN_ENTRY_SYMBOL "() returned NULL";
  if (plugin->struct_size < 3 * sizeof(uint32_t)) {
    return "TsrPlugin.struct_size " + std::to_string(plugin->struct_size) + " is too small";
  }
  if (plugin->abi_major != TSR_PLUGIN_ABI_MAJOR || plugin->abi_minor > TSR_PLUGIN_ABI_MINOR) {
    return "plugin ABI " + std::to_string(plugin->abi_major) + "." + std::to_string(plugin->abi_minor) +
           ", runtime ABI " + std::to_string(TSR_PLUGIN_ABI_MAJOR) + "." +
           std::to_string(TSR_PLUGIN_ABI_MINOR);
  }
  if (plugin->struct_size < sizeof(TsrPlugin)) {
    return "TsrPlugin.struct_size " + std::to_string(plugin->struct_size) + " < " +
           std::to_string(sizeof(TsrPlugin));
  }
  if (plugin->init == nullptr) return "TsrPlugin.init is NULL";
  if (use_own_name && plugin->name != nullptr) p.name = plugin->name;
  p.version = plugin->version != nullptr ? plugin->version : "";
  p.plugin = plugin;

  Staging staging{&reg, {}, {}};
  auto host = std::make_unique<HostContext>();
  host->record = &p;
  host->staging = &staging;
  host->api = TsrHostApi{sizeof(TsrHostApi),   TSR_PLUGIN_ABI_MAJOR, TSR_PLUGIN_ABI_MINOR, host.get(),
                         host_register_device, host_register_kernel, host_set_error,       host_log,
                         host_option_int,      host_set_unavailable};
  set_last_error(TSR_OK, "");
  const int32_t status = plugin->init(&host->api, &p.ctx);
  host->staging = nullptr;
  if (status != TSR_OK) {
    const std::string message = last_error();
    return "init failed (status " + std::to_string(status) +
           "): " + (message.empty() ? "the plugin gave no message" : message);
  }
  p.loaded = true;  // from here on, unload() calls its shutdown
  if (device_table_full(staging)) {
    return "too many device types (at most " + std::to_string(TSR_MAX_DEVICE_TYPES) + ")";
  }
  commit(staging);
  g_hosts.push_back(std::move(host));
  return "";
}

// Shuts down and closes every loaded plugin, last loaded first.
void unload_all(Registry& reg) {
  for (auto it = reg.plugins.rbegin(); it != reg.plugins.rend(); ++it) {
    unload(**it);
    forget_host(it->get());
  }
}

}  // namespace

void runtime_init(const char* config_path) {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  if (registry().initialized) return;

  Config config = config_load(config_path);
  const char* env_level = std::getenv("TESSERA_LOG");
  if (env_level != nullptr && *env_level != '\0') {
    try {
      log_set_level(env_level);
    } catch (const Error& e) {
      fail(e.status(), std::string("$TESSERA_LOG: ") + e.what());
    }
  } else {
    try {
      log_set_level(config.log_level);
    } catch (const Error& e) {
      fail(e.status(), "config " + config.path + ": \"log_level\": " + e.what());
    }
  }

  auto next = std::make_unique<Registry>();
  next->config_path = config.path;
  next->fallback = config.fallback;
  for (const PluginConfig& pc : config.plugins) {
    auto record = std::make_unique<PluginRecord>();
    record->name = pc.name;
    record->path = pc.path;
    record->required = pc.required;
    record->priority = pc.priority;
    record->options = pc.options;
    if (record->name.empty()) record->name = std::filesystem::path(pc.path).stem().string();  // until loaded
    PluginRecord& p = *next->plugins.emplace_back(std::move(record));
    std::string error;
    try {
      error = load_plugin(*next, p, pc.name.empty());
    } catch (const std::exception& e) {  // out of memory while staging, and the like
      error = e.what();
    }
    if (error.empty()) {
      log().info("{}: loaded, version {}{}", describe(p), p.version,
                 p.unavailable.empty() ? "" : " (unavailable: " + p.unavailable + ")");
      continue;
    }
    unload(p);
    p.error = error;
    if (p.required) {
      const std::string message = describe(p) + " is required but was refused: " + error;
      unload_all(*next);
      fail(TSR_ERR_RUNTIME, message + " (config " + config.path + ")");
    }
    // A CPU-only build simply lacks the optional CUDA library: not worth a warning.
    const auto level = std::filesystem::exists(p.path) ? spdlog::level::warn : spdlog::level::info;
    log().log(level, "{}: skipped (optional): {}", describe(p), error);
  }
  if (config.fallback == Fallback::Cpu && !next->devices[TSR_DEVICE_CPU]) {
    log().warn("config {}: \"fallback\": \"cpu\" but no plugin registered the cpu device", config.path);
  }
  next->initialized = true;
  registry() = std::move(*next);
}

void runtime_shutdown() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  Registry& reg = registry();
  unload_all(reg);
  reg = Registry{};
}

int32_t device_type_id(const char* name) {
  return name != nullptr ? committed_id(registry(), name) : -1;
}

}  // namespace tessera
