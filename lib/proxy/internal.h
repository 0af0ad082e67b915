#pragma once
// Helpers shared by the engine's phase files (lib/proxy/*.cc); not part of
// the public API.

#include <cstdint>
#include <cstring>

#include "moat/cookie/cookie.h"
#include "moat/net/builder.h"
#include "moat/net/packet.h"
#include "moat/proxy/engine.h"
#include "moat/proxy/flow_state.h"

namespace moat::proxy::internal {

inline constexpr uint64_t kNsPerMs = 1'000'000;
inline constexpr uint64_t kNsPerSec = 1'000'000'000;
// SYN-ACK window: unscaled (RFC 7323 §2.2), so the largest 16-bit value.
inline constexpr uint16_t kSynAckWindow = 65535;

inline uint32_t ClockMs(uint64_t now_ns) { return static_cast<uint32_t>(now_ns / kNsPerMs); }

inline SegmentKind KindOf(uint8_t flags) {
  if (flags & net::kTcpSyn) {
    if (flags & (net::kTcpFin | net::kTcpRst)) return SegmentKind::kBadFlags;
    return (flags & net::kTcpAck) ? SegmentKind::kSynAck : SegmentKind::kSyn;
  }
  if (flags & net::kTcpRst) return SegmentKind::kRst;
  if (!(flags & net::kTcpAck)) return SegmentKind::kNoAck;
  return (flags & net::kTcpFin) ? SegmentKind::kFin : SegmentKind::kAck;
}

// (w << from) >> to, clamped to the 16-bit field. A non-zero window never
// becomes zero: that would stall the sender until a window probe.
inline uint16_t Rescale(uint16_t w, int from_shift, int to_shift) {
  const uint64_t bytes = static_cast<uint64_t>(w) << from_shift;
  uint64_t field = bytes >> to_shift;
  if (field > 0xffff) field = 0xffff;
  if (field == 0 && w != 0) field = 1;
  return static_cast<uint16_t>(field);
}

// The window-scale shift moat offers a client whose SYN offered
// `client_shift` (RFC 7323 §2.2: only to a client that offered one).
// The exact client shift reaches the third ACK only in the TSval echo; the
// ISN carries {none, 6, 7, 8}. If the echo is lost (or disagrees with the
// ISN), a shift below 6 reads as "no scaling": moat then treats the client
// as not scaling and forwards the backend's windows unscaled, while the
// client applies whatever shift moat's SYN-ACK offered to every window it
// receives (RFC 7323 §2.3: fixed for the connection). So for those clients
// moat offers shift 0 - a valid offer that enables scaling for the
// client's own windows at factor 1 for moat's (§2.2: "even if its own scale
// factor is 1 and the exponent 0") - and a lost echo is then harmless:
// both sides read moat's windows unscaled, and the backend reads the
// client's (scaled) fields as smaller than they are, which only slows it.
// With the echo the client keeps its own shift towards the backend; what
// it costs is a 64 KiB window towards these clients. Shifts of 6 and more
// survive in the ISN (rounded down, which again only understates the
// client's window) and get moat's own shift.
inline uint8_t ShiftToClient(uint8_t client_shift, uint8_t configured) {
  return client_shift >= cookie::kWscaleCodes[1] ? configured : 0;
}

// The shift `side` applies to its own window fields. RFC 7323 §2.2:
// scaling is on for a connection only if both SYNs carried the option. On
// a cookie flow moat answers the client's offer itself, so the client leg
// scales whenever the client offered; moat offers the backend scaling only
// when the client did, so the backend's leg scales when the backend
// answered. On a backend-opened flow both ends must have offered.
inline int WindowShift(const Flow* f, Side side) {
  const HalfFlow& h = f->of(side);
  if (!h.Has(kHalfWscale)) return 0;
  const bool agreed =
      (side == Side::kClient && !f->passthrough()) || f->of(Other(side)).Has(kHalfWscale);
  return agreed ? h.wscale : 0;
}

// The path of a flow's frames, from a frame that travels client -> server
// (`client_side`) or server -> client.
inline void CopyL2(const net::PacketView& v, bool client_side, L2Path* l2) {
  std::memcpy(client_side ? l2->client_mac : l2->server_mac, v.src_mac(), 6);
  std::memcpy(client_side ? l2->server_mac : l2->client_mac, v.dst_mac(), 6);
  l2->vlan_count = v.vlan_count;
  for (int i = 0; i < v.vlan_count; ++i) {
    l2->vlan_tci[i] = v.vlan_tci[i];
    l2->vlan_tpid[i] = v.vlan_tpid[i];
  }
}

inline void CopyVlans(uint8_t count, const uint16_t* tci, const uint16_t* tpid,
                      net::TcpFrameSpec* s) {
  s->vlan_count = count;
  for (int i = 0; i < count; ++i) {
    s->vlan_tci[i] = tci[i];
    s->vlan_tpid[i] = tpid[i];
  }
}

// Ethernet/VLAN/IP/ports of a reply to `v`: everything swapped, VLAN tags
// kept (moat is a bump in the wire; the reply goes back the same way).
inline void FillReplyTo(const net::PacketView& v, net::TcpFrameSpec* s) {
  std::memcpy(s->src_mac.b, v.dst_mac(), 6);
  std::memcpy(s->dst_mac.b, v.src_mac(), 6);
  CopyVlans(v.vlan_count, v.vlan_tci, v.vlan_tpid, s);
  s->ipv6 = v.ipv6();
  s->src_addr = v.dst_addr();  // BuildTcpFrame copies addresses first
  s->dst_addr = v.src_addr();
  s->src_port = v.dst_port();
  s->dst_port = v.src_port();
}

}  // namespace moat::proxy::internal
