// Autograd from several threads at once: each builds and runs backward on graphs of its own
// while all accumulate into one shared leaf. No global lock, no update lost. Its own small
// program (autograd_threads) so that tools/check can build and run it under ThreadSanitizer.
#include <atomic>
#include <thread>

#include "helpers.h"

TEST(AutogradThreads, IndependentGraphsAndASharedLeaf) {
  constexpr int kThreads = 4, kIters = 300;
  Owned shared = make(std::vector<double>{0, 0, 0}, {3}, TSR_FLOAT64);
  ASSERT_OK(tsr_set_requires_grad(shared, 1));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        double v = t + 1;
        Owned x = make(std::vector<double>{v, 2 * v, 3 * v}, {3}, TSR_FLOAT64), p, q, e, s;
        bool ok = tsr_set_requires_grad(x, 1) == TSR_OK;
        // s = sum(x * shared + x * x): d/dx = shared + 2x, d/dshared = x
        ok = ok && tsr_mul(x, shared, p.out()) == TSR_OK && tsr_mul(x, x, q.out()) == TSR_OK &&
             tsr_add(p, q, e.out()) == TSR_OK && tsr_sum(e, nullptr, 0, 0, s.out()) == TSR_OK;
        TsrTensor root = s;
        ok = ok && tsr_backward(&root, nullptr, 1, 0) == TSR_OK;
        Owned g;
        ok = ok && tsr_grad(x, g.out()) == TSR_OK && g.t;
        if (ok) {
          double h[3];
          ok = tsr_copy_to_host(g, h, sizeof h) == TSR_OK && h[0] == 2 * v && h[1] == 4 * v && h[2] == 6 * v;
        }
        if (!ok) failures.fetch_add(1);
      }
    });
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  double total = 0;  // sum over threads and iterations of x = (v, 2v, 3v)
  for (int t = 0; t < kThreads; ++t) total += (t + 1) * kIters;
  Owned g;
  ASSERT_OK(tsr_grad(shared, g.out()));
  EXPECT_EQ(read<double>(g), (std::vector<double>{total, 2 * total, 3 * total}));
}
