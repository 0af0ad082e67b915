#pragma once
// Per-flow state: what moat must remember about a spliced connection. Two
// cache lines at most (static_assert below), so a table of a million flows
// is 128 MiB and a lookup touches one or two lines.
//
// Sequence spaces. The client's numbers are never rewritten; the backend's
// are shifted by `delta` so the client sees the ISN moat chose (the
// cookie). Everything moat tracks is kept in the numbers of the client leg
// (the wire between the client and moat): a server half's `next` is the
// backend's sequence number plus delta. So every comparison below is
// between two numbers of one space, and the only place delta is applied is
// where a backend segment enters tracking or a frame towards the backend is
// built. For backend-opened (passthrough) flows delta is 0 and the spaces
// coincide.

#include <cstdint>

#include "moat/net/seqnum.h"

namespace moat::proxy {

// Which port a frame arrived on or leaves by; also indexes Flow::half.
enum class Side : uint8_t { kClient = 0, kServer = 1 };

inline constexpr Side Other(Side s) { return s == Side::kClient ? Side::kServer : Side::kClient; }

// The life of a flow. RFC 9293 names where moat, sitting in the middle,
// sees what the endpoints' states would be; docs/design.md has the table of
// (state, segment kind) -> handler -> next state.
enum class FlowState : uint8_t {
  // Cookie flow: the client's ACK proved the cookie, moat sent the backend
  // its SYN and waits for the SYN-ACK (moat is in SYN-SENT towards it).
  // Backend-opened flow: the backend's SYN was seen, and the two ends have
  // not both acknowledged yet.
  kSynSent,
  // Both ends synchronized; segments are spliced (or passed through).
  kEstablished,
  // One end sent a FIN (it is in FIN-WAIT, its peer in CLOSE-WAIT).
  kHalfClosed,
  // Both ends sent FINs, not both acknowledged (CLOSING / LAST-ACK).
  kClosing,
  // Both FINs acknowledged: lingers briefly so retransmissions of the last
  // ACK are still translated (TIME-WAIT, shortened).
  kTimeWait,
  // An in-window but not exact RST was passed on (RFC 5961 §3.2); the
  // flow stays until traffic withdraws it, or until moat has asked the
  // RST's receiver (keep-alive probes) and heard a RST or nothing.
  kRstPending,
};

inline constexpr const char* FlowStateName(FlowState s) {
  switch (s) {
    case FlowState::kSynSent: return "syn_sent";
    case FlowState::kEstablished: return "established";
    case FlowState::kHalfClosed: return "half_closed";
    case FlowState::kClosing: return "closing";
    case FlowState::kTimeWait: return "time_wait";
    case FlowState::kRstPending: return "rst_pending";
  }
  return "?";
}

// Who opened the connection. Cookie flows are spliced (moat rewrites the
// server's sequence space); backend-opened ones are tracked but never
// rewritten.
enum class FlowOrigin : uint8_t {
  kCookie,   // a client's SYN, answered by moat with a cookie
  kBackend,  // a protected backend's own SYN (simultaneous open joins it)
};

// HalfFlow::bits
inline constexpr uint8_t kHalfWscale = 1 << 0;    // this end offered window scaling
inline constexpr uint8_t kHalfSeqSeen = 1 << 1;   // `next` is valid
inline constexpr uint8_t kHalfAckSeen = 1 << 2;   // `ack`, `window` are valid
inline constexpr uint8_t kHalfFin = 1 << 3;       // this end sent a FIN (at `fin`)
inline constexpr uint8_t kHalfFinAcked = 1 << 4;  // and the peer acknowledged it

// What moat knows about one end's sending half, in client-leg numbers.
// Updated only by segments that fit the peer's advertised window, so blind
// injected data cannot set up a RST "exact match" or a FIN.
struct HalfFlow {
  net::SeqNum next;    // highest seq + len this end sent
  net::SeqNum ack;     // latest plausible ack this end sent
  net::SeqNum fin;     // sequence number of this end's FIN
  uint32_t window;     // receive window this end advertised, in bytes
  uint16_t raw_window;  // that window's field as sent
  uint8_t wscale;      // shift this end offered (when kHalfWscale)
  uint8_t bits;        // kHalf*

  bool Has(uint8_t b) const { return (bits & b) != 0; }
};

// MACs and VLAN tags of the client-side frames that created the flow: the
// headers of every frame moat generates for it (moat is a bump in the
// wire; its frames go back the way the flow's frames came).
struct L2Path {
  uint8_t client_mac[6];  // source MAC of the client-side frames
  uint8_t server_mac[6];  // their destination: the backend (or its router)
  uint8_t vlan_count;
  uint16_t vlan_tci[2];
  uint16_t vlan_tpid[2];
};

inline constexpr uint32_t kNoHeld = 0xffffffffu;

// Flow::fastopen
inline constexpr uint8_t kFastOpenNone = 0;
inline constexpr uint8_t kFastOpenPending = 1;  // counted in the per-worker bound
inline constexpr uint8_t kFastOpenDone = 2;     // the backend answered

// Flow::repair: what moat fixes on a flow whose backend refused an option
// the client had already negotiated with moat's cookie SYN-ACK
// (lib/proxy/splice.cc; docs/design.md, "Backends that differ from the
// flags").
// Client -> server SACK options become NOPs: the backend did not permit
// SACK (RFC 2018 §2).
inline constexpr uint8_t kRepairSack = 1 << 0;
// Server -> client segments get a TSopt from moat's clock: the client
// negotiated timestamps, the backend did not (RFC 7323 §3.2).
inline constexpr uint8_t kRepairTs = 1 << 1;
// The backend SYN advertised the client's MSS minus 12, room for that
// TSopt (set when it was sent, so a retransmitted SYN says the same).
inline constexpr uint8_t kRepairTsMss = 1 << 2;

struct Flow {
  FlowState state;
  FlowOrigin origin;
  uint8_t syn_retries;  // backend SYN retransmissions so far
  uint8_t held_count;   // client segments held while kSynSent
  // Options of the client leg, as the cookie carried them.
  bool client_ts;   // timestamps on the client leg
  bool backend_ts;  // the backend answered timestamps too
  bool sack;        // client SACK-permitted
  bool ecn;         // client asked for ECN (RFC 3168 §6.1.1)
  uint16_t client_mss;
  L2Path l2;
  net::SeqNum client_isn;
  net::SeqNum cookie_isn;   // moat's ISN towards the client
  net::SeqNum backend_isn;  // the backend's ISN
  net::SeqDelta delta;      // cookie_isn - backend_isn: backend -> client-leg numbers
  // moat's SYN-ACK TSval - the backend's TSval; with kRepairTs, moat's
  // SYN-ACK TSval - its monotonic ms clock when the backend answered.
  uint32_t ts_delta;
  uint32_t ts_ours;         // the TSval moat sent (echoed in the client's ACK)
  // Latest TSval from the client; with kRepairTs, TS.Recent as RFC 7323
  // §4.3 keeps it (what moat's inserted TSecr echoes).
  uint32_t client_tsval;
  uint32_t backend_tsval;   // latest TSval from the backend (its SYN-ACK's first)
  HalfFlow half[2];         // indexed by Side: each end's sending half
  uint32_t held_head;       // first held segment (kNoHeld: none)
  // The window shift moat offered the client in its SYN-ACK (when the
  // client offered scaling): --wscale, or 0 where only the SYN cache could
  // carry the client's shift (syn_answer.cc).
  uint8_t our_wscale;
  // kFastOpen*: a flow opened by a Fast Open SYN, while and after its
  // backend handshake ran (RFC 7413; lib/proxy/fastopen.cc).
  uint8_t fastopen;
  // The client may believe ECN is on (RFC 3168 §6.1.1) while the backend
  // does not use it: its refusal, or a lost timestamp echo that left moat
  // unsure what it agreed to. Client -> server segments then lose ECT and
  // ECE/CWR (Translate<kClient>), and CE-marked ones are dropped.
  bool ecn_clear;
  // kRstPending: the end that received the RST, and the probes sent to it.
  Side rst_to;
  uint8_t rst_probes;
  uint8_t repair;  // kRepair*
  uint64_t last_seen_ns;

  HalfFlow& of(Side s) { return half[static_cast<int>(s)]; }
  const HalfFlow& of(Side s) const { return half[static_cast<int>(s)]; }
  bool passthrough() const { return origin == FlowOrigin::kBackend; }
};
static_assert(sizeof(Flow) <= 128, "per-flow state must fit two cache lines");

}  // namespace moat::proxy
