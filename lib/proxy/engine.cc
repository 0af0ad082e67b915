#include "moat/proxy/engine.h"

#include <algorithm>
#include <cstdlib>
#include <cstddef>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "moat/cookie/siphash.h"
#include "moat/net/builder.h"
#include "moat/net/bytes.h"

namespace moat::proxy {

using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpFin;
using net::kTcpRst;
using net::kTcpSyn;
using net::LoadBe32;
using net::PacketView;
using net::SeqDelta;
using net::SeqNum;

namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
constexpr uint64_t kNsPerSec = 1'000'000'000;
// Timer granularity. Every deadline moat keeps is >= 10 ms (RTO floor in
// ValidateConfig), so 1 ms ticks are plenty; 8192 slots span 8 s, and the
// few longer idle timers are revisited once per turn.
constexpr uint64_t kTickNs = kNsPerMs;
constexpr uint32_t kWheelSlots = 8192;
// SYN-ACK window: unscaled (RFC 7323 §2.2), so the largest 16-bit value.
constexpr uint16_t kSynAckWindow = 65535;
constexpr size_t kBurst = 32;

uint32_t ClockMs(uint64_t now_ns) { return static_cast<uint32_t>(now_ns / kNsPerMs); }

// (w << from) >> to, clamped to the 16-bit field. A non-zero window never
// becomes zero: that would stall the sender until a window probe.
uint16_t Rescale(uint16_t w, int from_shift, int to_shift) {
  const uint64_t bytes = static_cast<uint64_t>(w) << from_shift;
  uint64_t field = bytes >> to_shift;
  if (field > 0xffff) field = 0xffff;
  if (field == 0 && w != 0) field = 1;
  return static_cast<uint16_t>(field);
}

// The shift the client applies to its own window fields. On a proxied flow
// the client leg scales whenever the client offered it (moat always
// answers); on a passthrough flow only when both ends offered it (RFC 7323
// §2.2).
int ClientShift(const Flow* f) {
  const bool on = (f->flags & kFlowClientWscale) &&
                  (!(f->flags & kFlowPassthrough) || (f->flags & kFlowBackendWscale));
  return on ? f->client_wscale : 0;
}
// The shift the backend applies to its window fields: moat only offers
// scaling to the backend when the client offered it, so both must be set.
int ServerShift(const Flow* f) {
  const bool on = (f->flags & kFlowBackendWscale) && (f->flags & kFlowClientWscale);
  return on ? f->backend_wscale : 0;
}

// The flow key as its five 8-byte words (FlowKey's layout), built in
// registers: Classify hashes them before storing the key, so the hash does
// not wait on stores it would read back (a wide load over narrower fresh
// stores cannot be store-forwarded; FlowKey::Make's byte-wise copies made
// every packet stall on that).
struct KeyWords {
  uint64_t w0, w1, w2, w3, w4;
};
KeyWords KeyFromPacket(const PacketView& v, Side in) {
  static_assert(offsetof(flow::FlowKey, client_port) == 32 &&
                offsetof(flow::FlowKey, server_port) == 34 &&
                offsetof(flow::FlowKey, addr_len) == 36 && sizeof(flow::FlowKey) == 40);
  const bool from_client = in == Side::kClient;
  const uint8_t* client = from_client ? v.src_addr() : v.dst_addr();
  const uint8_t* server = from_client ? v.dst_addr() : v.src_addr();
  const uint64_t client_port = from_client ? v.src_port() : v.dst_port();
  const uint64_t server_port = from_client ? v.dst_port() : v.src_port();
  KeyWords k;
  if (v.ipv6()) {
    std::memcpy(&k.w0, client, 8);
    std::memcpy(&k.w1, client + 8, 8);
    std::memcpy(&k.w2, server, 8);
    std::memcpy(&k.w3, server + 8, 8);
  } else {
    uint32_t c, s;
    std::memcpy(&c, client, 4);
    std::memcpy(&s, server, 4);
    k.w0 = c;
    k.w1 = 0;
    k.w2 = s;
    k.w3 = 0;
  }
  k.w4 = client_port | server_port << 16 | static_cast<uint64_t>(v.addr_len()) << 32;
  return k;
}

// Ethernet/VLAN/IP/ports of a reply to `v`: everything swapped, VLAN tags
// kept (moat is a bump in the wire; the reply goes back the same way).
void FillReplyTo(const PacketView& v, net::TcpFrameSpec* s) {
  std::memcpy(s->src_mac.b, v.dst_mac(), 6);
  std::memcpy(s->dst_mac.b, v.src_mac(), 6);
  s->vlan_count = v.vlan_count;
  for (int i = 0; i < v.vlan_count; ++i) {
    s->vlan_tci[i] = v.vlan_tci[i];
    s->vlan_tpid[i] = v.vlan_tpid[i];
  }
  s->ipv6 = v.ipv6();
  s->src_addr = v.dst_addr();  // BuildTcpFrame copies addresses first
  s->dst_addr = v.src_addr();
  s->src_port = v.dst_port();
  s->dst_port = v.src_port();
}

// Headers of a frame moat generates for a flow: towards the server it
// impersonates the client, towards the client the server; MACs and VLAN
// tags are those of the client-side frames that created the flow.
void FillFromFlow(const Flow* f, const flow::FlowKey& key, Side to, net::TcpFrameSpec* s) {
  const bool to_server = to == Side::kServer;
  std::memcpy(s->src_mac.b, to_server ? f->client_mac : f->server_mac, 6);
  std::memcpy(s->dst_mac.b, to_server ? f->server_mac : f->client_mac, 6);
  s->vlan_count = f->vlan_count;
  for (int i = 0; i < f->vlan_count; ++i) {
    s->vlan_tci[i] = f->vlan_tci[i];
    s->vlan_tpid[i] = f->vlan_tpid[i];
  }
  s->ipv6 = key.addr_len == 16;
  s->src_addr = to_server ? key.client_addr : key.server_addr;
  s->dst_addr = to_server ? key.server_addr : key.client_addr;
  s->src_port = to_server ? key.client_port : key.server_port;
  s->dst_port = to_server ? key.server_port : key.client_port;
}

// Whether an IP packet that did not parse as TCP may still carry a TCP
// segment behind its next header: TCP itself (a fragment), AH (RFC 4302,
// either family), or any IPv6 extension header (RFC 8200 §4; IANA's list:
// hop-by-hop 0, routing 43, fragment 44, destination options 60, mobility
// 135, HIP 139, shim6 140, experimental 253/254). UDP, ICMP, ESP and the
// rest are passed: they cannot open a TCP connection to a backend.
bool MayHideTcp(const PacketView& v) {
  if (v.l3 == net::L3::kOther) return false;
  switch (v.l4_proto) {
    case net::kIpProtoTcp:
    case 51:  // AH
      return true;
    case 0:
    case 43:
    case 44:
    case 60:
    case 135:
    case 139:
    case 140:
    case 253:
    case 254:
      return v.ipv6();
    default:
      return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Setup.

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineConfig& config,
                                                       uint64_t now_ns) {
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;
  std::unique_ptr<Engine> e(new Engine(config, now_ns));
  uint64_t seed = config.hash_seed;
  if (seed == 0) {
    // No seed given: derive one from the secret, so it is still unknown to
    // anyone who could aim tuples at a bucket chain.
    const cookie::SipKey k = cookie::SipKeyFromBytes(config.secret.bytes + 16);
    static constexpr char kLabel[] = "moat-flow-table-seed";
    seed = cookie::SipHash24(k, kLabel, sizeof(kLabel) - 1) | 1;
  }
  auto table = flow::FlowTable<Flow>::Create(config.flow_capacity, seed);
  if (!table.ok()) return table.status();
  e->table_ = std::move(*table);
  auto wheel = flow::TimerWheel::Create(config.flow_capacity, kTickNs, now_ns, kWheelSlots);
  if (!wheel.ok()) return wheel.status();
  e->wheel_ = std::move(*wheel);
  e->held_ = static_cast<HeldSlot*>(std::calloc(config.held_slots, sizeof(HeldSlot)));
  e->held_free_ = static_cast<uint32_t*>(std::calloc(config.held_slots, sizeof(uint32_t)));
  if (e->held_ == nullptr || e->held_free_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", config.held_slots, " held-segment slots of ", sizeof(HeldSlot),
        " bytes; lower --held_slots"));
  }
  for (uint32_t i = 0; i < config.held_slots; ++i) e->held_free_[i] = config.held_slots - 1 - i;
  e->held_free_top_ = config.held_slots;
  return e;
}

Engine::Engine(const EngineConfig& config, uint64_t now_ns)
    : config_(config),
      keys_(config.secret, static_cast<uint64_t>(config.key_rotation_s) * kNsPerSec),
      codec_(&keys_) {
  keys_.Refresh(now_ns);
}

Engine::~Engine() {
  std::free(held_);
  std::free(held_free_);
}

const Flow* Engine::FindFlow(const flow::FlowKey& key) {
  return table_->Find(key, table_->Hash(key));
}

// ---------------------------------------------------------------------------
// Entry points.

void Engine::Classify(Side in, uint8_t* frame, uint16_t len, Parsed* p) {
  p->err = net::ParseFrame(frame, len, &p->v);
  p->protected_tcp = false;
  if (p->err != net::ParseError::kOk || !p->v.is_tcp) return;
  const PacketView& v = p->v;
  // The service is the destination of client-side frames and the source of
  // server-side ones: the tuple is the same on both halves.
  p->protected_tcp =
      in == Side::kClient ? config_.services.Matches(v.addr_len(), v.dst_addr(), v.dst_port())
                          : config_.services.Matches(v.addr_len(), v.src_addr(), v.src_port());
  if (!p->protected_tcp) return;
  const KeyWords k = KeyFromPacket(v, in);
  p->hash = table_->HashWords(k.w0, k.w1, k.w2, k.w3, k.w4);
  // Word by word from registers: a 40-byte copy of a stack array would
  // load 16 bytes at a time over the 8-byte stores that built it, and stall.
  uint8_t* key = reinterpret_cast<uint8_t*>(&p->key);
  std::memcpy(key, &k.w0, 8);
  std::memcpy(key + 8, &k.w1, 8);
  std::memcpy(key + 16, &k.w2, 8);
  std::memcpy(key + 24, &k.w3, 8);
  std::memcpy(key + 32, &k.w4, 8);
  table_->Prefetch(p->hash);
}

Verdict Engine::Process(Side in, uint8_t* frame, uint16_t* len, uint16_t capacity,
                        uint64_t now_ns, Output* out) {
  Parsed p;
  Classify(in, frame, *len, &p);
  return Handle(in, &p, len, capacity, now_ns, out);
}

uint16_t Engine::ProcessBurst(Side in, uint8_t* const* frames, uint16_t* lens,
                              uint16_t capacity, uint16_t n, uint64_t now_ns, Verdict* verdicts,
                              Output* out) {
  Parsed parsed[kBurst];
  uint16_t done = 0;
  while (done < n) {
    const uint16_t chunk = static_cast<uint16_t>(std::min<size_t>(kBurst, n - done));
    // Stage 1: parse and hash everything, prefetching each bucket, so the
    // table misses of the whole burst overlap instead of serializing.
    for (uint16_t j = 0; j < chunk; ++j) {
      Classify(in, frames[done + j], lens[done + j], &parsed[j]);
    }
    // Client bursts may carry cookie ACKs that create flows: have the next
    // few free flow slots in cache by the time stage 2 fills them.
    if (in == Side::kClient) table_->PrefetchFree(4);
    // Stage 2: the state machine, in arrival order.
    for (uint16_t j = 0; j < chunk; ++j) {
      if (out->room() < kMaxEmittedPerPacket) return static_cast<uint16_t>(done + j);
      verdicts[done + j] = Handle(in, &parsed[j], &lens[done + j], capacity, now_ns, out);
    }
    done = static_cast<uint16_t>(done + chunk);
  }
  return done;
}

// An ICMP error that a router on the client side sends to a backend about
// a segment the backend sent (Fragmentation Needed / Packet Too Big above
// all: path MTU discovery, RFC 1191 and RFC 8201). The quoted TCP header
// is the segment as the client side saw it, with moat's sequence numbers;
// the backend's stack only acts on a quote whose seq lies in its own send
// window (RFC 5927 §4.1, which Linux applies), so untranslated it would be
// ignored and a smaller path MTU would black-hole the flow. The quoted seq
// is shifted back into the backend's space and the ICMP checksum updated
// incrementally (RFC 1624); the quoted TCP checksum is not checked by
// anyone and is left alone. Returns whether it translated something.
bool Engine::TranslateIcmpError(PacketView& v) {
  uint8_t* icmp = v.frame + v.l4_offset;
  const uint16_t room = static_cast<uint16_t>(v.l3_end - v.l4_offset);
  if (room < 8) return false;
  const uint8_t type = icmp[0];
  const bool ipv6 = v.ipv6();
  // ICMPv4 errors: destination unreachable 3, time exceeded 11, parameter
  // problem 12. ICMPv6 errors: 1..4 (RFC 4443 §2.1).
  if (ipv6 ? (type < 1 || type > 4) : (type != 3 && type != 11 && type != 12)) return false;
  const uint8_t* inner = icmp + 8;
  uint16_t inner_ihl;
  if (ipv6) {
    if (room < 8 + net::kIpv6HeaderLen + 8 || (inner[0] >> 4) != 6 ||
        inner[6] != net::kIpProtoTcp) {
      return false;
    }
    inner_ihl = net::kIpv6HeaderLen;
  } else {
    if (room < 8 + net::kIpv4HeaderLen || (inner[0] >> 4) != 4 || inner[9] != net::kIpProtoTcp) {
      return false;
    }
    inner_ihl = static_cast<uint16_t>((inner[0] & 0x0f) * 4);
    // RFC 792: the quote holds the IP header and at least 8 bytes of data
    // (ports and seq); a first fragment only, or there are no ports.
    if (inner_ihl < net::kIpv4HeaderLen || room < 8 + inner_ihl + 8 ||
        (net::LoadBe16(inner + 6) & 0x1fff) != 0) {
      return false;
    }
  }
  const uint8_t addr_len = ipv6 ? 16 : 4;
  const uint8_t* inner_src = inner + (ipv6 ? 8 : 12);
  const uint8_t* inner_dst = inner + (ipv6 ? 24 : 16);
  uint8_t* tcp = icmp + 8 + inner_ihl;
  const uint16_t sport = net::LoadBe16(tcp);
  const uint16_t dport = net::LoadBe16(tcp + 2);
  // The quoted segment went from a protected service to a client, and the
  // error is addressed to that service (RFC 792, RFC 4443 §2.4: errors go
  // to the offending packet's source); anything else is not ours to edit.
  if (!config_.services.Matches(addr_len, inner_src, sport) ||
      std::memcmp(v.dst_addr(), inner_src, addr_len) != 0) {
    return false;
  }
  const flow::FlowKey key = flow::FlowKey::Make(addr_len, inner_dst, dport, inner_src, sport);
  const Flow* f = table_->Find(key, table_->Hash(key));
  if (f == nullptr || f->delta == 0) return false;
  const uint32_t quoted = net::LoadBe32(tcp + 4);
  const uint32_t backend_seq = quoted - f->delta;
  net::StoreBe32(tcp + 4, backend_seq);
  // The seq sits at an even offset of the ICMP message (8 + IHL + 4), so
  // it is two aligned 16-bit words of the checksum (ICMPv6's pseudo-header
  // does not change).
  net::StoreBe16(icmp + 2, net::ChecksumUpdate32(net::LoadBe16(icmp + 2), quoted, backend_seq));
  return true;
}

Verdict Engine::Handle(Side in, Parsed* p, uint16_t* len, uint16_t capacity, uint64_t now_ns,
                       Output* out) {
  if (p->err != net::ParseError::kOk) {
    // Malformed at some layer: nothing can be trusted, not even whether it
    // is ours. A router would drop it too.
    stats_.IncParse(p->err);
    return Verdict::kDrop;
  }
  PacketView& v = p->v;
  if (!v.is_tcp) {
    // IP that moat could not follow to a TCP header but that may hold one,
    // aimed at (or sent by) a protected address: a fragment (moat does not
    // reassemble), or a header moat does not skip (AH, an unknown IPv6
    // extension). Passing it on would let a client reach the backend
    // without a handshake, so it is dropped. Fragments are judged by the
    // next header they name, which after an IPv6 Fragment header may be
    // another extension header (Destination Options, then TCP); non-first
    // fragments carry no ports, so the address alone decides.
    if (MayHideTcp(v)) {
      const uint8_t* addr = in == Side::kClient ? v.dst_addr() : v.src_addr();
      if (config_.services.MatchesAddress(v.addr_len(), addr)) {
        stats_.Inc(v.is_fragment ? Counter::k_drop_fragment : Counter::k_drop_ext_header);
        return Verdict::kDrop;
      }
    }
    if (in == Side::kClient && !v.is_fragment &&
        (v.l4_proto == net::kIpProtoIcmp || v.l4_proto == net::kIpProtoIcmpv6) &&
        TranslateIcmpError(v)) {
      stats_.Inc(Counter::k_icmp_translated);
      return Verdict::kForward;
    }
    stats_.Inc(Counter::k_bridged);
    return Verdict::kForward;
  }
  if (!p->protected_tcp) {
    stats_.Inc(Counter::k_bridged);
    return Verdict::kForward;
  }
  const uint8_t flags = v.tcp_flags();
  Flow* f = table_->Find(p->key, p->hash);
  // Checksums. A corrupted segment must not create state, be answered (the
  // cookie would be computed over garbage) or end a flow, so every segment
  // without an established flow, and every SYN, FIN and RST, is verified.
  // Data and pure ACKs of an established flow are not: moat rewrites them
  // with RFC 1624 incremental updates, which carry a wrong checksum through
  // exactly as wrong, so the endpoint still drops a corrupted segment; the
  // full verify would cost a pass over every payload byte on the path that
  // carries the bytes (~160 cycles for 1460).
  // Once a FIN has been seen, a pure ACK can end the flow too (it acks the
  // FIN and starts TIME_WAIT), so closing flows are verified throughout.
  const bool spliced_data = f != nullptr && f->state == FlowState::kEstablished &&
                            !(f->flags & (kFlowFinClient | kFlowFinServer)) &&
                            !(flags & (kTcpSyn | kTcpFin | kTcpRst));
  if (config_.verify_checksums && !spliced_data &&
      ((v.l3 == net::L3::kIpv4 && !net::VerifyIpv4HeaderChecksum(v)) ||
       !net::VerifyTcpChecksum(v))) {
    stats_.Inc(Counter::k_drop_bad_checksum);
    return Verdict::kDrop;
  }
  if ((flags & kTcpSyn) && (flags & (kTcpFin | kTcpRst))) {
    // No stack sends these; they are scans or attacks (RFC 9293 §3.10.7).
    stats_.Inc(Counter::k_drop_bad_flags);
    return Verdict::kDrop;
  }

  if (f == nullptr) {
    return in == Side::kClient ? ClientNoFlow(p, len, capacity, now_ns, out)
                               : ServerNoFlow(p, now_ns);
  }
  if (f->flags & kFlowPassthrough) {
    if (in == Side::kClient && (flags & kTcpSyn) && !(flags & kTcpAck) &&
        f->state == FlowState::kTimeWait) {
      RemoveFlow(f);
      stats_.Inc(Counter::k_time_wait_reuse);
      return AnswerSyn(v, len, capacity, now_ns, out);
    }
    return Passthrough(f, in, p, now_ns);
  }

  if (in == Side::kClient) {
    if (f->state == FlowState::kSynSent) return ClientSynSent(f, v, now_ns, out);
    if (flags & kTcpSyn) {
      if (flags & kTcpAck) {
        stats_.Inc(Counter::k_drop_unexpected);
        return Verdict::kDrop;
      }
      if (f->state == FlowState::kTimeWait) {
        // A new connection on a tuple in TIME_WAIT (RFC 9293 §3.10.7.4,
        // RFC 6191): the old one is done; start over with a cookie.
        RemoveFlow(f);
        stats_.Inc(Counter::k_time_wait_reuse);
        return AnswerSyn(v, len, capacity, now_ns, out);
      }
      // RFC 5961 §4: a SYN on a live connection. Pass it on untranslated
      // (the client's numbers are never rewritten); the backend answers
      // with a challenge ACK, which moat translates, and the client's RST
      // (seq = that ACK's ack, an exact match) then tears the flow down.
      stats_.Inc(Counter::k_syn_on_established);
      stats_.Inc(Counter::k_fwd_client_to_server);
      return Verdict::kForward;
    }
    if (flags & kTcpRst) return Rst(f, in, v, now_ns);
    if (!(flags & kTcpAck)) {
      // RFC 9293 §3.10.7.4: in a synchronized state a segment without ACK
      // is dropped.
      stats_.Inc(Counter::k_drop_bad_flags);
      return Verdict::kDrop;
    }
    return ClientEstablished(f, v, now_ns);
  }

  if (f->state == FlowState::kSynSent) return ServerSynSent(f, v, now_ns, out);
  if (flags & kTcpSyn) {
    if ((flags & kTcpAck) && v.seq().value() == f->backend_isn) {
      // The backend missed the third ACK and retransmits its SYN-ACK:
      // answer again with the client's current position (idempotent).
      SendBackendAck(f, f->client_next, f->client_ack_cf - f->delta, out);
      stats_.Inc(Counter::k_backend_synack_dup);
      return Verdict::kConsumed;
    }
    stats_.Inc(Counter::k_drop_unexpected);
    return Verdict::kDrop;
  }
  if (flags & kTcpRst) return Rst(f, in, v, now_ns);
  if (!(flags & kTcpAck)) {
    stats_.Inc(Counter::k_drop_bad_flags);
    return Verdict::kDrop;
  }
  return ServerEstablished(f, v, now_ns, out);
}

// ---------------------------------------------------------------------------
// Client side, no flow: SYN -> cookie SYN-ACK; ACK -> cookie check.

Verdict Engine::ClientNoFlow(Parsed* p, uint16_t* len, uint16_t capacity, uint64_t now_ns,
                             Output* out) {
  const uint8_t flags = p->v.tcp_flags();
  if (!(flags & kTcpRst)) {
    if ((flags & kTcpSyn) && !(flags & kTcpAck)) {
      return AnswerSyn(p->v, len, capacity, now_ns, out);
    }
    if ((flags & kTcpAck) && !(flags & kTcpSyn)) return CheckCookie(p, now_ns, out);
  }
  // A RST, SYN-ACK or ACK-less segment for a connection moat does not know.
  // Nothing to reset, and answering would make moat a reflector.
  stats_.Inc(Counter::k_drop_no_flow_client);
  return Verdict::kDrop;
}

Verdict Engine::AnswerSyn(PacketView& v, uint16_t* len, uint16_t capacity, uint64_t now_ns,
                          Output* out) {
  stats_.Inc(Counter::k_syn_received);
  const net::TcpOptions& opts = v.opts;
  if (v.payload_len != 0 || opts.has_fastopen) {
    // RFC 7413 §3: a server that does not accept the Fast Open cookie
    // acknowledges only the SYN; the client then resends the data after the
    // handshake. Forwarding it would hand the backend data from an
    // unverified source.
    stats_.Inc(Counter::k_syn_payload_ignored);
  }
  const bool ipv6 = v.ipv6();
  const bool ts = opts.has_timestamps && config_.timestamps;
  cookie::SynOptions syn;
  syn.mss = opts.has_mss ? opts.mss : 0;  // 0: the RFC 9293 §3.7.1 default
  // Window scale: with timestamps the exact shift rides in the TSval. The
  // ISN alone can only say {none, 6, 7, 8} rounding down, and rounding a
  // small shift down to "none" would leave the client scaling a window the
  // backend reads unscaled. So without timestamps a shift below 6 is not
  // negotiated at all (RFC 7323 §2.2: no WS in the SYN-ACK, scaling off
  // both ways), which only costs that client window size.
  const bool client_ws =
      opts.has_wscale && (ts || opts.wscale >= cookie::kWscaleCodes[1]);
  syn.wscale = client_ws ? opts.wscale : cookie::kNoWindowScale;
  syn.sack = opts.sack_permitted && config_.sack;
  syn.timestamps = ts;
  // ECN setup is ECE+CWR in the SYN (RFC 3168 §6.1.1). Only agree when the
  // bit can travel to the ACK in the TSval; otherwise the backend would
  // never hear of it and congestion marks would be lost.
  syn.ecn = config_.ecn && ts && (v.tcp_flags() & (kTcpEce | kTcpCwr)) == (kTcpEce | kTcpCwr);

  const cookie::CookieTuple tuple{v.addr_len(), v.src_addr(), v.dst_addr(), v.src_port(),
                                  v.dst_port()};
  const uint32_t client_isn = v.seq().value();
  // Same slot, same inputs, same ISN: a retransmitted SYN gets an
  // identical SYN-ACK and no state exists to disagree with it.
  const uint32_t isn = codec_.MakeIsn(tuple, client_isn, syn, now_ns);

  uint8_t options[40];
  net::TcpOptionWriter w(options, sizeof(options));
  w.Mss(ipv6 ? static_cast<uint16_t>(config_.mss - 20) : config_.mss);
  // Linux's layout, which middleboxes know: MSS, SACK-perm+TS, NOP+WS.
  if (ts) {
    const uint32_t tsval = cookie::CookieCodec::EncodeTsval(ClockMs(now_ns), syn);
    if (syn.sack) {
      w.SackPermitted().Timestamps(tsval, opts.tsval);
    } else {
      w.Nop().Nop().Timestamps(tsval, opts.tsval);
    }
  } else if (syn.sack) {
    w.Nop().Nop().SackPermitted();
  }
  // RFC 7323 §2.2: offer window scaling only to a client that offered it.
  if (client_ws) w.Nop().WindowScale(config_.wscale);
  const size_t opt_len = w.Finish();

  net::TcpFrameSpec s;
  FillReplyTo(v, &s);
  s.seq = isn;
  s.ack = client_isn + 1;
  s.flags = kTcpSyn | kTcpAck | (syn.ecn ? kTcpEce : 0);
  s.window = kSynAckWindow;
  s.options = options;
  s.options_len = static_cast<uint8_t>(opt_len);
  // In place: the SYN's buffer becomes the SYN-ACK, no copy, no mbuf
  // allocation on the flood path.
  size_t n = net::BuildTcpFrame(v.frame, capacity, s);
  if (n != 0) {
    *len = static_cast<uint16_t>(n);
    stats_.Inc(Counter::k_synack_sent);
    return Verdict::kReflect;
  }
  // The receive buffer is smaller than a SYN-ACK (~94 bytes with two VLAN
  // tags): build it in the scratch space instead.
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
  if (!codec_.CheckIsn(tuple, client_isn, cookie_isn, now_ns, &syn)) {
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
  if (ts) cookie::CookieCodec::DecodeTsecrChecked(opts.tsecr, &syn);

  Flow* f = table_->Insert(p->key, p->hash);
  if (f == nullptr) {
    // Full: refuse loudly so the client gives up now rather than after its
    // retransmissions. RFC 9293 §3.10.7.1: the reset for a segment with
    // ACK is <SEQ=SEG.ACK><CTL=RST>.
    stats_.Inc(Counter::k_drop_flow_table_full);
    net::TcpFrameSpec s;
    FillReplyTo(v, &s);
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
  f->client_isn = client_isn;
  f->cookie_isn = cookie_isn;
  f->client_mss = syn.mss;
  if (syn.wscale != cookie::kNoWindowScale) {
    f->flags |= kFlowClientWscale;
    f->client_wscale = syn.wscale;
  }
  if (syn.sack) f->flags |= kFlowSack;
  if (ts) {
    f->flags |= kFlowTimestamps;
    f->ts_ours = opts.tsecr;
    f->client_tsval = opts.tsval;
  }
  if (syn.ecn) f->flags |= kFlowEcn;
  std::memcpy(f->client_mac, v.src_mac(), 6);
  std::memcpy(f->server_mac, v.dst_mac(), 6);
  f->vlan_count = v.vlan_count;
  for (int i = 0; i < v.vlan_count; ++i) {
    f->vlan_tci[i] = v.vlan_tci[i];
    f->vlan_tpid[i] = v.vlan_tpid[i];
  }
  // Until the backend speaks, moat is the client's peer: it acked the
  // client's SYN and offered the SYN-ACK's window.
  f->server_ack = client_isn + 1;
  f->server_win = kSynAckWindow;
  f->server_next_cf = cookie_isn + 1;
  f->flags |= kFlowServerAckSeen | kFlowServerSeqSeen;
  f->held_head = kNoHeld;
  f->last_seen_ns = now_ns;
  TrackClient(f, v);

  Verdict verdict = Verdict::kConsumed;
  if (v.payload_len != 0 || (v.tcp_flags() & kTcpFin)) {
    if (!Hold(f, v)) {
      // The flow stands; the data is lost and the client retransmits it.
      stats_.Inc(Counter::k_drop_held_overflow);
      verdict = Verdict::kDrop;
    }
  }
  if (SendBackendSyn(f, out)) stats_.Inc(Counter::k_backend_syn_sent);
  wheel_->Schedule(table_->IndexOf(f),
                   now_ns + static_cast<uint64_t>(config_.backend_syn_rto_ms) * kNsPerMs);
  return verdict;
}

// ---------------------------------------------------------------------------
// Server side, no flow: only a backend's own SYN creates (passthrough) state.

Verdict Engine::ServerNoFlow(Parsed* p, uint64_t now_ns) {
  PacketView& v = p->v;
  const uint8_t flags = v.tcp_flags();
  if ((flags & kTcpSyn) && !(flags & (kTcpAck | kTcpRst))) {
    // The backend opens a connection from a protected address:port. Track
    // it so that a client SYN for the same tuple (simultaneous open, RFC
    // 9293 §3.5 figure 8) joins it instead of being answered with a cookie,
    // and so that the client's answers are not taken for bad cookies.
    Flow* f = table_->Insert(p->key, p->hash);
    if (f == nullptr) {
      stats_.Inc(Counter::k_passthrough_untracked);
      return Verdict::kForward;
    }
    const net::TcpOptions& opts = v.opts;
    f->state = FlowState::kEstablished;
    f->flags = kFlowPassthrough | kFlowServerSeqSeen;
    if (opts.has_wscale) {
      f->flags |= kFlowBackendWscale;
      f->backend_wscale = opts.wscale;
    }
    f->backend_isn = v.seq().value();
    f->server_next_cf = v.seq().value() + v.seg_len();
    // Frames towards the client carry the client's MAC as destination.
    std::memcpy(f->client_mac, v.dst_mac(), 6);
    std::memcpy(f->server_mac, v.src_mac(), 6);
    f->vlan_count = v.vlan_count;
    for (int i = 0; i < v.vlan_count; ++i) {
      f->vlan_tci[i] = v.vlan_tci[i];
      f->vlan_tpid[i] = v.vlan_tpid[i];
    }
    f->held_head = kNoHeld;
    f->last_seen_ns = now_ns;
    stats_.Inc(Counter::k_flows_passthrough);
    stats_.Inc(Counter::k_flows_active);
    stats_.Inc(Counter::k_passthrough_forwarded);
    ArmIdle(f, now_ns);
    return Verdict::kForward;
  }
  // Stale (the flow expired) or spoofed from the backend side. Creating
  // state here would let that side fill the table.
  stats_.Inc(Counter::k_drop_no_flow_server);
  return Verdict::kDrop;
}

Verdict Engine::Passthrough(Flow* f, Side in, Parsed* p, uint64_t now_ns) {
  PacketView& v = p->v;
  const uint8_t flags = v.tcp_flags();
  if (flags & kTcpSyn) {
    if (in == Side::kServer && !(flags & kTcpAck) && f->state == FlowState::kTimeWait) {
      // The backend reuses the tuple: a new passthrough flow.
      RemoveFlow(f);
      stats_.Inc(Counter::k_time_wait_reuse);
      return ServerNoFlow(p, now_ns);
    }
    // Retransmitted SYNs, the client's SYN-ACK, or the SYNs of a
    // simultaneous open: remember each end's window-scale offer.
    const net::TcpOptions& opts = v.opts;
    if (in == Side::kClient && opts.has_wscale) {
      f->flags |= kFlowClientWscale;
      f->client_wscale = opts.wscale;
    } else if (in == Side::kServer && opts.has_wscale) {
      f->flags |= kFlowBackendWscale;
      f->backend_wscale = opts.wscale;
    }
    if (in == Side::kClient) f->client_isn = v.seq().value();
  } else if (flags & kTcpRst) {
    return Rst(f, in, v, now_ns);
  } else if (!(flags & kTcpAck)) {
    stats_.Inc(Counter::k_drop_bad_flags);
    return Verdict::kDrop;
  }
  const uint16_t before = f->flags;
  f->flags &= static_cast<uint16_t>(~kFlowRstPending);
  if (in == Side::kClient) {
    TrackClient(f, v);
  } else {
    TrackServer(f, v);
  }
  f->last_seen_ns = now_ns;
  AfterTrack(f, before, now_ns);
  stats_.Inc(Counter::k_passthrough_forwarded);
  return Verdict::kForward;
}

// ---------------------------------------------------------------------------
// Backend handshake.

Verdict Engine::ClientSynSent(Flow* f, PacketView& v, uint64_t now_ns, Output* out) {
  const uint8_t flags = v.tcp_flags();
  if (flags & kTcpRst) {
    // The client gives up before the backend answered. Its RST must fall in
    // the window moat offered (RFC 5961 §3); then reset the backend's
    // half-open connection too, or it would sit in SYN-RECEIVED: its
    // RCV.NXT is client ISN + 1, an exact match.
    const SeqNum seq = v.seq();
    if (seq == SeqNum(f->client_next) ||
        seq.InWindow(SeqNum(f->client_isn + 1), uint32_t{kSynAckWindow} + 1)) {
      SendRst(f, Side::kServer, f->client_isn + 1, 0, false, out);
      RemoveFlow(f);
      stats_.Inc(Counter::k_rst_teardown);
      return Verdict::kConsumed;
    }
    stats_.Inc(Counter::k_drop_rst_out_of_window);
    return Verdict::kDrop;
  }
  if (flags & kTcpSyn) {
    // The client already completed its handshake with moat; a SYN now is a
    // stray duplicate or a port reuse that must wait for this flow to end.
    stats_.Inc(Counter::k_drop_unexpected);
    return Verdict::kDrop;
  }
  if (!(flags & kTcpAck)) {
    stats_.Inc(Counter::k_drop_bad_flags);
    return Verdict::kDrop;
  }
  const bool absorb = v.payload_len == 0 && !(flags & kTcpFin);
  if (!absorb && !Hold(f, v)) {
    // Bounded per flow and per engine; the client retransmits.
    stats_.Inc(Counter::k_drop_held_overflow);
    return Verdict::kDrop;
  }
  // Accepted: the third ACK moat sends the backend is built from the
  // latest of these (window, TSval).
  f->last_seen_ns = now_ns;
  if (f->flags & kFlowTimestamps) {
    const net::TcpOptions& opts = v.opts;
    if (opts.has_timestamps) f->client_tsval = opts.tsval;
  }
  TrackClient(f, v);
  if (absorb) {
    // A duplicate of the handshake ACK, or a window update.
    stats_.Inc(Counter::k_handshake_acks_absorbed);
  }
  return Verdict::kConsumed;
}

Verdict Engine::ServerSynSent(Flow* f, PacketView& v, uint64_t now_ns, Output* out) {
  const uint8_t flags = v.tcp_flags();
  if (flags & kTcpRst) {
    // RFC 9293 §3.10.7.3 (SYN-SENT): a RST is acceptable only if it
    // acknowledges our SYN.
    if ((flags & kTcpAck) && v.ack().value() == f->client_isn + 1) {
      stats_.Inc(Counter::k_backend_refused);
      // The client believes it is connected: reset it at the sequence
      // number it expects from the server (moat's ISN + 1).
      SendRst(f, Side::kClient, f->cookie_isn + 1, f->client_next, true, out);
      RemoveFlow(f);
      return Verdict::kConsumed;
    }
    stats_.Inc(Counter::k_drop_rst_out_of_window);
    return Verdict::kDrop;
  }
  if ((flags & kTcpAck) && !(flags & kTcpSyn) && v.ack().value() != f->client_isn + 1) {
    // The backend still holds an older connection on this tuple and
    // answered our SYN with a (challenge) ACK. RFC 9293 §3.10.7.3: in
    // SYN-SENT an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>, which
    // clears the stale connection so that the retransmitted SYN succeeds.
    SendRst(f, Side::kServer, v.ack().value(), 0, false, out);
    stats_.Inc(Counter::k_backend_stale_reset);
    return Verdict::kConsumed;
  }
  if ((flags & (kTcpSyn | kTcpAck)) != (kTcpSyn | kTcpAck) ||
      v.ack().value() != f->client_isn + 1) {
    stats_.Inc(Counter::k_drop_bad_backend_synack);
    return Verdict::kDrop;
  }
  const net::TcpOptions& opts = v.opts;
  f->backend_isn = v.seq().value();
  f->delta = f->cookie_isn - f->backend_isn;
  // RFC 7323 §2.2: scaling is on for the backend leg only if both SYNs
  // carried the option; moat offered it only when the client did.
  if (opts.has_wscale && (f->flags & kFlowClientWscale)) {
    f->flags |= kFlowBackendWscale;
    f->backend_wscale = opts.wscale;
  }
  if (opts.has_timestamps && (f->flags & kFlowTimestamps)) {
    f->flags |= kFlowBackendTs;
    f->backend_tsval = opts.tsval;
    f->ts_delta = f->ts_ours - opts.tsval;
  } else if (f->flags & kFlowTimestamps) {
    // The client expects timestamps on every segment (RFC 7323 §3.2) but
    // the backend does not send them; Linux clients cope. Counted so the
    // operator can align the backend's settings with --timestamps.
    stats_.Inc(Counter::k_backend_ts_mismatch);
  }
  if (opts.has_mss && opts.mss < (v.ipv6() ? config_.mss - 20 : config_.mss)) {
    // Clients size segments by the MSS moat advertised; a backend that
    // takes less is misconfigured relative to --mss.
    stats_.Inc(Counter::k_backend_mss_smaller);
  }
  f->state = FlowState::kEstablished;
  f->last_seen_ns = now_ns;
  stats_.Inc(Counter::k_backend_synack);
  // Third ACK of the backend handshake, with the client's window and
  // timestamp as of its latest segment; then what the client already sent.
  SendBackendAck(f, f->client_isn + 1, f->backend_isn + 1, out);
  ReleaseHeld(f, out);
  ArmIdle(f, now_ns);
  return Verdict::kConsumed;
}

// ---------------------------------------------------------------------------
// Established: splice.

void Engine::TranslateClientToServer(Flow* f, PacketView& v) {
  const SeqDelta delta(static_cast<int32_t>(f->delta));
  const bool ack = v.tcp_flags() & kTcpAck;
  // All rewrites of this segment, one checksum update at the end.
  net::TcpRewriter w(v);
  if (ack) w.Set32(8, (v.ack() - delta).value());
  if (v.tcp_header_len > net::kTcpHeaderLen) {
    const net::TcpOptions& opts = v.opts;
    // SACK blocks name the server's bytes as the client sees them (RFC 2018
    // §3): shift them back into the backend's space.
    for (int i = 0; i < 2 * opts.sack_blocks; ++i) {
      const uint16_t off = static_cast<uint16_t>(opts.sack_offset + 4 * i);
      w.Set32(off, LoadBe32(v.tcp() + off) - f->delta);
    }
    if (opts.has_timestamps) {
      f->client_tsval = opts.tsval;
      // TSecr echoes the server's TSval as moat shifted it (RFC 7323 §3.2;
      // only meaningful with ACK set).
      if ((f->flags & kFlowBackendTs) && ack) {
        w.Set32(static_cast<uint16_t>(opts.ts_offset + 4), opts.tsecr - f->ts_delta);
      }
    }
  }
  if ((f->flags & kFlowClientWscale) && !(f->flags & kFlowBackendWscale)) {
    // The backend did not agree to scaling, so it reads windows unscaled.
    w.Set16(14, Rescale(v.window(), f->client_wscale, 0));
  }
}

void Engine::TranslateServerToClient(Flow* f, PacketView& v) {
  net::TcpRewriter w(v);
  w.Set32(4, (v.seq() + SeqDelta(static_cast<int32_t>(f->delta))).value());
  if (v.tcp_header_len > net::kTcpHeaderLen && (f->flags & kFlowBackendTs)) {
    const net::TcpOptions& opts = v.opts;
    if (opts.has_timestamps) w.Set32(opts.ts_offset, opts.tsval + f->ts_delta);
  }
  // The client scales the server's window by the shift moat advertised,
  // the backend wrote it for its own shift (RFC 7323 §2.3).
  const int from = ServerShift(f);
  const int to = (f->flags & kFlowClientWscale) ? config_.wscale : 0;
  if (from != to) w.Set16(14, Rescale(v.window(), from, to));
}

// Tracking runs on the numbers as each end sees them: client segments in
// client space, server segments shifted to client-facing space. A
// segment only moves the high-water marks if it fits the receiver's
// advertised window, so blind injected data cannot set up a RST "exact
// match" or a FIN.
void Engine::TrackClient(Flow* f, const PacketView& v) {
  const uint8_t flags = v.tcp_flags();
  const SeqNum seq = v.seq();
  const SeqNum end = seq.Add(v.seg_len());
  const bool in_window = !(f->flags & kFlowServerAckSeen) ||
                         end.BeforeOrEq(SeqNum(f->server_ack).Add(f->server_win));
  if (in_window) {
    if (!(f->flags & kFlowClientSeqSeen) || end.After(SeqNum(f->client_next))) {
      f->client_next = end.value();
      f->flags |= kFlowClientSeqSeen;
    }
    if (flags & kTcpFin) {
      f->flags |= kFlowFinClient;
      f->fin_client_seq = seq.Add(v.payload_len).value();
    }
  }
  if (flags & kTcpAck) {
    const SeqNum ack = v.ack();  // client-facing
    const bool plausible = !(f->flags & kFlowServerSeqSeen) ||
                           ack.BeforeOrEq(SeqNum(f->server_next_cf));
    if (plausible &&
        (!(f->flags & kFlowClientAckSeen) || ack.AfterOrEq(SeqNum(f->client_ack_cf)))) {
      f->client_ack_cf = ack.value();
      // Windows in SYN segments are never scaled (RFC 7323 §2.2).
      f->client_win = static_cast<uint32_t>(v.window())
                      << ((flags & kTcpSyn) ? 0 : ClientShift(f));
      f->client_window = v.window();
      f->flags |= kFlowClientAckSeen;
    }
  }
  if ((f->flags & kFlowFinServer) && (f->flags & kFlowClientAckSeen) &&
      SeqNum(f->client_ack_cf).After(SeqNum(f->fin_server_seq_cf))) {
    f->flags |= kFlowFinServerAcked;
  }
}

void Engine::TrackServer(Flow* f, const PacketView& v) {
  // Before translation: shift seq here, the ack is already client space.
  const uint8_t flags = v.tcp_flags();
  const SeqNum seq = v.seq() + SeqDelta(static_cast<int32_t>(f->delta));
  const SeqNum end = seq.Add(v.seg_len());
  const bool in_window = !(f->flags & kFlowClientAckSeen) ||
                         end.BeforeOrEq(SeqNum(f->client_ack_cf).Add(f->client_win));
  if (in_window) {
    if (!(f->flags & kFlowServerSeqSeen) || end.After(SeqNum(f->server_next_cf))) {
      f->server_next_cf = end.value();
      f->flags |= kFlowServerSeqSeen;
    }
    if (flags & kTcpFin) {
      f->flags |= kFlowFinServer;
      f->fin_server_seq_cf = seq.Add(v.payload_len).value();
    }
  }
  if (flags & kTcpAck) {
    const SeqNum ack = v.ack();
    const bool plausible = !(f->flags & kFlowClientSeqSeen) ||
                           ack.BeforeOrEq(SeqNum(f->client_next));
    if (plausible &&
        (!(f->flags & kFlowServerAckSeen) || ack.AfterOrEq(SeqNum(f->server_ack)))) {
      f->server_ack = ack.value();
      f->server_win = static_cast<uint32_t>(v.window())
                      << ((flags & kTcpSyn) ? 0 : ServerShift(f));
      f->flags |= kFlowServerAckSeen;
    }
  }
  if ((f->flags & kFlowFinClient) && (f->flags & kFlowServerAckSeen) &&
      SeqNum(f->server_ack).After(SeqNum(f->fin_client_seq))) {
    f->flags |= kFlowFinClientAcked;
  }
}

void Engine::AfterTrack(Flow* f, uint16_t flags_before, uint64_t now_ns) {
  constexpr uint16_t kBoth = kFlowFinClientAcked | kFlowFinServerAcked;
  if (f->state == FlowState::kEstablished && (f->flags & kBoth) == kBoth) {
    // Both directions closed and acknowledged. Linger briefly so the last
    // ACK's retransmissions are still translated (RFC 9293 §3.6 TIME-WAIT,
    // shortened: the endpoints keep their own 2 MSL).
    f->state = FlowState::kTimeWait;
    stats_.Inc(Counter::k_flows_time_wait);
    wheel_->Schedule(table_->IndexOf(f),
                     now_ns + static_cast<uint64_t>(config_.time_wait_ms) * kNsPerMs);
    return;
  }
  // The idle timer is lazy (traffic only refreshes last_seen_ns), but a
  // change of timeout class (half-close, RST confirmed or withdrawn) re-arms
  // it at once so a shorter timeout is not served late.
  constexpr uint16_t kClass = kFlowFinClient | kFlowFinServer | kFlowRstPending |
                              kFlowClientAckSeen | kFlowServerAckSeen;
  if (f->state == FlowState::kEstablished && ((f->flags ^ flags_before) & kClass)) {
    ArmIdle(f, now_ns);
  }
}

Verdict Engine::ClientEstablished(Flow* f, PacketView& v, uint64_t now_ns) {
  const uint16_t before = f->flags;
  f->flags &= static_cast<uint16_t>(~kFlowRstPending);  // alive after all
  TrackClient(f, v);
  TranslateClientToServer(f, v);
  f->last_seen_ns = now_ns;
  AfterTrack(f, before, now_ns);
  stats_.Inc(Counter::k_fwd_client_to_server);
  return Verdict::kForward;
}

Verdict Engine::ServerEstablished(Flow* f, PacketView& v, uint64_t now_ns, Output* out) {
  (void)out;
  const uint16_t before = f->flags;
  f->flags &= static_cast<uint16_t>(~kFlowRstPending);
  TrackServer(f, v);
  TranslateServerToClient(f, v);
  f->last_seen_ns = now_ns;
  AfterTrack(f, before, now_ns);
  stats_.Inc(Counter::k_fwd_server_to_client);
  return Verdict::kForward;
}

// RFC 5961 §3 for a middlebox. A RST whose sequence number is outside the
// receiver's window is blind injection: drop it, so neither moat's state nor
// the endpoint's is touched. One that matches exactly what the receiver
// expects next ends the flow. One merely inside the window is passed on
// (the endpoint answers it with a challenge ACK; a genuine sender then
// replies with an exact RST) and the flow is kept on a short timer that
// any further traffic cancels.
Verdict Engine::Rst(Flow* f, Side in, PacketView& v, uint64_t now_ns) {
  const bool passthrough = f->flags & kFlowPassthrough;
  const bool from_client = in == Side::kClient;
  const SeqNum seq_cf = from_client ? v.seq() : v.seq() + SeqDelta(static_cast<int32_t>(f->delta));
  const bool rcv_known = f->flags & (from_client ? kFlowServerAckSeen : kFlowClientAckSeen);
  const bool snd_known = f->flags & (from_client ? kFlowClientSeqSeen : kFlowServerSeqSeen);
  const SeqNum rcv_ack(from_client ? f->server_ack : f->client_ack_cf);
  const uint32_t rcv_win = from_client ? f->server_win : f->client_win;
  const SeqNum snd_next(from_client ? f->client_next : f->server_next_cf);
  bool exact;
  bool in_window;
  if (rcv_known) {
    exact = seq_cf == rcv_ack || (snd_known && seq_cf == snd_next);
    in_window = seq_cf.InWindow(rcv_ack, std::max<uint32_t>(rcv_win, 1));
  } else {
    // Passthrough handshake: the receiver has acked nothing yet. Like SYN-
    // SENT (RFC 9293 §3.10.7.3), accept only a RST that acks its SYN.
    const SeqNum rcv_next(from_client ? f->server_next_cf : f->client_next);
    const bool rcv_seq_known = f->flags & (from_client ? kFlowServerSeqSeen : kFlowClientSeqSeen);
    exact = rcv_seq_known && (v.tcp_flags() & kTcpAck) && v.ack() == rcv_next;
    in_window = exact;
  }
  if (!in_window && !exact) {
    stats_.Inc(Counter::k_drop_rst_out_of_window);
    return Verdict::kDrop;
  }
  if (!passthrough) {
    if (from_client) {
      TranslateClientToServer(f, v);
    } else {
      TranslateServerToClient(f, v);
    }
  }
  stats_.Inc(passthrough ? Counter::k_passthrough_forwarded
                         : (from_client ? Counter::k_fwd_client_to_server
                                        : Counter::k_fwd_server_to_client));
  if (exact) {
    RemoveFlow(f);
    stats_.Inc(Counter::k_rst_teardown);
  } else {
    f->flags |= kFlowRstPending;
    f->last_seen_ns = now_ns;
    stats_.Inc(Counter::k_rst_in_window);
    if (f->state == FlowState::kEstablished) ArmIdle(f, now_ns);
  }
  return Verdict::kForward;
}

// ---------------------------------------------------------------------------
// Generated frames.

namespace {

bool Emit(Output* out, Side side, const net::TcpFrameSpec& s, WorkerStats* stats) {
  uint8_t* buf = out->Next();
  if (buf == nullptr) {
    stats->Inc(Counter::k_output_overflow);
    return false;
  }
  const size_t n = net::BuildTcpFrame(buf, kMaxFrame, s);
  if (n == 0) return false;
  out->Commit(side, n);
  return true;
}

}  // namespace

bool Engine::SendBackendSyn(const Flow* f, Output* out) {
  const flow::FlowKey& key = table_->KeyOf(f);
  net::TcpFrameSpec s;
  FillFromFlow(f, key, Side::kServer, &s);
  uint8_t options[40];
  net::TcpOptionWriter w(options, sizeof(options));
  w.Mss(f->client_mss);
  const bool ts = f->flags & kFlowTimestamps;
  const bool sack = f->flags & kFlowSack;
  // The client's options as the cookie carried them; TSval is the client's
  // own clock so its later segments continue the same series (RFC 7323 §4).
  if (sack && ts) {
    w.SackPermitted().Timestamps(f->client_tsval, 0);
  } else if (ts) {
    w.Nop().Nop().Timestamps(f->client_tsval, 0);
  } else if (sack) {
    w.Nop().Nop().SackPermitted();
  }
  if (f->flags & kFlowClientWscale) w.Nop().WindowScale(f->client_wscale);
  s.options = options;
  s.options_len = static_cast<uint8_t>(w.Finish());
  s.seq = f->client_isn;
  s.ack = 0;
  s.flags = kTcpSyn | ((f->flags & kFlowEcn) ? (kTcpEce | kTcpCwr) : 0);
  // The window of the client's SYN is not in the cookie; its ACK's window,
  // in bytes and clamped to the unscaled SYN field, is a fair stand-in.
  s.window = Rescale(f->client_window, ClientShift(f), 0);
  return Emit(out, Side::kServer, s, &stats_);
}

bool Engine::SendBackendAck(const Flow* f, uint32_t seq, uint32_t ack, Output* out) {
  const flow::FlowKey& key = table_->KeyOf(f);
  net::TcpFrameSpec s;
  FillFromFlow(f, key, Side::kServer, &s);
  uint8_t options[12];
  size_t opt_len = 0;
  if (f->flags & kFlowBackendTs) {
    net::TcpOptionWriter w(options, sizeof(options));
    w.Nop().Nop().Timestamps(f->client_tsval, f->backend_tsval);
    opt_len = w.Finish();
  }
  s.options = options;
  s.options_len = static_cast<uint8_t>(opt_len);
  s.seq = seq;
  s.ack = ack;
  s.flags = kTcpAck;
  uint16_t window = f->client_window;
  if ((f->flags & kFlowClientWscale) && !(f->flags & kFlowBackendWscale)) {
    window = Rescale(window, f->client_wscale, 0);
  }
  s.window = window;
  return Emit(out, Side::kServer, s, &stats_);
}

bool Engine::SendRst(const Flow* f, Side to, uint32_t seq, uint32_t ack, bool with_ack,
                     Output* out) {
  const flow::FlowKey& key = table_->KeyOf(f);
  net::TcpFrameSpec s;
  FillFromFlow(f, key, to, &s);
  s.seq = seq;
  s.ack = with_ack ? ack : 0;
  s.flags = kTcpRst | (with_ack ? kTcpAck : 0);
  if (!Emit(out, to, s, &stats_)) return false;
  stats_.Inc(to == Side::kClient ? Counter::k_client_rst_sent : Counter::k_server_rst_sent);
  return true;
}

// ---------------------------------------------------------------------------
// Held segments: client data that arrives before the backend answered,
// kept whole (headers included) in a fixed pool and translated on release.

bool Engine::Hold(Flow* f, const PacketView& v) {
  if (f->held_count >= kMaxHeldPerFlow || held_free_top_ == 0 || v.frame_len > kMaxFrame) {
    return false;
  }
  const uint32_t slot = held_free_[--held_free_top_];
  HeldSlot& h = held_[slot];
  h.next = kNoHeld;
  h.len = v.frame_len;
  std::memcpy(h.data, v.frame, v.frame_len);
  if (f->held_head == kNoHeld) {
    f->held_head = slot;
  } else {
    uint32_t tail = f->held_head;
    while (held_[tail].next != kNoHeld) tail = held_[tail].next;
    held_[tail].next = slot;
  }
  ++f->held_count;
  stats_.Inc(Counter::k_held_segments);
  return true;
}

void Engine::ReleaseHeld(Flow* f, Output* out) {
  uint32_t slot = f->held_head;
  while (slot != kNoHeld) {
    HeldSlot& h = held_[slot];
    const uint32_t next = h.next;
    uint8_t* buf = out->Next();
    if (buf == nullptr) {
      stats_.Inc(Counter::k_output_overflow);  // lost; the client retransmits
    } else {
      std::memcpy(buf, h.data, h.len);
      PacketView v;
      if (net::ParseFrame(buf, h.len, &v) == net::ParseError::kOk && v.is_tcp) {
        TranslateClientToServer(f, v);
        out->Commit(Side::kServer, h.len);
        stats_.Inc(Counter::k_held_released);
        stats_.Inc(Counter::k_fwd_client_to_server);
      }
    }
    held_free_[held_free_top_++] = slot;
    slot = next;
  }
  f->held_head = kNoHeld;
  f->held_count = 0;
}

void Engine::FreeHeld(Flow* f) {
  uint32_t slot = f->held_head;
  while (slot != kNoHeld) {
    const uint32_t next = held_[slot].next;
    held_free_[held_free_top_++] = slot;
    slot = next;
  }
  f->held_head = kNoHeld;
  f->held_count = 0;
}

void Engine::RemoveFlow(Flow* f) {
  wheel_->Cancel(table_->IndexOf(f));
  FreeHeld(f);
  table_->Erase(f);
  stats_.Inc(Counter::k_flows_closed);
  stats_.Dec(Counter::k_flows_active);
}

// ---------------------------------------------------------------------------
// Timers.

uint64_t Engine::IdleTimeoutNs(const Flow* f) const {
  if (f->flags & kFlowRstPending) return static_cast<uint64_t>(config_.time_wait_ms) * kNsPerMs;
  const bool closing = f->flags & (kFlowFinClient | kFlowFinServer);
  // A passthrough flow whose handshake has not completed is as cheap to
  // fake as a half-closed one: give it the shorter timeout too.
  const bool opening = (f->flags & kFlowPassthrough) &&
                       (f->flags & (kFlowClientAckSeen | kFlowServerAckSeen)) !=
                           (kFlowClientAckSeen | kFlowServerAckSeen);
  const uint64_t s = (closing || opening) ? config_.half_closed_timeout_s : config_.idle_timeout_s;
  return s * kNsPerSec;
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
  return fired == budget;
}

void Engine::OnTimer(uint32_t id, uint64_t now_ns, Output* out) {
  Flow* f = table_->At(id);
  switch (f->state) {
    case FlowState::kSynSent:
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
      SendRst(f, Side::kClient, f->cookie_isn + 1, f->client_next, true, out);
      RemoveFlow(f);
      return;
    case FlowState::kTimeWait:
      RemoveFlow(f);
      return;
    case FlowState::kEstablished: {
      if (f->flags & kFlowRstPending) {
        // An in-window RST and silence since: the receiver took it.
        RemoveFlow(f);
        return;
      }
      // Lazy idle timer: traffic only refreshes last_seen_ns; the timer
      // checks it when it fires and re-arms if the flow was active.
      const uint64_t deadline = f->last_seen_ns + IdleTimeoutNs(f);
      if (deadline > now_ns) {
        wheel_->Schedule(id, deadline);
        return;
      }
      stats_.Inc(Counter::k_flows_expired);
      constexpr uint16_t kKnown = kFlowClientAckSeen | kFlowServerAckSeen |
                                  kFlowClientSeqSeen | kFlowServerSeqSeen;
      if ((f->flags & kKnown) == kKnown) {
        // Once moat forgets a flow, every later segment of it is dropped
        // (a bad cookie, or no flow on the server side), so both ends would
        // hang until their own timeouts. Reset them, each at the exact
        // sequence number it last acknowledged (RFC 5961 §3.2).
        SendRst(f, Side::kClient, f->client_ack_cf, f->client_next, true, out);
        SendRst(f, Side::kServer, f->server_ack, f->server_next_cf - f->delta, true, out);
        stats_.Inc(Counter::k_idle_rst_sent);
      }
      RemoveFlow(f);
      return;
    }
  }
}

}  // namespace moat::proxy
