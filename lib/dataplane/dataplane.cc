#include "moat/dataplane/dataplane.h"

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_launch.h>
#include <rte_mbuf.h>
#include <rte_random.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "absl/strings/str_format.h"
#include "moat/dataplane/log.h"
#include "moat/proxy/held_pool.h"

namespace moat::dataplane {

namespace {

uint64_t ClockNs(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void* SocketAllocate(void* ctx, size_t bytes, flow::MemoryUse use) {
  char name[32];
  snprintf(name, sizeof(name), "moat_%s", flow::MemoryUseName(use));
  return rte_malloc_socket(name, bytes, 64, static_cast<int>(reinterpret_cast<intptr_t>(ctx)));
}
void SocketRelease(void*, void* p) { rte_free(p); }

std::string Bytes(uint64_t b) {
  if (b >= (1ull << 20)) return absl::StrFormat("%.1f MiB", static_cast<double>(b) / (1 << 20));
  return absl::StrFormat("%.1f KiB", static_cast<double>(b) / 1024);
}

void AddChunk(rte_mempool*, void* opaque, rte_mempool_memhdr* hdr, unsigned) {
  *static_cast<uint64_t*>(opaque) += hdr->len;
}

int WorkerMain(void* arg) {
  auto* ctx = static_cast<std::pair<Worker*, const volatile bool*>*>(arg);
  ctx->first->Run(ctx->second);
  return 0;
}

constexpr unsigned kMempoolCache = 256;

}  // namespace

std::string MemoryPlanText(const proxy::EngineConfig& ec, size_t workers,
                           const std::vector<rte_mempool*>& pools) {
  using flow::MemoryUse;
  const flow::MemoryPlan plan = proxy::Engine::PlanMemory(ec);
  std::string out = absl::StrFormat(
      "memory plan (from %s on each worker's NUMA socket, every byte written at start-up):\n",
      rte_eal_has_hugepages() ? "hugepages" : "EAL memory without hugepages (--no-huge)");
  auto line = [&](const char* what, uint64_t bytes, const std::string& note) {
    absl::StrAppendFormat(&out, "  %-18s %10s%s%s\n", what, Bytes(bytes), note.empty() ? "" : "  ",
                          note);
  };
  line("flow table", plan[MemoryUse::kFlowTable],
       absl::StrFormat("%u flows", ec.flow_capacity));
  line("flow timers", plan[MemoryUse::kFlowTimers], "");
  line("held pool", plan[MemoryUse::kHeldPool],
       absl::StrFormat("%u slots for %zu-byte frames", ec.held_slots, proxy::kMaxFrame));
  line("SYN cache", plan[MemoryUse::kSynCache],
       ec.syn_cache_entries == 0 ? "off" : absl::StrFormat("%u entries", ec.syn_cache_entries));
  line("SYN-cache timers", plan[MemoryUse::kSynCacheTimers], "");
  line("rate limiter", plan[MemoryUse::kRateLimiter],
       absl::StrFormat("%u buckets", ec.synack_rate_buckets));
  line("per worker", plan.total(),
       absl::StrFormat("x %zu worker(s) = %s", workers, Bytes(plan.total() * workers)));
  uint64_t pool_bytes = 0;
  std::string pool_note;
  for (rte_mempool* mp : pools) {
    uint64_t b = 0;
    rte_mempool_mem_iter(mp, AddChunk, &b);
    pool_bytes += b;
    absl::StrAppendFormat(&pool_note, "%ssocket %d: %u mbufs of %u B", pool_note.empty() ? "" : ", ",
                          mp->socket_id, mp->size, rte_pktmbuf_data_room_size(mp));
  }
  line("mbuf pools", pool_bytes, pool_note);
  line("total", plan.total() * workers + pool_bytes, "");
  out.pop_back();  // the log adds the last newline
  return out;
}

flow::MemoryHook SocketMemory(int socket) {
  // ctx carries the socket: nothing to keep alive.
  flow::MemoryHook h;
  h.allocate = SocketAllocate;
  h.release = SocketRelease;
  h.ctx = reinterpret_cast<void*>(static_cast<intptr_t>(socket));
  return h;
}

void CounterSnapshot::Add(const Worker& w) {
  const proxy::WorkerStats& es = w.engine_stats();
  for (size_t i = 0; i < proxy::kNumCounters; ++i) engine[i] += es.Load(i);
  for (size_t i = 0; i < net::kNumParseErrors; ++i) parse[i] += es.LoadParse(i);
  for (size_t i = 0; i < kNumDataplaneCounters; ++i) dataplane[i] += w.stats().Load(i);
}

absl::StatusOr<std::unique_ptr<Dataplane>> Dataplane::Create(const DataplaneConfig& config,
                                                              const proxy::EngineConfig& engine) {
  std::unique_ptr<Dataplane> dp(new Dataplane(config));
  if (config.client_port == config.server_port) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--client_port and --server_port are both %u: moat sits between two ports",
        config.client_port));
  }
  if (auto s = DescribePort(config.client_port, "client", &dp->ports_[0]); !s.ok()) return s;
  if (auto s = DescribePort(config.server_port, "server", &dp->ports_[1]); !s.ok()) return s;

  unsigned lcore;
  RTE_LCORE_FOREACH_WORKER(lcore) { dp->lcores_.push_back(lcore); }
  if (dp->lcores_.empty()) {
    return absl::InvalidArgumentError(
        "no worker lcore: give EAL at least two lcores, e.g. -l 0,1 (the main lcore only "
        "does control work; on a small machine -l 0,1 --lcores '0@0,1@1')");
  }
  const uint16_t queues =
      config.queues != 0 ? config.queues : static_cast<uint16_t>(dp->lcores_.size());
  if (queues > dp->lcores_.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--queues=%u needs %u worker lcores but EAL has %u (add lcores with -l)", queues, queues,
        dp->lcores_.size()));
  }
  if (queues < dp->lcores_.size()) {
    MOAT_LOG(WARNING, "%zu worker lcore(s) but --queues=%u: lcores beyond %u stay idle",
             dp->lcores_.size(), queues, queues);
    dp->lcores_.resize(queues);
  }
  for (const Port& p : dp->ports_) {
    if (auto s = CheckQueues(p, queues); !s.ok()) return s;
  }
  // The MTU each port can carry, checked before anything is allocated;
  // the data room is what the hungriest port needs for a whole frame.
  MtuPlan mtu_plans[2];
  uint32_t data_room = proxy::FrameRoom(config.mtu);
  for (int i = 0; i < 2; ++i) {
    auto facts = GetMtuFacts(dp->ports_[i]);
    if (!facts.ok()) return facts.status();
    auto plan = PlanMtu(dp->ports_[i], *facts, config.mtu);
    if (!plan.ok()) return plan.status();
    mtu_plans[i] = *plan;
    data_room = std::max(data_room, RxDataRoom(*facts, config.mtu));
  }

  // One mbuf pool per NUMA socket that has workers; each queue takes its
  // mbufs from its worker's socket. Sized so RX never starves: every
  // descriptor of both ports' rings for the queue, both TX buffers, a
  // burst in flight, the engine's generated frames and the per-lcore cache.
  const WorkerConfig& wc = config.worker;
  const unsigned per_worker = 2u * (config.rx_desc + config.tx_desc) + 4u * wc.burst +
                              Worker::kMaxBurst + proxy::kMaxEmitted + kMempoolCache;
  std::map<int, unsigned> need;
  for (unsigned lc : dp->lcores_) need[static_cast<int>(rte_lcore_to_socket_id(lc))] += per_worker;
  std::map<int, rte_mempool*> pool_of;
  for (auto [socket, n] : need) {
    if (config.pool_mbufs != 0) n = config.pool_mbufs;
    const std::string name = absl::StrFormat("moat_mbuf_s%d", socket);
    // Memory grows with the data room: ~2.3 KiB per mbuf at --mtu=1500,
    // ~9.4 KiB at 9000.
    n = std::max(n, 8191u);
    rte_mempool* mp =
        rte_pktmbuf_pool_create(name.c_str(), n, kMempoolCache, 0,
                                static_cast<uint16_t>(RTE_PKTMBUF_HEADROOM + data_room), socket);
    if (mp == nullptr) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cannot allocate %u mbufs of %u bytes (--mtu=%u) on socket %d: %s (reserve more "
          "hugepages, or lower --rx_desc/--tx_desc)",
          n, RTE_PKTMBUF_HEADROOM + data_room, config.mtu, socket, rte_strerror(rte_errno)));
    }
    MOAT_LOG(INFO, "mbuf pool on socket %d: %u mbufs of %u bytes (--mtu=%u), %.1f MiB", socket, n,
             RTE_PKTMBUF_HEADROOM + data_room, config.mtu,
             static_cast<double>(rte_mempool_calc_obj_size(mp->elt_size, mp->flags, nullptr)) * n /
                 (1 << 20));
    dp->pools_.push_back(mp);
    pool_of[socket] = mp;
  }
  std::vector<rte_mempool*> queue_pools;
  for (unsigned lc : dp->lcores_) {
    queue_pools.push_back(pool_of[static_cast<int>(rte_lcore_to_socket_id(lc))]);
  }

  for (int i = 0; i < 2; ++i) {
    if (auto s = StartPort(&dp->ports_[i], queues, config.rx_desc, config.tx_desc, queue_pools,
                           mtu_plans[i]);
        !s.ok()) {
      return s;  // ~Dataplane stops whatever started
    }
  }

  const uint16_t port_ids[2] = {config.client_port, config.server_port};
  // Engines run their timers on the monotonic clock the workers read, and
  // their cookies on wall-clock time (engine.h, "Two clocks").
  const uint64_t now = ClockNs(CLOCK_MONOTONIC);
  const uint64_t wall = ClockNs(CLOCK_REALTIME);
  proxy::EngineConfig shared = engine;
  shared.mtu = config.mtu;
  // Checksum offloads as the ports came up (StartPort): the engine builds
  // frames for a TX-offload port with only the pseudo-header sum, and the
  // workers hand it the RX verdicts of ports that give them.
  WorkerConfig wc_ports = wc;
  for (int i = 0; i < 2; ++i) {
    shared.tx_checksum_offload[i] = dp->ports_[i].tx_cksum_offload;
    wc_ports.rx_checksum[i] = dp->ports_[i].rx_ip_cksum || dp->ports_[i].rx_tcp_cksum;
  }
  shared.synack_rate = PerWorkerSynAckRate(engine.synack_rate, queues);
  for (uint16_t q = 0; q < queues; ++q) {
    proxy::EngineConfig ec = shared;
    // Attackers choose tuples: each worker's flow table gets its own
    // secret hash seed.
    ec.hash_seed = rte_rand();
    ec.memory = SocketMemory(static_cast<int>(rte_lcore_to_socket_id(dp->lcores_[q])));
    auto e = proxy::Engine::Create(ec, now);
    if (!e.ok()) return e.status();
    (*e)->SyncWallClock(now, wall);
    auto w = Worker::Create(q, q, port_ids, queue_pools[q], wc_ports, *std::move(e));
    if (!w.ok()) return w.status();
    dp->workers_.push_back(*std::move(w));
  }
  dp->memory_plan_ = MemoryPlanText(shared, dp->workers_.size(), dp->pools_);
  dp->channel_ = std::make_unique<ConfigChannel>(dp->workers_.size(), shared);
  for (auto& w : dp->workers_) w->set_config_channel(dp->channel_.get());
  return dp;
}

uint32_t PerWorkerSynAckRate(uint32_t rate, size_t workers) {
  if (rate == 0 || workers <= 1) return rate;
  return static_cast<uint32_t>((rate + workers - 1) / workers);
}

absl::StatusOr<Dataplane::ReloadOutcome> Dataplane::Reconfigure(const proxy::EngineConfig& next,
                                                                 uint32_t wait_ms) {
  if (auto s = proxy::ValidatePolicy(next); !s.ok()) return s;
  proxy::EngineConfig c = channel_->current();
  c.services = next.services;
  c.synack_rate = PerWorkerSynAckRate(next.synack_rate, workers_.size());
  c.synack_prefix_v4 = next.synack_prefix_v4;
  c.synack_prefix_v6 = next.synack_prefix_v6;
  c.allow = next.allow;
  c.deny = next.deny;
  ReloadOutcome r;
  r.generation = channel_->Publish(c);
  // Workers pick it up within a poll round (plus --idle_sleep_us).
  for (uint32_t waited_us = 0; waited_us <= wait_ms * 1000u; waited_us += 200) {
    if (channel_->applied() >= r.generation) {
      r.applied = true;
      break;
    }
    if (!running_) break;
    timespec ts{0, 200 * 1000};
    nanosleep(&ts, nullptr);
  }
  channel_->Reclaim();
  return r;
}

Dataplane::~Dataplane() {
  Stop();
  ClosePorts();
  workers_.clear();
  for (rte_mempool* mp : pools_) rte_mempool_free(mp);
}

absl::Status Dataplane::Start() {
  stop_ = false;
  launch_.clear();
  for (auto& w : workers_) launch_.emplace_back(w.get(), &stop_);
  for (size_t i = 0; i < workers_.size(); ++i) {
    int rc = rte_eal_remote_launch(WorkerMain, &launch_[i], lcores_[i]);
    if (rc != 0) {
      Stop();
      return absl::InternalError(
          absl::StrFormat("cannot launch worker %zu on lcore %u: %s", i, lcores_[i],
                          rte_strerror(-rc)));
    }
    running_ = true;
    MOAT_LOG(INFO, "worker %zu: lcore %u (socket %u), queue %zu of both ports", i, lcores_[i],
             rte_lcore_to_socket_id(lcores_[i]), i);
  }
  return absl::OkStatus();
}

void Dataplane::Stop() {
  if (!running_) return;
  __atomic_store_n(&stop_, true, __ATOMIC_RELEASE);
  rte_eal_mp_wait_lcore();
  running_ = false;
}

void Dataplane::ClosePorts() {
  for (Port& p : ports_) StopPort(&p);
}

CounterSnapshot Dataplane::Snapshot() const {
  CounterSnapshot s;
  for (const auto& w : workers_) s.Add(*w);
  return s;
}

CounterSnapshot Dataplane::WorkerSnapshot(size_t worker) const {
  CounterSnapshot s;
  if (worker < workers_.size()) s.Add(*workers_[worker]);
  return s;
}

}  // namespace moat::dataplane
