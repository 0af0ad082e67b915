#include "moat/dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <ctime>

#include "absl/strings/str_format.h"
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

namespace {

using proxy::Side;
using proxy::Verdict;

// Cookies are a function of wall-clock time so that a fleet of moat
// instances behind ECMP agrees on the time slot (and the key epoch); one
// vDSO call per poll round, amortised over the burst.
inline uint64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// TX buffer error callback: the queue stayed full. The frames are freed
// and counted; TCP on both ends retransmits them.
void OnTxUnsent(rte_mbuf** pkts, uint16_t unsent, void* userdata) {
  rte_pktmbuf_free_bulk(pkts, unsent);
  static_cast<DataplaneStats*>(userdata)->Inc(DpCounter::k_drop_tx_full, unsent);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Worker>> Worker::Create(unsigned index, uint16_t queue,
                                                       const uint16_t port_ids[2],
                                                       rte_mempool* pool, int socket,
                                                       const WorkerConfig& config,
                                                       std::unique_ptr<proxy::Engine> engine) {
  if (config.burst == 0 || config.burst > kMaxBurst) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--burst=%u: must be in [1, %u]", config.burst, kMaxBurst));
  }
  std::unique_ptr<Worker> w(
      new Worker(index, queue, port_ids, pool, config, std::move(engine)));
  for (int side = 0; side < 2; ++side) {
    w->txb_[side] = static_cast<rte_eth_dev_tx_buffer*>(
        rte_zmalloc_socket("moat_txb", RTE_ETH_TX_BUFFER_SIZE(config.burst), 0, socket));
    if (w->txb_[side] == nullptr) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "worker %u: cannot allocate its TX buffer on socket %d (hugepage memory)", index,
          socket));
    }
    rte_eth_tx_buffer_init(w->txb_[side], config.burst);
    rte_eth_tx_buffer_set_err_callback(w->txb_[side], OnTxUnsent, &w->stats_);
  }
  return w;
}

Worker::Worker(unsigned index, uint16_t queue, const uint16_t port_ids[2], rte_mempool* pool,
               const WorkerConfig& config, std::unique_ptr<proxy::Engine> engine)
    : index_(index),
      queue_(queue),
      port_ids_{port_ids[0], port_ids[1]},
      pool_(pool),
      config_(config),
      engine_(std::move(engine)),
      out_(std::make_unique<proxy::Output>()) {}

Worker::~Worker() {
  for (auto* b : txb_) {
    if (b != nullptr) {
      rte_pktmbuf_free_bulk(b->pkts, b->length);
      rte_free(b);
    }
  }
}

void Worker::Send(Side out, rte_mbuf* m) {
  const int s = static_cast<int>(out);
  stats_.Inc(DpCounter::k_tx_frames);
  rte_eth_tx_buffer(port_ids_[s], queue_, txb_[s], m);
}

void Worker::FlushAll() {
  for (int s = 0; s < 2; ++s) rte_eth_tx_buffer_flush(port_ids_[s], queue_, txb_[s]);
}

void Worker::DrainGenerated() {
  const size_t n = out_->size();
  if (n == 0) return;
  rte_mbuf* ms[proxy::kMaxEmitted];
  if (rte_pktmbuf_alloc_bulk(pool_, ms, static_cast<unsigned>(n)) != 0) {
    // The pool is sized for full rings plus bursts, so this means frames
    // are stuck somewhere; the peers retransmit, the engine's timers retry.
    stats_.Inc(DpCounter::k_drop_generated_nombuf, n);
    out_->Clear();
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const proxy::Emitted e = (*out_)[i];
    char* d = rte_pktmbuf_append(ms[i], e.len);
    if (d == nullptr) {  // cannot happen: kMaxFrame fits the default data room
      rte_pktmbuf_free(ms[i]);
      stats_.Inc(DpCounter::k_drop_generated_nombuf);
      continue;
    }
    rte_memcpy(d, e.data, e.len);
    Send(e.out, ms[i]);
  }
  stats_.Inc(DpCounter::k_frames_generated, n);
  out_->Clear();
}

uint16_t Worker::Poll(Side in, uint64_t now_ns) {
  rte_mbuf* pkts[kMaxBurst];
  const uint16_t n = rte_eth_rx_burst(port_ids_[static_cast<int>(in)], queue_, pkts,
                                      config_.burst);
  if (n == 0) return 0;
  stats_.Inc(DpCounter::k_rx_frames, n);

  uint8_t* frames[kMaxBurst];
  uint16_t lens[kMaxBurst];
  Verdict verdicts[kMaxBurst];
  uint16_t k = 0;
  uint16_t capacity = UINT16_MAX;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (m->nb_segs != 1) {
      // The engine works on contiguous frames; RX scatter is never enabled,
      // so only an oversized frame arrives chained.
      rte_pktmbuf_free(m);
      stats_.Inc(DpCounter::k_drop_multiseg);
      continue;
    }
    pkts[k] = m;
    frames[k] = rte_pktmbuf_mtod(m, uint8_t*);
    lens[k] = m->data_len;
    capacity = std::min<uint16_t>(capacity, m->buf_len - m->data_off);
    ++k;
  }

  const Side other = proxy::Other(in);
  uint16_t done = 0;
  while (done < k) {
    const uint16_t p = engine_->ProcessBurst(in, frames + done, lens + done, capacity, k - done,
                                             now_ns, verdicts + done, out_.get());
    // Generated frames first: a backend's third ACK must precede anything
    // the same burst forwards after it.
    DrainGenerated();
    for (uint16_t j = done; j < done + p; ++j) {
      rte_mbuf* m = pkts[j];
      switch (verdicts[j]) {
        case Verdict::kForward:
          m->data_len = lens[j];
          m->pkt_len = lens[j];
          Send(other, m);
          break;
        case Verdict::kReflect:
          m->data_len = lens[j];
          m->pkt_len = lens[j];
          Send(in, m);
          break;
        case Verdict::kDrop:
        case Verdict::kConsumed:
          rte_pktmbuf_free(m);
          break;
      }
    }
    if (p == 0) {
      // Only possible if *out_ had no room, and it was just drained; never
      // spin on it.
      for (uint16_t j = done; j < k; ++j) rte_pktmbuf_free(pkts[j]);
      break;
    }
    done += p;
  }
  return n;
}

void Worker::RunTimers(uint64_t now_ns) {
  // A timer storm (thousands of flows expiring in one tick) is spread over
  // later ticks rather than stalling the RX rings.
  for (int round = 0; round < 64; ++round) {
    const bool more = engine_->Tick(now_ns, out_.get());
    DrainGenerated();
    if (!more) break;
  }
}

void Worker::Run(const volatile bool* stop) {
  const uint64_t hz = rte_get_tsc_hz();
  const uint64_t drain_tsc = std::max<uint64_t>(1, hz / 1000000 * config_.tx_drain_us);
  const uint64_t tick_tsc = std::max<uint64_t>(1, hz / 1000000 * config_.tick_us);
  uint64_t last_drain = rte_rdtsc();
  uint64_t last_tick = last_drain;
  uint32_t idle_rounds = 0;
  while (!*stop) {
    // A reload takes effect here, between two rounds of bursts.
    if (channel_ != nullptr) channel_->PickUp(index_, engine_.get());
    const uint64_t now_ns = RealtimeNs();
    const uint16_t n = Poll(Side::kClient, now_ns) + Poll(Side::kServer, now_ns);
    const uint64_t tsc = rte_rdtsc();
    if (tsc - last_tick >= tick_tsc) {
      RunTimers(now_ns);
      last_tick = tsc;
    }
    if (tsc - last_drain >= drain_tsc) {
      FlushAll();
      last_drain = tsc;
    }
    if (n == 0 && config_.idle_sleep_us != 0) {
      // A few empty rounds in a row before sleeping, so a burst that is
      // merely spread out does not pay the sleep.
      if (++idle_rounds >= 16) {
        FlushAll();
        rte_delay_us_sleep(config_.idle_sleep_us);
        stats_.Inc(DpCounter::k_idle_sleeps);
      }
    } else {
      idle_rounds = 0;
    }
  }
  FlushAll();
}

}  // namespace moat::dataplane
