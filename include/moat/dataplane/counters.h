#pragma once
// Counters kept by the dataplane itself (between the ports and the engine),
// and, in benchmark builds only, TSC cycles per stage of the worker loop.

#include <rte_cycles.h>

#include <cstddef>
#include <cstdint>

namespace moat::dataplane {

// Counters for what happens between the ports and the engine. X(name, help).
#define MOAT_DATAPLANE_COUNTERS(X)                                            \
  X(rx_frames, "frames received from both ports")                             \
  X(tx_frames, "frames handed to the TX queues")                              \
  X(frames_generated, "frames moat generated (SYN-ACKs excluded: reflected)") \
  X(drop_multiseg, "chained mbufs (frame larger than one mbuf), dropped")     \
  X(drop_tx_full, "frames dropped because a TX queue stayed full")            \
  X(drop_generated_nombuf, "generated frames lost: mbuf pool empty")          \
  X(idle_sleeps, "times the worker slept for --idle_sleep_us")

enum class DpCounter : uint8_t {
#define MOAT_DP_ENUM(name, help) k_##name,
  MOAT_DATAPLANE_COUNTERS(MOAT_DP_ENUM)
#undef MOAT_DP_ENUM
};
inline constexpr size_t kNumDataplaneCounters = 0
#define MOAT_DP_COUNT(name, help) +1
    MOAT_DATAPLANE_COUNTERS(MOAT_DP_COUNT)
#undef MOAT_DP_COUNT
    ;
extern const char* const kDataplaneCounterNames[kNumDataplaneCounters];
extern const char* const kDataplaneCounterHelp[kNumDataplaneCounters];

// Written by one worker, read by the control thread: relaxed atomics, so a
// reader never sees a torn value and the writer never waits.
struct alignas(64) DataplaneStats {
  uint64_t value[kNumDataplaneCounters] = {};
  void Inc(DpCounter c, uint64_t n = 1) {
    uint64_t* v = &value[static_cast<size_t>(c)];
    __atomic_store_n(v, *v + n, __ATOMIC_RELAXED);
  }
  uint64_t Load(size_t i) const { return __atomic_load_n(&value[i], __ATOMIC_RELAXED); }
  uint64_t Load(DpCounter c) const { return Load(static_cast<size_t>(c)); }
};

// Per-stage cycle accounting, for benchmarks (meson -Dstage_cycles=true
// defines MOAT_STAGE_CYCLES=1). Compiled out by default: the production
// loop reads the TSC once per round and no more.
#ifndef MOAT_STAGE_CYCLES
#define MOAT_STAGE_CYCLES 0
#endif
inline constexpr bool kStageCycles = MOAT_STAGE_CYCLES != 0;

// X(name, what the cycles are spent on). Items are frames unless the text
// says otherwise.
#define MOAT_STAGES(X)                                                          \
  X(rx, "rte_eth_rx_burst that returned frames, and collecting their pointers") \
  X(rx_empty, "rte_eth_rx_burst that returned nothing (items: polls)")          \
  X(engine, "Engine::ProcessBurst")                                             \
  X(verdict, "applying verdicts: lengths, per-port lists, freeing drops")       \
  X(generated, "copying the engine's frames into fresh mbufs")                  \
  X(tx, "TX buffering and rte_eth_tx_burst (items: frames queued)")             \
  X(timers, "Engine::Tick (items: ticks)")

enum class Stage : uint8_t {
#define MOAT_STAGE_ENUM(name, help) k_##name,
  MOAT_STAGES(MOAT_STAGE_ENUM)
#undef MOAT_STAGE_ENUM
};
inline constexpr size_t kNumStages = 0
#define MOAT_STAGE_COUNT(name, help) +1
    MOAT_STAGES(MOAT_STAGE_COUNT)
#undef MOAT_STAGE_COUNT
    ;
extern const char* const kStageNames[kNumStages];
extern const char* const kStageHelp[kNumStages];

// Read only after the worker stopped (final stats), so plain fields.
struct alignas(64) StageStats {
  uint64_t cycles[kNumStages] = {};
  uint64_t items[kNumStages] = {};
  // The whole Run() loop, so that what no stage covers (the round's clock
  // read, the loop itself) shows up as the difference.
  uint64_t loop_cycles = 0;
  uint64_t rounds = 0;
};

// Stage timing: Start() where a run of stages begins, then Lap() at the
// end of each stage (it charges the cycles since the previous mark). Both
// compile to nothing unless kStageCycles.
class StageTimer {
 public:
  explicit StageTimer(StageStats* stats) : stats_(stats) {}
  void Start() {
    if constexpr (kStageCycles) t_ = rte_rdtsc();
  }
  void Lap(Stage stage, uint64_t items) {
    if constexpr (kStageCycles) {
      const uint64_t now = rte_rdtsc();
      stats_->cycles[static_cast<size_t>(stage)] += now - t_;
      stats_->items[static_cast<size_t>(stage)] += items;
      t_ = now;
    } else {
      (void)stage, (void)items;
    }
  }
  StageStats* stats() const { return stats_; }

 private:
  StageStats* stats_;
  uint64_t t_ = 0;
};

}  // namespace moat::dataplane
