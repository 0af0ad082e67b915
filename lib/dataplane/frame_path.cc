#include "moat/dataplane/frame_path.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>

#include <algorithm>
#include <cstring>

namespace moat::dataplane {

using proxy::Side;
using proxy::Verdict;

FramePath::FramePath(const Config& config, DataplaneStats* stats, StageTimer* timer)
    : queue_(config.queue),
      burst_(std::clamp<uint16_t>(config.burst, 1, kMaxBurst)),
      drain_tsc_(config.drain_tsc),
      pool_(config.pool),
      stats_(stats),
      timer_(timer) {
  for (int s = 0; s < 2; ++s) tx_[s].port = config.port_ids[s];
}

FramePath::~FramePath() {
  for (TxBuffer& b : tx_) {
    rte_pktmbuf_free_bulk(b.pkts, b.n);
    b.n = 0;
  }
}

uint16_t FramePath::Gather(rte_mbuf** pkts, uint16_t n, uint8_t** frames, uint16_t* lens,
                           uint16_t* capacity) {
  uint16_t k = 0;
  uint16_t room = UINT16_MAX;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    if (m->nb_segs != 1) {
      rte_pktmbuf_free(m);
      stats_->Inc(DpCounter::k_drop_multiseg);
      continue;
    }
    pkts[k] = m;
    frames[k] = rte_pktmbuf_mtod(m, uint8_t*);
    lens[k] = m->data_len;
    room = std::min<uint16_t>(room, m->buf_len - m->data_off);
    ++k;
  }
  *capacity = room;
  return k;
}

void FramePath::Apply(Side in, rte_mbuf* const* pkts, const uint16_t* lens, const Verdict* verdicts,
                      uint16_t n, proxy::Output* out) {
  if (out->size() != 0) SendGenerated(out);
  const int si = static_cast<int>(in);
  const int so = 1 - si;
  rte_mbuf* to[2][kMaxBurst];
  uint16_t nto[2] = {0, 0};
  rte_mbuf* dead[kMaxBurst];
  uint16_t ndead = 0;
  for (uint16_t j = 0; j < n; ++j) {
    rte_mbuf* m = pkts[j];
    switch (verdicts[j]) {
      case Verdict::kForward:
        m->data_len = lens[j];
        m->pkt_len = lens[j];
        to[so][nto[so]++] = m;
        break;
      case Verdict::kReflect:
        m->data_len = lens[j];
        m->pkt_len = lens[j];
        to[si][nto[si]++] = m;
        break;
      case Verdict::kDrop:
      case Verdict::kConsumed:
        dead[ndead++] = m;
        break;
    }
  }
  if (ndead != 0) rte_pktmbuf_free_bulk(dead, ndead);
  timer_->Lap(Stage::k_verdict, n);
  Queue(so, to[so], nto[so]);
  Queue(si, to[si], nto[si]);
  timer_->Lap(Stage::k_tx, nto[0] + nto[1]);
}

void FramePath::SendGenerated(proxy::Output* out) {
  const size_t n = out->size();
  if (n == 0) return;
  rte_mbuf* ms[proxy::kMaxEmitted];
  if (rte_pktmbuf_alloc_bulk(pool_, ms, static_cast<unsigned>(n)) != 0) {
    // The pool is sized for full rings plus bursts, so this means frames
    // are stuck somewhere; the peers retransmit, the engine's timers retry.
    stats_->Inc(DpCounter::k_drop_generated_nombuf, n);
    out->Clear();
    timer_->Lap(Stage::k_generated, n);
    return;
  }
  rte_mbuf* to[2][proxy::kMaxEmitted];
  uint16_t nto[2] = {0, 0};
  for (size_t i = 0; i < n; ++i) {
    const proxy::Emitted e = (*out)[i];
    char* d = rte_pktmbuf_append(ms[i], e.len);
    if (d == nullptr) {  // cannot happen: frames are at most FrameRoom(--mtu), the data room
      rte_pktmbuf_free(ms[i]);
      stats_->Inc(DpCounter::k_drop_generated_nombuf);
      continue;
    }
    rte_memcpy(d, e.data, e.len);
    const int s = static_cast<int>(e.out);
    to[s][nto[s]++] = ms[i];
  }
  stats_->Inc(DpCounter::k_frames_generated, nto[0] + nto[1]);
  out->Clear();
  timer_->Lap(Stage::k_generated, n);
  Queue(0, to[0], nto[0]);
  Queue(1, to[1], nto[1]);
  timer_->Lap(Stage::k_tx, nto[0] + nto[1]);
}

void FramePath::Free(rte_mbuf** pkts, uint16_t n) {
  if (n != 0) rte_pktmbuf_free_bulk(pkts, n);
}

void FramePath::Queue(int side, rte_mbuf* const* ms, uint16_t n) {
  if (n == 0) return;
  stats_->Inc(DpCounter::k_tx_frames, n);
  TxBuffer& b = tx_[side];
  while (n != 0) {
    const uint16_t c = std::min<uint16_t>(n, burst_ - b.n);
    std::memcpy(b.pkts + b.n, ms, c * sizeof(ms[0]));
    b.n += c;
    ms += c;
    n -= c;
    if (b.n == burst_) Flush(side);
  }
}

void FramePath::Flush(int side) {
  TxBuffer& b = tx_[side];
  if (b.n == 0) return;
  const uint16_t sent = rte_eth_tx_burst(b.port, queue_, b.pkts, b.n);
  if (sent < b.n) {
    // The queue stayed full: the frames are freed and counted; TCP on
    // both ends retransmits them.
    rte_pktmbuf_free_bulk(b.pkts + sent, b.n - sent);
    stats_->Inc(DpCounter::k_drop_tx_full, b.n - sent);
  }
  b.n = 0;
}

void FramePath::FlushAll(uint64_t tsc) {
  Flush(0);
  Flush(1);
  last_flush_ = tsc;
}

void FramePath::EndRound(bool saturated, uint64_t tsc) {
  // An RX queue that returned less than a full burst is drained: nothing
  // more is coming from it right now, so holding a partial buffer would
  // only add latency (up to drain_tsc per hop, which a sequential TCP
  // client pays on every segment of every handshake). Only when every
  // queue came back full is a fuller burst on its way.
  if (!saturated || tsc - last_flush_ >= drain_tsc_) FlushAll(tsc);
}

}  // namespace moat::dataplane
