#include "moat/dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <sys/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_format.h"
#include "moat/dataplane/log.h"
#include "moat/dataplane/reload.h"

namespace moat::dataplane {

const char* const kDataplaneCounterNames[kNumDataplaneCounters] = {
#define MOAT_DP_NAME(name, help) #name,
    MOAT_DATAPLANE_COUNTERS(MOAT_DP_NAME)
#undef MOAT_DP_NAME
};
const char* const kDataplaneCounterHelp[kNumDataplaneCounters] = {
#define MOAT_DP_HELP(name, help) help,
    MOAT_DATAPLANE_COUNTERS(MOAT_DP_HELP)
#undef MOAT_DP_HELP
};
const char* const kStageNames[kNumStages] = {
#define MOAT_STAGE_NAME(name, help) #name,
    MOAT_STAGES(MOAT_STAGE_NAME)
#undef MOAT_STAGE_NAME
};
const char* const kStageHelp[kNumStages] = {
#define MOAT_STAGE_HELP(name, help) help,
    MOAT_STAGES(MOAT_STAGE_HELP)
#undef MOAT_STAGE_HELP
};

namespace {

using proxy::Side;
using proxy::Verdict;

// The engine's time (engine.h, "Two clocks"): flow timers run on
// CLOCK_MONOTONIC, read once per poll round (one vDSO call, amortised over
// the burst), so stepping the system clock neither freezes nor expires
// flows. Cookies are a function of wall-clock time so that a fleet of moat
// instances behind ECMP agrees on the time slot and the key epoch; the
// engine derives it from the monotonic time and an offset taken once per
// timer tick (SyncWallClock), not per round.
inline uint64_t ClockNs(clockid_t id) {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

FramePath::Config PathConfig(uint16_t queue, const uint16_t port_ids[2], rte_mempool* pool,
                             const WorkerConfig& config) {
  FramePath::Config c;
  c.port_ids[0] = port_ids[0];
  c.port_ids[1] = port_ids[1];
  c.queue = queue;
  c.pool = pool;
  c.burst = config.burst;
  c.drain_tsc = std::max<uint64_t>(1, rte_get_tsc_hz() / 1000000 * config.tx_drain_us);
  c.rx_checksum[0] = config.rx_checksum[0];
  c.rx_checksum[1] = config.rx_checksum[1];
  return c;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(unsigned index, uint16_t queue,
                                                       const uint16_t port_ids[2],
                                                       rte_mempool* pool,
                                                       const WorkerConfig& config,
                                                       std::unique_ptr<proxy::Engine> engine) {
  if (config.burst == 0 || config.burst > kMaxBurst) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--burst=%u: must be in [1, %u]", config.burst, kMaxBurst));
  }
  if (pool == nullptr || engine == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("worker %u: needs an mbuf pool and an engine", index));
  }
  return std::unique_ptr<Worker>(
      new Worker(index, queue, port_ids, pool, config, std::move(engine)));
}

Worker::Worker(unsigned index, uint16_t queue, const uint16_t port_ids[2], rte_mempool* pool,
               const WorkerConfig& config, std::unique_ptr<proxy::Engine> engine)
    : index_(index),
      queue_(queue),
      port_ids_{port_ids[0], port_ids[1]},
      config_(config),
      tick_tsc_(std::max<uint64_t>(1, rte_get_tsc_hz() / 1000000 * config.tick_us)),
      last_tick_(rte_rdtsc()),
      engine_(std::move(engine)),
      out_(std::make_unique<proxy::Output>()),
      path_(PathConfig(queue, port_ids, pool, config), &stats_, &timer_) {}

Worker::~Worker() = default;

uint16_t Worker::Poll(Side in, uint64_t now_ns) {
  rte_mbuf* pkts[kMaxBurst];
  timer_.Start();
  const uint16_t n = rte_eth_rx_burst(port_ids_[static_cast<int>(in)], queue_, pkts, config_.burst);
  if (n == 0) {
    timer_.Lap(Stage::k_rx_empty, 1);
    return 0;
  }
  stats_.Inc(DpCounter::k_rx_frames, n);

  uint8_t* frames[kMaxBurst];
  uint16_t lens[kMaxBurst];
  Verdict verdicts[kMaxBurst];
  // Checksum verdicts in, checksums left to the NIC out (frame_meta.h).
  proxy::FrameMeta meta[kMaxBurst];
  uint16_t capacity;
  const uint16_t k = path_.Gather(in, pkts, n, frames, lens, &capacity, meta);
  timer_.Lap(Stage::k_rx, n);

  uint16_t done = 0;
  while (done < k) {
    const uint16_t p = engine_->ProcessBurst(in, frames + done, lens + done, capacity, k - done,
                                             now_ns, verdicts + done, out_.get(), meta + done);
    timer_.Lap(Stage::k_engine, p);
    path_.Apply(in, pkts + done, lens + done, verdicts + done, p, out_.get(), meta + done);
    if (p == 0) {
      // Only possible if *out_ had no room, and Apply just drained it;
      // never spin on it.
      path_.Free(pkts + done, k - done);
      break;
    }
    done += p;
  }
  return n;
}

void Worker::RunTimers(uint64_t now_ns) {
  // A timer storm (thousands of flows expiring in one tick) is spread over
  // later ticks rather than stalling the RX rings.
  timer_.Start();
  engine_->SyncWallClock(now_ns, ClockNs(CLOCK_REALTIME));
  backend_view_.Serve(engine_->backends(), now_ns);
  for (int round = 0; round < 64; ++round) {
    const bool more = engine_->Tick(now_ns, out_.get());
    timer_.Lap(Stage::k_timers, 1);
    path_.SendGenerated(out_.get());
    if (!more) break;
  }
}

uint16_t Worker::RunRound(uint64_t tsc, uint64_t now_ns) {
  // A reload takes effect here, between two rounds of bursts.
  if (channel_ != nullptr) channel_->PickUp(index_, engine_.get());
  const uint16_t nc = Poll(Side::kClient, now_ns);
  const uint16_t ns = Poll(Side::kServer, now_ns);
  if (tsc - last_tick_ >= tick_tsc_) {
    RunTimers(now_ns);
    last_tick_ = tsc;
  }
  timer_.Start();
  path_.EndRound(nc == config_.burst && ns == config_.burst, tsc);
  timer_.Lap(Stage::k_tx, 0);
  return nc + ns;
}

void Worker::Run(const volatile bool* stop) {
  if (config_.idle_sleep_us != 0 && prctl(PR_SET_TIMERSLACK, kIdleTimerSlackNs) != 0) {
    // rte_delay_us_sleep() is a nanosleep(), which Linux lets run late by
    // the thread's timer slack (prctl(2): 50 us by default) to batch
    // wake-ups. A 20 us idle sleep would then last ~70 us, and the first
    // frame of every quiet spell waits for all of it.
    MOAT_LOG(WARNING,
             "worker %u: cannot set the timer slack (%s): idle sleeps may last up to 50 us "
             "longer than --idle_sleep_us",
             index_, std::strerror(errno));
  }
  uint32_t idle_rounds = 0;
  const uint64_t loop_start = rte_rdtsc();
  while (!*stop) {
    const uint64_t now_ns = ClockNs(CLOCK_MONOTONIC);
    const uint64_t tsc = rte_rdtsc();
    const uint16_t n = RunRound(tsc, now_ns);
    if constexpr (kStageCycles) ++stages_.rounds;
    if (n == 0 && config_.idle_sleep_us != 0) {
      // A few empty rounds in a row before sleeping, so a burst that is
      // merely spread out does not pay the sleep.
      if (++idle_rounds >= 16) {
        path_.FlushAll(tsc);
        rte_delay_us_sleep(config_.idle_sleep_us);
        stats_.Inc(DpCounter::k_idle_sleeps);
      }
    } else {
      idle_rounds = 0;
    }
  }
  path_.FlushAll(rte_rdtsc());
  if constexpr (kStageCycles) stages_.loop_cycles += rte_rdtsc() - loop_start;
}

}  // namespace moat::dataplane
