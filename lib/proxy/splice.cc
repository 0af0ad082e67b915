// The splice (docs/design.md, synchronized states): every segment of a
// cookie flow is tracked in client-leg numbers and translated in place
// between the two sequence spaces, with one incremental checksum update
// (RFC 1624) per segment.
//   server -> client: seq += delta, TSval += ts_delta, window rescaled
//   client -> server: ack -= delta, SACK edges -= delta, TSecr -= ts_delta,
//                     window unscaled when the backend refused scaling

#include "internal.h"
#include "moat/net/bytes.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using net::kTcpAck;
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
      // SACK blocks name the server's bytes as the client sees them (RFC
      // 2018 §3): shift them back into the backend's space.
      for (int i = 0; i < 2 * opts.sack_blocks; ++i) {
        const uint16_t off = static_cast<uint16_t>(opts.sack_offset + 4 * i);
        w.SetOption32(off, (SeqNum(net::LoadBe32(v.tcp() + off)) - f->delta).value());
      }
      if (opts.has_timestamps) {
        f->client_tsval = opts.tsval;
        // TSecr echoes the server's TSval as moat shifted it (RFC 7323
        // §3.2; only meaningful with ACK set).
        if (f->backend_ts && ack) {
          w.SetOption32(static_cast<uint16_t>(opts.ts_offset + 4), opts.tsecr - f->ts_delta);
        }
      }
    }
    const HalfFlow& client = f->of(Side::kClient);
    if (client.Has(kHalfWscale) && !f->of(Side::kServer).Has(kHalfWscale)) {
      // The backend did not agree to scaling, so it reads windows unscaled.
      w.SetWindow(internal::Rescale(v.window(), client.wscale, 0));
    }
  } else {
    w.SetSeq(v.seq() + f->delta);
    if (has_options && f->backend_ts && opts.has_timestamps) {
      w.SetOption32(opts.ts_offset, opts.tsval + f->ts_delta);
    }
    // The client scales the server's window by the shift moat advertised,
    // the backend wrote it for its own shift (RFC 7323 §2.3).
    const int from = internal::WindowShift(f, Side::kServer);
    const int to = f->of(Side::kClient).Has(kHalfWscale) ? f->our_wscale : 0;
    if (from != to) w.SetWindow(internal::Rescale(v.window(), from, to));
  }
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
Verdict Engine::Splice(Flow* f, Side in, PacketView& v, uint64_t now_ns) {
  const FlowState before = f->state;
  if (in == Side::kClient) {
    Track<Side::kClient>(f, v);
    Translate<Side::kClient>(f, v);
    stats_.Inc(Counter::k_fwd_client_to_server);
  } else {
    Track<Side::kServer>(f, v);
    Translate<Side::kServer>(f, v);
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
