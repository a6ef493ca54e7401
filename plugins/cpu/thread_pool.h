// Intra-op thread pool of the CPU plugin: parallel_for over [0, n) with a grain size.
// Workers park on a condition variable after a short spin; the calling thread takes part.
// Work below one grain, nested calls and calls while another thread uses the pool run
// inline on the calling thread with no synchronization at all.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera_cpu {

class ThreadPool {
 public:
  // num_threads counts the calling thread; 0 means every core this process may use.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), each at least `grain` long
  // (except when n itself is shorter). The split depends only on n, grain and the thread
  // count; which thread runs which range does not matter to callers.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, const F& fn) {
    if (n <= grain || num_threads_ == 1 || in_parallel_) {
      fn(int64_t{0}, n);
      return;
    }
    run(n, grain, [](const void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); }, &fn);
  }

  static int default_num_threads();

 private:
  using TaskFn = void (*)(const void* ctx, int64_t begin, int64_t end);
  struct Job {
    TaskFn fn = nullptr;
    const void* ctx = nullptr;
    int64_t n = 0;
    uint32_t num_tasks = 0;
    uint32_t generation = 0;
  };

  void run(int64_t n, int64_t grain, TaskFn fn, const void* ctx);
  void worker_loop();
  void work_on(const Job& job);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one job at a time; others run inline
  std::mutex mutex_;         // guards job_, sleepers_, stop_ and the condition variables
  std::condition_variable wake_cv_;
  std::condition_variable done_cv_;
  Job job_;
  int sleepers_ = 0;
  bool stop_ = false;
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint64_t> claim_{0};     // (generation << 32) | next task index
  std::atomic<uint32_t> pending_{0};   // tasks of the current job not finished yet
  static thread_local bool in_parallel_;
};

}  // namespace tessera_cpu
