// IP that is not TCP (docs/design.md): bridged, except what could hide a
// TCP segment for a protected address (dropped), and ICMP errors about a
// spliced segment (translated, so path MTU discovery works).

#include <cstring>

#include "moat/net/icmp.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using net::PacketView;

Verdict Engine::NotTcp(Side in, PacketView& v) {
  // IP that moat could not follow to a TCP header but that may hold one,
  // aimed at (or sent by) a protected address: a fragment (moat does not
  // reassemble), or a header moat does not skip (AH, an unknown IPv6
  // extension). Passing it on would let a client reach the backend
  // without a handshake, so it is dropped. Fragments are judged by the
  // next header they name, which after an IPv6 Fragment header may be
  // another extension header (Destination Options, then TCP); non-first
  // fragments carry no ports, so the address alone decides.
  if (net::MayHideTcp(v)) {
    const uint8_t* addr = in == Side::kClient ? v.dst_addr() : v.src_addr();
    if (config_.services.MatchesAddress(v.addr_len(), addr)) {
      stats_.Inc(v.is_fragment ? Counter::k_drop_fragment : Counter::k_drop_ext_header);
      return Verdict::kDrop;
    }
  }
  if (in == Side::kClient && TranslateIcmpError(v)) {
    stats_.Inc(Counter::k_icmp_translated);
    return Verdict::kForward;
  }
  stats_.Inc(Counter::k_bridged);
  return Verdict::kForward;
}

// An ICMP error that a router on the client side sends to a backend about
// a segment the backend sent (Fragmentation Needed / Packet Too Big above
// all: path MTU discovery, RFC 1191 and RFC 8201). The quoted TCP header
// is the segment as the client side saw it, with moat's sequence numbers;
// the backend's stack only acts on a quote whose seq lies in its own send
// window (RFC 5927 §4.1, which Linux applies), so untranslated it would be
// ignored and a smaller path MTU would black-hole the flow. The quoted seq
// is shifted back into the backend's space. Returns whether it translated
// something.
bool Engine::TranslateIcmpError(PacketView& v) {
  net::IcmpTcpQuote q;
  if (!net::ParseIcmpTcpQuote(v, &q)) return false;
  // The quoted segment went from a protected service to a client, and the
  // error is addressed to that service (RFC 792, RFC 4443 §2.4: errors go
  // to the offending packet's source); anything else is not ours to edit.
  if (!config_.services.Matches(q.addr_len, q.src_addr, q.src_port) ||
      std::memcmp(v.dst_addr(), q.src_addr, q.addr_len) != 0) {
    return false;
  }
  const flow::FlowKey key =
      flow::FlowKey::Make(q.addr_len, q.dst_addr, q.dst_port, q.src_addr, q.src_port);
  const Flow* f = table_->Find(key, table_->Hash(key));
  // Only spliced flows have two sequence spaces.
  if (f == nullptr || f->passthrough() || f->state == FlowState::kSynSent) return false;
  const net::SeqNum quoted(net::LoadBe32(v.frame + q.seq_offset));
  net::RewriteIcmpQuotedSeq(v, q, (quoted - f->delta).value());
  return true;
}

}  // namespace moat::proxy
