#pragma once
// One worker per RX queue: a run-to-completion poll loop on its own lcore
// that owns queue `queue` of both ports and one proxy::Engine (flow table,
// timers, counters). l3fwd's shape: rx burst -> engine burst -> buffered tx
// per port (FramePath: verdicts, generated frames, the flush policy);
// engine timers on a 1 ms TSC tick. Nothing here locks or allocates after
// Create().

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/dataplane/backend_view.h"
#include "moat/dataplane/counters.h"
#include "moat/dataplane/frame_path.h"
#include "moat/proxy/engine.h"
#include "moat/proxy/stats.h"

struct rte_mempool;

namespace moat::dataplane {

class ConfigChannel;

struct WorkerConfig {
  uint16_t burst = 32;
  // While every RX queue returns full bursts, partly filled TX buffers
  // wait at most this long for more (l3fwd drains every ~100 us); in any
  // other round they are flushed at its end (FramePath::EndRound).
  uint32_t tx_drain_us = 100;
  // Engine timer tick (backend SYN retransmits, TIME_WAIT, idle expiry).
  uint32_t tick_us = 1000;
  // When > 0, a worker that found nothing to do on either port sleeps this
  // long: trades latency for a free core on small machines.
  uint32_t idle_sleep_us = 0;
  // Per proxy::Side: its port delivers the NIC's checksum verdicts (RX
  // checksum offload, set by the Dataplane from the port; FramePath::Config).
  bool rx_checksum[2] = {false, false};
};

class Worker {
 public:
  static constexpr uint16_t kMaxBurst = FramePath::kMaxBurst;
  // The timer slack Run() gives its thread when idle_sleep_us > 0.
  static constexpr unsigned long kIdleTimerSlackNs = 1000;

  // port_ids[side] is the ethdev port of proxy::Side side; `pool` gives
  // the mbufs for the frames the engine generates.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(unsigned index, uint16_t queue,
                                                        const uint16_t port_ids[2],
                                                        rte_mempool* pool,
                                                        const WorkerConfig& config,
                                                        std::unique_ptr<proxy::Engine> engine);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The lcore loop; returns when *stop becomes true, after flushing. With
  // idle_sleep_us > 0 it first sets the calling thread's timer slack to
  // kIdleTimerSlackNs, so that the sleep lasts what the flag says.
  void Run(const volatile bool* stop);

  // Where reloads come from (reload.h): checked once per poll round. Set
  // before Run().
  void set_config_channel(ConfigChannel* channel) { channel_ = channel; }

  // One round of that loop at TSC `tsc` and wall-clock `now_ns`: both RX
  // queues, the engine's timers when their tick is due, then the TX flush
  // policy. Returns how many frames came in. For tests; Run() is the loop.
  uint16_t RunRound(uint64_t tsc, uint64_t now_ns);

  unsigned index() const { return index_; }
  uint16_t queue() const { return queue_; }
  const proxy::WorkerStats& engine_stats() const { return engine_->stats(); }
  const DataplaneStats& stats() const { return stats_; }
  // All zero unless built with -Dstage_cycles=true.
  const StageStats& stage_stats() const { return stages_; }
  uint32_t flow_count() const { return engine_->flow_count(); }
  // The engine's backend table as of this worker's next timer tick
  // (backend_view.h; for /moat/backends, from any thread).
  bool CopyBackends(std::chrono::milliseconds timeout, std::vector<proxy::BackendInfo>* out,
                    uint64_t* now_ns) const {
    return backend_view_.Copy(timeout, out, now_ns);
  }

 private:
  Worker(unsigned index, uint16_t queue, const uint16_t port_ids[2], rte_mempool* pool,
         const WorkerConfig& config, std::unique_ptr<proxy::Engine> engine);

  // Returns how many frames came in.
  uint16_t Poll(proxy::Side in, uint64_t now_ns);
  void RunTimers(uint64_t now_ns);

  const unsigned index_;
  const uint16_t queue_;
  uint16_t port_ids_[2];
  const WorkerConfig config_;
  const uint64_t tick_tsc_;
  uint64_t last_tick_ = 0;
  std::unique_ptr<proxy::Engine> engine_;
  std::unique_ptr<proxy::Output> out_;
  ConfigChannel* channel_ = nullptr;
  DataplaneStats stats_;
  StageStats stages_;
  StageTimer timer_{&stages_};
  FramePath path_;
  // Synchronization, not state: readers on other threads use it through a
  // const Worker.
  mutable BackendView backend_view_;
};

}  // namespace moat::dataplane
