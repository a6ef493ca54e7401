// The CUDA plugin's stream-ordered caching allocator, one per device: small and large pools,
// block splitting and merging, cross-stream reuse only after events say it is safe, a
// memory-fraction cap, out-of-memory retry after freeing the cache, statistics, a JSON
// snapshot, and graph-private pools for CUDA graph capture.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "tessera/plugin.h"

namespace tcu {

struct Block;
struct Pool;

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device);
  ~DeviceAllocator();

  // nbytes on `stream`'s order; nullptr and *oom_msg set when the device is out of memory.
  void* allocate(size_t nbytes, cudaStream_t stream, std::string* oom_msg);
  void free(void* p);
  // p is used on `stream` too: its reuse after free waits for that stream's work.
  void record_stream(void* p, cudaStream_t stream);
  void stats(TsrMemoryStats* out);
  void reset_peak();
  void empty_cache();
  void set_fraction(double f);
  std::string snapshot();

  // Graph capture on `stream`: its allocations go to a new private pool until end_capture,
  // which returns the pool (owned by the graph, released by release_pool).
  void begin_capture(cudaStream_t stream);
  Pool* end_capture(cudaStream_t stream);
  void release_pool(Pool* pool);

 private:
  using FreeSet = std::set<Block*, bool (*)(const Block*, const Block*)>;

  Pool* pool_for(cudaStream_t stream);
  Block* find_free(FreeSet& set, cudaStream_t stream, size_t size);
  Block* new_segment(Pool* pool, bool small, size_t size, cudaStream_t stream, std::string* oom_msg);
  bool cuda_malloc(void** p, size_t size);
  void release_cached(Pool* pool);  // cudaFree every fully free segment of pool (nullptr: the global one)
  void insert_free(Block* b);       // merge with free neighbours and put in the free set
  void process_events();
  void free_pool_if_done(Pool* pool);

  const int device_;
  std::mutex mu_;
  Pool* global_;
  std::vector<Pool*> private_pools_;
  std::unordered_map<cudaStream_t, Pool*> capturing_;
  std::unordered_map<void*, Block*> active_;  // allocated blocks by address
  std::vector<std::pair<cudaEvent_t, Block*>> pending_;  // frees waiting for other streams
  std::vector<cudaEvent_t> spare_events_;
  size_t total_ = 0;
  size_t limit_ = 0;  // 0: no cap
  // statistics
  int64_t allocated_ = 0, reserved_ = 0, peak_allocated_ = 0, peak_reserved_ = 0;
  int64_t num_allocs_ = 0, num_device_allocs_ = 0, num_ooms_ = 0, num_retries_ = 0;
};

}  // namespace tcu
