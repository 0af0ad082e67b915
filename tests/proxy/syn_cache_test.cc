// The SYN cache (include/moat/proxy/syn_cache.h, lib/proxy/syn_answer.cc):
// exact options to the backend, the cookie as fallback for evicted or
// expired entries, SYN-ACK retransmission, and the switch to cookie-only
// mode and back under a synthetic SYN rate (time is driven through now_ns,
// never slept).

#include <cstring>
#include <set>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"
#include "moat/cookie/cookie.h"
#include "moat/flow/flow_key.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpCwr;
using net::kTcpEce;
using net::kTcpSyn;

// The client: MSS 1337, window scale 3, SACK, no timestamps,
// ECE+CWR. The cookie alone would round the MSS to 1200 (IPv4), drop the
// shift (below 6 without timestamps) and the ECN setup.
Conn OddClient(bool v6, uint16_t port = kClientPort) {
  Conn c;
  c.v6 = v6;
  c.ts = false;
  c.client_ws = 3;
  c.sack = true;
  c.ecn = true;
  c.mss = 1337;
  c.client_port = port;
  return c;
}

// The third ACK alone (no SYN first, unlike DriveToSynSent): the backend
// SYN it produced.
Seen ThirdAck(Harness& h, const Conn& c) {
  EXPECT_EQ(h.Send(Side::kClient, ClientHandshakeAck(c)), Verdict::kConsumed);
  EXPECT_FALSE(h.emitted().empty());
  return h.emitted().empty() ? Seen{} : h.emitted()[0];
}

// What went to the client side.
std::vector<Seen> ToClient(const Harness& h) {
  std::vector<Seen> r;
  for (const Seen& s : h.emitted()) {
    if (s.side == Side::kClient) r.push_back(s);
  }
  return r;
}

class SynCacheTest : public FamilyTest {
 protected:
};

MOAT_FAMILIES(SynCacheTest);

TEST_P(SynCacheTest, BackendSynCarriesTheClientsExactOptions) {
  Harness h(CacheConfig());
  Conn c = OddClient(v6());
  const Seen synack = DoSyn(h, &c);
  // The SYN-ACK agrees to ECN and offers scaling (shift 0, see
  // syn_answer.cc); no timestamps since the client sent none.
  EXPECT_EQ(synack.flags(), kTcpSyn | kTcpAck | kTcpEce);
  EXPECT_TRUE(synack.opts.has_wscale);
  EXPECT_EQ(synack.opts.wscale, 0);
  EXPECT_TRUE(synack.opts.sack_permitted);
  EXPECT_FALSE(synack.opts.has_timestamps);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_inserted), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_entries), 1u);
  // The ISN is the cookie: an engine without a cache answers the same.
  {
    Harness cookie_only;
    Conn d = OddClient(v6());
    DoSyn(cookie_only, &d);
    EXPECT_EQ(d.cookie_isn, c.cookie_isn);
  }
  // No backend SYN before the third ACK.
  EXPECT_TRUE(h.emitted().empty());
  EXPECT_EQ(h.engine().flow_count(), 0u);

  const Seen syn = ThirdAck(h, c);
  EXPECT_EQ(syn.side, Side::kServer);
  EXPECT_EQ(syn.flags(), kTcpSyn | kTcpEce | kTcpCwr);
  EXPECT_EQ(syn.opts.mss, 1337);
  EXPECT_TRUE(syn.opts.has_wscale);
  EXPECT_EQ(syn.opts.wscale, 3);
  EXPECT_TRUE(syn.opts.sack_permitted);
  EXPECT_FALSE(syn.opts.has_timestamps);
  EXPECT_EQ(syn.seq(), c.client_isn);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_hit), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_miss), 0u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_entries), 0u);
  EXPECT_EQ(h.engine().syn_cache()->size(), 0u);

  // Windows: the client scales its own by 3, the backend (shift 7) its
  // own; moat offered the client shift 0, so server windows reach it
  // unscaled (in bytes, clamped to 16 bits).
  ASSERT_EQ(h.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1;
  Seen fwd;
  ASSERT_EQ(h.Send(Side::kServer, c.S().Seq(bs).Ack(cs).Window(100), &fwd), Verdict::kForward);
  EXPECT_EQ(fwd.win(), 100 << 7);
  ASSERT_EQ(h.Send(Side::kClient, c.C().Seq(cs).Ack(c.cookie_isn + 1).Window(77), &fwd),
            Verdict::kForward);
  EXPECT_EQ(fwd.win(), 77);  // the backend agreed to the client's shift 3
}

// A timestamped client with a small shift: its exact shift rides in the
// echo and in the entry, but the third ACK may arrive with neither (the
// echo stripped by a middlebox, the ACK steered to a worker or box that
// never saw the SYN). What the SYN-ACK offered must hold for that flow
// too: offering --wscale would make the client scale unscaled windows by
// 2^7 (issue 11 item 2).
TEST_P(SynCacheTest, SmallShiftWithTimestampsIsOfferedShiftZeroInCacheMode) {
  Harness h(CacheConfig());
  Conn c;
  c.v6 = v6();
  c.client_ws = 2;
  const Seen synack = DoSyn(h, &c);
  ASSERT_TRUE(synack.opts.has_wscale);
  EXPECT_EQ(synack.opts.wscale, 0);

  // Neither the entry nor the echo: another engine with the same secret,
  // and an ACK without timestamps.
  Harness other(CacheConfig());
  ASSERT_EQ(other.Send(Side::kClient,
                       c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Window(c.client_win)),
            Verdict::kConsumed);
  EXPECT_EQ(other.Count(Counter::k_syn_cache_miss), 1u);
  TcpPacket bsa = c.S().Seq(c.backend_isn).Ack(c.client_isn + 1)
                      .Flags(kTcpSyn | kTcpAck).Window(65160).Mss(1460).WindowScale(7);
  ASSERT_EQ(other.Send(Side::kServer, bsa), Verdict::kConsumed);
  Seen fwd;
  ASSERT_EQ(other.Send(Side::kServer,
                       c.S().Seq(c.backend_isn + 1).Ack(c.client_isn + 1).Window(100), &fwd),
            Verdict::kForward);
  // The client reads this window with the shift of the SYN-ACK: 0. The
  // backend offered 100 << 7 bytes, or it was told no scaling: either way
  // the client must not see more than the backend offered.
  const uint64_t client_sees = uint64_t{fwd.win()} << synack.opts.wscale;
  EXPECT_LE(client_sees, uint64_t{100} << 7);
}

TEST_P(SynCacheTest, RetransmittedSynIsAnsweredFromItsEntry) {
  Harness h(CacheConfig());
  Conn c = OddClient(v6());
  const Seen a = DoSyn(h, &c);
  h.set_now(h.now() + 300 * kMs);
  Seen b;
  ASSERT_EQ(h.Send(Side::kClient, ClientSyn(c), &b), Verdict::kReflect);
  ASSERT_EQ(a.frame->len, b.frame->len);
  EXPECT_EQ(std::memcmp(a.frame->buf, b.frame->buf, a.frame->len), 0);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_dup_syn), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_inserted), 1u);
  EXPECT_EQ(h.engine().syn_cache()->size(), 1u);
  // A new connection (another ISN) on the same tuple replaces the entry.
  Conn d = c;
  d.client_isn = c.client_isn + 100000;
  DoSyn(h, &d);
  EXPECT_EQ(h.engine().syn_cache()->size(), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_inserted), 2u);
  const Seen syn = DriveToSynSent(h, &d);
  EXPECT_EQ(syn.seq(), d.client_isn);
  EXPECT_EQ(syn.opts.mss, 1337);
}

TEST_P(SynCacheTest, InvalidCookieLeavesTheEntry) {
  Harness h(CacheConfig());
  Conn c = OddClient(v6());
  DoSyn(h, &c);
  Conn forged = c;
  forged.cookie_isn ^= 0x100;
  EXPECT_EQ(h.Send(Side::kClient, ClientHandshakeAck(forged)), Verdict::kDrop);
  EXPECT_EQ(h.Count(Counter::k_cookie_invalid), 1u);
  EXPECT_EQ(h.engine().syn_cache()->size(), 1u);
  // The genuine ACK still finds it.
  DriveToSynSent(h, &c);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_hit), 1u);
}

// Client ports whose tuples fall in the same SYN-cache bucket as `base`.
std::vector<uint16_t> PortsInOneBucket(bool v6, uint16_t base, uint32_t buckets, size_t n) {
  const uint64_t seed = DefaultConfig().hash_seed;
  auto bucket = [&](uint16_t port) {
    return static_cast<uint32_t>(flow::HashFlowKey(KeyFor(v6, port), seed)) & (buckets - 1);
  };
  std::vector<uint16_t> ports = {base};
  for (uint32_t p = base + 1; ports.size() < n && p < 65536; ++p) {
    if (bucket(static_cast<uint16_t>(p)) == bucket(base)) ports.push_back(static_cast<uint16_t>(p));
  }
  return ports;
}

TEST_P(SynCacheTest, FullBucketEvictsOldestAndItsAckFallsBackToTheCookie) {
  // 64 entries: 8 buckets of 8; nine SYNs aimed at one bucket (the test
  // knows the hash seed, an attacker does not).
  Harness h(CacheConfig(64));
  const std::vector<uint16_t> ports =
      PortsInOneBucket(v6(), kClientPort, 64 / SynCache::kWays, SynCache::kWays + 1);
  ASSERT_EQ(ports.size(), SynCache::kWays + 1);
  std::vector<Conn> conns;
  for (uint16_t port : ports) {
    conns.push_back(OddClient(v6(), port));
    DoSyn(h, &conns.back());
    h.set_now(h.now() + kMs);  // distinct ages
  }
  EXPECT_EQ(h.Count(Counter::k_syn_cache_evicted), 1u);
  EXPECT_EQ(h.engine().syn_cache()->size(), SynCache::kWays);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_cookie_mode), 0u);
  // The oldest (first) lost its entry: its ACK validates as a cookie, with
  // the cookie's options (MSS rounded down, no scaling, no ECN).
  const Seen syn = ThirdAck(h, conns[0]);
  EXPECT_EQ(h.Count(Counter::k_cookie_valid), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_miss), 1u);
  EXPECT_EQ(syn.opts.mss, v6() ? 1220 : 1200);
  EXPECT_FALSE(syn.opts.has_wscale);
  EXPECT_EQ(syn.flags(), kTcpSyn);
  // moat offered the client shift 0, so the cookie-only flow's unscaled
  // windows towards the client are right (the client's own windows read
  // unscaled are smaller than meant: safe).
  ASSERT_EQ(h.Send(Side::kServer, BackendSynAck(conns[0])), Verdict::kConsumed);
  Seen fwd;
  ASSERT_EQ(h.Send(Side::kServer, conns[0].S().Seq(conns[0].backend_isn + 1)
                                      .Ack(conns[0].client_isn + 1).Window(300), &fwd),
            Verdict::kForward);
  EXPECT_EQ(fwd.win(), 300);
  // The second is still there: exact.
  const Seen exact = ThirdAck(h, conns[1]);
  EXPECT_EQ(exact.opts.mss, 1337);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_hit), 1u);
}

TEST_P(SynCacheTest, SynAckIsRetransmittedAfterOneThenTwoSecondsThenForgotten) {
  Harness h(CacheConfig());
  Conn c = OddClient(v6());
  const Seen first = DoSyn(h, &c);
  h.Advance(999 * kMs);
  EXPECT_TRUE(h.emitted().empty());
  h.Advance(1 * kMs);  // 1 s after the SYN
  ASSERT_EQ(h.emitted().size(), 1u);
  const Seen& again = h.emitted()[0];
  EXPECT_EQ(again.side, Side::kClient);
  ASSERT_EQ(again.frame->len, first.frame->len);
  EXPECT_EQ(std::memcmp(again.frame->buf, first.frame->buf, first.frame->len), 0)
      << "the retransmission must be the same SYN-ACK (same cookie ISN and options)";
  EXPECT_EQ(h.Count(Counter::k_synack_retransmit), 1u);
  h.Advance(1999 * kMs);
  EXPECT_TRUE(h.emitted().empty());
  h.Advance(1 * kMs);  // 2 s after the first retransmission
  ASSERT_EQ(h.emitted().size(), 1u);
  EXPECT_EQ(h.emitted()[0].seq(), c.cookie_isn);
  EXPECT_EQ(h.Count(Counter::k_synack_retransmit), 2u);
  // No third: the entry lingers 4 s for a late ACK, then goes.
  h.Advance(3999 * kMs);
  EXPECT_TRUE(h.emitted().empty());
  EXPECT_EQ(h.engine().syn_cache()->size(), 1u);
  h.Advance(1 * kMs);
  EXPECT_TRUE(h.emitted().empty());
  EXPECT_EQ(h.engine().syn_cache()->size(), 0u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_expired), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_entries), 0u);
  // The cookie outlives the entry.
  ThirdAck(h, c);
  EXPECT_EQ(h.Count(Counter::k_cookie_valid), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_miss), 1u);
}

TEST_P(SynCacheTest, TimestampClientsKeepTheExactMssAndTheirTsvalSeries) {
  Harness h(CacheConfig());
  Conn c;
  c.v6 = v6();
  c.mss = 1337;
  c.client_ws = 9;  // the cookie would round to 8
  const Seen synack = DoSyn(h, &c);
  EXPECT_EQ(synack.opts.wscale, 7);  // --wscale: representable by the cookie
  const Seen syn = ThirdAck(h, c);
  // Exact, less the 12 bytes kept for a TSopt (PlanTsRoom).
  EXPECT_EQ(syn.opts.mss, 1337 - 12);
  EXPECT_EQ(syn.opts.wscale, 9);
  EXPECT_EQ(syn.opts.tsval, c.client_tsval);
  // And the retransmitted SYN-ACK of a second client echoes its SYN's TSval.
  Conn d = c;
  d.client_port = 41000;
  const Seen first = DoSyn(h, &d);
  h.Advance(kSec);
  const std::vector<Seen> again = ToClient(h);  // (c's backend SYN is retransmitted too)
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].opts.tsecr, first.opts.tsecr);
  EXPECT_EQ(again[0].opts.tsval & cookie::kTsOptionMask,
            first.opts.tsval & cookie::kTsOptionMask);
}

TEST(SynCacheModeTest, FloodSwitchesToCookiesAndCalmSwitchesBackWithHysteresis) {
  EngineConfig cfg = CacheConfig(4096);
  cfg.syn_flood_rate = 1000;  // enter above 100 SYNs in a 100 ms window, leave below 25
  Harness h(cfg);
  uint16_t port = 1000;
  auto syns = [&](int n) {
    for (int i = 0; i < n; ++i) {
      Conn c = OddClient(false, port++);
      DoSyn(h, &c);
    }
  };
  // Window-aligned start (windows are counted from Create()).
  syns(100);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_to_cookie), 0u);
  EXPECT_EQ(h.engine().syn_cache()->size(), 100u);
  syns(1);  // the 101st in one window
  EXPECT_EQ(h.Count(Counter::k_syn_cache_to_cookie), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_cookie_mode), 1u);
  EXPECT_TRUE(h.engine().cookie_only());
  // Cookie-only: no new entries, the cookie's answer (no scaling offered
  // for shift 3 without timestamps, no ECN).
  Conn late = OddClient(false, 60000);
  const Seen synack = DoSyn(h, &late);
  EXPECT_FALSE(synack.opts.has_wscale);
  EXPECT_EQ(synack.flags(), kTcpSyn | kTcpAck);
  EXPECT_EQ(h.engine().syn_cache()->size(), 100u);
  EXPECT_EQ(h.Count(Counter::k_syn_cookie_only), 2u);
  // An entry from before the switch still gives its client exact options.
  Conn early = OddClient(false, 1000);
  early.cookie_isn = 0;
  {
    Seen again;
    ASSERT_EQ(h.Send(Side::kClient, ClientSyn(early), &again), Verdict::kReflect);
    early.cookie_isn = again.seq();
    EXPECT_TRUE(again.opts.has_wscale) << "answered from its entry, as the first time";
  }
  EXPECT_EQ(ThirdAck(h, early).opts.mss, 1337);
  // No retransmissions in cookie-only mode (backscatter to spoofed
  // sources).
  h.Advance(kSec);
  EXPECT_TRUE(ToClient(h).empty());
  EXPECT_EQ(h.Count(Counter::k_synack_retransmit), 0u);

  // Calm, but not for long enough: nine quiet windows, then one busy (above
  // the leave mark, below the enter mark), then nine quiet again.
  for (int w = 0; w < 8; ++w) h.Advance(100 * kMs);
  EXPECT_TRUE(h.engine().cookie_only());
  syns(30);
  h.Advance(100 * kMs);
  for (int w = 0; w < 9; ++w) {
    syns(10);
    h.Advance(100 * kMs);
  }
  EXPECT_TRUE(h.engine().cookie_only()) << "a busy window must restart the hold";
  h.Advance(100 * kMs);
  EXPECT_FALSE(h.engine().cookie_only());
  EXPECT_EQ(h.Count(Counter::k_syn_cache_to_cache), 1u);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_cookie_mode), 0u);
  // Exact again.
  Conn calm = OddClient(false, 61000);
  EXPECT_TRUE(DoSyn(h, &calm).opts.has_wscale);
  EXPECT_EQ(ThirdAck(h, calm).opts.mss, 1337);
}

TEST(SynCacheModeTest, HighOccupancySwitchesToCookies) {
  EngineConfig cfg = CacheConfig(64);
  cfg.syn_flood_rate = 1'000'000;
  Harness h(cfg);
  // Spread over windows, so only occupancy can trigger.
  for (uint16_t i = 0; i < 48; ++i) {
    Conn c = OddClient(false, static_cast<uint16_t>(2000 + i));
    DoSyn(h, &c);
    h.set_now(h.now() + 5 * kMs);
  }
  EXPECT_EQ(h.Count(Counter::k_syn_cache_to_cookie), 0u);
  const uint32_t size = h.engine().syn_cache()->size();
  EXPECT_GE(size, 40u);  // a few may have shared a full bucket
  if (size < 48) {
    for (uint16_t i = 0; h.engine().syn_cache()->size() < 48 && i < 1000; ++i) {
      Conn c = OddClient(false, static_cast<uint16_t>(3000 + i));
      DoSyn(h, &c);
    }
  }
  Conn c = OddClient(false, 5000);
  DoSyn(h, &c);
  EXPECT_EQ(h.Count(Counter::k_syn_cache_to_cookie), 1u);
  // Leaves only once the entries expired (7 s) and a calm second passed.
  h.Advance(5 * kSec);
  EXPECT_TRUE(h.engine().cookie_only());
  for (int i = 0; i < 40; ++i) h.Advance(100 * kMs);
  EXPECT_FALSE(h.engine().cookie_only());
  EXPECT_EQ(h.engine().syn_cache()->size(), 0u);
}

TEST(SynCacheModeTest, MemoryStaysBoundedUnderAFlood) {
  EngineConfig cfg = CacheConfig(256);
  cfg.syn_flood_rate = 100'000'000;  // never by rate: the cache fills
  Harness h(cfg);
  const uint64_t bytes = Engine::MemoryBytes(cfg);
  EXPECT_EQ(Engine::SynCacheBytes(cfg), SynCache::MemoryBytes(256));
  EXPECT_LT(Engine::SynCacheBytes(cfg), 256u * 128 + 64 * 1024);
  for (uint32_t i = 0; i < 20000; ++i) {
    Conn c = OddClient(i & 1, static_cast<uint16_t>(i));
    c.client_isn = i * 7919;
    EXPECT_EQ(h.Send(Side::kClient, ClientSyn(c)), Verdict::kReflect);
    EXPECT_LE(h.engine().syn_cache()->size(), 256u);
    if (i % 64 == 0) h.Advance(kMs);
  }
  EXPECT_EQ(Engine::MemoryBytes(cfg), bytes);
  EXPECT_EQ(h.engine().flow_count(), 0u);
  EXPECT_GE(h.Count(Counter::k_syn_cookie_only), 19000u);
}

TEST(SynCacheConfigTest, SizesAreValidated) {
  EngineConfig cfg = CacheConfig();
  cfg.syn_cache_entries = SynCache::kMaxEntries + 1;
  EXPECT_FALSE(Engine::Create(cfg, kT0).ok());
  cfg = CacheConfig();
  cfg.syn_flood_rate = 10;
  auto e = Engine::Create(cfg, kT0);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("syn_flood_rate"), std::string::npos);
  cfg = CacheConfig(0);
  auto off = Engine::Create(cfg, kT0);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ((*off)->syn_cache(), nullptr);
  EXPECT_TRUE((*off)->cookie_only());
  // Rounded up to whole buckets.
  cfg = CacheConfig(9);
  auto nine = Engine::Create(cfg, kT0);
  ASSERT_TRUE(nine.ok());
  EXPECT_EQ((*nine)->syn_cache()->capacity(), 16u);
}

}  // namespace
}  // namespace moat::proxy::testing
