#pragma once
// Per-flow state: what moat must remember about a spliced connection. Two
// cache lines at most (static_assert below), so a table of a million flows
// is 128 MiB and a lookup touches one or two lines.
//
// Sequence spaces: the client's numbers are never rewritten. The backend's
// are shifted by `delta` so the client sees the ISN moat chose (the cookie).
// Fields named *_cf ("client-facing") hold server-side numbers already
// shifted into the client's view, so every comparison below is between two
// numbers of the same space with no delta arithmetic. For passthrough flows
// (opened by the backend) delta is 0 and the two spaces coincide.

#include <cstdint>

namespace moat::proxy {

enum class FlowState : uint8_t {
  kSynSent,      // cookie validated, backend SYN sent, waiting for SYN-ACK
  kEstablished,  // spliced (or passed through); FIN flags track half-close
  kTimeWait,     // both FINs acked: linger briefly for retransmissions
};

// Flow::flags
inline constexpr uint16_t kFlowClientWscale = 1 << 0;   // client offered/uses wscale
inline constexpr uint16_t kFlowBackendWscale = 1 << 1;  // backend answered wscale
inline constexpr uint16_t kFlowTimestamps = 1 << 2;     // timestamps on the client leg
inline constexpr uint16_t kFlowBackendTs = 1 << 3;      // backend answered timestamps
inline constexpr uint16_t kFlowSack = 1 << 4;           // client SACK-permitted (decoded)
inline constexpr uint16_t kFlowEcn = 1 << 5;            // client asked for ECN (decoded)
inline constexpr uint16_t kFlowFinClient = 1 << 6;      // client sent FIN
inline constexpr uint16_t kFlowFinServer = 1 << 7;      // server sent FIN
inline constexpr uint16_t kFlowFinClientAcked = 1 << 8;
inline constexpr uint16_t kFlowFinServerAcked = 1 << 9;
inline constexpr uint16_t kFlowPassthrough = 1 << 10;  // opened by the backend: no rewriting
inline constexpr uint16_t kFlowRstPending = 1 << 11;   // in-window RST seen, not confirmed
inline constexpr uint16_t kFlowClientAckSeen = 1 << 12;  // client_ack_cf/client_win valid
inline constexpr uint16_t kFlowServerAckSeen = 1 << 13;  // server_ack/server_win valid
inline constexpr uint16_t kFlowClientSeqSeen = 1 << 14;  // client_next valid
inline constexpr uint16_t kFlowServerSeqSeen = 1 << 15;  // server_next_cf valid

inline constexpr uint32_t kNoHeld = 0xffffffffu;

struct Flow {
  FlowState state;
  uint8_t client_wscale;   // decoded shift (when kFlowClientWscale)
  uint8_t backend_wscale;  // from the backend's SYN/SYN-ACK (when kFlowBackendWscale)
  uint8_t syn_retries;     // backend SYN retransmissions so far
  uint16_t flags;
  uint16_t client_mss;  // decoded from the cookie
  uint8_t held_count;
  uint8_t vlan_count;
  uint16_t vlan_tci[2];
  uint16_t vlan_tpid[2];
  uint8_t client_mac[6];  // source MAC of the client-side frames
  uint8_t server_mac[6];  // their destination MAC: the backend (or its router)
  uint32_t client_isn;
  uint32_t cookie_isn;   // moat's ISN towards the client
  uint32_t backend_isn;  // the backend's ISN
  uint32_t delta;        // cookie_isn - backend_isn (mod 2^32)
  uint32_t ts_delta;     // moat's SYN-ACK TSval - backend's TSval
  uint32_t ts_ours;      // the TSval moat sent (echoed in the client's ACK)
  uint32_t client_tsval;   // latest TSval from the client
  uint32_t backend_tsval;  // the backend SYN-ACK's TSval (echoed in moat's ACK)
  uint16_t client_window;  // raw window field of the client's latest ACK
  uint16_t pad0;
  // Tracking for RFC 5961 RST checks, FIN handling and generated RSTs.
  uint32_t client_next;     // highest seq + len seen from the client (in window)
  uint32_t server_next_cf;  // same for the server, client-facing
  uint32_t client_ack_cf;   // latest ack from the client (client-facing server space)
  uint32_t server_ack;      // latest ack from the server (client space)
  uint32_t client_win;      // client's receive window in bytes
  uint32_t server_win;      // server's receive window in bytes
  uint32_t fin_client_seq;     // sequence number of the client's FIN
  uint32_t fin_server_seq_cf;  // of the server's FIN, client-facing
  uint32_t held_head;          // first kept segment (kNoHeld: none)
  uint64_t last_seen_ns;
};
static_assert(sizeof(Flow) <= 128, "per-flow state must fit two cache lines");

}  // namespace moat::proxy
