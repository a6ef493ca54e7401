// Intra-op thread pool of the CPU plugin (see thread_pool.h).
#include "thread_pool.h"

#include <sched.h>

#include <algorithm>

namespace tessera_cpu {

namespace {

// Spin iterations before parking: long enough to catch back-to-back ops, short enough
// not to steal a shared core for long.
constexpr int kSpinIterations = 4000;

// Tasks per thread for large jobs: threads claim tasks as they go, so a thread slowed down
// by other work on its core (a shared machine) does fewer of them instead of holding the
// job up.
constexpr int64_t kTasksPerThread = 4;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

thread_local bool ThreadPool::in_parallel_ = false;

int ThreadPool::default_num_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads : default_num_threads()) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on(const Job& job) {
  const uint64_t gen = uint64_t{job.generation} << 32;
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    if ((c & ~uint64_t{0xffffffff}) != gen || (c & 0xffffffff) >= job.num_tasks) return;
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
    const int64_t t = static_cast<int64_t>(c & 0xffffffff);
    const int64_t begin = job.n * t / job.num_tasks;
    const int64_t end = job.n * (t + 1) / job.num_tasks;
    job.fn(job.ctx, begin, end);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_cv_.notify_all();
    }
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, TaskFn fn, const void* ctx) {
  std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
  const int64_t by_grain = (n + grain - 1) / std::max<int64_t>(grain, 1);
  const uint32_t num_tasks = static_cast<uint32_t>(std::min<int64_t>(kTasksPerThread * num_threads_, by_grain));
  if (!submit.owns_lock() || num_tasks <= 1) {  // pool busy with another caller's job
    fn(ctx, 0, n);
    return;
  }
  Job job;
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job = {fn, ctx, n, num_tasks, generation_.load(std::memory_order_relaxed) + 1};
    job_ = job;
    pending_.store(num_tasks, std::memory_order_relaxed);
    claim_.store(uint64_t{job.generation} << 32, std::memory_order_release);
    generation_.store(job.generation, std::memory_order_release);
    wake = sleepers_ > 0;
  }
  if (wake) wake_cv_.notify_all();
  in_parallel_ = true;
  work_on(job);
  in_parallel_ = false;
  for (int i = 0; i < kSpinIterations; ++i) {
    if (pending_.load(std::memory_order_acquire) == 0) return;
    cpu_relax();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
}

void ThreadPool::worker_loop() {
  in_parallel_ = true;  // a kernel running here never fans out again
  uint32_t seen = 0;
  for (;;) {
    bool fresh = false;
    for (int i = 0; i < kSpinIterations && !fresh; ++i) {
      fresh = generation_.load(std::memory_order_acquire) != seen;
      if (!fresh) cpu_relax();
    }
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!fresh) {
        ++sleepers_;
        wake_cv_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
        --sleepers_;
      }
      if (stop_) return;
      job = job_;
    }
    seen = job.generation;
    work_on(job);
  }
}

}  // namespace tessera_cpu
