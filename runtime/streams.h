// Streams as the runtime sees them: each thread's current stream per device (handed to
// kernels and copies), and the record of a tensor's memory being used on a stream other than
// the one it was allocated on (so the plugin's allocator does not reuse it too early).
#pragma once

#include <atomic>

#include "tensor.h"

namespace tessera {

constexpr int32_t kMaxStreamDevices = 16;  // device ordinals with their own current stream

extern thread_local void* t_current_stream[TSR_MAX_DEVICE_TYPES][kMaxStreamDevices];
// Set once any thread makes a non-default stream current; until then no op checks streams.
extern std::atomic<bool> g_side_streams_used;

inline void* current_stream(TsrDevice d) {
  return static_cast<uint32_t>(d.type) < TSR_MAX_DEVICE_TYPES && static_cast<uint32_t>(d.index) < kMaxStreamDevices
             ? t_current_stream[d.type][d.index]
             : nullptr;
}

// Tells t's device that t's memory is used on the current stream when that is not the stream
// it was allocated on (once per storage and stream in a row).
void note_stream_use(TensorImpl& t);
inline void note_stream_uses(TensorImpl* const* ts, int32_t n) {
  if (!g_side_streams_used.load(std::memory_order_relaxed)) [[likely]] return;
  for (int32_t i = 0; i < n; ++i)
    if (ts[i]) note_stream_use(*ts[i]);
}

}  // namespace tessera
