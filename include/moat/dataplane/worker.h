#pragma once
// One worker per RX queue: a run-to-completion poll loop on its own lcore
// that owns queue `queue` of both ports and one proxy::Engine (flow table,
// timers, counters). l3fwd's shape: rx burst -> engine burst -> buffered tx
// per port, flushed when full or on a TSC deadline; engine timers on a 1 ms
// TSC tick. Nothing here locks or allocates after Create().

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/proxy/engine.h"
#include "moat/proxy/stats.h"

struct rte_mbuf;
struct rte_mempool;
struct rte_eth_dev_tx_buffer;

namespace moat::dataplane {

class ConfigChannel;

// Counters for what happens between the ports and the engine. X(name, help).
#define MOAT_DATAPLANE_COUNTERS(X)                                              \
  X(rx_frames, "frames received from both ports")                               \
  X(tx_frames, "frames handed to the TX queues")                                \
  X(frames_generated, "frames moat generated (SYN-ACKs excluded: reflected)")   \
  X(drop_multiseg, "chained mbufs (frame larger than one mbuf), dropped")       \
  X(drop_tx_full, "frames dropped because a TX queue stayed full")              \
  X(drop_generated_nombuf, "generated frames lost: mbuf pool empty")            \
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

struct alignas(64) DataplaneStats {
  uint64_t value[kNumDataplaneCounters] = {};
  void Inc(DpCounter c, uint64_t n = 1) {
    uint64_t* v = &value[static_cast<size_t>(c)];
    __atomic_store_n(v, *v + n, __ATOMIC_RELAXED);
  }
  uint64_t Load(size_t i) const { return __atomic_load_n(&value[i], __ATOMIC_RELAXED); }
};

struct WorkerConfig {
  uint16_t burst = 32;
  // TX buffers are flushed at least this often (l3fwd uses ~100 us).
  uint32_t tx_drain_us = 100;
  // Engine timer tick (backend SYN retransmits, TIME_WAIT, idle expiry).
  uint32_t tick_us = 1000;
  // When > 0, a worker that found nothing to do on either port sleeps this
  // long: trades latency for a free core on small machines.
  uint32_t idle_sleep_us = 0;
};

class Worker {
 public:
  static constexpr uint16_t kMaxBurst = 64;

  // port_ids[side] is the ethdev port of proxy::Side side.
  static absl::StatusOr<std::unique_ptr<Worker>> Create(unsigned index, uint16_t queue,
                                                        const uint16_t port_ids[2],
                                                        rte_mempool* pool, int socket,
                                                        const WorkerConfig& config,
                                                        std::unique_ptr<proxy::Engine> engine);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The lcore loop; returns when *stop becomes true, after flushing.
  void Run(const volatile bool* stop);

  // Where reloads come from (reload.h): checked once per poll round. Set
  // before Run().
  void set_config_channel(ConfigChannel* channel) { channel_ = channel; }

  unsigned index() const { return index_; }
  uint16_t queue() const { return queue_; }
  const proxy::WorkerStats& engine_stats() const { return engine_->stats(); }
  const DataplaneStats& stats() const { return stats_; }
  uint32_t flow_count() const { return engine_->flow_count(); }

 private:
  Worker(unsigned index, uint16_t queue, const uint16_t port_ids[2], rte_mempool* pool,
         const WorkerConfig& config, std::unique_ptr<proxy::Engine> engine);

  // Returns how many frames came in.
  uint16_t Poll(proxy::Side in, uint64_t now_ns);
  void Send(proxy::Side out, rte_mbuf* m);
  // Copies every frame in out_ into fresh mbufs and queues them.
  void DrainGenerated();
  void RunTimers(uint64_t now_ns);
  void FlushAll();

  const unsigned index_;
  const uint16_t queue_;
  uint16_t port_ids_[2];
  rte_mempool* pool_;
  const WorkerConfig config_;
  std::unique_ptr<proxy::Engine> engine_;
  rte_eth_dev_tx_buffer* txb_[2] = {nullptr, nullptr};
  uint64_t tx_dropped_[2] = {0, 0};  // updated by the TX buffer error callback
  std::unique_ptr<proxy::Output> out_;
  ConfigChannel* channel_ = nullptr;
  DataplaneStats stats_;
};

}  // namespace moat::dataplane
