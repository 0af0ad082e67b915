// Answering SYNs (docs/design.md, "SYN cache"): what the SYN-ACK offers,
// the SYN-cache entry that keeps the client's exact options, SYN-ACK
// retransmission, and the per-worker switch between cache and cookie-only
// mode.
//
// The ISN is always the cookie. An entry only adds what the cookie cannot
// carry: the exact MSS, a window-scale shift below 6 without timestamps,
// ECN setup without timestamps. Whatever moat offers must stay safe if the
// entry is lost (evicted, expired, or the ACK reaches a worker or box that
// never saw the SYN) and the ACK is served by the cookie alone:
// - MSS: the cookie's rounded-down value is smaller; always safe.
// - A shift below 6: without timestamps the cookie says "no scaling", and
//   with them only the echo says more, which the third ACK may lose. moat
//   then offers the client window scaling with shift 0 (RFC 7323 §2.2: a
//   valid offer; the client may scale its own windows while moat's are
//   unscaled). With the entry the backend hears the exact shift; without
//   it the backend reads the client's windows unscaled, i.e. smaller than
//   they are, and moat's windows towards the client were unscaled anyway.
//   Offering --wscale instead would make the client scale windows that
//   a cookie-only flow sends unscaled: up to 2^14 times too large.
// - ECN without timestamps: agreed with the entry; a lost entry leaves the
//   backend without ECN while the client has it (RFC 3168 §6.1.1 lets
//   either end refuse, but the client already saw ECE). The client's CE
//   echo is then simply not answered: congestion is signalled by loss, as
//   for a non-ECN flow. Counted as syn_cache_miss.

#include <cstring>

#include "internal.h"
#include "moat/net/builder.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {

using internal::kSynAckWindow;
using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpSyn;

// AskFromSyn() and Answer() are inline in internal.h: the flood path calls
// them per SYN, and out of line their small structs went through memory
// (a store-forwarding stall measured at ~60 cycles per SYN).

void Engine::AppendFastOpenCookie(const SynAsk& a, bool ipv6, const uint8_t* client_addr,
                                  uint8_t* o) {
  // RFC 7413 §4.1.2: the cookie, 8 bytes, in the form the client asked
  // in (12 bytes either way, so the options stay 4-aligned).
  if (a.tfo == SynAsk::kTfoStd) {
    o[0] = net::kOptNop;
    o[1] = net::kOptNop;
    o[2] = net::kOptFastOpen;
    o[3] = 2 + cookie::kFastOpenCookieLen;
  } else {
    o[0] = net::kOptExperimental;
    o[1] = 4 + cookie::kFastOpenCookieLen;
    o[2] = static_cast<uint8_t>(net::kFastOpenExid >> 8);
    o[3] = static_cast<uint8_t>(net::kFastOpenExid);
  }
  tfo_.Make(ipv6 ? 16 : 4, client_addr, o + 4);
  stats_.Inc(Counter::k_fastopen_cookie_sent);
}

// ---------------------------------------------------------------------------
// Entries.

bool Engine::CacheSynSlow(Parsed* p, const SynAsk& a, uint64_t now_ns, uint32_t id) {
  SynCache& cache = *syn_cache_;
  const net::PacketView& v = p->v;
  const uint32_t client_isn = v.seq().value();
  bool erased = false;
  if (id != SynCache::kNone) {
    if (cache.At(id).client_isn == client_isn) {
      // The client did not get our SYN-ACK (or its ACK is on the way):
      // answer exactly as the first time, so whichever SYN-ACK it takes
      // agrees with the entry. Its timers run on.
      stats_.Inc(Counter::k_syn_cache_dup_syn);
      return true;
    }
    // A new connection on the same tuple: the old handshake is void.
    cache.Erase(id);
    erased = true;
  }
  if (flood_.cookie_only()) {
    stats_.Inc(Counter::k_syn_cookie_only);
    if (erased) SetCacheGauge();
    return false;
  }
  bool evicted = false;
  id = cache.Insert(p->key, p->hash, now_ns, &evicted);
  if (evicted) stats_.Inc(Counter::k_syn_cache_evicted);
  SynCacheEntry& e = cache.At(id);
  e.client_isn = client_isn;
  e.client_tsval = a.tsval;
  e.mss = a.mss;
  std::memcpy(e.client_mac, v.src_mac(), 6);
  std::memcpy(e.server_mac, v.dst_mac(), 6);
  e.bits |= (a.sack ? kSceSack : 0) | (a.ts ? kSceTs : 0) | (a.ecn ? kSceEcn : 0) |
            static_cast<uint8_t>(v.vlan_count << kSceVlanShift);
  e.ws_retries = a.wscale == cookie::kNoWindowScale ? kSceNoWs : a.wscale;
  if (a.tfo != SynAsk::kTfoNone) e.bits |= kSceFastOpen;
  if (a.tfo == SynAsk::kTfoExp) e.ws_retries |= kSceFastOpenExp;
  for (int i = 0; i < v.vlan_count; ++i) {
    e.vlan_tci[i] = v.vlan_tci[i];
    if (v.vlan_tpid[i] == net::kEtherTypeQinQ) {
      if (i == 0) e.bits |= kSceOuterQinQ;
      if (i == 1) e.ws_retries |= kSceInnerQinQ;
    }
  }
  stats_.Inc(Counter::k_syn_cache_inserted);
  SetCacheGauge();
  return true;
}

bool Engine::TakeCacheEntry(const Parsed* p, uint32_t client_isn, cookie::SynOptions* syn,
                            uint8_t* our_wscale) {
  *our_wscale = config_.wscale;
  if (syn_cache_ == nullptr) return false;
  const uint32_t id = syn_cache_->Find(p->key, p->hash);
  if (id == SynCache::kNone || syn_cache_->At(id).client_isn != client_isn) {
    stats_.Inc(Counter::k_syn_cache_miss);
    return false;
  }
  const SynCacheEntry& e = syn_cache_->At(id);
  SynAsk a;
  a.mss = e.mss;
  a.wscale = e.wscale() == kSceNoWs ? cookie::kNoWindowScale : e.wscale();
  a.sack = e.Has(kSceSack);
  a.ts = e.Has(kSceTs);
  a.ecn = e.Has(kSceEcn);
  const SynAnswer r = Answer(a, /*exact=*/true);
  if (a.mss != 0) syn->mss = a.mss;  // else the cookie's: the RFC 9293 default
  syn->wscale = r.offer_ws ? a.wscale : cookie::kNoWindowScale;
  syn->sack = a.sack;
  syn->ecn = r.ece;
  *our_wscale = r.our_wscale;
  syn_cache_->Erase(id);
  stats_.Inc(Counter::k_syn_cache_hit);
  SetCacheGauge();
  return true;
}

// ---------------------------------------------------------------------------
// Timers: SYN-ACK retransmission (1 s, 2 s), then expiry.

void Engine::OnSynCacheTimer(uint32_t id, uint64_t now_ns, Output* out) {
  SynCache& cache = *syn_cache_;
  SynCacheEntry& e = cache.At(id);
  const uint64_t birth = cache.BirthNs(id);
  if (e.retries() >= SynCache::kMaxRetries) {
    cache.Erase(id);
    stats_.Inc(Counter::k_syn_cache_expired);
    SetCacheGauge();
    return;
  }
  e.ws_retries = static_cast<uint8_t>(e.ws_retries + (1 << kSceRetryShift));
  cache.ScheduleNext(id, birth);
  // In cookie-only mode the cache answers nobody: most of its entries are
  // then the flood's spoofed sources, and a retransmission would triple
  // the backscatter. The entry stays for a genuine client's late ACK.
  if (flood_.cookie_only()) return;
  // A retransmitted SYN-ACK goes to the same, possibly spoofed, source as
  // the first: it takes a token of --synack_rate like any SYN-ACK, or the
  // cache would multiply what the limit lets through by 1 + kMaxRetries;
  // and a prefix denied since (a reload) gets nothing more.
  const uint8_t addr_len = e.v6() ? 16 : 4;
  if (GateSynAck(addr_len, e.client_addr, now_ns) != SynAckGate::kSend) {
    stats_.Inc(Counter::k_synack_retransmit_limited);
    return;
  }

  SynAsk a;
  a.mss = e.mss;
  a.wscale = e.wscale() == kSceNoWs ? cookie::kNoWindowScale : e.wscale();
  a.sack = e.Has(kSceSack);
  a.ts = e.Has(kSceTs);
  a.ecn = e.Has(kSceEcn);
  a.tsval = e.client_tsval;
  if (e.Has(kSceFastOpen)) {
    a.tfo = (e.ws_retries & kSceFastOpenExp) ? SynAsk::kTfoExp : SynAsk::kTfoStd;
  }
  SynAnswer r = Answer(a, /*exact=*/true);
  // The entry kept the options already narrowed to the backend
  // (NarrowToBackend); the MSS it advertised is looked up again.
  if (config_.learn_backends) {
    r.mss_cap = MssCap(backends_.Find(addr_len, e.server_addr, e.server_port, now_ns), e.v6());
  }
  const cookie::CookieTuple tuple{addr_len, e.client_addr, e.server_addr, e.client_port,
                                  e.server_port};
  // The same inputs give the same ISN within a cookie slot; across a slot
  // boundary it is a fresh cookie, as valid as the first.
  const uint32_t isn = codec_.MakeIsn(tuple, e.client_isn, r.cookie, WallNs(now_ns));
  net::TcpFrameSpec s;
  std::memcpy(s.src_mac.b, e.server_mac, 6);
  std::memcpy(s.dst_mac.b, e.client_mac, 6);
  s.vlan_count = e.vlan_count();
  for (int i = 0; i < s.vlan_count; ++i) {
    s.vlan_tci[i] = e.vlan_tci[i];
    const bool qinq = i == 0 ? e.Has(kSceOuterQinQ) : (e.ws_retries & kSceInnerQinQ) != 0;
    s.vlan_tpid[i] = qinq ? net::kEtherTypeQinQ : net::kEtherTypeVlan;
  }
  s.ipv6 = e.v6();
  s.src_addr = e.server_addr;
  s.dst_addr = e.client_addr;
  s.src_port = e.server_port;
  s.dst_port = e.client_port;
  uint8_t options[40];
  net::TcpReplySpec reply;
  WriteSynAck(a, r, s.ipv6, e.client_addr, e.client_isn, isn, now_ns, options, &reply);
  s.seq = reply.seq;
  s.ack = reply.ack;
  s.flags = reply.flags;
  s.window = reply.window;
  s.options = reply.options;
  s.options_len = reply.options_len;
  if (Emit(out, Side::kClient, s)) stats_.Inc(Counter::k_synack_retransmit);
}

// ---------------------------------------------------------------------------
// Mode.

void Engine::ModeChanged() {
  if (flood_.cookie_only()) {
    stats_.Inc(Counter::k_syn_cache_to_cookie);
  } else {
    stats_.Inc(Counter::k_syn_cache_to_cache);
  }
  stats_.Set(Counter::k_syn_cache_cookie_mode, flood_.cookie_only() ? 1 : 0);
}

void Engine::SetCacheGauge() { stats_.Set(Counter::k_syn_cache_entries, syn_cache_->size()); }

}  // namespace moat::proxy
