// Set-up, classification and dispatch: every frame is parsed and classified
// once, then handed to the handler for its flow's (state, segment kind).
// docs/design.md has the whole table.

#include "moat/proxy/engine.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "internal.h"
#include "moat/cookie/siphash.h"
#include "moat/flow/packet_key.h"
#include "moat/net/builder.h"

namespace moat::proxy {

using internal::kNsPerMs;
using internal::kNsPerSec;
using net::PacketView;

namespace {

// Timer granularity. Every deadline moat keeps is >= 10 ms (RTO floor in
// ValidateConfig), so 1 ms ticks are plenty; 8192 slots span 8 s, and the
// few longer idle timers are revisited once per turn.
constexpr uint64_t kTickNs = kNsPerMs;
constexpr uint32_t kWheelSlots = 8192;
constexpr size_t kBurst = 32;

}  // namespace

// ---------------------------------------------------------------------------
// Set-up.

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
  auto table = flow::FlowTable<Flow>::Create(config.flow_capacity, seed, config.memory);
  if (!table.ok()) return table.status();
  e->table_ = std::move(*table);
  auto wheel = flow::TimerWheel::Create(config.flow_capacity, kTickNs, now_ns, kWheelSlots,
                                        config.memory, flow::MemoryUse::kFlowTimers);
  if (!wheel.ok()) return wheel.status();
  e->wheel_ = std::move(*wheel);
  auto held = HeldPool::Create(config.held_slots, FrameRoom(config.mtu), config.memory);
  if (!held.ok()) return held.status();
  e->held_ = std::move(*held);
  // Its own seed: knowing one hash must not tell anything about the other.
  auto limiter = SynRateLimiter::Create(
      config.synack_rate_buckets, cookie::SipHash24(cookie::SipKey{seed, ~seed}, "rate", 4),
      config.memory);
  if (!limiter.ok()) return limiter.status();
  e->limiter_ = std::move(*limiter);
  e->limiter_->Configure(config.synack_rate, config.synack_prefix_v4, config.synack_prefix_v6);
  if (config.syn_cache_entries != 0) {
    auto cache = SynCache::Create(config.syn_cache_entries, now_ns, config.memory);
    if (!cache.ok()) return cache.status();
    e->syn_cache_ = std::move(*cache);
  }
  return e;
}

Engine::Engine(const EngineConfig& config, uint64_t now_ns)
    : config_(config),
      keys_(config.secret, static_cast<uint64_t>(config.key_rotation_s) * kNsPerSec),
      codec_(&keys_),
      flood_(config.syn_flood_rate, config.syn_flood_rate / 4, now_ns),
      tfo_(&keys_) {
  keys_.Refresh(now_ns);
}

Engine::~Engine() = default;

flow::MemoryPlan Engine::PlanMemory(const EngineConfig& config) {
  using flow::MemoryUse;
  flow::MemoryPlan plan;
  plan[MemoryUse::kFlowTable] = flow::FlowTable<Flow>::MemoryBytes(config.flow_capacity);
  plan[MemoryUse::kFlowTimers] = flow::TimerWheel::MemoryBytes(config.flow_capacity, kWheelSlots);
  plan[MemoryUse::kHeldPool] = HeldPool::MemoryBytes(config.held_slots, FrameRoom(config.mtu));
  if (config.syn_cache_entries != 0) {
    plan[MemoryUse::kSynCacheTimers] = SynCache::TimersBytes(config.syn_cache_entries);
    plan[MemoryUse::kSynCache] =
        SynCache::MemoryBytes(config.syn_cache_entries) - plan[MemoryUse::kSynCacheTimers];
  }
  plan[MemoryUse::kRateLimiter] = SynRateLimiter::MemoryBytes(config.synack_rate_buckets);
  return plan;
}

uint64_t Engine::SynCacheBytes(const EngineConfig& config) {
  return config.syn_cache_entries == 0 ? 0 : SynCache::MemoryBytes(config.syn_cache_entries);
}

uint64_t Engine::MemoryBytes(const EngineConfig& config) { return PlanMemory(config).total(); }

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
  p->retired = false;
  if (!p->protected_tcp) {
    // A service a reload removed may still have flows (policy.cc).
    if (retired_.empty() ||
        !(in == Side::kClient ? retired_.Matches(v.addr_len(), v.dst_addr(), v.dst_port())
                              : retired_.Matches(v.addr_len(), v.src_addr(), v.src_port()))) {
      return;
    }
    p->protected_tcp = p->retired = true;
  }
  p->kind = internal::KindOf(v.tcp_flags());
  const flow::FlowKeyWords k = flow::KeyWordsFromPacket(v, in == Side::kClient);
  p->hash = table_->HashWords(k.w[0], k.w[1], k.w[2], k.w[3], k.w[4]);
  k.StoreTo(&p->key);
  table_->Prefetch(p->hash);
  if (p->kind == SegmentKind::kSyn && in == Side::kClient && limiter_->enabled()) {
    limiter_->Prefetch(v.addr_len(), v.src_addr());  // AdmitSyn's bucket
  }
  // SYNs and handshake ACKs look at the SYN cache's signature row too.
  if (syn_cache_ != nullptr && in == Side::kClient) syn_cache_->Prefetch(p->hash);
}

Verdict Engine::Process(Side in, uint8_t* frame, uint16_t* len, uint16_t capacity, uint64_t now_ns,
                        Output* out, FrameMeta* meta) {
  Parsed p;
  Classify(in, frame, *len, &p);
  if (meta != nullptr) meta->tx = TxChecksum{};
  return Handle(in, &p, Frame{len, capacity, meta}, now_ns, out);
}

uint16_t Engine::ProcessBurst(Side in, uint8_t* const* frames, uint16_t* lens, uint16_t capacity,
                              uint16_t n, uint64_t now_ns, Verdict* verdicts, Output* out,
                              FrameMeta* meta) {
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
      FrameMeta* m = meta != nullptr ? &meta[done + j] : nullptr;
      if (m != nullptr) m->tx = TxChecksum{};
      verdicts[done + j] = Handle(in, &parsed[j], Frame{&lens[done + j], capacity, m}, now_ns, out);
    }
    done = static_cast<uint16_t>(done + chunk);
  }
  return done;
}

// ---------------------------------------------------------------------------
// Dispatch.

Verdict Engine::Handle(Side in, Parsed* p, Frame frame, uint64_t now_ns, Output* out) {
  if (p->err != net::ParseError::kOk) {
    // Malformed at some layer. A bump in the wire passes on, byte for byte,
    // whatever it does not protect (stacked VLANs, long extension chains,
    // options it cannot read on other services): judging those is the
    // endpoints' business. Only what could reach a protected service, or
    // cannot be attributed at all, is dropped.
    if (!MayConcernService(in, p->v)) {
      stats_.Inc(Counter::k_bridged_unparsed);
      return Verdict::kForward;
    }
    stats_.IncParse(p->err);
    return Verdict::kDrop;
  }
  PacketView& v = p->v;
  if (!v.is_tcp) return NotTcp(in, v);
  if (!p->protected_tcp) {
    stats_.Inc(Counter::k_bridged);
    return Verdict::kForward;
  }
  Flow* f = table_->Find(p->key, p->hash);
  if (p->retired && (f == nullptr || (in == Side::kClient && p->kind == SegmentKind::kSyn &&
                                      f->state == FlowState::kTimeWait))) {
    // A removed service and no live flow of it: not moat's any more. A
    // tuple lingering in TIME_WAIT is forgotten, so a new connection on it
    // is the backend's own, bridged.
    if (f != nullptr) RemoveFlow(f);
    stats_.Inc(Counter::k_bridged);
    return Verdict::kForward;
  }
  // Checksums. A corrupted segment must not create state, be answered (the
  // cookie would be computed over garbage) or end a flow, so every segment
  // without an established flow, and every SYN, FIN and RST, is verified.
  // Data and pure ACKs of an established flow are not: moat rewrites them
  // with RFC 1624 incremental updates, which carry a wrong checksum through
  // exactly as wrong, so the endpoint still drops a corrupted segment; the
  // full verify would cost a pass over every payload byte on the path that
  // carries the bytes (~160 cycles for 1460).
  // Once a FIN has been seen (kHalfClosed and later), a pure ACK can end
  // the flow too (it acks the FIN and starts TIME_WAIT), so closing flows
  // are verified throughout; so are flows with a RST pending, where any
  // segment withdraws the RST.
  const bool spliced_data = f != nullptr && f->state == FlowState::kEstablished &&
                            (p->kind == SegmentKind::kAck || p->kind == SegmentKind::kNoAck);
  if (config_.verify_checksums && !spliced_data && !ChecksumsOk(v, frame.meta)) {
    stats_.Inc(Counter::k_drop_bad_checksum);
    return Verdict::kDrop;
  }
  if (p->kind == SegmentKind::kBadFlags) {
    // SYN with FIN or RST: no stack sends these; they are scans or attacks
    // (RFC 9293 §3.10.7).
    stats_.Inc(Counter::k_drop_bad_flags);
    return Verdict::kDrop;
  }
  if (f == nullptr) {
    return in == Side::kClient ? ClientNoFlow(p, frame, now_ns, out) : BackendOpens(p, now_ns);
  }
  if (f->passthrough()) return Passthrough(f, in, p, frame, now_ns, out);
  return Spliced(f, in, p, frame, now_ns, out);
}

// The NIC's verdict counts per checksum: GOOD is taken as a software sum
// that came out right, BAD as one that came out wrong, so the drops and
// their counter are the same with and without RX offload. UNKNOWN (and
// DPDK's NONE, mapped to it by the dataplane: the data's checksum was never
// filled in, which moat's incremental rewrites could not keep right
// anyway) is summed here. An IPv6 header has no checksum: only rx_l4
// counts. A NIC that could not parse the frame (stacked VLANs, IPv6
// extension headers, IPv4 options on some) says UNKNOWN, so those are
// summed here too.
bool Engine::ChecksumsOk(const PacketView& v, const FrameMeta* meta) const {
  const HwChecksum ip = meta != nullptr ? meta->rx_ip : HwChecksum::kUnknown;
  const HwChecksum l4 = meta != nullptr ? meta->rx_l4 : HwChecksum::kUnknown;
  if (v.l3 == net::L3::kIpv4 && ip != HwChecksum::kGood &&
      (ip == HwChecksum::kBad || !net::VerifyIpv4HeaderChecksum(v))) {
    return false;
  }
  if (l4 == HwChecksum::kGood) return true;
  return l4 != HwChecksum::kBad && net::VerifyTcpChecksum(v);
}

// For a frame that did not parse: could it reach (or come from) a protected
// service? Decided on what the parser got to (net::Reach): the service
// (address and port) when the TCP header was there, the address when only
// the IP header was (it may hide TCP to a protected port), and yes when
// not even that: such a frame cannot be attributed, so it is not passed.
bool Engine::MayConcernService(Side in, const PacketView& v) const {
  const bool client_side = in == Side::kClient;
  switch (v.reach) {
    case net::Reach::kNone:
      return true;
    case net::Reach::kNotIp:
      return false;  // nothing moat protects is reached without IP
    case net::Reach::kAddresses:
      return config_.services.MatchesAddress(v.addr_len(),
                                             client_side ? v.dst_addr() : v.src_addr());
    case net::Reach::kPorts:
      return client_side ? config_.services.Matches(v.addr_len(), v.dst_addr(), v.dst_port())
                         : config_.services.Matches(v.addr_len(), v.src_addr(), v.src_port());
  }
  return true;
}

// A segment of a cookie flow.
Verdict Engine::Spliced(Flow* f, Side in, Parsed* p, Frame frame, uint64_t now_ns,
                        Output* out) {
  PacketView& v = p->v;
  const SegmentKind kind = p->kind;
  switch (f->state) {
    case FlowState::kSynSent:
      return in == Side::kClient ? ClientWhileOpening(f, kind, v, now_ns, out)
                                 : BackendAnswer(f, kind, v, now_ns, out);
    case FlowState::kTimeWait:
      // A new connection on a tuple in TIME_WAIT (RFC 9293 §3.10.7.4,
      // RFC 6191): the old one is done; start over with a cookie.
      if (in == Side::kClient && kind == SegmentKind::kSyn) {
        return ReuseTimeWait(f, in, p, frame, now_ns, out);
      }
      break;
    case FlowState::kEstablished:
    case FlowState::kHalfClosed:
    case FlowState::kClosing:
    case FlowState::kRstPending:
      break;
  }
  if (AnswersRstProbe(f, in, kind, v)) return RstProbeAnswered(f, in, v, now_ns);
  // Synchronized: the same rules in every state from here on.
  switch (kind) {
    case SegmentKind::kSyn:
      if (in == Side::kClient) {
        // RFC 5961 §4: a SYN on a live connection. Pass it on untranslated
        // (the client's numbers are never rewritten); the backend answers
        // with a challenge ACK, which moat translates, and the client's RST
        // (seq = that ACK's ack, an exact match) then tears the flow down.
        stats_.Inc(Counter::k_syn_on_established);
        stats_.Inc(Counter::k_fwd_client_to_server);
        return Verdict::kForward;
      }
      break;  // a backend's SYN on a spliced flow fits nothing
    case SegmentKind::kSynAck:
      if (in == Side::kServer) return BackendSynAckAgain(f, v, out);
      break;  // a client's SYN-ACK: moat never sent it a SYN
    case SegmentKind::kRst:
      return Rst(f, in, v, now_ns);
    case SegmentKind::kNoAck:
    case SegmentKind::kBadFlags:
      // RFC 9293 §3.10.7.4: in a synchronized state a segment without ACK
      // is dropped.
      stats_.Inc(Counter::k_drop_bad_flags);
      return Verdict::kDrop;
    case SegmentKind::kAck:
    case SegmentKind::kFin:
      return Splice(f, in, v, frame, now_ns);
  }
  stats_.Inc(Counter::k_drop_unexpected);
  return Verdict::kDrop;
}

void Engine::RemoveFlow(Flow* f) {
  FastOpenDone(f);
  wheel_->Cancel(table_->IndexOf(f));
  held_->Free(f);
  table_->Erase(f);
  stats_.Inc(Counter::k_flows_closed);
  stats_.Dec(Counter::k_flows_active);
}

// ---------------------------------------------------------------------------
// Frames moat generates for a flow.

// Towards the server moat impersonates the client, towards the client the
// server; MACs and VLAN tags are those of the frames that created the flow.
void Engine::FillFromFlow(const Flow* f, Side to, net::TcpFrameSpec* s) const {
  const flow::FlowKey& key = table_->KeyOf(f);
  const bool to_server = to == Side::kServer;
  std::memcpy(s->src_mac.b, to_server ? f->l2.client_mac : f->l2.server_mac, 6);
  std::memcpy(s->dst_mac.b, to_server ? f->l2.server_mac : f->l2.client_mac, 6);
  internal::CopyVlans(f->l2.vlan_count, f->l2.vlan_tci, f->l2.vlan_tpid, s);
  s->ipv6 = key.addr_len == 16;
  s->src_addr = to_server ? key.client_addr : key.server_addr;
  s->dst_addr = to_server ? key.server_addr : key.client_addr;
  s->src_port = to_server ? key.client_port : key.server_port;
  s->dst_port = to_server ? key.server_port : key.client_port;
}

bool Engine::Emit(Output* out, Side to, const net::TcpFrameSpec& s) {
  uint8_t* buf = out->Next();
  if (buf == nullptr) {
    stats_.Inc(Counter::k_output_overflow);
    return false;
  }
  // Header-only frames built from values: with offload the header and
  // option words are not summed (bench/README.md has what that saves).
  const bool offload = config_.tx_checksum_offload[static_cast<int>(to)];
  const size_t n = net::BuildTcpFrame(buf, kMaxFrame, s,
                                      offload ? net::Checksums::kOffload : net::Checksums::kFull);
  if (n == 0) return false;
  out->Commit(to, n, offload ? internal::TxFor(s) : TxChecksum{});
  return true;
}

}  // namespace moat::proxy
