// The registry as one JSON object: what tsr_info_json returns and tessera-info prints.
#include "registry.h"
#include "tessera/tessera.h"

namespace tessera {

nlohmann::json info_json() {
  using nlohmann::json;
  const Registry& reg = registry();
  json info = {
      {"abi", std::to_string(TSR_ABI_MAJOR) + "." + std::to_string(TSR_ABI_MINOR)},
      {"plugin_abi", std::to_string(TSR_PLUGIN_ABI_MAJOR) + "." + std::to_string(TSR_PLUGIN_ABI_MINOR)},
      {"initialized", reg.initialized},
      {"config", reg.config_path},
      {"fallback", reg.fallback == Fallback::Cpu ? "cpu" : "strict"},
  };

  json plugins = json::array();
  for (const auto& p : reg.plugins) {
    plugins.push_back({{"name", p->name},
                       {"path", p->path},
                       {"version", p->version},
                       {"loaded", p->loaded},
                       {"error", p->error},
                       {"unavailable", p->unavailable},
                       {"required", p->required},
                       {"priority", p->priority}});
  }
  info["plugins"] = plugins;

  json devices = json::array();
  json all_types = json::array();
  for (const auto& d : reg.devices) {
    if (!d) continue;
    devices.push_back(
        {{"type", d->name}, {"id", d->id}, {"count", d->iface.device_count}, {"plugin", d->plugin->name}});
    all_types.push_back(d->name);
  }
  info["devices"] = devices;

  // ops: op -> device types that can run it. Views need no kernel: every device type.
  // kernels: which plugin's kernel holds each (op, device type) slot, with its dtype mask.
  json ops = json::object();
  json views = json::array();
  json kernels = json::array();
  for (int32_t op = 0; op < kNumOps; ++op) {
    const char* name = kOpInfo[op].name;
    if (kOpInfo[op].kind == OpKind::VIEW) {
      ops[name] = all_types;
      views.push_back(name);
      continue;
    }
    json types = json::array();
    for (const auto& d : reg.devices) {
      if (!d) continue;
      const KernelSlot& slot = reg.kernels[op][d->id];
      if (slot.fn == nullptr) continue;
      types.push_back(d->name);
      kernels.push_back({{"op", name},
                         {"device", d->name},
                         {"plugin", slot.plugin->name},
                         {"dtype_mask", slot.dtype_mask}});
    }
    ops[name] = types;
  }
  info["ops"] = ops;
  info["views"] = views;
  info["kernels"] = kernels;
  return info;
}

}  // namespace tessera
