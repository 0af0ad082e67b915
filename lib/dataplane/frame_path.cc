#include "moat/dataplane/frame_path.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>

#include <algorithm>
#include <cstring>

namespace moat::dataplane {

using proxy::Side;
using proxy::Verdict;

namespace {

// DPDK 22.11 rte_mbuf_core.h: each verdict is two bits, UNKNOWN (neither),
// BAD, GOOD, NONE (both: the data's checksum is not filled in, its
// integrity checked otherwise, e.g. virtio from a local guest). NONE is
// UNKNOWN to moat: the engine then sums it and, since moat rewrites
// checksums incrementally, a checksum that is not in the data could not
// be kept right anyway.
inline proxy::HwChecksum HwVerdict(uint64_t flags, uint64_t mask, uint64_t good, uint64_t bad) {
  const uint64_t v = flags & mask;
  return v == good ? proxy::HwChecksum::kGood
         : v == bad ? proxy::HwChecksum::kBad
                    : proxy::HwChecksum::kUnknown;
}

inline proxy::HwChecksum IpVerdict(uint64_t flags) {
  return HwVerdict(flags, RTE_MBUF_F_RX_IP_CKSUM_MASK, RTE_MBUF_F_RX_IP_CKSUM_GOOD,
                 RTE_MBUF_F_RX_IP_CKSUM_BAD);
}

inline proxy::HwChecksum L4Verdict(uint64_t flags) {
  return HwVerdict(flags, RTE_MBUF_F_RX_L4_CKSUM_MASK, RTE_MBUF_F_RX_L4_CKSUM_GOOD,
                 RTE_MBUF_F_RX_L4_CKSUM_BAD);
}

// An mbuf about to be sent: only the flags that describe the buffer itself
// survive (an attached external buffer, an indirect mbuf); RX verdicts,
// RSS and VLAN flags must not reach the TX path.
constexpr uint64_t kBufferFlags = RTE_MBUF_F_EXTERNAL | RTE_MBUF_F_INDIRECT;

// What a NIC needs to complete the checksums of a frame the engine left
// them to: the header lengths and which sums to fill. The TCP checksum
// field already holds the pseudo-header sum, which is also what
// rte_eth_tx_prepare would write for the NICs that need it, so moat does
// not call it.
inline void SetTxOffload(rte_mbuf* m, const proxy::TxChecksum& tx) {
  m->l2_len = tx.l2_len;
  m->l3_len = tx.l3_len;
  m->ol_flags |= tx.ipv6 ? (RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_TCP_CKSUM)
                         : (RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_CKSUM);
}

}  // namespace

FramePath::FramePath(const Config& config, DataplaneStats* stats, StageTimer* timer)
    : queue_(config.queue),
      rx_checksum_{config.rx_checksum[0], config.rx_checksum[1]},
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

uint16_t FramePath::Gather(Side in, rte_mbuf** pkts, uint16_t n, uint8_t** frames, uint16_t* lens,
                           uint16_t* capacity, proxy::FrameMeta* meta) {
  const bool verdicts = meta != nullptr && rx_checksum_[static_cast<int>(in)];
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
    if (meta != nullptr) {
      meta[k] = proxy::FrameMeta{};
      if (verdicts) {
        meta[k].rx_ip = IpVerdict(m->ol_flags);
        meta[k].rx_l4 = L4Verdict(m->ol_flags);
      }
    }
    room = std::min<uint16_t>(room, m->buf_len - m->data_off);
    ++k;
  }
  *capacity = room;
  return k;
}

void FramePath::Apply(Side in, rte_mbuf* const* pkts, const uint16_t* lens, const Verdict* verdicts,
                      uint16_t n, proxy::Output* out, const proxy::FrameMeta* meta) {
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
      case Verdict::kReflect:
        m->data_len = lens[j];
        m->pkt_len = lens[j];
        m->ol_flags &= kBufferFlags;
        // Only a frame the engine answered in place (the SYN-ACK) may have
        // left its checksums to the NIC; frames it rewrote keep their
        // RFC 1624 incremental updates, two adds per field, which cost less
        // than the offload's metadata and are right on any port.
        if (meta != nullptr && meta[j].tx.offloaded()) SetTxOffload(m, meta[j].tx);
        if (verdicts[j] == Verdict::kForward) {
          to[so][nto[so]++] = m;
        } else {
          to[si][nto[si]++] = m;
        }
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
    if (e.tx.offloaded()) SetTxOffload(ms[i], e.tx);  // a fresh mbuf: no flags yet
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
