// The conformance suite: every op of ops.def x every dtype its types column allows x every
// device type the config loaded, against float64 references computed in this program.
// Prints a summary table (ok / unsup / part / FAIL) and exits non-zero on any failure or
// on an op of ops.def that has no conformance case.
//
// Usage: conformance [--config PATH] [--op NAME]...
// Without --config, tsr_init(NULL) reads $TESSERA_CONFIG, else the build tree's default.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "harness.h"

using namespace conf;

namespace {

// The typed entry points of each op, by kind (tessera.h generates them from ops.def).
#define CONF_FNS_UNARY(n) {.unary = tsr_##n}
#define CONF_FNS_BINARY(n) {.binary = tsr_##n, .binary_scalar = tsr_##n##_scalar}
#define CONF_FNS_COMPARE(n) CONF_FNS_BINARY(n)
#define CONF_FNS_WHERE(n) {.where = tsr_##n}
#define CONF_FNS_CLAMP(n) {.clamp = tsr_##n}
#define CONF_FNS_COPY(n) {.copy = tsr_##n##_}
#define CONF_FNS_FILL(n) {.fill = tsr_##n##_}
#define CONF_FNS_ARANGE(n) {.arange = tsr_##n}
#define CONF_FNS_REDUCE(n) {.reduce = tsr_##n}
#define CONF_FNS_SOFTMAX(n) {.softmax = tsr_##n}
#define CONF_FNS_MATMUL(n) {.matmul = tsr_##n}
#define CONF_FNS_RANDOM(n) {.random = tsr_##n##_}
#define CONF_FNS_VIEW(n) {}
#define CONF_FNS_CONV(n) {}
#define CONF_FNS_POOL(n) {}
#define CONF_FNS_OPTIM(n) {}
#define CONF_FNS_NN(n) {}
#define CONF_FNS_INDEX(n) {}
#define CONF_FNS_SAMPLE(n) {}
#define CONF_FNS_FOREACH(n) {}
#define CONF_FNS_COMPOSITE(n) {}

enum : int32_t {
#define TSR_OP(name, kind, types, diff) kId_##name,
#include "tessera/ops.def"
#undef TSR_OP
  kNumOps
};

const OpEntry kOps[kNumOps] = {
#define TSR_OP(name, kind, types, diff) {#name, kId_##name, Kind::kind, Types::types, CONF_FNS_##kind(name)},
#include "tessera/ops.def"
#undef TSR_OP
};

std::optional<Case> find_case(const OpEntry& op) {
  for (auto find : {find_elementwise_case, find_reduction_case, find_random_case, find_view_case, find_nn_case,
                     find_transformer_nn_case, find_transformer_index_case})
    if (std::optional<Case> c = find(op)) return c;
  return std::nullopt;
}

// Device types from tsr_info_json's "devices" (an array of names or objects, or an object
// keyed by type), each at index 0; the CPU when the runtime says nothing usable.
std::vector<TsrDevice> loaded_devices() {
  std::set<std::string> types;
  const char* text = nullptr;
  if (tsr_info_json(&text) == TSR_OK && text) {
    nlohmann::json info = nlohmann::json::parse(text, nullptr, false);
    if (info.is_object() && info.contains("devices")) {
      auto add = [&](const nlohmann::json& d, std::string name) {
        if (d.is_string()) name = d.get<std::string>();
        for (const char* key : {"type", "name"})
          if (d.is_object() && d.contains(key) && d[key].is_string()) {
            name = d[key].get<std::string>();
            break;
          }
        name = name.substr(0, name.find(':'));
        if (!name.empty()) types.insert(name);
      };
      const nlohmann::json& devices = info["devices"];
      if (devices.is_array())
        for (const auto& d : devices) add(d, "");
      else if (devices.is_object())
        for (const auto& [key, d] : devices.items()) add(d, key);
    }
  }
  if (types.empty()) types.insert("cpu");
  std::vector<TsrDevice> out;
  for (const std::string& name : types) {
    int32_t count = 0;
    TsrDevice dev{};
    if (tsr_device_count(name.c_str(), &count) == TSR_OK && count > 0 && tsr_device_parse(name.c_str(), &dev) == TSR_OK)
      out.push_back(TsrDevice{dev.type, 0});
  }
  std::sort(out.begin(), out.end(), [](TsrDevice a, TsrDevice b) { return a.type < b.type; });
  return out;
}

std::string device_str(TsrDevice d) {
  char buf[32] = "?";
  tsr_device_name(d, buf, sizeof buf);
  return buf;
}

const char* cell_str(const CellResult& c) {
  if (!c.ran) return "-";
  if (c.failed) return "FAIL";
  if (c.unsupported && !c.ok) return "unsup";
  return c.unsupported ? "part" : "ok";
}

}  // namespace

int main(int argc, char** argv) {
  const char* config = nullptr;
  std::set<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
    else if (!std::strcmp(argv[i], "--op") && i + 1 < argc) only.insert(argv[++i]);
    else return std::fprintf(stderr, "usage: %s [--config PATH] [--op NAME]...\n", argv[0]), 2;
  }
  if (tsr_init(config) != TSR_OK) return std::printf("FAIL tsr_init: %s\n", tsr_last_error()), 1;

  int failures = 0;
  // The runtime's op table is ops.def, in order.
  if (tsr_op_count() != kNumOps) {
    std::printf("FAIL tsr_op_count() is %d, ops.def has %d ops\n", tsr_op_count(), static_cast<int>(kNumOps));
    ++failures;
  }
  for (const OpEntry& op : kOps) {
    int32_t id = -1;
    if (tsr_op_lookup(op.name, &id) != TSR_OK || id != op.id || !tsr_op_name(op.id) || std::strcmp(tsr_op_name(op.id), op.name)) {
      std::printf("FAIL op %s is id %d in ops.def, the runtime says %d\n", op.name, op.id, id);
      ++failures;
    }
  }

  std::vector<TsrDevice> devices = loaded_devices();
  std::printf("conformance: %d ops on", static_cast<int>(kNumOps));
  for (TsrDevice d : devices) std::printf(" %s", device_str(d).c_str());
  std::printf("\n");

  // results[op][device][dtype]
  std::vector<std::vector<std::vector<CellResult>>> results(
      kNumOps, std::vector<std::vector<CellResult>>(devices.size(), std::vector<CellResult>(TSR_NUM_DTYPES)));
  std::set<std::string> missing;
  for (const OpEntry& op : kOps) {
    if (!only.empty() && !only.count(op.name)) continue;
    std::optional<Case> c = find_case(op);
    if (!c) {
      missing.insert(op.name);
      std::printf("FAIL no conformance case for op %s\n", op.name);
      ++failures;
      continue;
    }
    for (size_t di = 0; di < devices.size(); ++di)
      for (int32_t dt = 0; dt < TSR_NUM_DTYPES; ++dt) {
        if (!(c->dtype_mask & TSR_DTYPE_BIT(dt))) continue;
        Ctx ctx(op, dt, devices[di], results[op.id][di][dt]);
        c->run(ctx);
      }
  }

  // The summary table: op x device rows, dtype columns.
  std::printf("\n%-12s %-8s", "op", "device");
  for (int32_t dt = 0; dt < TSR_NUM_DTYPES; ++dt) std::printf(" %-8s", dtype_str(dt));
  std::printf("\n");
  int cells[4] = {0, 0, 0, 0};  // ok, part, unsup, FAIL
  int checks = 0;
  std::vector<std::string> unsupported;
  for (const OpEntry& op : kOps) {
    if (!only.empty() && !only.count(op.name)) continue;
    for (size_t di = 0; di < devices.size(); ++di) {
      std::printf("%-12s %-8s", op.name, device_str(devices[di]).c_str());
      for (int32_t dt = 0; dt < TSR_NUM_DTYPES; ++dt) {
        const CellResult& r = results[op.id][di][dt];
        std::string s = missing.count(op.name) ? "NOCASE" : cell_str(r);
        std::printf(" %-8s", s.c_str());
        if (!r.ran) continue;
        failures += r.failed;
        checks += r.ok + r.failed;
        ++cells[s == "ok" ? 0 : s == "part" ? 1 : s == "unsup" ? 2 : 3];
        if (r.unsupported)
          unsupported.push_back(std::string(op.name) + " " + dtype_str(dt) + " on " + device_str(devices[di]) + ": " +
                                r.unsupported_variants.front() +
                                (r.unsupported_variants.size() > 1 ? " (+" + std::to_string(r.unsupported_variants.size() - 1) + " more)" : ""));
      }
      std::printf("\n");
    }
  }
  if (!unsupported.empty()) {
    std::printf("\nnot implemented (TSR_ERR_NOT_IMPLEMENTED; reported, not a failure):\n");
    for (const std::string& u : unsupported) std::printf("  %s\n", u.c_str());
  }
  std::printf("\ncells: %d ok, %d partly supported, %d unsupported, %d FAIL; %d checks, %d failed\n", cells[0], cells[1],
              cells[2], cells[3], checks, failures);
  tsr_shutdown();
  return failures ? 1 : 0;
}
