// How flows end (docs/design.md): FINs both ways and their acks
// (kHalfClosed -> kClosing -> kTimeWait), RSTs checked against the window
// (RFC 5961 §3), TIME_WAIT reuse, and the timers: backend SYN retransmission,
// TIME_WAIT, pending RSTs, idle expiry.

#include <algorithm>

#include "internal.h"
#include "moat/net/builder.h"
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
    ArmIdle(f, now_ns);
  }
  return Verdict::kForward;
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
      return static_cast<uint64_t>(config_.time_wait_ms) * kNsPerMs;
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
  keys_.Refresh(now_ns);
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
      // An in-window RST and silence since: the receiver took it.
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
  const HalfFlow& c = f->of(Side::kClient);
  const HalfFlow& s = f->of(Side::kServer);
  constexpr uint8_t kKnown = kHalfAckSeen | kHalfSeqSeen;
  if ((c.bits & kKnown) == kKnown && (s.bits & kKnown) == kKnown) {
    // Once moat forgets a flow, every later segment of it is dropped (a bad
    // cookie, or no flow on the server side), so both ends would hang
    // until their own timeouts. Reset them, each at the exact sequence
    // number it last acknowledged (RFC 5961 §3.2).
    SendRst(f, Side::kClient, c.ack, c.next, true, out);
    SendRst(f, Side::kServer, s.ack, s.next - f->delta, true, out);
    stats_.Inc(Counter::k_idle_rst_sent);
  }
  RemoveFlow(f);
}

}  // namespace moat::proxy
