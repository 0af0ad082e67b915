// Backends that differ from the flags (include/moat/proxy/backend_table.h):
// each cookie flow's backend SYN-ACK says what the backend agreed to of
// what moat asked for, and later clients of that backend are offered only
// that.

#include "internal.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using net::kTcpCwr;
using net::kTcpEce;

// Called with the SYN's options already narrowed to the flags; narrows
// them to the backend's last answer. Returns an MSS to advertise below the
// flags' (0: none). The SYN cache keeps the narrowed options, so its
// retransmitted SYN-ACK and the backend SYN agree with what was offered.
uint16_t Engine::NarrowToBackend(const net::PacketView& v, uint64_t now_ns, SynAsk* a) {
  if (!config_.learn_backends || backends_.size() == 0) return 0;
  const BackendInfo* b = backends_.Find(v.addr_len(), v.dst_addr(), v.dst_port(), now_ns);
  if (b == nullptr) return 0;
  bool narrowed = false;
  // RFC 7323 §3.2: a client that negotiated timestamps may drop segments
  // without them; offering none keeps it from expecting them.
  if (a->ts && !b->Allows(BackendInfo::kTs)) {
    a->ts = false;
    narrowed = true;
  }
  // RFC 2018: SACK blocks are only useful if both ends permitted SACK.
  if (a->sack && !b->Allows(BackendInfo::kSack)) {
    a->sack = false;
    narrowed = true;
  }
  // RFC 3168 §6.1.1: agreeing to ECN the backend will refuse would leave
  // marks nobody echoes (ecn_clear handles it, by loss; better not agree).
  if (a->ecn && !b->Allows(BackendInfo::kEcn)) {
    a->ecn = false;
    narrowed = true;
  }
  const uint16_t cap = MssCap(b, v.ipv6());
  if (narrowed || cap != 0) stats_.Inc(Counter::k_synack_narrowed);
  return cap;
}

// Clients size their segments by the MSS moat advertises; the backend's
// smaller one (a tunnel, an advmss route) is what the path carries.
uint16_t Engine::MssCap(const BackendInfo* b, bool ipv6) const {
  return b != nullptr && b->mss != 0 && b->mss < AdvertisedMss(ipv6) ? b->mss : 0;
}

void Engine::LearnBackend(const Flow* f, const net::PacketView& v, uint64_t now_ns) {
  if (!config_.learn_backends) return;
  const net::TcpOptions& opts = v.opts;
  // What moat's backend SYN asked for (SendBackendSyn), and what the
  // SYN-ACK agreed to; options moat did not ask for teach nothing.
  const uint8_t asked = (f->client_ts ? BackendInfo::kTs : 0) |
                        (f->sack ? BackendInfo::kSack : 0) | (f->ecn ? BackendInfo::kEcn : 0);
  const bool ecn_ok = (v.tcp_flags() & (kTcpEce | kTcpCwr)) == kTcpEce;
  const uint8_t has = (opts.has_timestamps ? BackendInfo::kTs : 0) |
                      (opts.sack_permitted ? BackendInfo::kSack : 0) |
                      (ecn_ok ? BackendInfo::kEcn : 0);
  // No MSS option: RFC 9293 §3.7.1's default (RFC 8200 §5 for IPv6).
  const uint16_t mss = opts.has_mss ? opts.mss : (v.ipv6() ? 1220 : 536);
  if (backends_.Learn(v.addr_len(), v.src_addr(), v.src_port(), asked,
                      static_cast<uint8_t>(has & asked), mss, now_ns)) {
    stats_.Inc(Counter::k_backend_learned);
  }
}

// A client that negotiated timestamps with moat expects them on every
// segment (RFC 7323 §3.2). If the backend refuses them, moat inserts a
// 12-byte TSopt into each of its segments (splice.cc), and a backend
// without timestamps fills segments to the MSS it was told: full-size ones
// would then overflow the client's MSS and moat's MTU. moat cannot know
// the backend's answer when it sends the SYN, so it makes room where that
// is cheapest, in the backend SYN's MSS: 12 bytes less, unless the table
// says this backend answers timestamps. A backend that does answer them
// loses 12 bytes per segment until it is learned (with --learn_backends
// =false, always); one that refuses them is learned and its later clients
// are offered no timestamps (NarrowToBackend), so this is for the flows
// that find out.
void Engine::PlanTsRoom(Flow* f, uint64_t now_ns) {
  if (!f->client_ts) return;
  if (config_.learn_backends && backends_.size() != 0) {
    const flow::FlowKey& k = table_->KeyOf(f);
    const BackendInfo* b = backends_.Find(k.addr_len, k.server_addr, k.server_port, now_ns);
    if (b != nullptr && (b->asked & BackendInfo::kTs) && (b->has & BackendInfo::kTs)) return;
  }
  f->repair |= kRepairTsMss;
}

}  // namespace moat::proxy
