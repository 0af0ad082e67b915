// Connections a protected backend opens itself (docs/design.md, origin
// kBackend). moat tracks them but never rewrites them: the backend chose its
// own ISN, so there is nothing to translate. Tracking is what lets a
// client's SYN for the same tuple join the connection (simultaneous open,
// RFC 9293 §3.5 figure 8) instead of being answered with a cookie, keeps
// the client's answers from being taken for bad cookies, and applies the
// same RST and close rules as to spliced flows.

#include "internal.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using net::PacketView;

// Server side, no flow: only a backend's own SYN creates state.
Verdict Engine::BackendOpens(Parsed* p, uint64_t now_ns) {
  PacketView& v = p->v;
  if (p->kind != SegmentKind::kSyn) {
    // Stale (the flow expired) or spoofed from the backend side. Creating
    // state here would let that side fill the table.
    stats_.Inc(Counter::k_drop_no_flow_server);
    return Verdict::kDrop;
  }
  Flow* f = table_->Insert(p->key, p->hash);
  if (f == nullptr) {
    stats_.Inc(Counter::k_passthrough_untracked);
    return Verdict::kForward;
  }
  f->state = FlowState::kSynSent;
  f->origin = FlowOrigin::kBackend;
  HalfFlow& server = f->of(Side::kServer);
  if (v.opts.has_wscale) {
    server.bits |= kHalfWscale;
    server.wscale = v.opts.wscale;
  }
  f->backend_isn = v.seq();
  server.next = v.seq().Add(v.seg_len());
  server.bits |= kHalfSeqSeen;
  internal::CopyL2(v, /*client_side=*/false, &f->l2);
  f->held_head = kNoHeld;
  f->last_seen_ns = now_ns;
  stats_.Inc(Counter::k_flows_passthrough);
  stats_.Inc(Counter::k_flows_active);
  stats_.Inc(Counter::k_passthrough_forwarded);
  ArmIdle(f, now_ns);
  return Verdict::kForward;
}

Verdict Engine::Passthrough(Flow* f, Side in, Parsed* p, Frame frame, uint64_t now_ns,
                            Output* out) {
  PacketView& v = p->v;
  if (AnswersRstProbe(f, in, p->kind, v)) return RstProbeAnswered(f, in, v, now_ns);
  switch (p->kind) {
    case SegmentKind::kSyn:
      // Either end reuses the tuple after the old connection closed.
      if (f->state == FlowState::kTimeWait) return ReuseTimeWait(f, in, p, frame, now_ns, out);
      [[fallthrough]];
    case SegmentKind::kSynAck:
      // Retransmitted SYNs, the client's SYN-ACK, or the SYNs of a
      // simultaneous open: remember each end's window-scale offer.
      if (v.opts.has_wscale) {
        HalfFlow& h = f->of(in);
        h.bits |= kHalfWscale;
        h.wscale = v.opts.wscale;
      }
      if (in == Side::kClient) f->client_isn = v.seq();
      break;
    case SegmentKind::kRst:
      return Rst(f, in, v, now_ns);
    case SegmentKind::kNoAck:
    case SegmentKind::kBadFlags:
      stats_.Inc(Counter::k_drop_bad_flags);
      return Verdict::kDrop;
    case SegmentKind::kAck:
    case SegmentKind::kFin:
      break;
  }
  const FlowState before = f->state;
  Track(f, in, v);
  f->last_seen_ns = now_ns;
  Settle(f, before, now_ns);
  stats_.Inc(Counter::k_passthrough_forwarded);
  return Verdict::kForward;
}

}  // namespace moat::proxy
