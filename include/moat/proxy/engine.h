#pragma once
// The engine: moat's handshake and splice state machine for one worker, as
// plain functions over frame bytes. It owns the worker's flow table, timer
// wheel, cookie keys, held-segment pool and counters; it never touches a
// port. The dataplane hands it received frames and sends what it says to
// send.
//
// Per packet: one parse, one hash, one table probe, a few in-place field
// rewrites with incremental checksums (RFC 1624). No allocation after
// Create(), no locks, no logging, no exceptions.
//
// Verdicts and counters: every kDrop has bumped exactly one drop counter
// (a `drop_*` counter, or `cookie_invalid` for a bad cookie), so the stats
// table explains every frame moat did not pass on.
//
// The code is one file per protocol phase (docs/design.md has the state
// table):
//   engine.cc       set-up, classification, dispatch on (state, kind)
//   handshake.cc    SYN -> cookie SYN-ACK, cookie ACK -> backend SYN,
//                   backend SYN-ACK -> spliced
//   splice.cc       tracking and translation, both directions
//   close.cc        FIN, RST (RFC 5961), TIME_WAIT, timers, generated RSTs
//   passthrough.cc  backend-opened flows, simultaneous open
//   icmp.cc         non-TCP IP: ICMP errors about spliced flows, hidden TCP
//   syn_answer.cc   what a SYN-ACK offers, SYN-cache entries, SYN-ACK
//                   retransmission, cache/cookie-only mode (syn_cache.h)
//   syn_cache.cc    the SYN cache's table and the flood detector
//   fastopen.cc     TCP Fast Open (RFC 7413, --fastopen)
//
// Decisions worth knowing (details at each site):
// - RSTs (RFC 5961 §3): out-of-window dropped; an exact match (the
//   receiver's last ack, or the sender's next sequence number) ends the
//   flow; merely in-window ones are passed on and the flow kept: traffic
//   (the endpoint's challenge ACK) withdraws the RST, and after
//   time_wait_ms of silence moat asks the receiver itself with keep-alive
//   probes, since endpoints rate-limit challenge ACKs. Only a RST in
//   answer, or silence after the probes, removes the flow.
// - Idle expiry resets both ends at their exact sequence numbers: once moat
//   forgets a flow, none of its segments could pass any more.
// - Without timestamps a client window-scale shift below 6 is not
//   negotiated (the cookie cannot encode it without rounding it to "none");
//   with timestamps such a client is offered shift 0, so a lost timestamp
//   echo cannot leave it scaling windows moat forwards unscaled
//   (internal::ShiftToClient, RFC 7323 §2.2/§2.3). Without the echo, ECN
//   is assumed promised and cleared towards the backend.
// - Checksums are verified where a segment can create, answer or end
//   state (any segment of a flow that is not established, and every SYN,
//   FIN and RST); spliced data is rewritten incrementally without a full
//   verify (a bad checksum stays bad for the endpoint). The NIC's RX
//   verdict (FrameMeta, frame_meta.h) stands in for the software sum, per
//   checksum: GOOD skips it, BAD drops (drop_bad_checksum), UNKNOWN (no
//   offload, or a frame the NIC could not parse) is summed in software.
//   With TX offload on a side (EngineConfig::tx_checksum_offload) the
//   frames moat builds towards it (SYN-ACKs, backend SYN and ACK, RSTs,
//   probes) carry only the pseudo-header sum and say so (Emitted::tx,
//   FrameMeta::tx); rewritten frames keep their RFC 1624 updates.
// - ICMP errors from the client side quoting a segment of a spliced flow
//   reach the backend with the quoted seq in its own space (PMTU
//   discovery), when they reach the flow's worker: RSS places them by
//   their outer addresses, so with several queues only by chance.
// - A backend that refuses ECN the client negotiated with moat is counted
//   (backend_ecn_refused); the client's segments then stop claiming ECN
//   towards it (ECT and ECE/CWR cleared, CE-marked ones dropped), so
//   congestion shows as loss instead of marks nobody echoes (RFC 3168
//   §6.1.1, RFC 6040 §4.2).
// - Two clocks (RFC 7323 §5.4 wants timestamps monotonic, timers want
//   no steps, a fleet wants shared time): every now_ns the engine is given
//   is MONOTONIC time, and every timer (backend SYN retransmission,
//   TIME_WAIT, idle expiry, RST probes, SYN-cache retransmission and
//   expiry, Fast Open pending flows, the rate limiter, the flood detector)
//   runs on it, so a wall-clock step neither freezes nor expires flows.
//   Only what a fleet must agree on uses wall-clock time: cookie slots,
//   key epochs (so the Fast Open cookie's epoch), the cookie-carrying
//   TSval. The engine keeps wall = now_ns + an offset that the dataplane
//   refreshes once per timer tick (SyncWallClock): one add per cookie
//   instead of a second clock read per burst, and a wall step is seen
//   within a tick. See SECURITY.md ("Clocks").
// - A backend that refuses timestamps or SACK the client negotiated with
//   moat is repaired on that connection (Flow::repair, splice.cc): every
//   server -> client segment gets a 12-byte TSopt from moat's monotonic
//   clock (the only place a forwarded frame grows, within Process()'s
//   `capacity`), and the client's SACK options become NOPs (RFC 7323
//   §3.2, RFC 2018 §2). A timestamped client's backend SYN advertises its
//   MSS minus 12 unless the backend is known to answer timestamps, so
//   full-size backend segments still fit once grown (PlanTsRoom).
//   Segments that cannot grow (no option room, over --mtu or the client's
//   MSS) go on without, counted.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/cookie/cookie.h"
#include "moat/cookie/fastopen.h"
#include "moat/flow/flow_table.h"
#include "moat/flow/timer_wheel.h"
#include "moat/net/packet.h"
#include "moat/proxy/backend_table.h"
#include "moat/proxy/config.h"
#include "moat/proxy/flow_state.h"
#include "moat/proxy/frame_meta.h"
#include "moat/proxy/held_pool.h"
#include "moat/proxy/rate_limit.h"
#include "moat/proxy/stats.h"
#include "moat/proxy/syn_cache.h"

namespace moat::net {
struct TcpFrameSpec;
struct TcpReplySpec;
}

namespace moat::proxy {

enum class Verdict : uint8_t {
  kForward,   // send the frame out of the other port (possibly rewritten in place)
  kReflect,   // send the frame back out of the port it came in on (rewritten)
  kDrop,      // free it; exactly one drop counter was bumped
  kConsumed,  // the engine took what it needed (copied or absorbed); free it
};

// What a TCP segment is, from its flags, decided once per segment; the
// state machine dispatches on (flow state, kind).
enum class SegmentKind : uint8_t {
  kSyn,       // SYN without ACK: an open
  kSynAck,    // SYN+ACK
  kAck,       // ACK, maybe with data, no FIN
  kFin,       // ACK+FIN, maybe with data
  kRst,       // RST, with or without ACK
  kNoAck,     // none of SYN, RST, ACK (RFC 9293 §3.10.7.4: dropped when synchronized)
  kBadFlags,  // SYN with FIN or RST: no stack sends these
};

inline constexpr size_t kMaxEmitted = 16;
// The most frames one Process() call appends: the third ACK of the backend
// handshake plus every kept segment.
inline constexpr size_t kMaxEmittedPerPacket = 1 + kMaxHeldPerFlow;
// The most frames one timer expiry appends (RSTs towards both ends).
inline constexpr size_t kMaxEmittedPerTimer = 2;

struct Emitted {
  Side out;
  uint16_t len;
  const uint8_t* data;
  TxChecksum tx;  // checksums left to the NIC, if any
};

// Frames the engine wants sent, in scratch space owned by the caller (one
// per worker, 32 KiB). The dataplane copies each into an mbuf and Clear()s;
// it must do so before room() drops below kMaxEmittedPerPacket (after every
// Process() that appended, or when ProcessBurst()/Tick() stop early). Frames
// are in the order they must go out.
class Output {
 public:
  Output() = default;
  Output(const Output&) = delete;
  Output& operator=(const Output&) = delete;

  void Clear() { n_ = 0; }
  size_t size() const { return n_; }
  size_t room() const { return kMaxEmitted - n_; }
  Emitted operator[](size_t i) const { return Emitted{side_[i], len_[i], buf_[i], tx_[i]}; }

  // Engine side: a kMaxFrame buffer for the next frame (nullptr when full),
  // then Commit() its length.
  uint8_t* Next() { return n_ < kMaxEmitted ? buf_[n_] : nullptr; }
  void Commit(Side out, size_t len, TxChecksum tx = {}) {
    side_[n_] = out;
    len_[n_] = static_cast<uint16_t>(len);
    tx_[n_] = tx;
    ++n_;
  }

 private:
  alignas(64) uint8_t buf_[kMaxEmitted][kMaxFrame];
  Side side_[kMaxEmitted] = {};
  uint16_t len_[kMaxEmitted] = {};
  TxChecksum tx_[kMaxEmitted] = {};
  size_t n_ = 0;
};

class Engine {
 public:
  // Validates the config (ValidateConfig) and allocates everything the
  // engine will ever use: flow table, timer wheel, held-segment pool.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineConfig& config,
                                                        uint64_t now_ns);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // `frame` holds `*len` bytes and may be rewritten in place, up to
  // `capacity` bytes (`*len` is updated). New frames go to *out, which must
  // have room for kMaxEmittedPerPacket frames. `meta`, when given, carries
  // the NIC's RX checksum verdict in and, for a frame sent on in place,
  // the checksums left to the NIC out (frame_meta.h); without it every
  // checksum is summed in software.
  Verdict Process(Side in, uint8_t* frame, uint16_t* len, uint16_t capacity, uint64_t now_ns,
                  Output* out, FrameMeta* meta = nullptr);

  // l3fwd-style burst: parses every frame, hashes the flow keys and
  // prefetches their table buckets, then processes them in order while
  // *out has room for a worst-case packet. Returns how many were processed
  // (verdicts[0..ret) are set); the caller drains *out and calls again with
  // the rest. Same results as calling Process() on each frame in turn.
  // `meta` (nullptr, or one per frame) as for Process().
  uint16_t ProcessBurst(Side in, uint8_t* const* frames, uint16_t* lens, uint16_t capacity,
                        uint16_t n, uint64_t now_ns, Verdict* verdicts, Output* out,
                        FrameMeta* meta = nullptr);

  // Timers: backend SYN retransmission and give-up, TIME_WAIT, idle expiry.
  // Bounded by the room in *out; returns true when it stopped early (drain
  // *out and call again).
  bool Tick(uint64_t now_ns, Output* out);

  // The wall clock (CLOCK_REALTIME) that goes with the monotonic now_ns:
  // cookies, key epochs and moat's TSval use now_ns + (wall_ns - now_ns)
  // from here on. Call it after Create() and then once per timer tick;
  // until the first call wall and monotonic time are taken to be equal
  // (what tests and benchmarks that pass one clock want).
  void SyncWallClock(uint64_t now_ns, uint64_t wall_ns) {
    wall_offset_ns_ = wall_ns - now_ns;  // modulo 2^64: wall may be behind
    keys_.Refresh(wall_ns);
  }
  uint64_t WallNs(uint64_t now_ns) const { return now_ns + wall_offset_ns_; }

  // A new policy (reload): takes the services, the rate limit and the
  // allow/deny lists of `next` (the rest of it is ignored: fixed at
  // Create()). Called on the engine's own thread between bursts; copies,
  // never allocates (policy.cc). Flows of services that `next` no longer
  // protects keep being spliced until they end; new connections to those
  // services are bridged.
  void Reconfigure(const EngineConfig& next);

  const WorkerStats& stats() const { return stats_; }
  const EngineConfig& config() const { return config_; }
  const SynRateLimiter& rate_limiter() const { return *limiter_; }
  // Services removed by Reconfigure() whose flows may still be in the table.
  const ServiceSet& retired_services() const { return retired_; }
  uint32_t flow_count() const { return table_->size(); }
  uint32_t held_free() const { return held_->free_slots(); }
  // The SYN cache (nullptr when --syn_cache_entries=0) and the worker's
  // mode: true while SYNs are answered with cookies only (flood).
  const SynCache* syn_cache() const { return syn_cache_.get(); }
  // What this worker learned about its backends (read on the worker, or
  // by tests; telemetry copies it between bursts).
  const BackendTable& backends() const { return backends_; }
  bool cookie_only() const { return syn_cache_ == nullptr || flood_.cookie_only(); }
  // What Create() allocates through config.memory, per use, exactly (the
  // start-up memory plan), and its total. The engine object itself (a few
  // KiB of counters and policy) comes from the heap.
  static flow::MemoryPlan PlanMemory(const EngineConfig& config);
  static uint64_t MemoryBytes(const EngineConfig& config);
  static uint64_t SynCacheBytes(const EngineConfig& config);
  // Test and diagnostics access.
  const Flow* FindFlow(const flow::FlowKey& key);

 private:
  // A classified frame with its flow key and hash, so a burst can hash and
  // prefetch before it processes.
  struct Parsed {
    net::PacketView v;
    net::ParseError err;
    bool protected_tcp;
    bool retired;  // protected only as a service a reload removed (retired_)
    SegmentKind kind;
    flow::FlowKey key;
    uint32_t hash;
  };
  // The frame being answered in place: its length and the room after it.
  struct Frame {
    uint16_t* len;
    uint16_t capacity;
    FrameMeta* meta;  // nullptr: no NIC verdict in, no offload out
  };

  Engine(const EngineConfig& config, uint64_t now_ns);

  // engine.cc: classification and dispatch.
  void Classify(Side in, uint8_t* frame, uint16_t len, Parsed* p);
  Verdict Handle(Side in, Parsed* p, Frame frame, uint64_t now_ns, Output* out);
  bool MayConcernService(Side in, const net::PacketView& v) const;
  Verdict Spliced(Flow* f, Side in, Parsed* p, Frame frame, uint64_t now_ns, Output* out);
  void RemoveFlow(Flow* f);

  // icmp.cc: IP that is not TCP.
  Verdict NotTcp(Side in, net::PacketView& v);
  bool TranslateIcmpError(net::PacketView& v);

  // rate_limit.cc: deny list, allow list and rate limit for a client SYN.
  bool AdmitSyn(const net::PacketView& v, uint64_t now_ns);
  // Whether moat may send a SYN-ACK towards `src` now (a first one or a
  // SYN-cache retransmission): --deny, then --allow, then --synack_rate.
  enum class SynAckGate : uint8_t { kSend, kDenied, kOverRate };
  SynAckGate GateSynAck(uint8_t len, const uint8_t* src, uint64_t now_ns);


  // handshake.cc
  Verdict ClientNoFlow(Parsed* p, Frame frame, uint64_t now_ns, Output* out);
  Verdict AnswerSyn(Parsed* p, Frame frame, uint64_t now_ns, Output* out);
  Verdict CheckCookie(Parsed* p, uint64_t now_ns, Output* out);
  Verdict ClientWhileOpening(Flow* f, SegmentKind kind, net::PacketView& v, uint64_t now_ns,
                             Output* out);
  Verdict BackendAnswer(Flow* f, SegmentKind kind, net::PacketView& v, uint64_t now_ns,
                        Output* out);
  Verdict BackendSynAckAgain(Flow* f, net::PacketView& v, Output* out);
  bool SendBackendSyn(const Flow* f, Output* out);
  bool SendBackendAck(const Flow* f, net::SeqNum seq, net::SeqNum ack, Output* out);
  void ReleaseHeld(Flow* f, Output* out);

  // syn_answer.cc: what a SYN-ACK says, the SYN cache's entries, SYN-ACK
  // retransmission, the cache/cookie mode.
  struct SynAsk;
  struct SynAnswer;
  // backends.cc: learning each backend's options, and offering clients
  // only those.
  uint16_t NarrowToBackend(const net::PacketView& syn, uint64_t now_ns, SynAsk* ask);
  void LearnBackend(const Flow* f, const net::PacketView& synack, uint64_t now_ns);
  // Before a cookie flow's backend SYN: whether it must leave room for a
  // TSopt moat may have to insert (kRepairTsMss).
  void PlanTsRoom(Flow* f, uint64_t now_ns);
  // The backend's MSS where it is below AdvertisedMss, else 0.
  uint16_t MssCap(const BackendInfo* b, bool ipv6) const;
  // What --mss means for a family: IPv6's header is 20 bytes longer.
  uint16_t AdvertisedMss(bool ipv6) const {
    return ipv6 ? static_cast<uint16_t>(config_.mss - 20) : config_.mss;
  }
  SynAsk AskFromSyn(const net::PacketView& v) const;
  SynAnswer Answer(const SynAsk& ask, bool exact) const;
  void WriteSynAck(const SynAsk& ask, const SynAnswer& ans, bool ipv6, const uint8_t* client_addr,
                   uint32_t client_isn, uint32_t isn, uint64_t now_ns, uint8_t* options,
                   net::TcpReplySpec* r);
  // Keeps (or refreshes) the SYN's entry; true when the answer is exact.
  bool CacheSyn(Parsed* p, const SynAsk& ask, uint64_t now_ns);
  bool CacheSynSlow(Parsed* p, const SynAsk& ask, uint64_t now_ns, uint32_t id);
  void AppendFastOpenCookie(const SynAsk& ask, bool ipv6, const uint8_t* client_addr,
                            uint8_t* option);
  // On a valid cookie ACK: the entry's exact options, if there is one.
  bool TakeCacheEntry(const Parsed* p, uint32_t client_isn, cookie::SynOptions* syn,
                      uint8_t* our_wscale);
  void OnSynCacheTimer(uint32_t id, uint64_t now_ns, Output* out);
  void ModeChanged();
  void SetCacheGauge();

  // fastopen.cc: TCP Fast Open (RFC 7413).
  // A SYN with a Fast Open option: sets ask->tfo when the SYN-ACK must
  // carry a cookie; returns true (and *verdict) when a valid cookie with
  // data opened the flow at once.
  bool FastOpenSyn(Parsed* p, SynAsk* ask, Frame frame, uint64_t now_ns, Output* out,
                   Verdict* verdict);
  Verdict FastOpenSynAgain(Flow* f, net::PacketView& v, uint64_t now_ns, Output* out);
  void FastOpenDone(Flow* f);
  void FastOpenTick();

  // splice.cc
  template <Side kFrom>
  void Translate(Flow* f, net::PacketView& v);
  template <Side kFrom>
  void Track(Flow* f, const net::PacketView& v);
  void Track(Flow* f, Side from, const net::PacketView& v);
  Verdict Splice(Flow* f, Side in, net::PacketView& v, Frame frame, uint64_t now_ns);
  // kRepairTs: grows a server -> client segment by NOP NOP TSopt.
  void InsertTimestamps(Flow* f, net::PacketView& v, Frame frame, uint64_t now_ns);
  void StripSack(const net::PacketView& v, net::TcpRewriter& w);
  // moat's TSval towards the client of a kRepairTs flow.
  uint32_t RepairTsval(const Flow* f, uint64_t now_ns) const {
    return static_cast<uint32_t>(now_ns / 1'000'000) + f->ts_delta;
  }

  // close.cc
  Verdict Rst(Flow* f, Side in, net::PacketView& v, uint64_t now_ns);
  Verdict ReuseTimeWait(Flow* f, Side in, Parsed* p, Frame frame, uint64_t now_ns,
                        Output* out);
  void Settle(Flow* f, FlowState before, uint64_t now_ns);
  bool SendRst(const Flow* f, Side to, net::SeqNum seq, net::SeqNum ack, bool with_ack,
               Output* out);
  bool SendRstProbe(const Flow* f, uint64_t now_ns, Output* out);
  bool ResetBothEnds(const Flow* f, Output* out);
  uint64_t RstProbeIntervalNs() const;
  bool AnswersRstProbe(const Flow* f, Side in, SegmentKind kind, const net::PacketView& v) const;
  Verdict RstProbeAnswered(Flow* f, Side in, const net::PacketView& v, uint64_t now_ns);
  void OnTimer(uint32_t id, uint64_t now_ns, Output* out);
  void ArmIdle(Flow* f, uint64_t now_ns);
  uint64_t IdleTimeoutNs(const Flow* f) const;

  // passthrough.cc
  Verdict BackendOpens(Parsed* p, uint64_t now_ns);
  Verdict Passthrough(Flow* f, Side in, Parsed* p, Frame frame, uint64_t now_ns, Output* out);

  // Frames moat generates for a flow.
  void FillFromFlow(const Flow* f, Side to, net::TcpFrameSpec* s) const;
  bool Emit(Output* out, Side to, const net::TcpFrameSpec& s);
  // Whether a segment's IPv4 header and TCP checksums are right: the NIC's
  // verdict where it gave one (meta), else summed here.
  bool ChecksumsOk(const net::PacketView& v, const FrameMeta* meta) const;

  EngineConfig config_;
  cookie::KeySchedule keys_;
  cookie::CookieCodec codec_;
  std::unique_ptr<flow::FlowTable<Flow>> table_;
  std::unique_ptr<flow::TimerWheel> wheel_;
  std::unique_ptr<HeldPool> held_;
  std::unique_ptr<SynRateLimiter> limiter_;
  // Services a reload removed: their flows are still looked up (policy.cc).
  ServiceSet retired_;
  std::unique_ptr<SynCache> syn_cache_;
  // What each backend's SYN-ACKs said (backend_table.h).
  BackendTable backends_;
  FloodDetector flood_;
  cookie::FastOpenCodec tfo_;
  uint64_t wall_offset_ns_ = 0;  // wall-clock minus monotonic time (SyncWallClock)
  uint32_t tfo_pending_ = 0;  // flows with Flow::fastopen == kFastOpenPending
  bool tfo_paused_ = false;   // bound reached in cookie-only mode: refuse until calm
  WorkerStats stats_;
};

}  // namespace moat::proxy
