// Random fills of the CPU plugin: uniform, normal and bernoulli from Philox4x32-10 (cpu.h)
// with exactly the counter layout plugin.h specifies, so results depend only on (seed, offset)
// and the element's row-major index, never on how threads split the work.
#include "cpu.h"

namespace tessera_cpu {
namespace {

constexpr int64_t kBlock = 1024;
constexpr int64_t kGrain = 16384;

TSR_INLINE double to_unit(uint32_t x) { return (static_cast<double>(x) + 0.5) * 0x1.0p-32; }

enum class Dist { Uniform, Normal, Bernoulli };

template <Dist kDist>
void random_body(const TsrKernelArgs* a) {
  State& st = state_of(a);
  TsrTensorDesc& out = a->outputs[0];
  const TsrAttrs& at = *a->attrs;
  const double p1 = scalar_as<double>(at.scalar), p2 = scalar_as<double>(at.scalar2);
  const uint64_t seed = at.seed, offset = at.offset;
  constexpr int64_t kPerCounter = kDist == Dist::Normal ? 2 : 4;  // elements per Philox call
  const TsrTensorDesc* descs[1] = {&out};
  NdIter it;
  it.init(descs, 1, false);  // row-major order: pos is the element index i
  st.pool.parallel_for(it.numel, kGrain, [&](int64_t begin, int64_t end) {
    double buf[kBlock];
    it.for_each_run(begin, end, [&](char* const* p, const int64_t* s, int64_t n, int64_t pos) {
      for (int64_t off = 0; off < n; off += kBlock) {
        const int64_t m = std::min(kBlock, n - off);
        uint32_t lanes[4];
        int64_t current = -1;
        for (int64_t j = 0; j < m; ++j) {
          const int64_t i = pos + off + j;
          if (i / kPerCounter != current) {
            current = i / kPerCounter;
            philox4x32_10(seed, offset + static_cast<uint64_t>(current), lanes);
          }
          if constexpr (kDist == Dist::Normal) {
            const int lane = static_cast<int>(i % 2) * 2;
            const double u1 = to_unit(lanes[lane]), u2 = to_unit(lanes[lane + 1]);
            buf[j] = p1 + p2 * (std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
          } else if constexpr (kDist == Dist::Uniform) {
            buf[j] = p1 + (p2 - p1) * to_unit(lanes[i % 4]);
          } else {
            buf[j] = to_unit(lanes[i % 4]) < p1 ? 1.0 : 0.0;
          }
        }
        store_run(TSR_FLOAT64, out.dtype, buf, m, p[0] + off * s[0], s[0]);
      }
    });
  });
}

}  // namespace

int32_t kernel_uniform(const TsrKernelArgs* a) { return run_kernel(a, &random_body<Dist::Uniform>); }
int32_t kernel_normal(const TsrKernelArgs* a) { return run_kernel(a, &random_body<Dist::Normal>); }
int32_t kernel_bernoulli(const TsrKernelArgs* a) { return run_kernel(a, &random_body<Dist::Bernoulli>); }

}  // namespace tessera_cpu
