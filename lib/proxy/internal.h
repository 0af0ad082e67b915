#pragma once
// Helpers shared by the engine's phase files (lib/proxy/*.cc); not part of
// the public API.

#include <cstdint>
#include <cstring>

#include "moat/cookie/cookie.h"
#include "moat/net/builder.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/engine.h"
#include "moat/proxy/flow_state.h"

namespace moat::proxy {

// What a client's SYN asked for, already narrowed to what moat agrees to
// (--sack, --timestamps, --ecn): from the SYN itself, or from its SYN-cache
// entry for a retransmitted SYN-ACK.
struct Engine::SynAsk {
  uint16_t mss = 0;                         // 0: no MSS option
  uint8_t wscale = cookie::kNoWindowScale;  // the client's shift
  bool sack = false;
  bool ts = false;
  bool ecn = false;  // ECE+CWR in the SYN (RFC 3168 §6.1.1)
  uint32_t tsval = 0;
  // Put a Fast Open cookie in the SYN-ACK, in the option form the client
  // used (RFC 7413 §4.1.1; kind 254/0xF989 is the pre-RFC form).
  uint8_t tfo = kTfoNone;
  static constexpr uint8_t kTfoNone = 0;
  static constexpr uint8_t kTfoStd = 1;
  static constexpr uint8_t kTfoExp = 2;
};

// What moat answers: the options the cookie (ISN, TSval) carries, and what
// the SYN-ACK offers. They differ only where an entry keeps more than the
// cookie can carry (syn_answer.cc).
struct Engine::SynAnswer {
  cookie::SynOptions cookie;
  bool offer_ws = false;
  uint8_t our_wscale = 0;  // the shift moat offers when offer_ws
  bool ece = false;
  uint16_t mss_cap = 0;  // a learned backend's MSS below --mss; 0: none
};

}  // namespace moat::proxy

namespace moat::proxy::internal {

inline constexpr uint64_t kNsPerMs = 1'000'000;
inline constexpr uint64_t kNsPerSec = 1'000'000'000;
// SYN-ACK window: unscaled (RFC 7323 §2.2), so the largest 16-bit value.
inline constexpr uint16_t kSynAckWindow = 65535;
// NOP NOP TSopt: what moat adds to a server -> client segment of a
// kRepairTs flow, and takes off the MSS it advertises such a backend.
inline constexpr uint16_t kTsOptionLen = 12;

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

// Where the NIC finds the headers of a frame built with
// net::Checksums::kOffload: `l2_len` bytes of Ethernet (and VLAN tags),
// then a bare IP header (the builders never write IP options or extension
// headers).
inline TxChecksum TxFor(uint16_t l2_len, bool ipv6) {
  return TxChecksum{static_cast<uint8_t>(l2_len),
                    static_cast<uint8_t>(ipv6 ? net::kIpv6HeaderLen : net::kIpv4HeaderLen), ipv6};
}
inline TxChecksum TxFor(const net::TcpFrameSpec& s) {
  return TxFor(static_cast<uint16_t>(net::kEthernetHeaderLen + net::kVlanTagLen * s.vlan_count),
               s.ipv6);
}

}  // namespace moat::proxy::internal

namespace moat::proxy {

// What the client's SYN asks for (see SynAsk).
inline Engine::SynAsk Engine::AskFromSyn(const net::PacketView& v) const {
  const net::TcpOptions& opts = v.opts;
  SynAsk a;
  a.mss = opts.has_mss ? opts.mss : 0;
  a.wscale = opts.has_wscale ? opts.wscale : cookie::kNoWindowScale;
  a.sack = opts.sack_permitted && config_.sack;
  a.ts = opts.has_timestamps && config_.timestamps;
  a.tsval = opts.tsval;
  a.ecn = config_.ecn && (v.tcp_flags() & (net::kTcpEce | net::kTcpCwr)) == (net::kTcpEce | net::kTcpCwr);
  return a;
}

inline Engine::SynAnswer Engine::Answer(const SynAsk& a, bool exact) const {
  SynAnswer r;
  r.cookie.mss = a.mss;  // 0: the RFC 9293 §3.7.1 default
  // Window scale: with timestamps the exact shift rides in the TSval. The
  // ISN alone can only say {none, 6, 7, 8} rounding down, and rounding a
  // small shift down to "none" would leave the client scaling a window the
  // backend reads unscaled. So in cookie mode, without timestamps, a shift
  // below 6 is not negotiated at all (RFC 7323 §2.2: no WS in the SYN-ACK,
  // scaling off both ways), which only costs that client window size.
  const bool cookie_ws =
      a.wscale != cookie::kNoWindowScale && (a.ts || a.wscale >= cookie::kWscaleCodes[1]);
  r.cookie.wscale = cookie_ws ? a.wscale : cookie::kNoWindowScale;
  r.cookie.sack = a.sack;
  r.cookie.timestamps = a.ts;
  // ECN setup (RFC 3168 §6.1.1): without an entry, agree only when the bit
  // can travel to the ACK in the TSval; otherwise the backend would never
  // hear of it.
  r.cookie.ecn = a.ecn && a.ts;
  // moat's own shift: --wscale only where the ISN alone restores the
  // client's offer (a shift of 6 or more). A timestamped client's smaller
  // shift rides in the echo, and an echo the ACK loses or mangles would
  // leave the client scaling moat's unscaled windows by up to 2^14; so it,
  // like an entry-only one (see the top of syn_answer.cc), is offered 0.
  r.our_wscale = internal::ShiftToClient(a.wscale, config_.wscale);
  if (exact) {
    r.offer_ws = a.wscale != cookie::kNoWindowScale;
    r.ece = a.ecn;
  } else {
    r.offer_ws = cookie_ws;
    r.ece = r.cookie.ecn;
  }
  return r;
}

// Hot: every SYN; inline so its arguments stay in registers.
inline void Engine::WriteSynAck(const SynAsk& a, const SynAnswer& r, bool ipv6,
                         const uint8_t* client_addr, uint32_t client_isn, uint32_t isn,
                         uint64_t now_ns, uint8_t* options, net::TcpReplySpec* s) {
  net::TcpOptionWriter w(options, 40);
  const uint16_t mss = AdvertisedMss(ipv6);
  w.Mss(r.mss_cap != 0 && r.mss_cap < mss ? r.mss_cap : mss);
  // Linux's layout, which middleboxes know: MSS, SACK-perm+TS, NOP+WS.
  if (a.ts) {
    const uint32_t tsval =
        cookie::CookieCodec::EncodeTsval(internal::ClockMs(WallNs(now_ns)), r.cookie);
    if (a.sack) {
      w.SackPermitted().Timestamps(tsval, a.tsval);
    } else {
      w.Nop().Nop().Timestamps(tsval, a.tsval);
    }
  } else if (a.sack) {
    w.Nop().Nop().SackPermitted();
  }
  // RFC 7323 §2.2: offer window scaling only to a client that offered it.
  if (r.offer_ws) w.Nop().WindowScale(r.our_wscale);
  size_t len = w.Finish();
  if (a.tfo != SynAsk::kTfoNone && len + 12 <= 40) [[unlikely]] {
    AppendFastOpenCookie(a, ipv6, client_addr, options + len);
    len += 12;
  }
  s->options = options;
  s->options_len = static_cast<uint8_t>(len);
  s->seq = isn;
  s->ack = client_isn + 1;
  s->flags = net::kTcpSyn | net::kTcpAck | (r.ece ? net::kTcpEce : 0);
  s->window = internal::kSynAckWindow;
}

// A SYN, on the flood path too: the SYN cache's entry, if the worker keeps
// one (syn_answer.cc has the rest). Returns whether the answer is exact.
inline bool Engine::CacheSyn(Parsed* p, const SynAsk& a, uint64_t now_ns) {
  if (syn_cache_ == nullptr) return false;
  if (flood_.OnSyn(now_ns, syn_cache_->size(), syn_cache_->capacity())) [[unlikely]]
    ModeChanged();
  // Cookie-only mode, the flood path: a SYN whose exact answer is the
  // cookie's answer gets the same bytes whether or not an entry from
  // before the switch exists (a stale entry for another ISN only ever
  // misses), so it needs no lookup. Only a SYN the entry would answer
  // differently (a small shift or ECN without timestamps, Answer()) must
  // find its entry, so that a retransmitted SYN is answered as the first.
  const bool divergent =
      !a.ts && (a.ecn || (a.wscale != cookie::kNoWindowScale && a.wscale < cookie::kWscaleCodes[1]));
  if (flood_.cookie_only() && !divergent) {
    stats_.Inc(Counter::k_syn_cookie_only);
    return false;
  }
  const uint32_t id = syn_cache_->Find(p->key, p->hash);
  if (id == SynCache::kNone && flood_.cookie_only()) {
    stats_.Inc(Counter::k_syn_cookie_only);
    return false;
  }
  return CacheSynSlow(p, a, now_ns, id);
}

}  // namespace moat::proxy
