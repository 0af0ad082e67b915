// The anti-reflection limit (rate_limit.h) on its own and through the
// engine: per-prefix token buckets driven by now_ns, prefix lengths for
// IPv4 and IPv6, independence of prefixes, fixed memory, and the engine's
// allow and deny lists with their counters.

#include "moat/proxy/rate_limit.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

std::array<uint8_t, 16> Ip(const char* text) {
  std::array<uint8_t, 16> a{};
  if (inet_pton(AF_INET, text, a.data()) != 1) {
    EXPECT_EQ(inet_pton(AF_INET6, text, a.data()), 1) << text;
  }
  return a;
}
bool IsV6(const char* text) { return std::strchr(text, ':') != nullptr; }

std::unique_ptr<SynRateLimiter> MakeLimiter(uint32_t rate, uint8_t v4 = 24, uint8_t v6 = 64,
                                            uint32_t buckets = 4096, uint64_t seed = 77) {
  auto l = SynRateLimiter::Create(buckets, seed);
  EXPECT_TRUE(l.ok()) << l.status();
  (*l)->Configure(rate, v4, v6);
  return std::move(*l);
}

bool Admit(SynRateLimiter& l, const char* src, uint64_t now) {
  const auto a = Ip(src);
  return l.Admit(IsV6(src) ? 16 : 4, a.data(), now);
}
uint32_t Bucket(const SynRateLimiter& l, const char* src) {
  const auto a = Ip(src);
  return l.BucketOf(IsV6(src) ? 16 : 4, a.data());
}
// How many of `n` SYNs at `now` are admitted.
int AdmitN(SynRateLimiter& l, const char* src, int n, uint64_t now) {
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += Admit(l, src, now);
  return ok;
}

TEST(SynRateLimiter, BurstOfRateThenRefillWithTime) {
  auto l = MakeLimiter(10);
  EXPECT_TRUE(l->enabled());
  EXPECT_EQ(l->interval_ns(), 100 * kMs);
  EXPECT_EQ(AdmitN(*l, "198.18.7.5", 25, kT0), 10);  // the burst, then nothing
  EXPECT_FALSE(Admit(*l, "198.18.7.5", kT0 + 99 * kMs));
  EXPECT_TRUE(Admit(*l, "198.18.7.5", kT0 + 100 * kMs));  // one token per 1/rate
  EXPECT_FALSE(Admit(*l, "198.18.7.5", kT0 + 150 * kMs));
  // A ten-second flood, one SYN a millisecond, after a quiet spell: the
  // burst, then `rate` a second.
  int ok = 0;
  for (uint64_t t = kT0 + 100 * kSec; t < kT0 + 110 * kSec; t += kMs) {
    ok += Admit(*l, "198.18.7.5", t);
  }
  EXPECT_GE(ok, 109);
  EXPECT_LE(ok, 110);
  // Idle for a minute: a full burst again, never more than `rate`.
  EXPECT_EQ(AdmitN(*l, "198.18.7.5", 25, kT0 + 170 * kSec), 10);
}

TEST(SynRateLimiter, OffAdmitsEverything) {
  auto l = MakeLimiter(0);
  EXPECT_FALSE(l->enabled());
  EXPECT_EQ(AdmitN(*l, "198.18.7.5", 10000, kT0), 10000);
}

TEST(SynRateLimiter, Ipv4PrefixLengthGroupsSources) {
  auto l24 = MakeLimiter(3, 24);
  EXPECT_EQ(Bucket(*l24, "198.18.7.5"), Bucket(*l24, "198.18.7.200"));
  EXPECT_EQ(AdmitN(*l24, "198.18.7.5", 2, kT0), 2);
  EXPECT_EQ(AdmitN(*l24, "198.18.7.200", 5, kT0), 1);  // same /24: shares the 3
  // /32: every host is its own prefix.
  auto l32 = MakeLimiter(3, 32);
  EXPECT_NE(Bucket(*l32, "198.18.7.5"), Bucket(*l32, "198.18.7.200"));
  EXPECT_EQ(AdmitN(*l32, "198.18.7.5", 5, kT0), 3);
  EXPECT_EQ(AdmitN(*l32, "198.18.7.200", 5, kT0), 3);
  // /16 joins what /24 keeps apart.
  auto l16 = MakeLimiter(3, 16);
  EXPECT_EQ(Bucket(*l16, "198.18.7.5"), Bucket(*l16, "198.18.200.1"));
}

TEST(SynRateLimiter, Ipv6PrefixLengthGroupsSources) {
  auto l = MakeLimiter(4, 24, 64);
  EXPECT_EQ(Bucket(*l, "2001:2::1"), Bucket(*l, "2001:2::ffff:1"));
  EXPECT_EQ(AdmitN(*l, "2001:2::1", 3, kT0), 3);
  EXPECT_EQ(AdmitN(*l, "2001:2::ffff:1", 3, kT0), 1);
  EXPECT_NE(Bucket(*l, "2001:2::1"), Bucket(*l, "2001:2:0:1::1"));
  EXPECT_EQ(AdmitN(*l, "2001:2:0:1::1", 6, kT0), 4);
  // /128 and /48.
  auto l128 = MakeLimiter(4, 24, 128);
  EXPECT_NE(Bucket(*l128, "2001:2::1"), Bucket(*l128, "2001:2::2"));
  auto l48 = MakeLimiter(4, 24, 48);
  EXPECT_EQ(Bucket(*l48, "2001:2::1"), Bucket(*l48, "2001:2:0:ffff::1"));
  // An IPv4 /24 and IPv6 never share a bucket by construction of the key;
  // here simply check that v4 use leaves v6 untouched.
  auto lx = MakeLimiter(2);
  EXPECT_EQ(AdmitN(*lx, "198.18.7.5", 5, kT0), 2);
  EXPECT_EQ(AdmitN(*lx, "2001:2::1", 5, kT0), 2);
}

TEST(SynRateLimiter, DifferentPrefixesAreIndependent) {
  auto l = MakeLimiter(5);
  // Exhaust one /24; 200 other /24s, each in a bucket of its own, still
  // get their whole burst.
  EXPECT_EQ(AdmitN(*l, "198.18.7.5", 50, kT0), 5);
  std::vector<bool> used(l->buckets());
  used[Bucket(*l, "198.18.7.5")] = true;
  int checked = 0;
  for (int i = 0; i < 256 && checked < 200; ++i) {
    const std::string src = "198.19." + std::to_string(i) + ".9";
    const uint32_t b = Bucket(*l, src.c_str());
    if (used[b]) continue;  // a collision shares (errs to limiting): below
    used[b] = true;
    EXPECT_EQ(AdmitN(*l, src.c_str(), 7, kT0), 5) << src;
    ++checked;
  }
  EXPECT_EQ(checked, 200);
}

TEST(SynRateLimiter, SequentialPrefixesSpreadLikeRandomOnes) {
  // 64K consecutive /24s (what a sweep of spoofed sources looks like) into
  // 64K buckets: a random function leaves 1/e of them empty (36.8 %).
  auto l = MakeLimiter(5, 24, 64, 65536);
  std::vector<bool> hit(l->buckets());
  uint8_t a[4] = {198, 0, 0, 1};
  for (uint32_t i = 0; i < 65536; ++i) {
    a[1] = static_cast<uint8_t>(i >> 8);
    a[2] = static_cast<uint8_t>(i);
    hit[l->BucketOf(4, a)] = true;
  }
  const double empty = 1.0 - static_cast<double>(std::count(hit.begin(), hit.end(), true)) / 65536;
  EXPECT_GT(empty, 0.355);
  EXPECT_LT(empty, 0.380);
}

TEST(SynRateLimiter, CollidingPrefixesShareTheirBucket) {
  // 64 buckets: among 65 prefixes two must share one, and then they share
  // its tokens too (never more than `rate` for the pair).
  auto l = MakeLimiter(4, 24, 64, 64);
  std::string a, b;
  std::array<std::string, 64> owner;
  for (int i = 0; i < 65 && b.empty(); ++i) {
    const std::string src = "198.18." + std::to_string(i) + ".1";
    std::string& o = owner[Bucket(*l, src.c_str())];
    if (o.empty()) {
      o = src;
    } else {
      a = o;
      b = src;
    }
  }
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(AdmitN(*l, a.c_str(), 3, kT0), 3);
  EXPECT_EQ(AdmitN(*l, b.c_str(), 3, kT0), 1);
}

TEST(SynRateLimiter, HashIsKeyed) {
  // The same prefixes land differently under another seed: an attacker who
  // does not know the seed cannot pick prefixes that share a victim's bucket.
  auto l1 = MakeLimiter(1, 24, 64, 4096, 1);
  auto l2 = MakeLimiter(1, 24, 64, 4096, 2);
  int same = 0;
  for (int i = 0; i < 256; ++i) {
    const std::string src = "198.18." + std::to_string(i) + ".1";
    same += Bucket(*l1, src.c_str()) == Bucket(*l2, src.c_str());
  }
  EXPECT_LT(same, 5);
}

TEST(SynRateLimiter, MemoryIsFixedWhateverThePrefixCount) {
  auto l = MakeLimiter(10, 24, 64, 65536);
  EXPECT_EQ(l->buckets(), 65536u);
  EXPECT_EQ(l->memory_bytes(), 65536u * 8u);
  // A random-source flood over a million /24s and /64s.
  uint8_t a[16] = {};
  for (uint32_t i = 0; i < (1u << 20); ++i) {
    a[0] = static_cast<uint8_t>(i >> 16), a[1] = static_cast<uint8_t>(i >> 8);
    a[2] = static_cast<uint8_t>(i);
    l->Admit(4, a, kT0 + i);
    l->Admit(16, a, kT0 + i);
  }
  EXPECT_EQ(l->memory_bytes(), 65536u * 8u);
}

TEST(SynRateLimiter, ClockSteppingBackDoesNotLockAPrefixOut) {
  auto l = MakeLimiter(2);
  EXPECT_EQ(AdmitN(*l, "198.18.7.5", 2, kT0 + 3600 * kSec), 2);
  // The wall clock is stepped back an hour (NTP): the prefix is not shut
  // out for that hour; it gets a fresh burst.
  EXPECT_EQ(AdmitN(*l, "198.18.7.5", 5, kT0), 2);
}

TEST(SynRateLimiter, CreateRejectsABucketCountThatIsNotAPowerOfTwo) {
  EXPECT_FALSE(SynRateLimiter::Create(1000, 1).ok());
  EXPECT_FALSE(SynRateLimiter::Create(0, 1).ok());
  EXPECT_TRUE(SynRateLimiter::Create(1024, 1).ok());
}

// ---------------------------------------------------------------------------
// Through the engine.

// A SYN to the protected service from `src` (IPv4 or IPv6 text).
Frame SynFrom(const char* src, uint16_t sport) {
  const bool v6 = IsV6(src);
  const auto a = Ip(src);
  uint8_t opts[4] = {2, 4, 0x05, 0xb4};  // MSS 1460
  net::TcpFrameSpec s;
  s.src_mac = kClientMac;
  s.dst_mac = kServerMac;
  s.ipv6 = v6;
  s.src_addr = a.data();
  s.dst_addr = v6 ? kServerV6 : kServerV4;
  s.src_port = sport;
  s.dst_port = kServerPort;
  s.seq = 1000u + sport;
  s.flags = net::kTcpSyn;
  s.window = 64240;
  s.options = opts;
  s.options_len = sizeof(opts);
  Frame f;
  f.len = static_cast<uint16_t>(net::BuildTcpFrame(f.buf, sizeof(f.buf), s));
  EXPECT_NE(f.len, 0);
  return f;
}

// How many of n SYNs from src (ports from `port`) are answered.
int Answered(Harness& h, const char* src, int n, uint16_t port = 30000) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    Frame f = SynFrom(src, static_cast<uint16_t>(port + i));
    const Verdict v = h.Send(Side::kClient, f);
    EXPECT_TRUE(v == Verdict::kReflect || v == Verdict::kDrop);
    ok += v == Verdict::kReflect;
  }
  return ok;
}

EngineConfig Limited(uint32_t rate, const char* allow = "", const char* deny = "") {
  EngineConfig c = DefaultConfig();
  c.synack_rate = rate;
  c.allow = *ParsePrefixList("allow", allow);
  c.deny = *ParsePrefixList("deny", deny);
  return c;
}

TEST(EngineRateLimit, SynAcksPerPrefixAreCappedAndExcessCounted) {
  Harness h(Limited(3));
  EXPECT_EQ(Answered(h, "198.18.7.5", 10), 3);
  EXPECT_EQ(Answered(h, "198.18.7.77", 2, 31000), 0);  // the same /24
  EXPECT_EQ(h.Count(Counter::k_syn_received), 12u);
  EXPECT_EQ(h.Count(Counter::k_synack_sent), 3u);
  EXPECT_EQ(h.Count(Counter::k_drop_synack_rate), 9u);
  EXPECT_EQ(h.Count(Counter::k_drop_denied), 0u);
  // A client in another /24 is served in full.
  EXPECT_EQ(Answered(h, "198.18.0.1", 3, 32000), 3);
  EXPECT_EQ(h.engine().flow_count(), 0u);  // the drop keeps no state either
  // One second later the flooded /24 has its burst back, driven by now_ns.
  h.set_now(h.now() + kSec);
  EXPECT_EQ(Answered(h, "198.18.7.5", 10, 33000), 3);
  h.set_now(h.now() + 334 * kMs);
  EXPECT_EQ(Answered(h, "198.18.7.5", 10, 34000), 1);
}

TEST(EngineRateLimit, Ipv6SourcesAreGroupedBySlash64) {
  Harness h(Limited(2));
  EXPECT_EQ(Answered(h, "2001:2:0:7::5", 4), 2);
  EXPECT_EQ(Answered(h, "2001:2:0:7:ffff::9", 4, 31000), 0);
  EXPECT_EQ(Answered(h, "2001:2:0:8::5", 4, 32000), 2);
  EXPECT_EQ(h.Count(Counter::k_drop_synack_rate), 8u);
}

TEST(EngineRateLimit, PrefixLengthsAreConfigurable) {
  EngineConfig c = Limited(2);
  c.synack_prefix_v4 = 32;
  c.synack_prefix_v6 = 128;
  Harness h(c);
  EXPECT_EQ(Answered(h, "198.18.7.5", 4), 2);
  EXPECT_EQ(Answered(h, "198.18.7.6", 4), 2);
  EXPECT_EQ(Answered(h, "2001:2::5", 4), 2);
  EXPECT_EQ(Answered(h, "2001:2::6", 4), 2);
}

TEST(EngineRateLimit, OffByDefault) {
  Harness h;
  EXPECT_FALSE(h.engine().rate_limiter().enabled());
  EXPECT_EQ(Answered(h, "198.18.7.5", 500), 500);
  EXPECT_EQ(h.Count(Counter::k_drop_synack_rate), 0u);
}

TEST(EngineRateLimit, AllowedPrefixesAreNeverLimited) {
  Harness h(Limited(2, "198.18.7.0/24,2001:2:0:7::/64"));
  EXPECT_EQ(Answered(h, "198.18.7.5", 50), 50);
  EXPECT_EQ(Answered(h, "2001:2:0:7::1", 50), 50);
  EXPECT_EQ(Answered(h, "198.18.8.5", 50), 2);  // not in the list
  EXPECT_EQ(h.Count(Counter::k_drop_synack_rate), 48u);
}

TEST(EngineRateLimit, DeniedPrefixesAreDroppedAndCounted) {
  // Deny works with the limit off, and wins over allow.
  Harness h(Limited(0, "198.18.7.0/24", "198.18.7.0/25,2001:2:0:7::/64"));
  EXPECT_EQ(Answered(h, "198.18.7.5", 5), 0);
  EXPECT_EQ(Answered(h, "198.18.7.200", 5), 5);  // the other half of the /24
  EXPECT_EQ(Answered(h, "2001:2:0:7::1", 5), 0);
  EXPECT_EQ(Answered(h, "2001:2:0:8::1", 5), 5);
  EXPECT_EQ(h.Count(Counter::k_drop_denied), 10u);
  EXPECT_EQ(h.Count(Counter::k_synack_sent), 10u);
  EXPECT_EQ(h.Count(Counter::k_syn_received), 20u);
  EXPECT_TRUE(h.emitted().empty());
}

TEST(EngineRateLimit, RetransmittedSynsCountAgainstTheRate) {
  // A client retransmitting one SYN is a SYN-ACK each time: they count
  // (the reply is what the limit is about).
  Harness h(Limited(2));
  Conn c;
  Seen s;
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(c), &s), Verdict::kReflect);
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(c), &s), Verdict::kReflect);
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(c)), Verdict::kDrop);
  EXPECT_EQ(h.Count(Counter::k_drop_synack_rate), 1u);
}

TEST(PrefixList, ParsesIpv4AndIpv6AndRejectsPortsAndJunk) {
  auto l = ParsePrefixList("allow", "198.18.7.0/24, 2001:2::/48,[2001:3::/32],198.19.0.1");
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->size(), 4u);
  EXPECT_TRUE(l->MatchesAddress(4, Ip("198.18.7.9").data()));
  EXPECT_FALSE(l->MatchesAddress(4, Ip("198.18.8.9").data()));
  EXPECT_TRUE(l->MatchesAddress(16, Ip("2001:2::9").data()));
  EXPECT_TRUE(l->MatchesAddress(16, Ip("2001:3:1::9").data()));
  EXPECT_TRUE(l->MatchesAddress(4, Ip("198.19.0.1").data()));
  EXPECT_FALSE(l->MatchesAddress(4, Ip("198.19.0.2").data()));
  EXPECT_TRUE(ParsePrefixList("deny", "").ok());
  EXPECT_TRUE(ParsePrefixList("deny", "")->empty());

  const auto err = [](const char* flag, const char* spec) {
    auto r = ParsePrefixList(flag, spec);
    EXPECT_FALSE(r.ok()) << spec;
    return r.ok() ? std::string() : std::string(r.status().message());
  };
  EXPECT_EQ(err("deny", "198.18.7.0/24:80"),
            "--deny: '198.18.7.0/24:80' has a port; it takes source address prefixes only, "
            "e.g. 198.18.7.0/24,2001:2::/48");
  EXPECT_EQ(err("allow", "198.18.7.0/33"),
            "--allow: bad prefix length '/33' in '198.18.7.0/33' (expected 0-32)");
  EXPECT_EQ(err("allow", "example.com"),
            "--allow: 'example.com' in 'example.com' is not an IPv4 or IPv6 address (IPv6 with a "
            "port goes in brackets: [2001:2::2]:80)");
  EXPECT_EQ(err("deny", "198.18.7.0/24,,"), "--deny: empty entry in '198.18.7.0/24,,'");
  std::string many;
  for (int i = 0; i < 65; ++i)
    many += (i ? "," : "") + std::string("198.18.") + std::to_string(i) + ".0/24";
  EXPECT_EQ(err("deny", many.c_str()),
            "--deny: more than 64 prefixes; use shorter prefixes, or filter large lists in front "
            "of moat");
}

TEST(PrefixList, ValidateChecksTheRateAndPrefixLengths) {
  EngineConfig c = DefaultConfig();
  c.synack_rate = kMaxSynAckRate + 1;
  EXPECT_EQ(ValidateConfig(c).message(),
            "--synack_rate=1000001 is out of range [0, 1000000]: SYN-ACKs per second per source "
            "prefix, 0 = off");
  c = DefaultConfig();
  c.synack_prefix_v4 = 33;
  EXPECT_EQ(ValidateConfig(c).message(), "--synack_prefix_v4=33 is out of range [0, 32]");
  c = DefaultConfig();
  c.synack_prefix_v6 = 129;
  EXPECT_EQ(ValidatePolicy(c).message(), "--synack_prefix_v6=129 is out of range [0, 128]");
  c = DefaultConfig();
  c.synack_rate_buckets = 1000;
  EXPECT_FALSE(ValidateConfig(c).ok());
  EXPECT_FALSE(Engine::Create(c, kT0).ok());
}

}  // namespace
}  // namespace moat::proxy::testing
