#pragma once
// The dataplane: the only layer that talks to ethdev. It owns the two ports
// (client side and server side of the wire), the per-socket mbuf pools and
// one Worker per RX queue. Worker i owns queue i of both ports, so as long
// as the NIC hashes both directions of a flow to the same queue (symmetric
// RSS), every flow lives on exactly one worker and nothing is shared.
//
// Control plane (this class, the main lcore): set up, start, stop, stats.
// Errors are absl::Status with a message that names the port, the flag or
// the limit that got in the way.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moat/dataplane/port.h"
#include "moat/dataplane/reload.h"
#include "moat/dataplane/worker.h"
#include "moat/proxy/config.h"

namespace moat::dataplane {

struct DataplaneConfig {
  uint16_t client_port = 0;
  uint16_t server_port = 1;
  // RX/TX queues per port; 0 = one per worker lcore.
  uint16_t queues = 0;
  uint16_t rx_desc = 1024;
  uint16_t tx_desc = 1024;
  // mbufs per socket; 0 = sized from the rings (see Dataplane::Create).
  // Raise it for PMDs that hold mbufs of their own (net_pcap infinite_rx
  // keeps the whole capture in mbufs from the queue's pool).
  uint32_t pool_mbufs = 0;
  // Both ports' MTU (--mtu): set on the ports (PlanMtu, port.h) and sizing
  // the mbufs' data room so a whole frame is one mbuf. Must equal the
  // engine's EngineConfig::mtu.
  uint16_t mtu = 1500;
  WorkerConfig worker;
};

// Summed over workers, for the stats table and telemetry.
struct CounterSnapshot {
  uint64_t engine[proxy::kNumCounters] = {};
  uint64_t parse[net::kNumParseErrors] = {};
  uint64_t dataplane[kNumDataplaneCounters] = {};

  void Add(const Worker& w);
};

// --synack_rate is per prefix for the whole instance; RSS spreads one
// prefix's SYNs (different ports) over the workers, so each worker's
// engine gets an equal share, rounded up.
uint32_t PerWorkerSynAckRate(uint32_t rate, size_t workers);

// The engines' tables (flow/memory.h) from EAL memory on NUMA `socket`
// (rte_malloc_socket): hugepages unless EAL runs with --no-huge. The hook
// zeroes every block, so the pages are touched at start-up, not on the
// hot path. Dataplane::Create gives each engine its worker's socket.
flow::MemoryHook SocketMemory(int socket);

// The start-up memory plan: per worker, each engine table (exact, from
// Engine::PlanMemory), times `workers`; the mbuf pools as allocated
// (their memory chunks); the total. One line each.
std::string MemoryPlanText(const proxy::EngineConfig& engine, size_t workers,
                           const std::vector<rte_mempool*>& pools);

class Dataplane {
 public:
  // Checks the ports and lcores, configures and starts both ports, and
  // builds one engine per worker. Nothing is left started on error.
  static absl::StatusOr<std::unique_ptr<Dataplane>> Create(const DataplaneConfig& config,
                                                           const proxy::EngineConfig& engine);
  ~Dataplane();
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  // Launches a worker on every worker lcore that has a queue.
  absl::Status Start();
  // Asks the workers to stop and waits for them (they flush their TX
  // buffers on the way out).
  void Stop();
  // Stops and closes both ports; Stop() first.
  void ClosePorts();

  // Reload: hands the policy of `next` (services, rate limit, allow/deny;
  // the rest of it is ignored) to every worker as a new generation
  // (reload.h) and waits up to `wait_ms` for all of them to switch.
  // Checks the policy first (ValidatePolicy); an error leaves everything
  // as it was.
  struct ReloadOutcome {
    uint64_t generation = 0;
    bool applied = false;  // every worker switched within wait_ms
  };
  absl::StatusOr<ReloadOutcome> Reconfigure(const proxy::EngineConfig& next, uint32_t wait_ms);
  ConfigChannel& config_channel() { return *channel_; }
  const ConfigChannel& config_channel() const { return *channel_; }

  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  const Port& port(proxy::Side side) const { return ports_[static_cast<int>(side)]; }
  CounterSnapshot Snapshot() const;
  CounterSnapshot WorkerSnapshot(size_t worker) const;
  // What Create() allocated, one line per table per worker, the mbuf
  // pools and the total (for the start-up log).
  const std::string& memory_plan() const { return memory_plan_; }

 private:
  explicit Dataplane(const DataplaneConfig& config) : config_(config) {}

  DataplaneConfig config_;
  Port ports_[2];
  std::vector<rte_mempool*> pools_;  // one per NUMA socket in use
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<ConfigChannel> channel_;
  std::vector<unsigned> lcores_;  // worker i runs on lcores_[i]
  std::string memory_plan_;
  // Argument of each remote launch: the worker and the stop flag.
  std::vector<std::pair<Worker*, const volatile bool*>> launch_;
  volatile bool stop_ = false;
  bool running_ = false;
};

}  // namespace moat::dataplane
