#pragma once
// Shared by the microbenchmarks: items and cycles per packet.
//
// Cycles are TSC cycles (what rte_rdtsc() counts, the unit DPDK budgets in)
// per item, read around the timed loop; set-up inside PauseTiming() is
// left out as it is from the time column.

#include <x86intrin.h>

#include <cstdint>

#include "benchmark/benchmark.h"

namespace moat::bench {

// Counts TSC cycles spent in the timed loop. Construct it right before
// `for (auto _ : state)`, bracket any PauseTiming()/ResumeTiming() section
// with Pause()/Resume(), and Report() after the loop: items/s and a
// "cycles/pkt" counter (cycles per item).
class PacketMeter {
 public:
  PacketMeter() : start_(__rdtsc()) {}
  void Pause() { total_ += __rdtsc() - start_; }
  void Resume() { start_ = __rdtsc(); }
  void Report(benchmark::State& state, int64_t items) {
    Pause();
    state.SetItemsProcessed(items);
    state.counters["cycles/pkt"] =
        items > 0 ? static_cast<double>(total_) / static_cast<double>(items) : 0.0;
  }

 private:
  uint64_t start_;
  uint64_t total_ = 0;
};

}  // namespace moat::bench
