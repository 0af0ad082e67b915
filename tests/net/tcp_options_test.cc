// TCP options: every kind moat meets, by rule (RFC 9293 §3.2, RFC 7323,
// RFC 2018, RFC 7413, RFC 6994); and the writer emits exactly what it is
// told, padded, never more than fits, never an option the peer sent.
#include "moat/net/tcp_options.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/packet.h"
#include "scapy_vectors.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using moat::testing::ScapyVectors;
using moat::testing::TcpPacket;

// A 20-byte TCP header followed by `opts`, with the data offset covering
// them; the header length passed to the parser is the vector's size.
std::vector<uint8_t> Hdr(std::vector<uint8_t> opts) {
  std::vector<uint8_t> h(20, 0);
  h.insert(h.end(), opts.begin(), opts.end());
  h[12] = static_cast<uint8_t>((h.size() / 4) << 4);
  return h;
}

ParseError P(const std::vector<uint8_t>& h, TcpOptions* o) {
  return ParseTcpOptions(h.data(), static_cast<uint16_t>(h.size()), o);
}

TcpOptions Ok(std::vector<uint8_t> opts) {
  TcpOptions o;
  const auto h = Hdr(std::move(opts));
  EXPECT_EQ(P(h, &o), ParseError::kOk);
  return o;
}

void ExpectNothing(const TcpOptions& o) {
  EXPECT_FALSE(o.has_mss);
  EXPECT_FALSE(o.has_wscale);
  EXPECT_FALSE(o.sack_permitted);
  EXPECT_FALSE(o.has_timestamps);
  EXPECT_EQ(o.sack_blocks, 0);
  EXPECT_FALSE(o.has_fastopen);
  EXPECT_EQ(o.unknown_count, 0);
}

TEST(ParseTcpOptions, NoOptions) {
  TcpOptions o;
  o.has_mss = true;  // stale content must be reset
  o.unknown_count = 9;
  const auto h = Hdr({});
  ASSERT_EQ(P(h, &o), ParseError::kOk);
  ExpectNothing(o);
}

TEST(ParseTcpOptions, NopsAndEol) {
  ExpectNothing(Ok({1, 1, 1, 1}));
  ExpectNothing(Ok({0, 0, 0, 0}));
  // Whatever follows EOL is padding, even what would be malformed.
  ExpectNothing(Ok({0, 2, 4, 5}));
  ExpectNothing(Ok({1, 0, 8, 0}));
  const auto o = Ok({2, 4, 1, 0, 0, 3, 3, 9});
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, 256);
  EXPECT_FALSE(o.has_wscale) << "after EOL";
}

TEST(ParseTcpOptions, LinuxSyn) {
  const auto h = Hdr({2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7});
  TcpOptions o;
  ASSERT_EQ(P(h, &o), ParseError::kOk);
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_TRUE(o.has_timestamps);
  EXPECT_EQ(o.tsval, 1u);
  EXPECT_EQ(o.tsecr, 2u);
  EXPECT_EQ(o.ts_offset, 20 + 6 + 2) << "offset of TSval, after kind and length";
  EXPECT_EQ(LoadBe32(h.data() + o.ts_offset), o.tsval);
  EXPECT_EQ(LoadBe32(h.data() + o.ts_offset + 4), o.tsecr);
  EXPECT_TRUE(o.has_wscale);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_EQ(o.unknown_count, 0);
  EXPECT_EQ(o.sack_blocks, 0);
  EXPECT_FALSE(o.has_fastopen);
}

TEST(ParseTcpOptions, Mss) {
  for (uint16_t mss : {uint16_t{0}, uint16_t{1}, uint16_t{536}, uint16_t{1460}, uint16_t{8960},
                       uint16_t{0xffff}}) {
    const auto o = Ok({2, 4, static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)});
    EXPECT_TRUE(o.has_mss);
    EXPECT_EQ(o.mss, mss);
  }
}

TEST(ParseTcpOptions, WindowScaleIsClampedTo14) {
  // RFC 7323 §2.3: a shift above 14 is used as 14.
  for (int s = 0; s <= 255; ++s) {
    const auto o = Ok({1, 3, 3, static_cast<uint8_t>(s)});
    ASSERT_TRUE(o.has_wscale);
    ASSERT_EQ(o.wscale, s > 14 ? 14 : s) << s;
  }
}

TEST(ParseTcpOptions, SackPermitted) {
  const auto o = Ok({1, 1, 4, 2});
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_EQ(o.sack_blocks, 0);
}

TEST(ParseTcpOptions, SackOneToFourBlocks) {
  for (int n = 1; n <= 4; ++n) {
    SCOPED_TRACE(n);
    std::vector<uint8_t> opts = {1, 1, 5, static_cast<uint8_t>(2 + 8 * n)};
    for (int i = 0; i < 2 * n; ++i) {
      opts.insert(opts.end(), {0xff, 0xff, 0xff, static_cast<uint8_t>(0xf0 + i)});
    }
    while (opts.size() % 4) opts.push_back(kOptNop);
    const auto h = Hdr(opts);
    ASSERT_LE(h.size(), 60u);
    TcpOptions o;
    ASSERT_EQ(P(h, &o), ParseError::kOk);
    EXPECT_EQ(o.sack_blocks, n);
    EXPECT_EQ(o.sack_offset, 20 + 4) << "first left edge, after two NOPs, kind, length";
    for (int i = 0; i < 2 * n; ++i) {
      EXPECT_EQ(LoadBe32(h.data() + o.sack_offset + 4 * i), 0xfffffff0u + i);
    }
    EXPECT_FALSE(o.sack_permitted) << "a SACK block is not SACK-permitted";
  }
}

TEST(ParseTcpOptions, SackOfFiveBlocksIsBadLength) {
  // Five blocks (42 bytes) cannot fit in a real header (40 option bytes at
  // most), so ParseFrame reports "past header" first; called directly on a
  // longer buffer, the per-kind rule itself (RFC 2018 §3: at most 4) holds.
  std::vector<uint8_t> opts = {5, 42};
  opts.resize(42, 0);
  opts.insert(opts.end(), {0, 0});
  std::vector<uint8_t> h(20, 0);
  h.insert(h.end(), opts.begin(), opts.end());
  TcpOptions o;
  EXPECT_EQ(ParseTcpOptions(h.data(), static_cast<uint16_t>(h.size()), &o),
            ParseError::kTcpOptionBadLength);
  EXPECT_EQ(P(Hdr({1, 1, 5, 42, 0, 0, 0, 0}), &o), ParseError::kTcpOptionPastHeader);
}

TEST(ParseTcpOptions, Timestamps) {
  // Behind 0..3 NOPs: the offset follows the option wherever it is.
  for (int nops = 0; nops < 4; ++nops) {
    SCOPED_TRACE(nops);
    std::vector<uint8_t> opts(nops, kOptNop);
    opts.insert(opts.end(), {8, 10, 0xff, 0xff, 0xff, 0xfe, 0x80, 0, 0, 1});
    while (opts.size() % 4) opts.push_back(kOptEol);
    const auto h = Hdr(opts);
    TcpOptions o;
    ASSERT_EQ(P(h, &o), ParseError::kOk);
    EXPECT_TRUE(o.has_timestamps);
    EXPECT_EQ(o.tsval, 0xfffffffeu);
    EXPECT_EQ(o.tsecr, 0x80000001u);
    EXPECT_EQ(o.ts_offset, 20 + nops + 2);
  }
}

TEST(ParseTcpOptions, FastOpenKind34) {
  // RFC 7413 §4.1.1: empty (a cookie request) or a 4..16-byte cookie.
  for (int cookie : {0, 4, 8, 16}) {
    SCOPED_TRACE(cookie);
    std::vector<uint8_t> opts = {34, static_cast<uint8_t>(2 + cookie)};
    opts.resize(2 + cookie, 0xc0);
    while (opts.size() % 4) opts.push_back(kOptNop);
    const auto o = Ok(opts);
    EXPECT_TRUE(o.has_fastopen);
    EXPECT_EQ(o.fastopen_cookie_len, cookie);
    EXPECT_EQ(o.unknown_count, 0);
  }
  TcpOptions o;
  for (uint8_t bad : {uint8_t{3}, uint8_t{4}, uint8_t{5}, uint8_t{19}}) {
    std::vector<uint8_t> opts = {34, bad};
    opts.resize(20, 0);
    EXPECT_EQ(P(Hdr(opts), &o), ParseError::kTcpOptionBadLength) << int{bad};
  }
}

TEST(ParseTcpOptions, FastOpenExperimental254) {
  // The pre-RFC encoding, kind 254 with ExID 0xF989 (RFC 6994, RFC 7413).
  auto o = Ok({254, 12, 0xf9, 0x89, 1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_TRUE(o.has_fastopen);
  EXPECT_EQ(o.fastopen_cookie_len, 8);
  EXPECT_EQ(o.unknown_count, 0);
  o = Ok({254, 4, 0xf9, 0x89});
  EXPECT_TRUE(o.has_fastopen) << "cookie request";
  EXPECT_EQ(o.fastopen_cookie_len, 0);
  // Another experiment's ExID, or too short to carry one: unknown.
  o = Ok({254, 8, 0x12, 0x34, 1, 2, 3, 4});
  EXPECT_FALSE(o.has_fastopen);
  EXPECT_EQ(o.unknown_count, 1);
  o = Ok({254, 3, 0xf9, 1});
  EXPECT_FALSE(o.has_fastopen);
  EXPECT_EQ(o.unknown_count, 1);
  o = Ok({253, 4, 0xf9, 0x89});
  EXPECT_FALSE(o.has_fastopen) << "253 is the other experimental kind";
  EXPECT_EQ(o.unknown_count, 1);
}

TEST(ParseTcpOptions, UnknownKindsAreCountedAndSkipped) {
  auto o = Ok({99, 4, 0xaa, 0xbb, 2, 4, 1, 0});
  EXPECT_EQ(o.unknown_count, 1);
  EXPECT_TRUE(o.has_mss);
  EXPECT_EQ(o.mss, 256);
  // Unknown kinds with the smallest legal length, many of them: 19 of them
  // and a NOP pair fill the 40 bytes.
  std::vector<uint8_t> many;
  for (int i = 0; i < 19; ++i) many.insert(many.end(), {static_cast<uint8_t>(100 + i), 2});
  many.insert(many.end(), {1, 1});
  o = Ok(many);
  EXPECT_EQ(o.unknown_count, 19);
  // Kinds that exist but moat does not use (MD5 sig 19, TCP-AO 29, MPTCP
  // 30, user timeout 28) are unknown to it too.
  std::vector<uint8_t> misc = {19, 18};
  misc.resize(18, 0);
  misc.insert(misc.end(), {28, 4, 0x80, 10, 30, 4, 0, 0, 29, 4, 1, 2, 1, 1});
  o = Ok(misc);
  EXPECT_EQ(o.unknown_count, 4);
}

TEST(ParseTcpOptions, DuplicatesLastWins) {
  const auto o = Ok({2, 4, 0, 100, 2, 4, 0, 200, 3, 3, 2, 3, 3, 5, 1, 1});
  EXPECT_EQ(o.mss, 200);
  EXPECT_EQ(o.wscale, 5);
}

TEST(ParseTcpOptions, FullFortyBytes) {
  // MSS, SACK-permitted, timestamps, window scale and a 2-block SACK: 4 +
  // 2 + 10 + 3 + 18 = 37, plus 3 NOPs = 40.
  const auto o = Ok({2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 8, 1, 3, 3, 9,
                     1, 1, 5, 18,   0, 0, 0, 1,  0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4});
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_EQ(o.tsval, 7u);
  EXPECT_EQ(o.wscale, 9);
  EXPECT_EQ(o.sack_blocks, 2);
  EXPECT_EQ(o.sack_offset, 20 + 24);
}

TEST(ParseTcpOptions, MatchesScapyVectors) {
  for (const auto& sv : ScapyVectors()) {
    if (!sv.is_tcp) continue;
    SCOPED_TRACE(sv.name);
    TcpOptions o;
    ASSERT_EQ(ParseTcpOptions(sv.frame.data() + sv.l4_offset, sv.tcp_header_len, &o),
              ParseError::kOk);
    EXPECT_EQ(o.has_mss, sv.mss >= 0);
    if (sv.mss >= 0) {
      EXPECT_EQ(o.mss, sv.mss);
    }
    EXPECT_EQ(o.has_wscale, sv.wscale >= 0);
    if (sv.wscale >= 0) {
      EXPECT_EQ(o.wscale, sv.wscale);
    }
    EXPECT_EQ(o.sack_permitted, sv.sack_permitted);
    EXPECT_EQ(o.has_timestamps, sv.has_timestamps);
    if (sv.has_timestamps) {
      EXPECT_EQ(o.tsval, sv.tsval);
      EXPECT_EQ(o.tsecr, sv.tsecr);
    }
    EXPECT_EQ(o.sack_blocks, sv.sack_blocks);
    EXPECT_EQ(o.has_fastopen, sv.fastopen_cookie_len >= 0);
    if (sv.fastopen_cookie_len >= 0) {
      EXPECT_EQ(o.fastopen_cookie_len, sv.fastopen_cookie_len);
    }
    EXPECT_EQ(o.unknown_count, sv.unknown_options);
  }
}

// The parser recognises Linux's two common layouts (NOP NOP TS; MSS
// SACK-perm TS NOP WS) by their first words and walks only what follows.
// Four leading NOPs hide the layout from that shortcut without changing
// the list's meaning, so the two parses must agree on everything but the
// offsets, for any tail: valid options, garbage, truncation.
TEST(ParseTcpOptions, CommonLayoutShortcutAgreesWithTheWalk) {
  const std::vector<std::vector<uint8_t>> prefixes = {
      {1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8},
      {1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2},
      {1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 5, 18},  // blocks come from the tail
      {1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 5, 11},  // bad length: walk decides
      {2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7},
      {2, 4, 5, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 15},  // shift clamped
  };
  std::mt19937 rng(7);
  for (const auto& prefix : prefixes) {
    for (int trial = 0; trial < 4000; ++trial) {
      std::vector<uint8_t> tail;
      const size_t room = 40 - 4 - prefix.size();
      const size_t n = rng() % (room + 1) / 4 * 4;
      for (size_t i = 0; i < n; ++i) {
        // Mostly plausible kinds and lengths, so valid lists come up too.
        const uint32_t r = rng() % 8;
        tail.push_back(static_cast<uint8_t>(r < 2 ? 1 : r < 4 ? (rng() % 2 ? 5 : 8)
                                            : r < 6 ? (rng() % 12) : rng()));
      }
      std::vector<uint8_t> fast = prefix;
      fast.insert(fast.end(), tail.begin(), tail.end());
      std::vector<uint8_t> slow = {1, 1, 1, 1};
      slow.insert(slow.end(), fast.begin(), fast.end());
      // Pad to a multiple of 4 with EOLs, as a header would be.
      while (fast.size() % 4) fast.push_back(0);
      while (slow.size() % 4) slow.push_back(0);
      TcpOptions a, b;
      const ParseError ea = P(Hdr(fast), &a);
      const ParseError eb = P(Hdr(slow), &b);
      ASSERT_EQ(ea, eb) << "trial " << trial;
      if (ea != ParseError::kOk) continue;
      EXPECT_EQ(a.has_mss, b.has_mss);
      EXPECT_EQ(a.mss, b.mss);
      EXPECT_EQ(a.has_wscale, b.has_wscale);
      EXPECT_EQ(a.wscale, b.wscale);
      EXPECT_EQ(a.sack_permitted, b.sack_permitted);
      EXPECT_EQ(a.has_timestamps, b.has_timestamps);
      EXPECT_EQ(a.tsval, b.tsval);
      EXPECT_EQ(a.tsecr, b.tsecr);
      if (a.has_timestamps) EXPECT_EQ(a.ts_offset + 4, b.ts_offset);
      EXPECT_EQ(a.sack_blocks, b.sack_blocks);
      if (a.sack_blocks) EXPECT_EQ(a.sack_offset + 4, b.sack_offset);
      EXPECT_EQ(a.has_fastopen, b.has_fastopen);
      EXPECT_EQ(a.unknown_count, b.unknown_count);
    }
  }
}

TEST(ParseTcpOptions, EveryTruncatedHeaderIsSafe) {
  // Any prefix of a full option list, passed as the header length, in an
  // exact-size buffer: an error or a result, never a read past the end.
  const std::vector<uint8_t> full =
      Hdr({2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 8, 1, 3, 3, 9,
           1, 1, 5, 18,   0, 0, 0, 1,  0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4});
  for (size_t n = 20; n <= full.size(); ++n) {
    std::vector<uint8_t> h(full.begin(), full.begin() + n);
    TcpOptions o;
    (void)ParseTcpOptions(h.data(), static_cast<uint16_t>(n), &o);
  }
  std::mt19937 rng(2018);
  for (int i = 0; i < 50000; ++i) {
    std::vector<uint8_t> h(20 + rng() % 41);
    for (size_t k = 20; k < h.size(); ++k) {
      // Mostly known kinds and small lengths, so parsing gets somewhere.
      static const uint8_t kKinds[] = {0, 1, 2, 3, 4, 5, 8, 34, 254, 99};
      h[k] = rng() % 2 ? kKinds[rng() % 10] : static_cast<uint8_t>(rng() % 20);
    }
    TcpOptions o;
    const ParseError e = ParseTcpOptions(h.data(), static_cast<uint16_t>(h.size()), &o);
    if (e == ParseError::kOk) {
      if (o.has_timestamps) {
        ASSERT_LE(o.ts_offset + 8u, h.size());
      }
      if (o.sack_blocks) {
        ASSERT_LE(o.sack_offset + 8u * o.sack_blocks, h.size());
      }
      ASSERT_LE(o.wscale, kMaxWscale);
      ASSERT_LE(o.sack_blocks, kMaxSackBlocks);
    } else {
      ASSERT_GE(e, ParseError::kTcpOptionTruncated);
    }
  }
}

// --- Writer ----------------------------------------------------------------

std::vector<uint8_t> Write(size_t cap, void (*ops)(TcpOptionWriter&), size_t* n) {
  std::vector<uint8_t> buf(cap);  // exact size: ASan catches any overrun
  TcpOptionWriter w(buf.data(), cap);
  ops(w);
  *n = w.Finish();
  buf.resize(*n);
  return buf;
}

TEST(TcpOptionWriter, ExactBytesPerOption) {
  size_t n;
  EXPECT_EQ(Write(
                40, [](TcpOptionWriter& w) { w.Mss(1460); }, &n),
            (std::vector<uint8_t>{2, 4, 0x05, 0xb4}));
  EXPECT_EQ(Write(
                40, [](TcpOptionWriter& w) { w.WindowScale(7); }, &n),
            (std::vector<uint8_t>{3, 3, 7, 1}));
  EXPECT_EQ(Write(
                40, [](TcpOptionWriter& w) { w.SackPermitted(); }, &n),
            (std::vector<uint8_t>{4, 2, 1, 1}));
  EXPECT_EQ(
      Write(
          40, [](TcpOptionWriter& w) { w.Nop().Nop().Timestamps(0x01020304, 0xa0b0c0d0); }, &n),
      (std::vector<uint8_t>{1, 1, 8, 10, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0}));
  EXPECT_EQ(Write(
                40,
                [](TcpOptionWriter& w) {
                  const uint32_t e[2] = {0xdeadbeef, 0x00000001};
                  w.Nop().Nop().SackBlocks(e, 1);
                },
                &n),
            (std::vector<uint8_t>{1, 1, 5, 10, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1}));
  EXPECT_EQ(Write(
                40, [](TcpOptionWriter& w) { w.Nop(); }, &n),
            (std::vector<uint8_t>{1, 1, 1, 1}));
}

TEST(TcpOptionWriter, NothingWrittenIsEmpty) {
  uint8_t b[1];
  TcpOptionWriter w(b, 0);
  EXPECT_EQ(w.Finish(), 0u);
}

TEST(TcpOptionWriter, PadsWithNopsToFour) {
  uint8_t buf[40];
  std::memset(buf, 0xee, sizeof(buf));
  TcpOptionWriter w(buf, sizeof(buf));
  w.Mss(1460).SackPermitted().Timestamps(7, 9).WindowScale(7);  // 19 bytes
  const size_t n = w.Finish();
  ASSERT_EQ(n, 20u);
  EXPECT_EQ(buf[19], kOptNop);
  EXPECT_EQ(buf[20], 0xee) << "nothing written past the padded length";
  TcpOptions o;
  ASSERT_EQ(P(Hdr({buf, buf + n}), &o), ParseError::kOk);
  EXPECT_EQ(o.mss, 1460);
  EXPECT_TRUE(o.sack_permitted);
  EXPECT_EQ(o.tsval, 7u);
  EXPECT_EQ(o.tsecr, 9u);
  EXPECT_EQ(o.wscale, 7);
  EXPECT_EQ(o.unknown_count, 0);
}

TEST(TcpOptionWriter, ExactlyFortyBytesFit) {
  size_t n;
  const auto b = Write(
      40,
      [](TcpOptionWriter& w) {
        const uint32_t e[6] = {1, 2, 3, 4, 5, 6};
        w.Nop().Nop().Timestamps(1, 2).Nop().Nop().SackBlocks(e, 3);  // 12 + 28
      },
      &n);
  ASSERT_EQ(n, 40u);
  TcpOptions o;
  ASSERT_EQ(P(Hdr(b), &o), ParseError::kOk);
  EXPECT_EQ(o.sack_blocks, 3);
  EXPECT_TRUE(o.has_timestamps);
}

TEST(TcpOptionWriter, OverflowFails) {
  size_t n;
  // 10 + 34 > 40.
  Write(
      40,
      [](TcpOptionWriter& w) {
        const uint32_t e[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        w.Timestamps(1, 2).SackBlocks(e, 4);
      },
      &n);
  EXPECT_EQ(n, 0u);
  // The buffer is big enough but TCP's 40-byte limit is not.
  Write(
      64,
      [](TcpOptionWriter& w) {
        const uint32_t e[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        w.Timestamps(1, 2).SackBlocks(e, 4);
      },
      &n);
  EXPECT_EQ(n, 0u);
  // Fits unpadded, but the padding does not.
  Write(
      5, [](TcpOptionWriter& w) { w.Mss(1).Nop(); }, &n);
  EXPECT_EQ(n, 0u);
  Write(
      3, [](TcpOptionWriter& w) { w.Mss(1); }, &n);
  EXPECT_EQ(n, 0u);
  Write(
      4, [](TcpOptionWriter& w) { w.Mss(1); }, &n);
  EXPECT_EQ(n, 4u) << "exactly full is fine";
  // Overflow is sticky: a later option that would fit does not "recover".
  Write(
      12, [](TcpOptionWriter& w) { w.Mss(1).Timestamps(1, 2).Nop(); }, &n);
  EXPECT_EQ(n, 0u);
}

TEST(TcpOptionWriter, BadSackBlockCountFails) {
  const uint32_t e[10] = {};
  for (int bad : {0, -1, 5}) {
    uint8_t buf[40];
    TcpOptionWriter w(buf, sizeof(buf));
    w.Mss(1460).SackBlocks(e, bad);
    EXPECT_EQ(w.Finish(), 0u) << bad;
  }
}

TEST(TcpOptionWriter, NeverWritesPastCap) {
  // Every capacity from 0 to 44 against a canary-filled larger buffer.
  for (size_t cap = 0; cap <= 44; ++cap) {
    std::vector<uint8_t> buf(64, 0xcc);
    TcpOptionWriter w(buf.data(), cap);
    const uint32_t e[4] = {1, 2, 3, 4};
    w.Mss(1460).WindowScale(3).SackPermitted().Timestamps(5, 6).SackBlocks(e, 2).Nop();
    const size_t n = w.Finish();
    EXPECT_LE(n, cap);
    for (size_t i = cap; i < buf.size(); ++i)
      ASSERT_EQ(buf[i], 0xcc) << "cap " << cap << " i " << i;
  }
}

TEST(TcpOptionWriter, WritesWhatItIsToldEvenOutOfRange) {
  // The writer does not second-guess: the caller clamps (and the parser on
  // the other side clamps a shift above 14).
  uint8_t buf[8];
  TcpOptionWriter w(buf, sizeof(buf));
  w.WindowScale(15);
  ASSERT_EQ(w.Finish(), 4u);
  EXPECT_EQ(buf[2], 15);
  TcpOptions o;
  ASSERT_EQ(P(Hdr({buf, buf + 4}), &o), ParseError::kOk);
  EXPECT_EQ(o.wscale, 14);
}

TEST(TcpOptionWriter, RandomRoundTrips) {
  std::mt19937 rng(7323);
  int written = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    uint8_t buf[40];
    TcpOptionWriter w(buf, sizeof(buf));
    TcpOptions want;
    uint32_t edges[8];
    int ops = rng() % 6;
    for (int k = 0; k < ops; ++k) {
      switch (rng() % 6) {
        case 0:
          want.has_mss = true;
          want.mss = static_cast<uint16_t>(rng());
          w.Mss(want.mss);
          break;
        case 1:
          want.has_wscale = true;
          want.wscale = static_cast<uint8_t>(rng() % 15);
          w.WindowScale(want.wscale);
          break;
        case 2:
          want.sack_permitted = true;
          w.SackPermitted();
          break;
        case 3:
          want.has_timestamps = true;
          want.tsval = static_cast<uint32_t>(rng());
          want.tsecr = static_cast<uint32_t>(rng());
          w.Timestamps(want.tsval, want.tsecr);
          break;
        case 4: {
          want.sack_blocks = static_cast<uint8_t>(1 + rng() % 4);
          for (auto& e : edges) e = static_cast<uint32_t>(rng());
          w.SackBlocks(edges, want.sack_blocks);
          break;
        }
        default:
          w.Nop();
      }
    }
    const size_t n = w.Finish();
    if (n == 0) continue;  // too much for 40 bytes (or nothing at all)
    ++written;
    ASSERT_EQ(n % 4, 0u);
    TcpOptions got;
    ASSERT_EQ(P(Hdr({buf, buf + n}), &got), ParseError::kOk) << trial;
    EXPECT_EQ(got.has_mss, want.has_mss);
    if (want.has_mss) {
      EXPECT_EQ(got.mss, want.mss);
    }
    EXPECT_EQ(got.has_wscale, want.has_wscale);
    if (want.has_wscale) {
      EXPECT_EQ(got.wscale, want.wscale);
    }
    EXPECT_EQ(got.sack_permitted, want.sack_permitted);
    EXPECT_EQ(got.has_timestamps, want.has_timestamps);
    if (want.has_timestamps) {
      EXPECT_EQ(got.tsval, want.tsval);
      EXPECT_EQ(got.tsecr, want.tsecr);
    }
    EXPECT_EQ(got.sack_blocks, want.sack_blocks);
    if (want.sack_blocks) {
      const std::vector<uint8_t> h = Hdr({buf, buf + n});
      for (int i = 0; i < 2 * want.sack_blocks; ++i) {
        EXPECT_EQ(LoadBe32(h.data() + got.sack_offset + 4 * i), edges[i]);
      }
    }
    EXPECT_EQ(got.unknown_count, 0);
    EXPECT_FALSE(got.has_fastopen);
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GT(written, 2000);
}

TEST(TcpOptionWriter, UnknownOptionsAreNeverEchoed) {
  // A client SYN full of things moat does not speak: Fast Open (both
  // encodings), an unknown kind, an experiment. Answering from the parsed
  // TcpOptions through the writer (what the proxy does for its SYN-ACK)
  // yields only the kinds moat chose to write.
  auto syn = TcpPacket()
                 .Flags(kTcpSyn)
                 .Mss(1460)
                 .Opt({34, 6, 1, 2, 3, 4})
                 .Opt({254, 4, 0xf9, 0x89})
                 .Opt({99, 3, 0})
                 .Opt({253, 4, 0xab, 0xcd})
                 .SackPermitted()
                 .WindowScale(8)
                 .Build();
  ASSERT_FALSE(syn.empty());
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(syn, &v), ParseError::kOk);
  TcpOptions in;
  ASSERT_EQ(ParseTcpOptions(v.tcp(), v.tcp_header_len, &in), ParseError::kOk);
  EXPECT_TRUE(in.has_fastopen);
  EXPECT_EQ(in.unknown_count, 2);

  uint8_t buf[40];
  TcpOptionWriter w(buf, sizeof(buf));
  if (in.has_mss) w.Mss(in.mss < 1460 ? in.mss : 1460);
  if (in.sack_permitted) w.SackPermitted();
  if (in.has_wscale) w.Nop().WindowScale(7);
  const size_t n = w.Finish();
  ASSERT_GT(n, 0u);
  for (size_t i = 0; i < n;) {
    const uint8_t kind = buf[i];
    EXPECT_TRUE(kind == kOptNop || kind == kOptEol || kind == kOptMss || kind == kOptWscale ||
                kind == kOptSackPermitted || kind == kOptSack || kind == kOptTimestamps)
        << "kind " << int{kind} << " at " << i;
    i += (kind == kOptNop || kind == kOptEol) ? 1 : buf[i + 1];
  }
  TcpOptions out;
  ASSERT_EQ(P(Hdr({buf, buf + n}), &out), ParseError::kOk);
  EXPECT_EQ(out.unknown_count, 0);
  EXPECT_FALSE(out.has_fastopen);
  EXPECT_TRUE(out.has_mss);
  EXPECT_TRUE(out.sack_permitted);
  EXPECT_FALSE(out.has_timestamps) << "not asked for";
}

}  // namespace
}  // namespace moat::net
