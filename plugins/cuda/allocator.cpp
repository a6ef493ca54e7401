// The caching allocator (allocator.h). Requests are rounded to 512 bytes; up to 1 MiB they
// come from 2 MiB segments (the small pool), larger ones from 20 MiB segments or their own
// 2 MiB-rounded segment (the large pool). A free block is reused only by a request on the
// stream it was allocated on (stream order makes that safe without waiting) unless other
// streams used it: then events recorded at free time must complete first. Neighbouring free
// blocks of a segment merge; fully free segments go back to the device on empty_cache or
// when cudaMalloc fails (then it retries once).
#include "allocator.h"

#include <algorithm>
#include <cstdio>

namespace tcu {

namespace {
constexpr size_t kMinBlock = 512;
constexpr size_t kSmallSize = size_t{1} << 20;     // requests up to this use the small pool
constexpr size_t kSmallSegment = size_t{2} << 20;
constexpr size_t kLargeSegment = size_t{20} << 20;  // segment for requests under kMinLargeAlloc
constexpr size_t kMinLargeAlloc = size_t{10} << 20;
constexpr size_t kRoundLarge = size_t{2} << 20;

size_t round_size(size_t n) { return n < kMinBlock ? kMinBlock : (n + kMinBlock - 1) / kMinBlock * kMinBlock; }
double mib(int64_t b) { return static_cast<double>(b) / (1 << 20); }
}  // namespace

struct Block {
  char* ptr = nullptr;
  size_t size = 0;
  cudaStream_t stream = nullptr;
  Pool* pool = nullptr;
  bool small = false;
  bool allocated = false;
  Block* prev = nullptr;  // neighbours within the segment
  Block* next = nullptr;
  int pending = 0;                   // events still to complete before it is free
  std::vector<cudaStream_t> uses;    // other streams it was used on
};

struct Pool {
  bool is_private = false;
  bool dead = false;  // its graph is gone: release when nothing is allocated from it
  int64_t live = 0;   // allocated blocks
  std::set<Block*, bool (*)(const Block*, const Block*)> small{&Pool::less}, large{&Pool::less};
  std::set<Block*> segments;  // segment heads
  static bool less(const Block* a, const Block* b) {
    if (a->stream != b->stream) return a->stream < b->stream;
    if (a->size != b->size) return a->size < b->size;
    return a->ptr < b->ptr;
  }
};


DeviceAllocator::DeviceAllocator(int device) : device_(device), global_(new Pool) {
  size_t free_b = 0, total_b = 0;
  int prev = -1;
  cudaGetDevice(&prev);
  if (prev != device_) cudaSetDevice(device_);
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) total_ = total_b;
  cudaGetLastError();
  if (prev >= 0 && prev != device_) cudaSetDevice(prev);
}

DeviceAllocator::~DeviceAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [ev, b] : pending_) cudaEventDestroy(ev);
  for (cudaEvent_t ev : spare_events_) cudaEventDestroy(ev);
  // Memory still held by tensors is left to the driver's teardown.
  release_cached(global_);
  for (Pool* p : private_pools_) release_cached(p);
}

Pool* DeviceAllocator::pool_for(cudaStream_t stream) {
  if (!capturing_.empty()) {
    auto it = capturing_.find(stream);
    if (it != capturing_.end()) return it->second;
  }
  return global_;
}

Block* DeviceAllocator::find_free(FreeSet& set, cudaStream_t stream, size_t size) {
  Block key;
  key.stream = stream;
  key.size = size;
  auto it = set.lower_bound(&key);
  if (it == set.end() || (*it)->stream != stream) return nullptr;
  Block* b = *it;
  // A huge cached block is not carved up for a much smaller large request.
  if (!b->small && b->size >= kMinLargeAlloc * 4 && size < b->size / 4) return nullptr;
  set.erase(it);
  return b;
}

bool DeviceAllocator::cuda_malloc(void** p, size_t size) {
  int prev = -1;
  cudaGetDevice(&prev);
  if (prev != device_) cudaSetDevice(device_);
  cudaError_t e = cudaMalloc(p, size);
  if (e != cudaSuccess) cudaGetLastError();  // not sticky, but clear it for the next check
  if (prev >= 0 && prev != device_) cudaSetDevice(prev);
  return e == cudaSuccess;
}

Block* DeviceAllocator::new_segment(Pool* pool, bool small, size_t size, cudaStream_t stream, std::string* oom_msg) {
  const size_t seg = small ? kSmallSegment : size < kMinLargeAlloc ? kLargeSegment
                                                                   : (size + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
  const bool any_capture = !capturing_.empty();
  auto over_limit = [&] { return limit_ != 0 && static_cast<size_t>(reserved_) + seg > limit_; };
  void* p = nullptr;
  bool ok = !over_limit() && cuda_malloc(&p, seg);
  if (!ok && !any_capture) {  // cudaFree is not allowed while a graph is being captured
    ++num_retries_;
    release_cached(global_);
    ok = !over_limit() && cuda_malloc(&p, seg);
  }
  if (!ok) {
    ++num_ooms_;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    char msg[400];
    std::snprintf(msg, sizeof msg,
                  "CUDA out of memory: tried to allocate %.2f MiB on cuda:%d (%.2f MiB allocated by tensors, "
                  "%.2f MiB reserved by Tessera, %.2f MiB free of %.2f MiB on the device%s%s)",
                  mib(static_cast<int64_t>(size)), device_, mib(allocated_), mib(reserved_),
                  mib(static_cast<int64_t>(free_b)), mib(static_cast<int64_t>(total_b)),
                  limit_ ? ", memory fraction cap " : "",
                  limit_ ? (std::to_string(static_cast<long long>(limit_ >> 20)) + " MiB").c_str() : "");
    if (oom_msg) *oom_msg = msg;
    return nullptr;
  }
  ++num_device_allocs_;
  reserved_ += static_cast<int64_t>(seg);
  peak_reserved_ = std::max(peak_reserved_, reserved_);
  Block* b = new Block;
  b->ptr = static_cast<char*>(p);
  b->size = seg;
  b->stream = stream;
  b->pool = pool;
  b->small = small;
  pool->segments.insert(b);
  return b;
}

void* DeviceAllocator::allocate(size_t nbytes, cudaStream_t stream, std::string* oom_msg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending_.empty()) process_events();
  Pool* pool = pool_for(stream);
  const size_t size = round_size(nbytes);
  const bool small = size <= kSmallSize;
  auto& set = small ? pool->small : pool->large;
  Block* b = find_free(set, stream, size);
  if (!b) b = new_segment(pool, small, size, stream, oom_msg);
  if (!b) return nullptr;
  const size_t rest = b->size - size;
  if (rest >= (small ? kMinBlock : kSmallSize + 1)) {  // split off the remainder
    Block* r = new Block;
    r->ptr = b->ptr + size;
    r->size = rest;
    r->stream = stream;
    r->pool = pool;
    r->small = small;
    r->prev = b;
    r->next = b->next;
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    set.insert(r);
  }
  b->allocated = true;
  active_[b->ptr] = b;
  ++pool->live;
  ++num_allocs_;
  allocated_ += static_cast<int64_t>(b->size);
  peak_allocated_ = std::max(peak_allocated_, allocated_);
  return b->ptr;
}

void DeviceAllocator::free(void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = active_.find(p);
  if (it == active_.end()) return;  // not ours: ignore rather than corrupt the pools
  Block* b = it->second;
  active_.erase(it);
  allocated_ -= static_cast<int64_t>(b->size);
  for (cudaStream_t s : b->uses) {
    cudaEvent_t ev;
    if (!spare_events_.empty()) {
      ev = spare_events_.back();
      spare_events_.pop_back();
    } else if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      cudaStreamSynchronize(s);  // no event to wait on: wait now
      continue;
    }
    if (cudaEventRecord(ev, s) != cudaSuccess) {
      cudaGetLastError();
      spare_events_.push_back(ev);
      cudaStreamSynchronize(s);
      continue;
    }
    ++b->pending;
    pending_.emplace_back(ev, b);
  }
  b->uses.clear();
  Pool* pool = b->pool;
  --pool->live;
  if (b->pending == 0) insert_free(b);
  if (pool->dead) free_pool_if_done(pool);
}

void DeviceAllocator::record_stream(void* p, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = active_.find(p);
  if (it == active_.end()) return;
  Block* b = it->second;
  if (stream == b->stream || b->pool->is_private) return;  // a graph's pool is ordered by the graph
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &cs) != cudaSuccess) cudaGetLastError();
  if (cs != cudaStreamCaptureStatusNone) return;
  if (std::find(b->uses.begin(), b->uses.end(), stream) == b->uses.end()) b->uses.push_back(stream);
}

void DeviceAllocator::insert_free(Block* b) {
  b->allocated = false;
  auto& set = b->small ? b->pool->small : b->pool->large;
  if (Block* pr = b->prev; pr && !pr->allocated) {
    set.erase(pr);
    pr->size += b->size;
    pr->next = b->next;
    if (b->next) b->next->prev = pr;
    delete b;
    b = pr;
  }
  if (Block* nx = b->next; nx && !nx->allocated) {
    set.erase(nx);
    b->size += nx->size;
    b->next = nx->next;
    if (nx->next) nx->next->prev = b;
    delete nx;
  }
  set.insert(b);
}

void DeviceAllocator::process_events() {
  size_t keep = 0;
  for (size_t i = 0; i < pending_.size(); ++i) {
    auto [ev, b] = pending_[i];
    cudaError_t e = cudaEventQuery(ev);
    if (e == cudaErrorNotReady) {
      cudaGetLastError();
      pending_[keep++] = pending_[i];
      continue;
    }
    if (e != cudaSuccess) cudaGetLastError();
    spare_events_.push_back(ev);
    if (--b->pending == 0) {
      Pool* pool = b->pool;
      insert_free(b);
      if (pool->dead) free_pool_if_done(pool);
    }
  }
  pending_.resize(keep);
}

void DeviceAllocator::release_cached(Pool* pool) {
  for (auto* set : {&pool->small, &pool->large}) {
    for (auto it = set->begin(); it != set->end();) {
      Block* b = *it;
      if (b->prev == nullptr && b->next == nullptr) {  // a whole free segment
        int prev = -1;
        cudaGetDevice(&prev);
        if (prev != device_) cudaSetDevice(device_);
        if (cudaFree(b->ptr) != cudaSuccess) cudaGetLastError();
        if (prev >= 0 && prev != device_) cudaSetDevice(prev);
        reserved_ -= static_cast<int64_t>(b->size);
        pool->segments.erase(b);
        delete b;
        it = set->erase(it);
      } else {
        ++it;
      }
    }
  }
}

void DeviceAllocator::free_pool_if_done(Pool* pool) {
  if (!pool->dead || pool->live != 0) return;
  for (auto& [ev, b] : pending_)
    if (b->pool == pool) return;
  release_cached(pool);
  private_pools_.erase(std::remove(private_pools_.begin(), private_pools_.end(), pool), private_pools_.end());
  delete pool;
}

void DeviceAllocator::stats(TsrMemoryStats* out) {
  std::lock_guard<std::mutex> lock(mu_);
  out->allocated = allocated_;
  out->reserved_bytes = reserved_;
  out->peak_allocated = peak_allocated_;
  out->peak_reserved = peak_reserved_;
  out->num_allocs = num_allocs_;
  out->num_device_allocs = num_device_allocs_;
  out->num_ooms = num_ooms_;
  out->num_retries = num_retries_;
  out->limit = static_cast<int64_t>(limit_);
  out->total = static_cast<int64_t>(total_);
}

void DeviceAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_allocated_ = allocated_;
  peak_reserved_ = reserved_;
}

void DeviceAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending_.empty()) process_events();
  if (capturing_.empty()) release_cached(global_);
}

void DeviceAllocator::set_fraction(double f) {
  std::lock_guard<std::mutex> lock(mu_);
  limit_ = f >= 1.0 ? 0 : static_cast<size_t>(f * static_cast<double>(total_));
}

std::string DeviceAllocator::snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s = "{\"device\": " + std::to_string(device_) + ", \"segments\": [";
  bool first_seg = true;
  auto dump = [&](Pool* pool, const char* kind) {
    for (Block* head : pool->segments) {
      size_t total = 0;
      std::string blocks;
      for (Block* b = head; b; b = b->next) {
        total += b->size;
        char buf[160];
        std::snprintf(buf, sizeof buf, "%s{\"address\": %llu, \"size\": %zu, \"state\": \"%s\"}",
                      blocks.empty() ? "" : ", ", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(b->ptr)),
                      b->size, b->allocated ? (b->pending ? "pending_free" : "active") : "inactive");
        blocks += buf;
      }
      char head_buf[200];
      std::snprintf(head_buf, sizeof head_buf,
                    "%s{\"address\": %llu, \"total_size\": %zu, \"stream\": %llu, \"pool\": \"%s\", \"segment_type\": "
                    "\"%s\", \"blocks\": [",
                    first_seg ? "" : ", ", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(head->ptr)),
                    total, static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(head->stream)), kind,
                    head->small ? "small" : "large");
      s += head_buf + blocks + "]}";
      first_seg = false;
    }
  };
  dump(global_, "global");
  for (Pool* p : private_pools_) dump(p, "graph");
  char tail[200];
  std::snprintf(tail, sizeof tail, "], \"allocated\": %lld, \"reserved\": %lld, \"limit\": %zu}",
                static_cast<long long>(allocated_), static_cast<long long>(reserved_), limit_);
  return s + tail;
}

void DeviceAllocator::begin_capture(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Pool* p = new Pool;
  p->is_private = true;
  private_pools_.push_back(p);
  capturing_[stream] = p;
}

Pool* DeviceAllocator::end_capture(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = capturing_.find(stream);
  if (it == capturing_.end()) return nullptr;
  Pool* p = it->second;
  capturing_.erase(it);
  return p;
}

void DeviceAllocator::release_pool(Pool* pool) {
  if (!pool) return;
  std::lock_guard<std::mutex> lock(mu_);
  pool->dead = true;
  free_pool_if_done(pool);
}

}  // namespace tcu
