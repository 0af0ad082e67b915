#include "moat/proxy/config.h"

#include <arpa/inet.h>

#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace moat::proxy {
namespace {

std::array<uint8_t, 16> Addr(const char* text) {
  std::array<uint8_t, 16> a{};
  if (inet_pton(AF_INET, text, a.data()) != 1) {
    EXPECT_EQ(inet_pton(AF_INET6, text, a.data()), 1) << text;
  }
  return a;
}

bool Match(const ServiceSet& set, const char* addr, uint16_t port) {
  const bool v6 = std::string(addr).find(':') != std::string::npos;
  return set.Matches(v6 ? 16 : 4, Addr(addr).data(), port);
}

TEST(ParseProtect, SingleIpv4HostAndPort) {
  auto set = ParseProtect("198.18.0.2:80");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->size(), 1u);
  EXPECT_TRUE(Match(*set, "198.18.0.2", 80));
  EXPECT_FALSE(Match(*set, "198.18.0.2", 81));
  EXPECT_FALSE(Match(*set, "198.18.0.3", 80));
  EXPECT_EQ(set->ToString(), "198.18.0.2:80");
}

TEST(ParseProtect, PrefixPortRangeAndAllPorts) {
  auto set = ParseProtect("198.18.0.0/24:80-90, 198.19.0.1");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(Match(*set, "198.18.0.77", 80));
  EXPECT_TRUE(Match(*set, "198.18.0.77", 90));
  EXPECT_FALSE(Match(*set, "198.18.0.77", 91));
  EXPECT_FALSE(Match(*set, "198.18.1.77", 80));
  EXPECT_TRUE(Match(*set, "198.19.0.1", 1));
  EXPECT_TRUE(Match(*set, "198.19.0.1", 65535));
  EXPECT_EQ(set->ToString(), "198.18.0.0/24:80-90,198.19.0.1");
}

TEST(ParseProtect, OddPrefixLengthMasksHostBits) {
  auto set = ParseProtect("198.18.0.255/23:443");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(Match(*set, "198.18.1.200", 443));
  EXPECT_FALSE(Match(*set, "198.18.2.1", 443));
  EXPECT_EQ(set->ToString(), "198.18.0.0/23:443");
}

TEST(ParseProtect, Ipv6Forms) {
  auto set = ParseProtect("[2001:2::2]:80,[2001:2:0:1::/64]:443,2001:2:0:2::/64");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(Match(*set, "2001:2::2", 80));
  EXPECT_FALSE(Match(*set, "2001:2::3", 80));
  EXPECT_TRUE(Match(*set, "2001:2:0:1::99", 443));
  EXPECT_FALSE(Match(*set, "2001:2:0:1::99", 80));
  EXPECT_TRUE(Match(*set, "2001:2:0:2::5", 22));
  // An IPv4 address never matches an IPv6 entry, even with equal bytes.
  EXPECT_FALSE(set->Matches(4, Addr("2001:2::2").data(), 80));
  EXPECT_EQ(set->ToString(), "[2001:2::2]:80,[2001:2:0:1::/64]:443,[2001:2:0:2::/64]");
}

TEST(ParseProtect, ZeroPrefixMatchesTheWholeFamily) {
  auto set = ParseProtect("0.0.0.0/0:80");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(Match(*set, "198.18.5.5", 80));
  EXPECT_FALSE(Match(*set, "2001:2::1", 80));
}

struct BadCase {
  const char* spec;
  const char* expect_in_message;
};

class ParseProtectErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ParseProtectErrors, NamesTheProblem) {
  auto set = ParseProtect(GetParam().spec);
  ASSERT_FALSE(set.ok()) << GetParam().spec;
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(set.status().message().find(GetParam().expect_in_message), std::string::npos)
      << set.status();
  EXPECT_NE(set.status().message().find("--protect"), std::string::npos) << set.status();
}

INSTANTIATE_TEST_SUITE_P(
    All, ParseProtectErrors,
    ::testing::Values(BadCase{"", "required"}, BadCase{"  ", "required"},
                      BadCase{"198.18.0.2:80,", "empty entry"},
                      BadCase{"198.18.0.256:80", "not an IPv4 or IPv6"},
                      BadCase{"example.com:80", "not an IPv4 or IPv6"},
                      BadCase{"198.18.0.2:65536", "bad port"},
                      BadCase{"198.18.0.2:-1", "bad port"},
                      BadCase{"198.18.0.2:http", "bad port"},
                      BadCase{"198.18.0.2:", "empty port"},
                      BadCase{"198.18.0.2:90-80", "reversed"},
                      BadCase{"198.18.0.0/33:80", "prefix length"},
                      BadCase{"198.18.0.0/x", "prefix length"},
                      BadCase{"[2001:2::2:80", "missing ']'"},
                      BadCase{"[2001:2::2]80", "expected ':PORT'"},
                      BadCase{"[2001:2::/129]:80", "prefix length"},
                      BadCase{"2001:2::2:80x", "not an IPv4 or IPv6"}));

TEST(ParseProtect, TooManyEntries) {
  std::string spec;
  for (int i = 0; i <= static_cast<int>(ServiceSet::kMaxRanges); ++i) {
    if (i) spec += ",";
    spec += "198.18.0.2:" + std::to_string(1000 + i);
  }
  auto set = ParseProtect(spec);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("more than"), std::string::npos);
}

EngineConfig ValidConfig() {
  EngineConfig c;
  c.services = *ParseProtect("198.18.0.2:80");
  return c;
}

TEST(ValidateConfig, DefaultsWithAServiceAreValid) {
  EXPECT_TRUE(ValidateConfig(ValidConfig()).ok());
}

TEST(ValidateConfig, EachRangeNamesItsFlag) {
  struct Case {
    void (*mutate)(EngineConfig&);
    const char* flag;
  } cases[] = {
      {[](EngineConfig& c) { c.services = ServiceSet(); }, "--protect"},
      {[](EngineConfig& c) { c.mss = 100; }, "--mss"},
      {[](EngineConfig& c) { c.mss = 9001; }, "--mss"},
      {[](EngineConfig& c) { c.wscale = 15; }, "--wscale"},
      {[](EngineConfig& c) { c.flow_capacity = 0; }, "--flow_capacity"},
      {[](EngineConfig& c) { c.held_slots = 0; }, "--held_slots"},
      {[](EngineConfig& c) { c.backend_syn_rto_ms = 1; }, "--backend_syn_rto_ms"},
      {[](EngineConfig& c) { c.backend_syn_retries = 11; }, "--backend_syn_retries"},
      {[](EngineConfig& c) { c.idle_timeout_s = 0; }, "--idle_timeout_s"},
      {[](EngineConfig& c) { c.key_rotation_s = 60; }, "--key_rotation_s"},
  };
  for (const Case& k : cases) {
    EngineConfig c = ValidConfig();
    k.mutate(c);
    absl::Status s = ValidateConfig(c);
    ASSERT_FALSE(s.ok()) << k.flag;
    EXPECT_NE(s.message().find(k.flag), std::string::npos) << s;
  }
}


// Matches() compares compiled masked words; ServiceRange::Contains is the
// byte-wise definition. They must agree for every prefix length and for
// addresses near each prefix (same bits up to the boundary, one bit off).
TEST(ServiceSet, CompiledMatchAgreesWithTheRangeDefinition) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 3000; ++trial) {
    ServiceRange r;
    r.addr_len = rng() % 2 ? 16 : 4;
    r.prefix_len = static_cast<uint8_t>(rng() % (r.addr_len * 8 + 1));
    for (int i = 0; i < r.addr_len; ++i) r.addr[i] = static_cast<uint8_t>(rng());
    // Host bits zeroed, as ParseProtect leaves them.
    for (int bit = r.prefix_len; bit < r.addr_len * 8; ++bit) {
      r.addr[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    }
    r.port_lo = static_cast<uint16_t>(rng() % 100);
    r.port_hi = static_cast<uint16_t>(r.port_lo + rng() % 100);
    ServiceSet set;
    ASSERT_TRUE(set.Add(r).ok());
    for (int probe = 0; probe < 20; ++probe) {
      uint8_t a[16];
      std::memcpy(a, r.addr, 16);
      if (probe % 2) {
        const int bit = static_cast<int>(rng() % (r.addr_len * 8));
        a[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
      }
      const uint8_t len = probe % 7 == 0 ? static_cast<uint8_t>(20 - r.addr_len) : r.addr_len;
      const uint16_t port = static_cast<uint16_t>(rng() % 220);
      EXPECT_EQ(set.Matches(len, a, port), r.Contains(len, a, port)) << r.ToString();
      EXPECT_EQ(set.MatchesAddress(len, a), r.ContainsAddress(len, a)) << r.ToString();
    }
  }
}

}  // namespace
}  // namespace moat::proxy
