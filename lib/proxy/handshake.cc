// The handshake, both halves (docs/design.md, states kSynSent and no flow):
//   client SYN            -> cookie SYN-ACK, no state (AnswerSyn)
//   client ACK            -> cookie check; flow + backend SYN (CheckCookie)
//   client segments       -> held until the backend answers (ClientWhileOpening)
//   backend SYN-ACK       -> third ACK, held data released, spliced (BackendAnswer)

#include <cstring>

#include "internal.h"
#include "moat/net/builder.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using internal::kNsPerMs;
using internal::kSynAckWindow;
using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpFin;
using net::kTcpRst;
using net::kTcpSyn;
using net::PacketView;
using net::SeqNum;

// ---------------------------------------------------------------------------
// Client side, no flow: SYN -> cookie SYN-ACK; ACK -> cookie check.

Verdict Engine::ClientNoFlow(Parsed* p, Frame frame, uint64_t now_ns, Output* out) {
  switch (p->kind) {
    case SegmentKind::kSyn:
      return AnswerSyn(p, frame, now_ns, out);
    case SegmentKind::kAck:
    case SegmentKind::kFin:
      return CheckCookie(p, now_ns, out);
    default:
      // A RST, SYN-ACK or ACK-less segment for a connection moat does not
      // know. Nothing to reset, and answering would make moat a reflector.
      stats_.Inc(Counter::k_drop_no_flow_client);
      return Verdict::kDrop;
  }
}

Verdict Engine::AnswerSyn(Parsed* p, Frame frame, uint64_t now_ns, Output* out) {
  stats_.Inc(Counter::k_syn_received);
  PacketView& v = p->v;
  // Deny list and anti-reflection rate limit (rate_limit.cc).
  if (!AdmitSyn(v, now_ns)) return Verdict::kDrop;
  const net::TcpOptions& opts = v.opts;
  SynAsk ask = AskFromSyn(v);
  const uint16_t mss_cap = NarrowToBackend(v, now_ns, &ask);
  if (config_.fastopen && opts.has_fastopen) {
    // RFC 7413: a cookie request gets a cookie; a valid cookie with data
    // opens the flow now (fastopen.cc).
    Verdict verdict;
    if (FastOpenSyn(p, &ask, frame, now_ns, out, &verdict)) return verdict;
  }
  if (v.payload_len != 0 || (opts.has_fastopen && !config_.fastopen)) {
    // RFC 7413 §3: a server that does not accept the Fast Open cookie
    // acknowledges only the SYN; the client then resends the data after the
    // handshake. Forwarding it would hand the backend data from an
    // unverified source.
    stats_.Inc(Counter::k_syn_payload_ignored);
  }
  // With an entry in the SYN cache the answer may offer what only the
  // entry can carry (syn_answer.cc); the ISN is the cookie either way.
  SynAnswer ans = Answer(ask, CacheSyn(p, ask, now_ns));
  ans.mss_cap = mss_cap;
  const cookie::CookieTuple tuple{v.addr_len(), v.src_addr(), v.dst_addr(), v.src_port(),
                                  v.dst_port()};
  const uint32_t client_isn = v.seq().value();
  // Same slot, same inputs, same ISN: a retransmitted SYN gets an
  // identical SYN-ACK and no state exists to disagree with it.
  const uint32_t isn = codec_.MakeIsn(tuple, client_isn, ans.cookie, WallNs(now_ns));

  uint8_t options[40];
  net::TcpReplySpec r;
  WriteSynAck(ask, ans, v.ipv6(), v.src_addr(), client_isn, isn, now_ns, options, &r);
  // In place: the SYN's buffer becomes the SYN-ACK, no copy, no mbuf
  // allocation on the flood path, and the headers already there stay.
  // With TX offload towards the client (and a dataplane that takes the
  // FrameMeta back) the NIC completes its checksums.
  const bool offload =
      frame.meta != nullptr && config_.tx_checksum_offload[static_cast<int>(Side::kClient)];
  // Taken before the in-place build rewrites the view's frame.
  const TxChecksum tx = internal::TxFor(v.l3_offset, v.ipv6());
  size_t n = net::BuildReplyInPlace(v, frame.capacity, r,
                                    offload ? net::Checksums::kOffload : net::Checksums::kFull);
  if (n != 0) {
    if (offload) frame.meta->tx = tx;
    *frame.len = static_cast<uint16_t>(n);
    stats_.Inc(Counter::k_synack_sent);
    return Verdict::kReflect;
  }
  // A SYN with IP options or IPv6 extension headers (the reply carries
  // neither), or a receive buffer smaller than the SYN-ACK: build it
  // whole, in place if it fits, else in the scratch space.
  net::TcpFrameSpec s;
  internal::FillReplyTo(v, &s);
  s.seq = r.seq;
  s.ack = r.ack;
  s.flags = r.flags;
  s.window = r.window;
  s.options = options;
  s.options_len = r.options_len;
  n = net::BuildTcpFrame(v.frame, frame.capacity, s);
  if (n != 0) {
    *frame.len = static_cast<uint16_t>(n);
    stats_.Inc(Counter::k_synack_sent);
    return Verdict::kReflect;
  }
  uint8_t* buf = out->Next();
  if (buf != nullptr && (n = net::BuildTcpFrame(buf, kMaxFrame, s)) != 0) {
    out->Commit(Side::kClient, n);
    stats_.Inc(Counter::k_synack_sent);
    return Verdict::kConsumed;
  }
  stats_.Inc(Counter::k_drop_no_room);
  return Verdict::kDrop;
}

Verdict Engine::CheckCookie(Parsed* p, uint64_t now_ns, Output* out) {
  PacketView& v = p->v;
  const uint32_t client_isn = v.seq().value() - 1;
  const uint32_t cookie_isn = v.ack().value() - 1;
  const cookie::CookieTuple tuple{v.addr_len(), v.src_addr(), v.dst_addr(), v.src_port(),
                                  v.dst_port()};
  cookie::SynOptions syn;
  if (!codec_.CheckIsn(tuple, client_isn, cookie_isn, WallNs(now_ns), &syn)) {
    // Dropped without a reply. RFC 4987 §3.6 leaves it open; answering
    // spoofed ACK floods with RSTs would make moat a reflector and a
    // backscatter source.
    stats_.Inc(Counter::k_cookie_invalid);
    return Verdict::kDrop;
  }
  stats_.Inc(Counter::k_cookie_valid);
  const net::TcpOptions& opts = v.opts;
  // With timestamps, the echo of moat's TSval carries the exact options
  // and overrides the ISN's coarse bits (RFC 7323 §5.4: TSecr echoes TSval).
  const bool ts = opts.has_timestamps && config_.timestamps;
  // Only an echo that agrees with the MAC-protected ISN bits is applied, so
  // a mangled TSecr cannot override them (cookie.h).
  bool echo = false;
  if (ts) {
    echo = cookie::CookieCodec::DecodeTsecrChecked(opts.tsecr, &syn);
    if (!echo) stats_.Inc(Counter::k_ts_echo_mismatch);
  }
  // The SYN cache's entry, when there is one, has what the cookie rounded
  // or could not carry; the cookie has proved the ACK either way.
  uint8_t our_wscale;
  const bool exact = TakeCacheEntry(p, client_isn, &syn, &our_wscale);
  // Without the entry, what the SYN-ACK offered follows from the shift the
  // cookie (or its echo) restored, as Answer() chose it.
  if (!exact) our_wscale = internal::ShiftToClient(syn.wscale, config_.wscale);

  Flow* f = table_->Insert(p->key, p->hash);
  if (f == nullptr) {
    // Full: refuse loudly so the client gives up now rather than after its
    // retransmissions. RFC 9293 §3.10.7.1: the reset for a segment with
    // ACK is <SEQ=SEG.ACK><CTL=RST>.
    stats_.Inc(Counter::k_drop_flow_table_full);
    net::TcpFrameSpec s;
    internal::FillReplyTo(v, &s);
    s.seq = v.ack().value();
    s.flags = kTcpRst;
    uint8_t* buf = out->Next();
    const size_t n = buf != nullptr ? net::BuildTcpFrame(buf, kMaxFrame, s) : 0;
    if (n != 0) {
      out->Commit(Side::kClient, n);
      stats_.Inc(Counter::k_client_rst_sent);
    } else {
      stats_.Inc(Counter::k_output_overflow);
    }
    return Verdict::kDrop;
  }
  stats_.Inc(Counter::k_flows_created);
  stats_.Inc(Counter::k_flows_active);
  f->state = FlowState::kSynSent;
  f->origin = FlowOrigin::kCookie;
  f->client_isn = SeqNum(client_isn);
  f->cookie_isn = SeqNum(cookie_isn);
  f->client_mss = syn.mss;
  f->our_wscale = our_wscale;
  HalfFlow& client = f->of(Side::kClient);
  if (syn.wscale != cookie::kNoWindowScale) {
    client.bits |= kHalfWscale;
    client.wscale = syn.wscale;
  }
  f->sack = syn.sack;
  f->ecn = syn.ecn;
  // ECN rides in the echo or the SYN-cache entry. Without either moat
  // cannot tell whether its SYN-ACK agreed to ECN, so the backend is not
  // asked for it, and the client's segments must not claim it (as for a
  // refusing backend).
  f->ecn_clear = !echo && !exact && config_.ecn;
  if (ts) {
    f->client_ts = true;
    f->ts_ours = opts.tsecr;
    f->client_tsval = opts.tsval;
  }
  internal::CopyL2(v, /*client_side=*/true, &f->l2);
  // Until the backend speaks, moat is the client's peer: it acked the
  // client's SYN, offered the SYN-ACK's window, and sent its ISN.
  HalfFlow& server = f->of(Side::kServer);
  server.ack = f->client_isn.Add(1);
  server.window = kSynAckWindow;
  server.next = f->cookie_isn.Add(1);
  server.bits |= kHalfAckSeen | kHalfSeqSeen;
  f->held_head = kNoHeld;
  f->last_seen_ns = now_ns;
  Track(f, Side::kClient, v);

  Verdict verdict = Verdict::kConsumed;
  if (v.payload_len != 0 || p->kind == SegmentKind::kFin) {
    if (held_->Hold(f, v.frame, v.frame_len, v.seq(), v.seg_len())) {
      stats_.Inc(Counter::k_held_segments);
    } else {
      // The flow stands; the data is lost and the client retransmits it.
      stats_.Inc(v.frame_len > held_->frame_room() ? Counter::k_drop_held_oversize
                                                   : Counter::k_drop_held_overflow);
      verdict = Verdict::kDrop;
    }
  }
  PlanTsRoom(f, now_ns);
  if (SendBackendSyn(f, out)) stats_.Inc(Counter::k_backend_syn_sent);
  wheel_->Schedule(table_->IndexOf(f),
                   now_ns + static_cast<uint64_t>(config_.backend_syn_rto_ms) * kNsPerMs);
  return verdict;
}

// ---------------------------------------------------------------------------
// kSynSent: the backend handshake runs.

Verdict Engine::ClientWhileOpening(Flow* f, SegmentKind kind, PacketView& v, uint64_t now_ns,
                                   Output* out) {
  switch (kind) {
    case SegmentKind::kRst: {
      // The client gives up before the backend answered. Its RST must fall
      // in the window moat offered (RFC 5961 §3); then reset the backend's
      // half-open connection too, or it would sit in SYN-RECEIVED: its
      // RCV.NXT is client ISN + 1, an exact match.
      const SeqNum seq = v.seq();
      if (seq == f->of(Side::kClient).next ||
          seq.InWindow(f->client_isn.Add(1), uint32_t{kSynAckWindow} + 1)) {
        SendRst(f, Side::kServer, f->client_isn.Add(1), SeqNum(0), false, out);
        RemoveFlow(f);
        stats_.Inc(Counter::k_rst_teardown);
        return Verdict::kConsumed;
      }
      stats_.Inc(Counter::k_drop_rst_out_of_window);
      return Verdict::kDrop;
    }
    case SegmentKind::kSyn:
      if (f->fastopen != kFastOpenNone && v.seq() == f->client_isn) {
        // A Fast Open client that missed our SYN-ACK (RFC 7413 §4.2.2
        // lets it retransmit with or without the data).
        return FastOpenSynAgain(f, v, now_ns, out);
      }
      [[fallthrough]];
    case SegmentKind::kSynAck:
      // The client already completed its handshake with moat; a SYN now is
      // a stray duplicate or a port reuse that must wait for this flow to
      // end.
      stats_.Inc(Counter::k_drop_unexpected);
      return Verdict::kDrop;
    case SegmentKind::kNoAck:
    case SegmentKind::kBadFlags:
      stats_.Inc(Counter::k_drop_bad_flags);
      return Verdict::kDrop;
    case SegmentKind::kAck:
    case SegmentKind::kFin:
      break;
  }
  const bool absorb = v.payload_len == 0 && kind != SegmentKind::kFin;
  const bool nothing_held = f->held_count == 0;
  // A copy of a segment already held (the client retransmits while the
  // backend is slow) is absorbed: it must not fill the flow's slots, and
  // the backend gets the bytes once.
  const bool duplicate = !absorb && held_->Covers(f, v.seq(), v.seg_len());
  if (!absorb && !duplicate) {
    if (!held_->Hold(f, v.frame, v.frame_len, v.seq(), v.seg_len())) {
      // Bounded per flow and per engine (and by the slot size, see
      // held_pool.h); the client retransmits.
      stats_.Inc(v.frame_len > held_->frame_room() ? Counter::k_drop_held_oversize
                                                   : Counter::k_drop_held_overflow);
      return Verdict::kDrop;
    }
    stats_.Inc(Counter::k_held_segments);
  }
  // Accepted: the third ACK moat sends the backend is built from the
  // latest of these (window), but its TSval is that of the first segment
  // held, if any: the held segments follow the third ACK, and one with a
  // TSval older than the ACK's would fail the backend's PAWS check (RFC
  // 7323 §5.3; Linux allows one tick) and be dropped. For data moat already
  // acknowledged (Fast Open, whose SYN data is held first) the client would
  // never send it again.
  f->last_seen_ns = now_ns;
  if (f->client_ts && v.opts.has_timestamps && nothing_held) f->client_tsval = v.opts.tsval;
  Track(f, Side::kClient, v);
  if (absorb) {
    // A duplicate of the handshake ACK, or a window update.
    stats_.Inc(Counter::k_handshake_acks_absorbed);
  } else if (duplicate) {
    stats_.Inc(Counter::k_held_duplicate);
  }
  return Verdict::kConsumed;
}

Verdict Engine::BackendAnswer(Flow* f, SegmentKind kind, PacketView& v, uint64_t now_ns,
                              Output* out) {
  const SeqNum our_syn_acked = f->client_isn.Add(1);
  if (kind == SegmentKind::kRst) {
    // RFC 9293 §3.10.7.3 (SYN-SENT): a RST is acceptable only if it
    // acknowledges our SYN.
    if ((v.tcp_flags() & kTcpAck) && v.ack() == our_syn_acked) {
      stats_.Inc(Counter::k_backend_refused);
      // The client believes it is connected: reset it at the sequence
      // number it expects from the server (moat's ISN + 1).
      SendRst(f, Side::kClient, f->cookie_isn.Add(1), f->of(Side::kClient).next, true, out);
      RemoveFlow(f);
      return Verdict::kConsumed;
    }
    stats_.Inc(Counter::k_drop_rst_out_of_window);
    return Verdict::kDrop;
  }
  if ((kind == SegmentKind::kAck || kind == SegmentKind::kFin) && v.ack() != our_syn_acked) {
    // The backend still holds an older connection on this tuple and
    // answered our SYN with a (challenge) ACK. RFC 9293 §3.10.7.3: in
    // SYN-SENT an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>, which
    // clears the stale connection so that the retransmitted SYN succeeds.
    SendRst(f, Side::kServer, v.ack(), SeqNum(0), false, out);
    stats_.Inc(Counter::k_backend_stale_reset);
    return Verdict::kConsumed;
  }
  if (kind != SegmentKind::kSynAck || v.ack() != our_syn_acked) {
    stats_.Inc(Counter::k_drop_bad_backend_synack);
    return Verdict::kDrop;
  }
  const net::TcpOptions& opts = v.opts;
  f->backend_isn = v.seq();
  f->delta = f->cookie_isn - f->backend_isn;
  // RFC 7323 §2.2: scaling is on for the backend leg only if both SYNs
  // carried the option; moat offered it only when the client did.
  HalfFlow& server = f->of(Side::kServer);
  if (opts.has_wscale && f->of(Side::kClient).Has(kHalfWscale)) {
    server.bits |= kHalfWscale;
    server.wscale = opts.wscale;
  }
  if (opts.has_timestamps && f->client_ts) {
    f->backend_ts = true;
    f->backend_tsval = opts.tsval;
    f->ts_delta = f->ts_ours - opts.tsval;
  } else if (f->client_ts) {
    // The client expects timestamps on every segment (RFC 7323 §3.2; a
    // FreeBSD client drops segments without one) but the backend does not
    // send them: moat adds a TSopt to each (InsertTimestamps), its TSval
    // continuing from the one in moat's SYN-ACK on the monotonic clock
    // (RFC 7323 §5.4), so no wall-clock step can make it go back. Counted
    // so the operator can align the backend's settings with --timestamps.
    stats_.Inc(Counter::k_backend_ts_mismatch);
    f->repair |= kRepairTs;
    f->ts_delta = f->ts_ours - internal::ClockMs(now_ns);
  }
  if (f->sack && !opts.sack_permitted) {
    // RFC 2018 §2: SACK options are sent only to an end that permitted
    // them. The client believes SACK is on (moat's SYN-ACK said so); its
    // SACK options become NOPs towards this backend (StripSack).
    f->repair |= kRepairSack;
  }
  if (f->ecn && (v.tcp_flags() & (kTcpEce | kTcpCwr)) != kTcpEce) {
    // RFC 3168 §6.1.1: only a SYN-ACK with ECE and without CWR agrees to
    // ECN. The client believes it has ECN (moat's SYN-ACK said so), so its
    // segments must stop claiming it towards this backend (Translate).
    f->ecn_clear = true;
    stats_.Inc(Counter::k_backend_ecn_refused);
  }
  LearnBackend(f, v, now_ns);
  if (opts.has_mss && opts.mss < AdvertisedMss(v.ipv6())) {
    // Clients size segments by the MSS moat advertised; a backend that
    // takes less is misconfigured relative to --mss.
    stats_.Inc(Counter::k_backend_mss_smaller);
  }
  // Spliced from here on; a FIN the client sent meanwhile (held, released
  // below) makes it half-closed already.
  f->state = f->of(Side::kClient).Has(kHalfFin) ? FlowState::kHalfClosed
                                                 : FlowState::kEstablished;
  f->last_seen_ns = now_ns;
  stats_.Inc(Counter::k_backend_synack);
  FastOpenDone(f);
  // Third ACK of the backend handshake, with the client's window and
  // timestamp as of its latest segment; then what the client already sent.
  SendBackendAck(f, our_syn_acked, f->backend_isn.Add(1), out);
  ReleaseHeld(f, out);
  ArmIdle(f, now_ns);
  return Verdict::kConsumed;
}

// A synchronized flow's backend sends its SYN-ACK again: it missed the third
// ACK. Answer with the client's current position (idempotent).
Verdict Engine::BackendSynAckAgain(Flow* f, PacketView& v, Output* out) {
  if (v.seq() != f->backend_isn) {
    stats_.Inc(Counter::k_drop_unexpected);
    return Verdict::kDrop;
  }
  const HalfFlow& client = f->of(Side::kClient);
  SendBackendAck(f, client.next, client.ack - f->delta, out);
  stats_.Inc(Counter::k_backend_synack_dup);
  return Verdict::kConsumed;
}

// ---------------------------------------------------------------------------
// Frames towards the backend.

bool Engine::SendBackendSyn(const Flow* f, Output* out) {
  net::TcpFrameSpec s;
  FillFromFlow(f, Side::kServer, &s);
  const HalfFlow& client = f->of(Side::kClient);
  uint8_t options[40];
  net::TcpOptionWriter w(options, sizeof(options));
  // The client's MSS, but no more than moat's ports carry (--mtu): a
  // jumbo client behind a 1500-byte moat must not invite the backend to
  // send segments moat cannot pass (the clamp a router does, RFC 879).
  const uint16_t mtu_mss = static_cast<uint16_t>(config_.mtu - (s.ipv6 ? 60 : 40));
  uint16_t mss = f->client_mss < mtu_mss ? f->client_mss : mtu_mss;
  // Room for the TSopt moat adds to a timestamp-refusing backend's
  // segments (PlanTsRoom, InsertTimestamps).
  if ((f->repair & kRepairTsMss) && mss > 2 * internal::kTsOptionLen) {
    mss = static_cast<uint16_t>(mss - internal::kTsOptionLen);
  }
  w.Mss(mss);
  // The client's options as the cookie carried them; TSval is the client's
  // own clock so its later segments continue the same series (RFC 7323 §4).
  if (f->sack && f->client_ts) {
    w.SackPermitted().Timestamps(f->client_tsval, 0);
  } else if (f->client_ts) {
    w.Nop().Nop().Timestamps(f->client_tsval, 0);
  } else if (f->sack) {
    w.Nop().Nop().SackPermitted();
  }
  if (client.Has(kHalfWscale)) w.Nop().WindowScale(client.wscale);
  s.options = options;
  s.options_len = static_cast<uint8_t>(w.Finish());
  s.seq = f->client_isn.value();
  s.ack = 0;
  s.flags = kTcpSyn | (f->ecn ? (kTcpEce | kTcpCwr) : 0);
  // The window of the client's SYN is not in the cookie; its ACK's window,
  // in bytes and clamped to the unscaled SYN field, is a fair stand-in.
  s.window = internal::Rescale(client.raw_window, internal::WindowShift(f, Side::kClient), 0);
  return Emit(out, Side::kServer, s);
}

bool Engine::SendBackendAck(const Flow* f, SeqNum seq, SeqNum ack, Output* out) {
  net::TcpFrameSpec s;
  FillFromFlow(f, Side::kServer, &s);
  uint8_t options[12];
  size_t opt_len = 0;
  if (f->backend_ts) {
    net::TcpOptionWriter w(options, sizeof(options));
    w.Nop().Nop().Timestamps(f->client_tsval, f->backend_tsval);
    opt_len = w.Finish();
  }
  s.options = options;
  s.options_len = static_cast<uint8_t>(opt_len);
  s.seq = seq.value();
  s.ack = ack.value();
  s.flags = kTcpAck;
  const HalfFlow& client = f->of(Side::kClient);
  uint16_t window = client.raw_window;
  if (client.Has(kHalfWscale) && !f->of(Side::kServer).Has(kHalfWscale)) {
    window = internal::Rescale(window, client.wscale, 0);
  }
  s.window = window;
  return Emit(out, Side::kServer, s);
}

void Engine::ReleaseHeld(Flow* f, Output* out) {
  held_->Release(f, [&](const uint8_t* data, uint16_t len) {
    uint8_t* buf = out->Next();
    if (buf == nullptr) {
      stats_.Inc(Counter::k_output_overflow);  // lost; the client retransmits
      return;
    }
    std::memcpy(buf, data, len);
    PacketView v;
    if (net::ParseFrame(buf, len, &v) == net::ParseError::kOk && v.is_tcp) {
      if (f->ecn_clear && net::IpEcn(v) == net::kEcnCe) {
        stats_.Inc(Counter::k_drop_ecn_ce);  // as in Splice
        return;
      }
      Translate<Side::kClient>(f, v);
      out->Commit(Side::kServer, len);
      stats_.Inc(Counter::k_held_released);
      stats_.Inc(Counter::k_fwd_client_to_server);
    }
  });
}

}  // namespace moat::proxy
