#pragma once
// What a worker does with frames around the engine, apart from polling RX:
// checking what came in (Gather), applying the engine's verdicts and
// sending the frames it generated (Apply, SendGenerated), buffering TX per
// port and deciding when to flush (EndRound). Split out of Worker so that
// all of it runs in unit tests on ring-backed ports, without root or NICs
// (tests/dataplane).
//
// TX flush policy: a port's buffer goes out as soon as it holds a full
// burst. At the end of a poll round whatever is left goes out too, unless
// every RX poll of the round returned a full burst: then more frames are
// right behind and the buffers fill on their own, so partial ones wait
// (l3fwd's batching at full load). `drain_tsc` is the backstop for that
// case: no frame waits in a buffer longer than that. A lone frame at low
// load therefore leaves in the round it arrived in.

#include <cstdint>

#include "moat/dataplane/counters.h"
#include "moat/proxy/engine.h"

struct rte_mbuf;
struct rte_mempool;

namespace moat::dataplane {

class FramePath {
 public:
  static constexpr uint16_t kMaxBurst = 64;

  struct Config {
    uint16_t port_ids[2] = {0, 1};  // ethdev port of proxy::Side i
    uint16_t queue = 0;             // TX queue on both ports
    rte_mempool* pool = nullptr;    // mbufs for generated frames
    uint16_t burst = 32;            // a buffer holding this many goes out (1..kMaxBurst)
    uint64_t drain_tsc = 1;         // TSC cycles a saturated round may hold frames
    // Per proxy::Side: its port was started with RX checksum offload
    // (port.h), so the mbufs carry the NIC's verdicts. Tests set it by
    // hand, since net_ring has none. (TX offload is the engine's
    // decision, EngineConfig::tx_checksum_offload; this only applies it.)
    bool rx_checksum[2] = {false, false};
  };

  // `stats` and `timer` must outlive the FramePath.
  FramePath(const Config& config, DataplaneStats* stats, StageTimer* timer);
  // Frees whatever is still buffered (nothing is sent from a destructor).
  ~FramePath();
  FramePath(const FramePath&) = delete;
  FramePath& operator=(const FramePath&) = delete;

  // RX side: keeps the single-segment frames of pkts[0..n) at the front of
  // pkts in order, with their data pointers and lengths in frames[]/lens[],
  // and prefetches their headers for the engine. Chained mbufs are freed
  // and counted (drop_multiseg): the engine works on contiguous frames and
  // RX scatter is never enabled, so only an oversized frame arrives so.
  // *capacity is the room every kept frame has for in-place growth.
  // Returns how many were kept. With `meta`, also meta[i] for every kept
  // frame: the NIC's checksum verdict (RTE_MBUF_F_RX_IP/L4_CKSUM_*;
  // UNKNOWN unless the port of `in` has RX checksum offload) and no TX
  // offload yet.
  uint16_t Gather(proxy::Side in, rte_mbuf** pkts, uint16_t n, uint8_t** frames, uint16_t* lens,
                  uint16_t* capacity, proxy::FrameMeta* meta = nullptr);

  // After Engine::ProcessBurst handled frames pkts[0..n) that came in on
  // `in`: first the frames the engine generated (*out, cleared), then each
  // frame by its verdict: kForward out of the other port and kReflect out
  // of `in`, both with length lens[i]; kDrop and kConsumed freed. Frames
  // leave each port in that order: a backend's third ACK precedes the data
  // the same burst forwards after it.
  // A frame sent on keeps its RX mbuf: its RX offload flags are cleared
  // (they must never be read as TX flags), and meta[i].tx (when meta is
  // given) says which checksums the engine left to the NIC.
  void Apply(proxy::Side in, rte_mbuf* const* pkts, const uint16_t* lens,
             const proxy::Verdict* verdicts, uint16_t n, proxy::Output* out,
             const proxy::FrameMeta* meta = nullptr);

  // Copies every frame in *out into a fresh mbuf, queues it, clears *out.
  // A frame whose checksums the engine left to the NIC (Emitted::tx) gets
  // the mbuf's TX offload flags and header lengths. An empty pool drops
  // them all (drop_generated_nombuf).
  void SendGenerated(proxy::Output* out);

  // Frees frames nobody will send.
  void Free(rte_mbuf** pkts, uint16_t n);

  // End of a poll round at TSC `tsc`; `saturated` when every RX poll of the
  // round returned a full burst. See the flush policy above.
  void EndRound(bool saturated, uint64_t tsc);

  // Sends both buffers now (on the way out, before an idle sleep).
  void FlushAll(uint64_t tsc);

  // Frames waiting in the TX buffer of a side (tests).
  uint16_t buffered(proxy::Side s) const { return tx_[static_cast<int>(s)].n; }

 private:
  struct TxBuffer {
    uint16_t port;
    uint16_t n = 0;
    rte_mbuf* pkts[kMaxBurst];
  };

  // Appends to a side's buffer, sending each full burst.
  void Queue(int side, rte_mbuf* const* ms, uint16_t n);
  void Flush(int side);

  const uint16_t queue_;
  const bool rx_checksum_[2];
  const uint16_t burst_;
  const uint64_t drain_tsc_;
  rte_mempool* const pool_;
  DataplaneStats* const stats_;
  StageTimer* const timer_;
  uint64_t last_flush_ = 0;
  TxBuffer tx_[2];
};

}  // namespace moat::dataplane
