// TCP options: every kind moat meets, by rule (RFC 9293 §3.2, RFC 7323,
// RFC 2018, RFC 7413); and the writer emits only what it is told.
#include "moat/net/tcp_options.h"

#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"

namespace moat::net {
namespace {

// A 20-byte TCP header with data offset covering `opts` (padded by caller).
std::vector<uint8_t> Hdr(std::vector<uint8_t> opts) {
  std::vector<uint8_t> h(20, 0);
  h.insert(h.end(), opts.begin(), opts.end());
  h[12] = static_cast<uint8_t>((h.size() / 4) << 4);
  return h;
}

ParseError P(const std::vector<uint8_t>& h, TcpOptions* o) {
  return ParseTcpOptions(h.data(), static_cast<uint16_t>(h.size()), o);
}

TEST(TcpOptions, LinuxSyn) {
  auto h = Hdr({2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7});
  TcpOptions o;
  ASSERT_EQ(P(h, &o), ParseError::kOk);
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_TRUE(o.has_timestamps);
  EXPECT_EQ(o.tsval, 1u);
  EXPECT_EQ(o.tsecr, 2u);
  EXPECT_EQ(o.ts_offset, 20 + 6 + 2) << "offset of TSval, after kind and length";
  EXPECT_TRUE(o.has_wscale);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_EQ(o.unknown_count, 0);
}

TEST(TcpOptions, WindowScaleAbove14IsClamped) {
  TcpOptions o;
  ASSERT_EQ(P(Hdr({3, 3, 15, 0}), &o), ParseError::kOk);
  EXPECT_EQ(o.wscale, 14) << "RFC 7323 §2.3";
}

TEST(TcpOptions, SackBlocks) {
  for (int n = 1; n <= 4; ++n) {
    std::vector<uint8_t> opts = {1, 1, 5, static_cast<uint8_t>(2 + 8 * n)};
    for (int i = 0; i < 2 * n; ++i) opts.insert(opts.end(), {0, 0, 0, static_cast<uint8_t>(i)});
    while (opts.size() % 4) opts.push_back(0);
    TcpOptions o;
    auto h = Hdr(opts);
    if (h.size() > 60) continue;  // 4 blocks + NOPs do not fit with padding
    ASSERT_EQ(P(h, &o), ParseError::kOk) << n;
    EXPECT_EQ(o.sack_blocks, n);
    EXPECT_EQ(o.sack_offset, 20 + 4);
    EXPECT_EQ(LoadBe32(h.data() + o.sack_offset + 4), 1u);
  }
}

TEST(TcpOptions, FastOpenBothKinds) {
  TcpOptions o;
  ASSERT_EQ(P(Hdr({34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0}), &o), ParseError::kOk);
  EXPECT_TRUE(o.has_fastopen);
  EXPECT_EQ(o.fastopen_cookie_len, 8);
  TcpOptions e;
  // The experimental encoding: kind 254, magic 0xF989 (RFC 7413 §4.1.1).
  ASSERT_EQ(P(Hdr({254, 12, 0xf9, 0x89, 1, 2, 3, 4, 5, 6, 7, 8}), &e), ParseError::kOk);
  EXPECT_TRUE(e.has_fastopen);
  TcpOptions r;
  ASSERT_EQ(P(Hdr({34, 2, 0, 0}), &r), ParseError::kOk) << "a cookie request is empty";
  EXPECT_TRUE(r.has_fastopen);
  EXPECT_EQ(r.fastopen_cookie_len, 0);
}

TEST(TcpOptions, UnknownKindsAreCountedAndSkipped) {
  TcpOptions o;
  ASSERT_EQ(P(Hdr({99, 4, 0xaa, 0xbb, 2, 4, 1, 0}), &o), ParseError::kOk);
  EXPECT_EQ(o.unknown_count, 1);
  EXPECT_TRUE(o.has_mss);
}

TEST(TcpOptions, EolStopsParsing) {
  TcpOptions o;
  ASSERT_EQ(P(Hdr({0, 2, 4, 5}), &o), ParseError::kOk) << "garbage after EOL is padding";
  EXPECT_FALSE(o.has_mss);
}

TEST(TcpOptionWriter, PadsAndEmitsOnlyWhatItIsTold) {
  uint8_t buf[40];
  TcpOptionWriter w(buf, sizeof(buf));
  w.Mss(1460).SackPermitted().Timestamps(7, 9).WindowScale(7);
  const size_t n = w.Finish();
  ASSERT_GT(n, 0u);
  EXPECT_EQ(n % 4, 0u);
  std::vector<uint8_t> opts(buf, buf + n);
  TcpOptions o;
  ASSERT_EQ(P(Hdr(opts), &o), ParseError::kOk);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_EQ(o.tsval, 7u);
  EXPECT_EQ(o.tsecr, 9u);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_EQ(o.unknown_count, 0);
  EXPECT_FALSE(o.has_fastopen);
}

TEST(TcpOptionWriter, OverflowFails) {
  uint8_t buf[40];
  TcpOptionWriter w(buf, sizeof(buf));
  const uint32_t edges[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  w.Timestamps(1, 2).SackBlocks(edges, 4);  // 10 + 34 > 40
  EXPECT_EQ(w.Finish(), 0u);
}

}  // namespace
}  // namespace moat::net
