// The splice (docs/design.md, synchronized states): every segment of a
// cookie flow is tracked in client-leg numbers and translated in place
// between the two sequence spaces, with one incremental checksum update
// (RFC 1624) per segment.
//   server -> client: seq += delta, TSval += ts_delta, window rescaled
//   client -> server: ack -= delta, SACK edges -= delta, TSecr -= ts_delta,
//                     window unscaled when the backend refused scaling
// and on flows whose backend refused an option the client had already
// negotiated with moat (Flow::repair):
//   client -> server: SACK options overwritten with NOPs (StripSack)
//   server -> client: NOP NOP TSopt inserted, the frame grown by 12 bytes
//                     (InsertTimestamps)

#include <cstring>

#include "internal.h"
#include "moat/net/bytes.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpFin;
using net::kTcpSyn;
using net::PacketView;
using net::SeqNum;

template <Side kFrom>
void Engine::Translate(Flow* f, PacketView& v) {
  const net::TcpOptions& opts = v.opts;
  const bool has_options = v.tcp_header_len > net::kTcpHeaderLen;
  // All rewrites of this segment, one checksum update at the end.
  net::TcpRewriter w(v);
  if constexpr (kFrom == Side::kClient) {
    const bool ack = v.tcp_flags() & kTcpAck;
    if (ack) w.SetAck(v.ack() - f->delta);
    if (has_options) {
      if (opts.sack_blocks != 0 && (f->repair & kRepairSack)) [[unlikely]] {
        StripSack(v, w);
      } else {
        // SACK blocks name the server's bytes as the client sees them (RFC
        // 2018 §3): shift them back into the backend's space.
        for (int i = 0; i < 2 * opts.sack_blocks; ++i) {
          const uint16_t off = static_cast<uint16_t>(opts.sack_offset + 4 * i);
          w.SetOption32(off, (SeqNum(net::LoadBe32(v.tcp() + off)) - f->delta).value());
        }
      }
      if (opts.has_timestamps && (f->repair & kRepairTs)) [[unlikely]] {
        // The TSecr moat inserts towards the client. RFC 7323 §4.3 keeps
        // TS.Recent from the segment at the receiver's Last.ACK.sent, so
        // that the echo covers the ACK's delay; moat is not the receiver
        // and sees the client's next segments before the backend acks the
        // earlier ones, so that rule would echo a TSval up to a window
        // old. The latest in-window TSval instead understates the
        // client's RTT by at most the moat-backend leg and the backend's
        // ACK delay, which are short next to the client's path and which
        // the RTO floor absorbs (RFC 6298 §2.4). In-window (both edges,
        // not only Track's upper one) and not older than the last
        // (§5.3's PAWS test, modulo 2^32), so neither a blind segment nor
        // a reordered one moves it.
        const HalfFlow& server = f->of(Side::kServer);
        if (v.seq().InWindow(server.ack, server.window + 1) &&
            static_cast<int32_t>(opts.tsval - f->client_tsval) >= 0) {
          f->client_tsval = opts.tsval;
        }
        // The TSopt itself goes on to the backend as the client sent it:
        // a TCP that did not negotiate timestamps ignores a TSopt (RFC
        // 7323 §3.2; Linux parses it only with tstamp_ok), and taking it
        // out would shrink segments for nothing (they fit, they were
        // sized with it).
      } else if (opts.has_timestamps) {
        f->client_tsval = opts.tsval;
        // TSecr echoes the server's TSval as moat shifted it (RFC 7323
        // §3.2; only meaningful with ACK set).
        if (f->backend_ts && ack) {
          w.SetOption32(static_cast<uint16_t>(opts.ts_offset + 4), opts.tsecr - f->ts_delta);
        }
      }
    }
    if (f->ecn_clear) {
      // The client may believe in ECN; the backend does not use it, so it
      // would neither echo a CE mark nor care about ECE/CWR. Segments that
      // claim no ECN capability make routers behind moat drop instead of
      // mark, and the client hears of congestion by loss (RFC 3168 §6.1.1:
      // ECT only on connections that negotiated ECN). CE-marked segments
      // never get here (Splice, ReleaseHeld).
      const uint8_t flags = v.tcp_flags();
      const bool ect = net::IpEcn(v) != net::kEcnNotEct;
      if (flags & (kTcpEce | kTcpCwr)) {
        // The flags byte is the low half of the header's 13th-14th bytes.
        const uint16_t word = net::LoadBe16(v.tcp() + 12);
        w.Set16(12, static_cast<uint16_t>(word & ~(kTcpEce | kTcpCwr)));
      }
      if (ect) net::ClearIpEcn(v);
      if (ect || (flags & (kTcpEce | kTcpCwr))) stats_.Inc(Counter::k_ecn_cleared);
    }
    const HalfFlow& client = f->of(Side::kClient);
    if (client.Has(kHalfWscale) && !f->of(Side::kServer).Has(kHalfWscale)) {
      // The backend did not agree to scaling, so it reads windows unscaled.
      w.SetWindow(internal::Rescale(v.window(), client.wscale, 0));
    }
  } else {
    w.SetSeq(v.seq() + f->delta);
    if (has_options && f->backend_ts && opts.has_timestamps) {
      f->backend_tsval = opts.tsval;  // for moat's own probes (SendRstProbe)
      w.SetOption32(opts.ts_offset, opts.tsval + f->ts_delta);
    }
    // The client scales the server's window by the shift moat advertised,
    // the backend wrote it for its own shift (RFC 7323 §2.3).
    const int from = internal::WindowShift(f, Side::kServer);
    const int to = f->of(Side::kClient).Has(kHalfWscale) ? f->our_wscale : 0;
    if (from != to) w.SetWindow(internal::Rescale(v.window(), from, to));
  }
}

// RFC 2018 §2: a SACK option may be sent only if SACK-permitted was
// received; the backend refused it, so the client's (D-SACK too, RFC 2883
// §4) become NOPs: the same length, so nothing moves, and one checksum
// update with the segment's other rewrites. The backend then learns of
// losses by duplicate ACKs, as it would without SACK. Every SACK option is
// cleared, not only the one TcpOptions describes (the last, if the client
// sent two). ParseFrame checked the option list, so lengths are sound.
void Engine::StripSack(const PacketView& v, net::TcpRewriter& w) {
  const uint8_t* t = v.tcp();
  uint16_t i = net::kTcpHeaderLen;
  while (i < v.tcp_header_len) {
    const uint8_t kind = t[i];
    if (kind == net::kOptEol) break;
    if (kind == net::kOptNop) {
      ++i;
      continue;
    }
    const uint8_t len = t[i + 1];
    if (kind == net::kOptSack) {
      // 2 + 8n bytes: whole 16-bit fields (at an odd offset the rewriter
      // sums them in the swapped domain).
      for (uint16_t j = 0; j + 1 < len; j = static_cast<uint16_t>(j + 2)) {
        w.Set16(static_cast<uint16_t>(i + j), (net::kOptNop << 8) | net::kOptNop);
      }
    }
    i = static_cast<uint16_t>(i + len);
  }
  stats_.Inc(Counter::k_sack_stripped);
}

// The client negotiated timestamps with moat and the backend refused them
// (kRepairTs): without a TSopt the client may drop the segment (RFC 7323
// §3.2; FreeBSD does). NOP NOP TSopt goes first in the options, as Linux
// lays them out, which also keeps it before any EOL; TSval is moat's own
// monotonic clock continuing from its SYN-ACK's (RepairTsval, RFC 7323
// §5.4), TSecr the client's latest in-window TSval (Translate).
// The payload moves 12 bytes towards the frame's end, within `capacity`.
// The checksum is updated, not recomputed: 12 is even, so every moved
// byte keeps its place in the 16-bit words the checksum sums and only the
// new option, the data offset and the pseudo-header's length change (RFC
// 1624); a segment that arrived corrupted stays detectably corrupted, as
// everywhere in the splice. A segment whose header has no room (more than
// 28 option bytes already, e.g. 4 SACK blocks), or that would then exceed
// --mtu, the client's MSS or the buffer, goes on unchanged, counted: the
// backend SYN's MSS (PlanTsRoom) keeps full-size segments from that.
void Engine::InsertTimestamps(Flow* f, PacketView& v, Frame frame, uint64_t now_ns) {
  constexpr uint16_t kAdd = internal::kTsOptionLen;
  if (v.opts.has_timestamps) return;  // the backend sent one after all
  if (v.tcp_header_len + kAdd > net::kTcpMaxHeaderLen) {
    stats_.Inc(Counter::k_ts_insert_no_room);
    return;
  }
  const uint16_t tcp_len = v.tcp_len();
  const uint32_t grown_ip = static_cast<uint32_t>(v.l3_end - v.l3_offset) + kAdd;
  // RFC 6691: the MSS bounds data plus options beyond the fixed header.
  const uint32_t grown_mss = static_cast<uint32_t>(tcp_len) + kAdd - net::kTcpHeaderLen;
  if (grown_ip > config_.mtu || grown_mss > f->client_mss ||
      static_cast<uint32_t>(v.l3_end) + kAdd > frame.capacity) {
    stats_.Inc(Counter::k_ts_insert_oversize);
    return;
  }
  uint8_t* tcp = v.tcp();
  uint8_t* opt = tcp + net::kTcpHeaderLen;
  // Whatever follows the datagram (Ethernet padding) is dropped.
  std::memmove(opt + kAdd, opt, v.l3_end - (v.l4_offset + net::kTcpHeaderLen));
  // New to the segment, so zero: what the rewriter takes out for them is
  // nothing, and it adds the option's words.
  std::memset(opt, 0, kAdd);
  {
    net::TcpRewriter w(v);
    w.Set32(net::kTcpHeaderLen, (uint32_t{net::kOptNop} << 24) | (uint32_t{net::kOptNop} << 16) |
                                    (uint32_t{net::kOptTimestamps} << 8) | 10u);
    w.Set32(net::kTcpHeaderLen + 4, RepairTsval(f, now_ns));
    w.Set32(net::kTcpHeaderLen + 8, f->client_tsval);
    w.Set16(12, static_cast<uint16_t>(net::LoadBe16(tcp + 12) + ((kAdd / 4) << 12)));
    w.SetPseudoHeaderWord(tcp_len, static_cast<uint16_t>(tcp_len + kAdd));
  }
  uint8_t* ip = v.ip();
  if (v.ipv6()) {
    net::StoreBe16(ip + 4, static_cast<uint16_t>(net::LoadBe16(ip + 4) + kAdd));
  } else {
    const uint16_t old_len = net::LoadBe16(ip + 2);
    const uint16_t new_len = static_cast<uint16_t>(old_len + kAdd);
    net::StoreBe16(ip + 2, new_len);
    net::StoreBe16(ip + 10, net::ChecksumUpdate16(net::LoadBe16(ip + 10), old_len, new_len));
  }
  // The view follows (its option offsets do not: nothing reads them after).
  v.l3_end = static_cast<uint16_t>(v.l3_end + kAdd);
  v.frame_len = v.l3_end;
  v.tcp_header_len = static_cast<uint16_t>(v.tcp_header_len + kAdd);
  v.payload_offset = static_cast<uint16_t>(v.payload_offset + kAdd);
  *frame.len = v.l3_end;
  stats_.Inc(Counter::k_ts_inserted);
}

template void Engine::Translate<Side::kClient>(Flow* f, PacketView& v);
template void Engine::Translate<Side::kServer>(Flow* f, PacketView& v);

// Tracking runs on client-leg numbers: a backend segment's seq is shifted
// by delta first (its ack names client bytes, which are never shifted). A
// segment only moves the sender's marks if it fits the receiver's
// advertised window, and an ack only counts if it does not ack bytes the
// peer never sent, so blind injected segments cannot set up a RST "exact
// match", a FIN or a FIN's acknowledgement.
template <Side kFrom>
void Engine::Track(Flow* f, const PacketView& v) {
  HalfFlow& me = f->of(kFrom);
  HalfFlow& peer = f->of(Other(kFrom));
  const uint8_t flags = v.tcp_flags();
  const SeqNum seq = kFrom == Side::kServer ? v.seq() + f->delta : v.seq();
  const SeqNum end = seq.Add(v.seg_len());
  const bool in_window = !peer.Has(kHalfAckSeen) || end.BeforeOrEq(peer.ack.Add(peer.window));
  if (in_window) {
    if (!me.Has(kHalfSeqSeen) || end.After(me.next)) {
      me.next = end;
      me.bits |= kHalfSeqSeen;
    }
    if (flags & kTcpFin) {
      me.bits |= kHalfFin;
      me.fin = seq.Add(v.payload_len);
    }
  }
  if (flags & kTcpAck) {
    const SeqNum ack = v.ack();
    const bool plausible = !peer.Has(kHalfSeqSeen) || ack.BeforeOrEq(peer.next);
    if (plausible && (!me.Has(kHalfAckSeen) || ack.AfterOrEq(me.ack))) {
      me.ack = ack;
      // Windows in SYN segments are never scaled (RFC 7323 §2.2).
      me.window = static_cast<uint32_t>(v.window())
                  << ((flags & kTcpSyn) ? 0 : internal::WindowShift(f, kFrom));
      me.raw_window = v.window();
      me.bits |= kHalfAckSeen;
    }
  }
  if (peer.Has(kHalfFin) && me.Has(kHalfAckSeen) && me.ack.After(peer.fin)) {
    peer.bits |= kHalfFinAcked;
  }
}

template void Engine::Track<Side::kClient>(Flow* f, const PacketView& v);
template void Engine::Track<Side::kServer>(Flow* f, const PacketView& v);

void Engine::Track(Flow* f, Side from, const PacketView& v) {
  if (from == Side::kClient) {
    Track<Side::kClient>(f, v);
  } else {
    Track<Side::kServer>(f, v);
  }
}

// An ACK (with data or a FIN, or neither) of a synchronized cookie flow.
Verdict Engine::Splice(Flow* f, Side in, PacketView& v, Frame frame, uint64_t now_ns) {
  if (in == Side::kClient && f->ecn_clear && net::IpEcn(v) == net::kEcnCe) {
    // Congestion on the client's side of moat, marked for a backend that
    // cannot echo it: as a tunnel egress does with CE on a Not-ECT inner
    // packet (RFC 6040 §4.2), turn the mark into a loss the client sees.
    stats_.Inc(Counter::k_drop_ecn_ce);
    return Verdict::kDrop;
  }
  const FlowState before = f->state;
  if (in == Side::kClient) {
    Track<Side::kClient>(f, v);
    Translate<Side::kClient>(f, v);
    stats_.Inc(Counter::k_fwd_client_to_server);
  } else {
    Track<Side::kServer>(f, v);
    Translate<Side::kServer>(f, v);
    if (f->repair & kRepairTs) [[unlikely]]
      InsertTimestamps(f, v, frame, now_ns);
    stats_.Inc(Counter::k_fwd_server_to_client);
  }
  f->last_seen_ns = now_ns;
  // Any segment withdraws a pending RST (the endpoint is alive after all);
  // FINs and their acks move the close along.
  if (before != FlowState::kEstablished || (v.tcp_flags() & kTcpFin)) {
    Settle(f, before, now_ns);
  }
  return Verdict::kForward;
}

}  // namespace moat::proxy
