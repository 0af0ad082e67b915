// How flows end (docs/design.md): FINs both ways and their acks
// (kHalfClosed -> kClosing -> kTimeWait), RSTs checked against the window
// (RFC 5961 §3), TIME_WAIT reuse, and the timers: backend SYN retransmission,
// TIME_WAIT, pending RSTs, idle expiry.

#include <algorithm>

#include "internal.h"
#include "moat/net/builder.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using internal::kNsPerMs;
using internal::kNsPerSec;
using net::kTcpAck;
using net::kTcpRst;
using net::PacketView;
using net::SeqNum;

namespace {

// The state a flow's FIN progress (and, for a backend-opened flow, its
// handshake progress) puts it in.
FlowState SettledState(const Flow* f) {
  const HalfFlow& c = f->of(Side::kClient);
  const HalfFlow& s = f->of(Side::kServer);
  if (c.Has(kHalfFinAcked) && s.Has(kHalfFinAcked)) return FlowState::kTimeWait;
  if (c.Has(kHalfFin) && s.Has(kHalfFin)) return FlowState::kClosing;
  if (c.Has(kHalfFin) || s.Has(kHalfFin)) return FlowState::kHalfClosed;
  if (f->passthrough() && !(c.Has(kHalfAckSeen) && s.Has(kHalfAckSeen))) {
    return FlowState::kSynSent;  // the backend's connection is still opening
  }
  return FlowState::kEstablished;
}

}  // namespace

// After a segment was accepted: move to the state its tracking implies.
// Leaving kRstPending this way withdraws the RST.
void Engine::Settle(Flow* f, FlowState before, uint64_t now_ns) {
  if (before == FlowState::kTimeWait) return;  // its timer ends it regardless
  const FlowState next = SettledState(f);
  f->state = next;
  if (next == FlowState::kTimeWait) {
    // Both directions closed and acknowledged. Linger briefly so the last
    // ACK's retransmissions are still translated (RFC 9293 §3.6 TIME-WAIT,
    // shortened: the endpoints keep their own 2 MSL).
    stats_.Inc(Counter::k_flows_time_wait);
    wheel_->Schedule(table_->IndexOf(f),
                     now_ns + static_cast<uint64_t>(config_.time_wait_ms) * kNsPerMs);
    return;
  }
  // The idle timer is lazy (traffic only refreshes last_seen_ns), but a
  // change of timeout (half-close, RST withdrawn, handshake done) re-arms it
  // at once so a shorter timeout is not served late.
  if (next != before) ArmIdle(f, now_ns);
}

// RFC 5961 §3 for a middlebox. A RST whose sequence number is outside the
// receiver's window is blind injection: drop it, so neither moat's state nor
// the endpoint's is touched. One that matches exactly what the receiver
// expects next ends the flow. One merely inside the window is passed on
// (the endpoint answers it with a challenge ACK; a genuine sender then
// replies with an exact RST) and the flow is kept on a short timer that
// any further traffic cancels.
Verdict Engine::Rst(Flow* f, Side in, PacketView& v, uint64_t now_ns) {
  const HalfFlow& me = f->of(in);
  const HalfFlow& peer = f->of(Other(in));
  const SeqNum seq = in == Side::kServer ? v.seq() + f->delta : v.seq();
  bool exact;
  bool in_window;
  if (peer.Has(kHalfAckSeen)) {
    exact = seq == peer.ack || (me.Has(kHalfSeqSeen) && seq == me.next);
    in_window = seq.InWindow(peer.ack, std::max<uint32_t>(peer.window, 1));
  } else {
    // Backend-opened handshake: the receiver has acked nothing yet. Like
    // SYN-SENT (RFC 9293 §3.10.7.3), accept only a RST that acks its SYN.
    exact = peer.Has(kHalfSeqSeen) && (v.tcp_flags() & kTcpAck) && v.ack() == peer.next;
    in_window = exact;
  }
  if (!in_window && !exact) {
    stats_.Inc(Counter::k_drop_rst_out_of_window);
    return Verdict::kDrop;
  }
  if (f->passthrough()) {
    stats_.Inc(Counter::k_passthrough_forwarded);
  } else if (in == Side::kClient) {
    Translate<Side::kClient>(f, v);
    stats_.Inc(Counter::k_fwd_client_to_server);
  } else {
    Translate<Side::kServer>(f, v);
    stats_.Inc(Counter::k_fwd_server_to_client);
  }
  if (exact) {
    RemoveFlow(f);
    stats_.Inc(Counter::k_rst_teardown);
    return Verdict::kForward;
  }
  f->last_seen_ns = now_ns;
  stats_.Inc(Counter::k_rst_in_window);
  if (f->state != FlowState::kTimeWait) {
    f->state = FlowState::kRstPending;
    f->rst_to = Other(in);
    f->rst_probes = 0;
    ArmIdle(f, now_ns);
  }
  return Verdict::kForward;
}

// Confirming an in-window RST. The receiver answers a blind one with a
// challenge ACK (RFC 5961 §3.2), which withdraws it here, but endpoints
// rate-limit those (Linux: one per socket per tcp_invalid_ratelimit, 500
// ms): a second blind RST 100 ms after the first draws nothing, and silence
// alone would make moat forget a connection both ends still hold. So after
// silence moat asks the receiver itself, with a keep-alive (RFC 9293
// §3.8.4, RFC 1122 §4.2.3.6): an ACK one below what the receiver last
// acknowledged and acking what it sent, in its own numbers. Being below
// its window, it must be answered with an ACK (RFC 9293 §3.10.7.4), from
// the same rate limit, which is why the probes are spaced at least
// kMinRstProbeIntervalMs. A receiver that did take the RST (a stack that
// accepts any in-window RST) has no connection and answers
// <SEQ=SEG.ACK><CTL=RST>, the sender's exact next sequence number, which
// Rst() takes as an exact match. With timestamps the probe carries the
// latest TSval and echo moat saw (a segment without them may be dropped
// silently, RFC 7323 §3.2; an older TSval still draws an ACK, §5.3 R1).

namespace {
constexpr uint8_t kRstProbes = 2;  // one may be lost
constexpr uint64_t kMinRstProbeIntervalMs = 1000;
}  // namespace

uint64_t Engine::RstProbeIntervalNs() const {
  return std::max<uint64_t>(config_.time_wait_ms, kMinRstProbeIntervalMs) * kNsPerMs;
}

bool Engine::SendRstProbe(const Flow* f, uint64_t now_ns, Output* out) {
  const Side to = f->rst_to;
  const HalfFlow& e = f->of(to);         // the probed end
  const HalfFlow& p = f->of(Other(to));  // the end moat speaks for
  constexpr uint8_t kKnown = kHalfAckSeen | kHalfSeqSeen;
  if ((e.bits & kKnown) != kKnown || !p.Has(kHalfAckSeen)) return false;
  net::TcpFrameSpec s;
  FillFromFlow(f, to, &s);
  const bool to_server = to == Side::kServer;
  // Client-leg numbers: the client's own, or moat's towards the client.
  s.seq = e.ack.value() - 1;
  s.ack = (to_server ? e.next - f->delta : e.next).value();
  s.flags = kTcpAck;
  // The window the speaking end last advertised, as Translate would pass it.
  if (f->passthrough()) {
    s.window = p.raw_window;
  } else if (to_server) {
    s.window = p.Has(kHalfWscale) && !e.Has(kHalfWscale)
                   ? internal::Rescale(p.raw_window, p.wscale, 0)
                   : p.raw_window;
  } else {
    const int to_shift = e.Has(kHalfWscale) ? f->our_wscale : 0;
    s.window = internal::Rescale(p.raw_window, internal::WindowShift(f, Side::kServer), to_shift);
  }
  uint8_t options[12];
  if (!to_server && (f->repair & kRepairTs)) {
    // The client negotiated timestamps and may drop a probe without one
    // (RFC 7323 §3.2): moat's own clock, as on the segments it repairs.
    net::TcpOptionWriter w(options, sizeof(options));
    w.Nop().Nop().Timestamps(RepairTsval(f, now_ns), f->client_tsval);
    s.options = options;
    s.options_len = static_cast<uint8_t>(w.Finish());
  } else if (!f->passthrough() && f->client_ts && f->backend_ts) {
    net::TcpOptionWriter w(options, sizeof(options));
    if (to_server) {
      w.Nop().Nop().Timestamps(f->client_tsval, f->backend_tsval);
    } else {
      w.Nop().Nop().Timestamps(f->backend_tsval + f->ts_delta, f->client_tsval);
    }
    s.options = options;
    s.options_len = static_cast<uint8_t>(w.Finish());
  }
  return Emit(out, to, s);
}

// The probed end's pure ACK while a probe is out: its answer. It withdraws
// the RST and stays with moat (the other end never sent a probe).
bool Engine::AnswersRstProbe(const Flow* f, Side in, SegmentKind kind, const PacketView& v) const {
  return f->state == FlowState::kRstPending && f->rst_probes != 0 && in == f->rst_to &&
         kind == SegmentKind::kAck && v.payload_len == 0;
}

Verdict Engine::RstProbeAnswered(Flow* f, Side in, const PacketView& v, uint64_t now_ns) {
  Track(f, in, v);
  f->last_seen_ns = now_ns;
  Settle(f, FlowState::kRstPending, now_ns);
  stats_.Inc(Counter::k_rst_probe_answered);
  return Verdict::kConsumed;
}

// Once moat forgets a flow every later segment of it is dropped (a bad
// cookie, or no flow on the server side), so both ends would hang until
// their own timeouts. Reset them, each at the exact sequence number it
// last acknowledged (RFC 5961 §3.2). False when the numbers are unknown.
bool Engine::ResetBothEnds(const Flow* f, Output* out) {
  const HalfFlow& c = f->of(Side::kClient);
  const HalfFlow& s = f->of(Side::kServer);
  constexpr uint8_t kKnown = kHalfAckSeen | kHalfSeqSeen;
  if ((c.bits & kKnown) != kKnown || (s.bits & kKnown) != kKnown) return false;
  SendRst(f, Side::kClient, c.ack, c.next, true, out);
  SendRst(f, Side::kServer, s.ack, s.next - f->delta, true, out);
  return true;
}

// A SYN for a tuple whose flow lingers in TIME_WAIT: the old connection is
// over, so the SYN is handled as if there were no flow (a client's gets a
// cookie, a backend's opens a new passthrough flow).
Verdict Engine::ReuseTimeWait(Flow* f, Side in, Parsed* p, Frame frame, uint64_t now_ns,
                              Output* out) {
  RemoveFlow(f);
  stats_.Inc(Counter::k_time_wait_reuse);
  return in == Side::kClient ? AnswerSyn(p, frame, now_ns, out) : BackendOpens(p, now_ns);
}

bool Engine::SendRst(const Flow* f, Side to, SeqNum seq, SeqNum ack, bool with_ack,
                     Output* out) {
  net::TcpFrameSpec s;
  FillFromFlow(f, to, &s);
  s.seq = seq.value();
  s.ack = with_ack ? ack.value() : 0;
  s.flags = kTcpRst | (with_ack ? kTcpAck : 0);
  if (!Emit(out, to, s)) return false;
  stats_.Inc(to == Side::kClient ? Counter::k_client_rst_sent : Counter::k_server_rst_sent);
  return true;
}

// ---------------------------------------------------------------------------
// Timers.

uint64_t Engine::IdleTimeoutNs(const Flow* f) const {
  switch (f->state) {
    case FlowState::kRstPending:
      return RstProbeIntervalNs();
    // A backend-opened flow whose handshake has not completed is as cheap
    // to fake as a half-closed one: it gets the shorter timeout too.
    case FlowState::kSynSent:
    case FlowState::kHalfClosed:
    case FlowState::kClosing:
      return static_cast<uint64_t>(config_.half_closed_timeout_s) * kNsPerSec;
    case FlowState::kEstablished:
    case FlowState::kTimeWait:
      break;
  }
  return static_cast<uint64_t>(config_.idle_timeout_s) * kNsPerSec;
}

void Engine::ArmIdle(Flow* f, uint64_t now_ns) {
  wheel_->Schedule(table_->IndexOf(f), now_ns + IdleTimeoutNs(f));
}

bool Engine::Tick(uint64_t now_ns, Output* out) {
  keys_.Refresh(WallNs(now_ns));
  const size_t budget = out->room() / kMaxEmittedPerTimer;
  if (budget == 0) return true;
  const size_t fired = wheel_->Advance(
      now_ns, [&](uint32_t id) { OnTimer(id, now_ns, out); }, budget);
  if (fired == budget) return true;
  FastOpenTick();
  if (syn_cache_ == nullptr) return false;
  // SYN cache: the mode's calm windows pass without SYNs too; then the
  // SYN-ACK retransmissions, one frame each (syn_answer.cc).
  if (flood_.OnTick(now_ns, syn_cache_->size(), syn_cache_->capacity())) ModeChanged();
  const size_t room = out->room();
  if (room == 0) return true;
  return syn_cache_->Advance(
             now_ns, [&](uint32_t id) { OnSynCacheTimer(id, now_ns, out); }, room) == room;
}

void Engine::OnTimer(uint32_t id, uint64_t now_ns, Output* out) {
  Flow* f = table_->At(id);
  switch (f->state) {
    case FlowState::kSynSent:
      if (f->passthrough()) break;  // the backend's own handshake: idle rules
      if (f->syn_retries < config_.backend_syn_retries) {
        // RFC 6298 §5.5: back off by doubling.
        ++f->syn_retries;
        if (SendBackendSyn(f, out)) stats_.Inc(Counter::k_backend_syn_retransmit);
        wheel_->Schedule(
            id, now_ns + (static_cast<uint64_t>(config_.backend_syn_rto_ms) << f->syn_retries) *
                             kNsPerMs);
        return;
      }
      // The backend never answered: tell the client now rather than let it
      // time out on data it thinks is being delivered.
      stats_.Inc(Counter::k_backend_timeout);
      SendRst(f, Side::kClient, f->cookie_isn.Add(1), f->of(Side::kClient).next, true, out);
      RemoveFlow(f);
      return;
    case FlowState::kTimeWait:
      RemoveFlow(f);
      return;
    case FlowState::kRstPending:
      // An in-window RST and silence since (any segment would have
      // withdrawn it): ask the receiver, a bounded number of times.
      if (f->rst_probes < kRstProbes && SendRstProbe(f, now_ns, out)) {
        ++f->rst_probes;
        stats_.Inc(Counter::k_rst_probe_sent);
        wheel_->Schedule(id, now_ns + RstProbeIntervalNs());
        return;
      }
      // No answer: the receiver is gone or unreachable. Forget the flow,
      // resetting both ends so that neither hangs on it.
      stats_.Inc(Counter::k_rst_probe_unanswered);
      ResetBothEnds(f, out);
      RemoveFlow(f);
      return;
    case FlowState::kEstablished:
    case FlowState::kHalfClosed:
    case FlowState::kClosing:
      break;
  }
  // Lazy idle timer: traffic only refreshes last_seen_ns; the timer checks
  // it when it fires and re-arms if the flow was active.
  const uint64_t deadline = f->last_seen_ns + IdleTimeoutNs(f);
  if (deadline > now_ns) {
    wheel_->Schedule(id, deadline);
    return;
  }
  stats_.Inc(Counter::k_flows_expired);
  if (ResetBothEnds(f, out)) stats_.Inc(Counter::k_idle_rst_sent);
  RemoveFlow(f);
}

}  // namespace moat::proxy
