// A yardstick that is not moat's code: a fixed chain of dependent 64-bit
// multiply/xor-shift steps (pure core clock, no memory). The regression
// check (bench/regress.py) divides every benchmark's time by this one's
// from the same run, so a machine that is uniformly slower or busier than
// the one the baseline came from does not read as a regression.

#include <cstdint>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"

namespace moat::bench {
namespace {

void BM_Reference_MulXorChain(benchmark::State& state) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < 32; ++i) {
      x *= 0xbf58476d1ce4e5b9ull;
      x ^= x >> 31;
    }
    benchmark::DoNotOptimize(x);
  }
  meter.Report(state, state.iterations() * 32);
}
BENCHMARK(BM_Reference_MulXorChain);

}  // namespace
}  // namespace moat::bench
