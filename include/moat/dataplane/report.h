#pragma once
// What an operator sees: a testpmd-style stats table on stdout and the same
// counters through DPDK telemetry (/moat/stats, /moat/worker,N), readable
// with dpdk-telemetry.py while moat runs. Control plane only; per-worker
// counters are read with relaxed atomic loads, never locked.

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "moat/dataplane/dataplane.h"

namespace moat::dataplane {

class StatsReporter {
 public:
  explicit StatsReporter(const Dataplane* dp);

  // Prints per-port RX/TX packets, rates and drops, then moat's counters
  // summed over workers: the non-zero ones periodically, all of them (and a
  // per-worker flow count) when `final`.
  void Print(std::FILE* out, bool final);

 private:
  struct PortPrev {
    uint64_t ipackets = 0, opackets = 0;
  };
  const Dataplane* dp_;
  uint64_t start_ns_;
  uint64_t last_ns_;
  PortPrev prev_[2];
};

// What a reload did, for /moat/reload (and the log).
struct ReloadResult {
  bool ok = false;
  std::string message;  // one line: what changed, or why nothing did
  uint64_t generation = 0;
};
using ReloadHandler = std::function<ReloadResult()>;
// /moat/reload calls `handler` on the telemetry thread and answers with its
// result and the reload counters. The handler serializes with other
// reloads (SIGHUP) itself. Set it before RegisterTelemetry().
void SetReloadHandler(ReloadHandler handler);

// Registers /moat/stats, /moat/worker, /moat/info and /moat/reload. `dp` must outlive
// the EAL (telemetry callbacks run on a control thread until
// rte_eal_cleanup()).
absl::Status RegisterTelemetry(const Dataplane* dp);
void UnregisterTelemetry();

}  // namespace moat::dataplane
