// The host C ABI's device section (tessera.h, ABI 1.2): streams, events, allocator statistics
// and control, CUDA graphs and device options, each forwarded to the device type's plugin
// through its TsrDeviceInterface; plus the per-thread current stream the dispatcher hands to
// kernels, and the recording of a tensor's use on another stream.
#include <algorithm>
#include <cstring>
#include <string>

#include "error.h"
#include "registry.h"
#include "streams.h"
#include "tessera/tessera.h"

namespace tessera {

thread_local void* t_current_stream[TSR_MAX_DEVICE_TYPES][kMaxStreamDevices] = {};
std::atomic<bool> g_side_streams_used{false};

void note_stream_use(TensorImpl& t) {
  Storage& s = *t.storage_;
  void* cur = current_stream(t.device_);
  if (cur == s.stream_ || s.used_on_.load(std::memory_order_relaxed) == cur || s.borrowed_) return;
  const DeviceType* dt = device_type(t.device_.type);
  if (!dt || !dt->iface.record_stream) return;
  if (int32_t st = dt->iface.record_stream(dt->iface.ctx, t.device_.index, s.data_, cur); st != TSR_OK)
    fail(st, "[record_stream] " + describe(t) + ": " + last_error());
  s.used_on_.store(cur, std::memory_order_relaxed);
}

}  // namespace tessera

using namespace tessera;

namespace {

// The interface of `device` with member `fn` present, else NOT_IMPLEMENTED naming both.
template <class Fn>
const TsrDeviceInterface& iface_with(TsrDevice device, Fn TsrDeviceInterface::*member, const char* fn) {
  const TsrDeviceInterface& iface = device_iface(device, fn);
  if (!(iface.*member))
    fail(TSR_ERR_NOT_IMPLEMENTED, std::string("[") + fn + "] not supported on device " + device_str(device));
  return iface;
}

// Fails with the plugin's message, prefixed by the C function and the device.
void check(int32_t st, const char* fn, TsrDevice device) {
  if (st != TSR_OK) fail(st, std::string("[") + fn + "] " + device_str(device) + ": " + last_error());
}

void need(const void* p, const char* fn, const char* arg) {
  if (!p) fail(TSR_ERR_NULL_POINTER, std::string("[") + fn + "] argument '" + arg + "' is NULL");
}

// Calls the interface member with (ctx, device index, args...).
#define TSR_FORWARD(member, ...)                                                                   \
  guard([&, fn = __func__] {                                                                        \
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::member, fn);              \
    check(i.member(i.ctx, device.index, ##__VA_ARGS__), fn, device);                                \
  })

const DeviceType& type_named(const char* name, const char* fn) {
  need(name, fn, "device_type");
  int32_t id = device_type_id(name);
  const DeviceType* dt = device_type(id);
  if (!dt) {
    if (!registry().initialized) fail(TSR_ERR_NOT_INITIALIZED, std::string("[") + fn + "] tsr_init was not called");
    fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + fn + "] device type '" + name + "' is not available");
  }
  return *dt;
}

}  // namespace

extern "C" {

int32_t tsr_stream_create(TsrDevice device, int32_t priority, TsrStream* out) {
  return guard([&, fn = __func__] {
    need(out, fn, "out");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::stream_create, fn);
    check(i.stream_create(i.ctx, device.index, priority, out), fn, device);
  });
}
int32_t tsr_stream_destroy(TsrDevice device, TsrStream stream) {
  return guard([&, fn = __func__] {
    if (!stream) return;
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::stream_destroy, fn);
    check(i.stream_destroy(i.ctx, device.index, stream), fn, device);
  });
}
int32_t tsr_stream_synchronize(TsrDevice device, TsrStream stream) { return TSR_FORWARD(stream_synchronize, stream); }
int32_t tsr_stream_query(TsrDevice device, TsrStream stream, int32_t* idle) {
  return guard([&, fn = __func__] {
    need(idle, fn, "idle");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::stream_query, fn);
    check(i.stream_query(i.ctx, device.index, stream, idle), fn, device);
  });
}
int32_t tsr_stream_wait_event(TsrDevice device, TsrStream stream, TsrEvent event) {
  return guard([&, fn = __func__] {
    need(event, fn, "event");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::stream_wait_event, fn);
    check(i.stream_wait_event(i.ctx, device.index, stream, event), fn, device);
  });
}
int32_t tsr_set_current_stream(TsrDevice device, TsrStream stream) {
  return guard([&, fn = __func__] {
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::set_current_stream, fn);
    if (device.index >= kMaxStreamDevices)
      fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + fn + "] streams are supported on the first " +
                                         std::to_string(kMaxStreamDevices) + " devices of a type, not " +
                                         device_str(device));
    check(i.set_current_stream(i.ctx, device.index, stream), fn, device);
    t_current_stream[device.type][device.index] = stream;
    if (stream) g_side_streams_used.store(true, std::memory_order_relaxed);
  });
}
int32_t tsr_current_stream(TsrDevice device, TsrStream* out) {
  return guard([&, fn = __func__] {
    need(out, fn, "out");
    device_iface(device, fn);
    *out = current_stream(device);
  });
}
int32_t tsr_event_create(TsrDevice device, int32_t enable_timing, TsrEvent* out) {
  return guard([&, fn = __func__] {
    need(out, fn, "out");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::event_create, fn);
    check(i.event_create(i.ctx, device.index, enable_timing, out), fn, device);
  });
}
int32_t tsr_event_destroy(TsrDevice device, TsrEvent event) {
  return guard([&, fn = __func__] {
    if (!event) return;
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::event_destroy, fn);
    check(i.event_destroy(i.ctx, device.index, event), fn, device);
  });
}
int32_t tsr_event_record(TsrDevice device, TsrEvent event, TsrStream stream) {
  return guard([&, fn = __func__] {
    need(event, fn, "event");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::event_record, fn);
    check(i.event_record(i.ctx, device.index, event, stream), fn, device);
  });
}
int32_t tsr_event_synchronize(TsrDevice device, TsrEvent event) {
  return guard([&, fn = __func__] {
    need(event, fn, "event");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::event_synchronize, fn);
    check(i.event_synchronize(i.ctx, device.index, event), fn, device);
  });
}
int32_t tsr_event_query(TsrDevice device, TsrEvent event, int32_t* done) {
  return guard([&, fn = __func__] {
    need(event, fn, "event");
    need(done, fn, "done");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::event_query, fn);
    check(i.event_query(i.ctx, device.index, event, done), fn, device);
  });
}
int32_t tsr_event_elapsed_time(TsrDevice device, TsrEvent start, TsrEvent end, float* ms) {
  return guard([&, fn = __func__] {
    need(start, fn, "start");
    need(end, fn, "end");
    need(ms, fn, "ms");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::event_elapsed_ms, fn);
    check(i.event_elapsed_ms(i.ctx, device.index, start, end, ms), fn, device);
  });
}
int32_t tsr_record_stream(TsrTensor t, TsrStream stream) {
  return guard([&, fn = __func__] {
    need(t, fn, "t");
    const TsrDevice device = t->device_;
    Storage& s = *t->storage_;
    if (stream == s.stream_ || s.borrowed_) return;
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::record_stream, fn);
    check(i.record_stream(i.ctx, device.index, s.data_, stream), fn, device);
  });
}
int32_t tsr_memory_stats(TsrDevice device, TsrMemoryStats* stats) {
  return guard([&, fn = __func__] {
    need(stats, fn, "stats");
    if (stats->struct_size < sizeof(uint32_t) * 2)
      fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + fn + "] stats->struct_size is not set");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::memory_stats, fn);
    TsrMemoryStats full{};
    full.struct_size = sizeof(TsrMemoryStats);
    check(i.memory_stats(i.ctx, device.index, &full), fn, device);
    const uint32_t n = std::min<uint32_t>(stats->struct_size, sizeof(TsrMemoryStats));
    std::memcpy(stats, &full, n);
    stats->struct_size = n;
  });
}
int32_t tsr_reset_peak_memory_stats(TsrDevice device) { return TSR_FORWARD(reset_peak_stats); }
int32_t tsr_empty_cache(TsrDevice device) { return TSR_FORWARD(empty_cache); }
int32_t tsr_set_memory_fraction(TsrDevice device, double fraction) {
  return guard([&, fn = __func__] {
    if (!(fraction > 0.0 && fraction <= 1.0))
      fail(TSR_ERR_INVALID_ARGUMENT, std::string("[") + fn + "] fraction must be in (0, 1], got " +
                                         std::to_string(fraction));
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::set_memory_fraction, fn);
    check(i.set_memory_fraction(i.ctx, device.index, fraction), fn, device);
  });
}
int32_t tsr_memory_snapshot(TsrDevice device, const char** json) {
  return guard([&, fn = __func__] {
    need(json, fn, "json");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::memory_snapshot, fn);
    thread_local std::string text;
    size_t needed = 0;
    check(i.memory_snapshot(i.ctx, device.index, nullptr, 0, &needed), fn, device);
    for (int attempt = 0; attempt < 4; ++attempt) {  // blocks may come and go between the calls
      text.assign(needed + 4096, '\0');
      check(i.memory_snapshot(i.ctx, device.index, text.data(), text.size(), &needed), fn, device);
      if (needed <= text.size()) break;
    }
    text.resize(std::strlen(text.c_str()));
    *json = text.c_str();
  });
}
int32_t tsr_graph_capture_begin(TsrDevice device, TsrStream stream) { return TSR_FORWARD(graph_capture_begin, stream); }
int32_t tsr_graph_capture_end(TsrDevice device, TsrStream stream, TsrGraph* out) {
  return guard([&, fn = __func__] {
    need(out, fn, "out");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::graph_capture_end, fn);
    check(i.graph_capture_end(i.ctx, device.index, stream, out), fn, device);
  });
}
int32_t tsr_graph_replay(TsrDevice device, TsrGraph graph, TsrStream stream) {
  return guard([&, fn = __func__] {
    need(graph, fn, "graph");
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::graph_replay, fn);
    check(i.graph_replay(i.ctx, device.index, graph, stream), fn, device);
  });
}
int32_t tsr_graph_destroy(TsrDevice device, TsrGraph graph) {
  return guard([&, fn = __func__] {
    if (!graph) return;
    const TsrDeviceInterface& i = iface_with(device, &TsrDeviceInterface::graph_destroy, fn);
    check(i.graph_destroy(i.ctx, device.index, graph), fn, device);
  });
}
int32_t tsr_device_set_option(const char* device_type, const char* key, int64_t value) {
  return guard([&, fn = __func__] {
    const DeviceType& dt = type_named(device_type, fn);
    need(key, fn, "key");
    if (!dt.iface.set_option)
      fail(TSR_ERR_NOT_IMPLEMENTED, std::string("[") + fn + "] device type '" + dt.name + "' has no options");
    if (int32_t st = dt.iface.set_option(dt.iface.ctx, key, value); st != TSR_OK)
      fail(st, std::string("[") + fn + "] " + dt.name + ": " + last_error());
  });
}
int32_t tsr_device_get_option(const char* device_type, const char* key, int64_t* value) {
  return guard([&, fn = __func__] {
    const DeviceType& dt = type_named(device_type, fn);
    need(key, fn, "key");
    need(value, fn, "value");
    if (!dt.iface.get_option)
      fail(TSR_ERR_NOT_IMPLEMENTED, std::string("[") + fn + "] device type '" + dt.name + "' has no options");
    if (int32_t st = dt.iface.get_option(dt.iface.ctx, key, value); st != TSR_OK)
      fail(st, std::string("[") + fn + "] " + dt.name + ": " + last_error());
  });
}

}  // extern "C"
