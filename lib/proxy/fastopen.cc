// TCP Fast Open through moat (RFC 7413; --fastopen). moat is the Fast Open
// server of the services it protects; the backends need not know Fast Open.
//
//   SYN + empty cookie option    -> SYN-ACK with a cookie for the client's
//                                   address (lib/cookie/fastopen.cc)
//   SYN + valid cookie + data    -> flow at once (the cookie proves the
//                                   address, as the SYN cookie's ACK would);
//                                   SYN-ACK acks ISN + 1 + data; plain
//                                   backend SYN; the data is held and sent
//                                   after the backend's SYN-ACK and our
//                                   third ACK, exactly once
//   SYN + bad cookie (+ data)    -> the normal path: only the SYN is
//                                   acknowledged (RFC 7413 §4.2.2), the
//                                   client sends the data again after the
//                                   handshake; a fresh cookie goes with it
//
// Sequence spaces: the client's data occupies client ISN + 1 ..; the
// backend SYN uses the client ISN, so the held data, as an ACK segment at
// client ISN + 1 acking moat's ISN + 1, is translated like any client
// segment (ack -= delta) once the backend answered.
//
// Bounds: at most --fastopen_max_pending flows per worker wait for their
// backend (Linux's Fast Open queue limit, RFC 7413 §5.1): a flood of SYNs
// that replays one valid cookie (the cookie is per address, and RFC 7413
// §6 accepts that it can be replayed) cannot fill the flow table. When
// the bound is hit while the worker is in cookie-only mode (a flood), Fast
// Open stays off until the worker is calm again and half the bound is free.

#include <cstring>

#include "internal.h"
#include "moat/net/builder.h"
#include "moat/net/bytes.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using internal::kNsPerMs;
using internal::kSynAckWindow;
using net::kTcpAck;
using net::kTcpPsh;
using net::PacketView;
using net::SeqNum;

namespace {

// The Fast Open option's cookie bytes (nullptr when absent) and form.
const uint8_t* FindFastOpenCookie(const PacketView& v, uint8_t* len, bool* experimental) {
  const uint8_t* o = v.tcp() + net::kTcpHeaderLen;
  const uint8_t* end = v.tcp() + v.tcp_header_len;
  while (o < end) {
    const uint8_t kind = o[0];
    if (kind == net::kOptEol) break;
    if (kind == net::kOptNop) {
      ++o;
      continue;
    }
    if (end - o < 2 || o[1] < 2 || o[1] > end - o) break;  // ParseFrame checked the layout
    if (kind == net::kOptFastOpen) {
      *len = static_cast<uint8_t>(o[1] - 2);
      *experimental = false;
      return o + 2;
    }
    if (kind == net::kOptExperimental && o[1] >= 4 && net::LoadBe16(o + 2) == net::kFastOpenExid) {
      *len = static_cast<uint8_t>(o[1] - 4);
      *experimental = true;
      return o + 4;
    }
    o += o[1];
  }
  return nullptr;
}

}  // namespace

bool Engine::FastOpenSyn(Parsed* p, SynAsk* ask, Frame frame, uint64_t now_ns, Output* out,
                         Verdict* verdict) {
  PacketView& v = p->v;
  uint8_t len = 0;
  bool experimental = false;
  const uint8_t* cookie = FindFastOpenCookie(v, &len, &experimental);
  if (cookie == nullptr) return false;
  const uint8_t form = experimental ? SynAsk::kTfoExp : SynAsk::kTfoStd;
  if (len == 0) {
    // A cookie request (RFC 7413 §4.1.1).
    ask->tfo = form;
    return false;
  }
  if (!tfo_.Check(v.addr_len(), v.src_addr(), cookie, len)) {
    // Forged, expired, or made for another address: normal handshake, and
    // a cookie for this address (RFC 7413 §4.2.2: the server may send a
    // new one).
    stats_.Inc(Counter::k_fastopen_invalid);
    ask->tfo = form;
    return false;
  }
  if (v.payload_len == 0) {
    stats_.Inc(Counter::k_fastopen_empty);
    return false;
  }
  const bool full = tfo_pending_ >= config_.fastopen_max_pending;
  // Hit during a flood (the flood detector runs with the SYN cache):
  // pause until calm. Without the cache only the bound applies.
  if (full && syn_cache_ != nullptr && flood_.cookie_only()) tfo_paused_ = true;
  // The flow, its held copy of the data and the SYN-ACK must all fit.
  const uint16_t data_len = v.payload_len;
  const bool fits = held_->free_slots() > 0 && !table_->full() &&
                    v.frame_len + 16u <= held_->frame_room();
  if (full || tfo_paused_ || !fits) {
    stats_.Inc(Counter::k_fastopen_refused);
    return false;
  }
  if (syn_cache_ != nullptr) {
    // A stale handshake on this tuple is void now.
    const uint32_t id = syn_cache_->Find(p->key, p->hash);
    if (id != SynCache::kNone) {
      syn_cache_->Erase(id);
      SetCacheGauge();
    }
  }

  // The options as the SYN gave them: no cookie needed to carry them.
  const SynAnswer ans = Answer(*ask, /*exact=*/true);
  const cookie::CookieTuple tuple{v.addr_len(), v.src_addr(), v.dst_addr(), v.src_port(),
                                  v.dst_port()};
  const uint32_t client_isn = v.seq().value();
  const uint32_t isn = codec_.MakeIsn(tuple, client_isn, ans.cookie, WallNs(now_ns));

  Flow* f = table_->Insert(p->key, p->hash);  // not full: checked above
  stats_.Inc(Counter::k_fastopen_accepted);
  stats_.Inc(Counter::k_flows_created);
  stats_.Inc(Counter::k_flows_active);
  f->state = FlowState::kSynSent;
  f->origin = FlowOrigin::kCookie;
  f->fastopen = kFastOpenPending;
  ++tfo_pending_;
  stats_.Set(Counter::k_fastopen_pending, tfo_pending_);
  f->client_isn = SeqNum(client_isn);
  f->cookie_isn = SeqNum(isn);
  f->client_mss = ask->mss != 0 ? ask->mss : cookie::CookieCodec::MssFromIndex(v.ipv6(), 0);
  f->our_wscale = ans.our_wscale;
  HalfFlow& client = f->of(Side::kClient);
  if (ans.offer_ws) {
    client.bits |= kHalfWscale;
    client.wscale = ask->wscale;
  }
  f->sack = ask->sack;
  f->ecn = ans.ece;
  const uint32_t tsval =
      cookie::CookieCodec::EncodeTsval(internal::ClockMs(WallNs(now_ns)), ans.cookie);
  if (ask->ts) {
    f->client_ts = true;
    f->ts_ours = tsval;  // what the SYN-ACK below carries
    f->client_tsval = ask->tsval;
  }
  internal::CopyL2(v, /*client_side=*/true, &f->l2);
  // The client sent SYN + data; moat acknowledges both (RFC 7413 §3) and
  // plays the backend until it answers.
  const SeqNum data_end = f->client_isn.Add(1 + data_len);
  client.next = data_end;
  client.raw_window = internal::Rescale(v.window(), 0, internal::WindowShift(f, Side::kClient));
  client.bits |= kHalfSeqSeen;
  HalfFlow& server = f->of(Side::kServer);
  server.ack = data_end;
  server.window = kSynAckWindow;
  server.next = f->cookie_isn.Add(1);
  server.bits |= kHalfAckSeen | kHalfSeqSeen;
  f->held_head = kNoHeld;
  f->last_seen_ns = now_ns;

  // The data, as the ACK segment the client would have sent after a
  // normal handshake: seq client ISN + 1, ack moat's ISN + 1, the client's
  // timestamp echoing ours. Released, translated, after the third ACK.
  uint8_t seg[kMaxFrame];
  net::TcpFrameSpec d;
  FillFromFlow(f, Side::kServer, &d);
  uint8_t dopts[12];
  size_t dopts_len = 0;
  if (f->client_ts) {
    net::TcpOptionWriter w(dopts, sizeof(dopts));
    w.Nop().Nop().Timestamps(ask->tsval, tsval);
    dopts_len = w.Finish();
  }
  d.options = dopts;
  d.options_len = static_cast<uint8_t>(dopts_len);
  d.seq = client_isn + 1;
  d.ack = isn + 1;
  d.flags = kTcpAck | kTcpPsh;
  d.window = client.raw_window;
  d.payload = v.payload();
  d.payload_len = data_len;
  const size_t dn = net::BuildTcpFrame(seg, sizeof(seg), d);
  if (dn != 0 &&
      held_->Hold(f, seg, static_cast<uint16_t>(dn), SeqNum(client_isn + 1), data_len)) {
    stats_.Inc(Counter::k_held_segments);
  } else {
    stats_.Inc(Counter::k_output_overflow);  // cannot happen: room checked above
  }
  PlanTsRoom(f, now_ns);
  if (SendBackendSyn(f, out)) stats_.Inc(Counter::k_backend_syn_sent);
  wheel_->Schedule(table_->IndexOf(f),
                   now_ns + static_cast<uint64_t>(config_.backend_syn_rto_ms) * kNsPerMs);

  // The SYN-ACK, in place: it acknowledges the data.
  uint8_t options[40];
  net::TcpReplySpec r;
  SynAsk plain = *ask;
  plain.tfo = SynAsk::kTfoNone;  // the client's cookie is good: no new one
  WriteSynAck(plain, ans, v.ipv6(), v.src_addr(), client_isn, isn, now_ns, options, &r);
  r.ack = data_end.value();
  size_t n = net::BuildReplyInPlace(v, frame.capacity, r);
  if (n != 0) {
    *frame.len = static_cast<uint16_t>(n);
    stats_.Inc(Counter::k_synack_sent);
    *verdict = Verdict::kReflect;
    return true;
  }
  net::TcpFrameSpec s;
  FillFromFlow(f, Side::kClient, &s);
  s.seq = r.seq;
  s.ack = r.ack;
  s.flags = r.flags;
  s.window = r.window;
  s.options = r.options;
  s.options_len = r.options_len;
  if (Emit(out, Side::kClient, s)) stats_.Inc(Counter::k_synack_sent);
  *verdict = Verdict::kConsumed;
  return true;
}

// The client retransmits its Fast Open SYN: it missed our SYN-ACK. Answer
// again with what the flow accepted (the data is held once, whatever the
// retransmission carries).
Verdict Engine::FastOpenSynAgain(Flow* f, PacketView& v, uint64_t now_ns, Output* out) {
  (void)v;
  stats_.Inc(Counter::k_fastopen_syn_again);
  f->last_seen_ns = now_ns;
  SynAsk a;
  a.mss = f->client_mss;
  const HalfFlow& client = f->of(Side::kClient);
  a.wscale = client.Has(kHalfWscale) ? client.wscale : cookie::kNoWindowScale;
  a.sack = f->sack;
  a.ts = f->client_ts;
  a.ecn = f->ecn;
  a.tsval = f->client_tsval;
  SynAnswer r = Answer(a, /*exact=*/true);
  r.our_wscale = f->our_wscale;
  uint8_t options[40];
  net::TcpReplySpec reply;
  net::TcpFrameSpec s;
  FillFromFlow(f, Side::kClient, &s);
  WriteSynAck(a, r, s.ipv6, s.dst_addr, f->client_isn.value(), f->cookie_isn.value(), now_ns,
              options, &reply);
  if (f->client_ts) {
    // The TSval the flow's timestamp translation is anchored on.
    net::StoreBe32(options + 8, f->ts_ours);  // MSS(4), SACK-perm or 2 NOPs, TS kind+len
  }
  s.seq = reply.seq;
  s.ack = f->of(Side::kServer).ack.value();
  s.flags = reply.flags;
  s.window = reply.window;
  s.options = options;
  s.options_len = reply.options_len;
  Emit(out, Side::kClient, s);
  return Verdict::kConsumed;
}

// The backend answered, or the flow is gone: it no longer counts against
// the bound.
void Engine::FastOpenDone(Flow* f) {
  if (f->fastopen != kFastOpenPending) return;
  f->fastopen = kFastOpenDone;
  --tfo_pending_;
  stats_.Set(Counter::k_fastopen_pending, tfo_pending_);
}

void Engine::FastOpenTick() {
  if (tfo_paused_ && !flood_.cookie_only() && tfo_pending_ <= config_.fastopen_max_pending / 2) {
    tfo_paused_ = false;
  }
}

}  // namespace moat::proxy
