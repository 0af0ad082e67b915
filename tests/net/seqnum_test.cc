// SeqNum/SeqDelta: RFC 9293 §3.4 modular comparison, across 2^31 and 2^32.
#include "moat/net/seqnum.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace moat::net {
namespace {

static_assert(SeqNum(1).After(SeqNum(0)));
static_assert(SeqNum(0).After(SeqNum(0xffffffffu)), "wraps past 2^32");
static_assert(SeqNum(0xfffffff0u).Add(0x20) == SeqNum(0x10));

TEST(SeqNum, OrderAcrossTheWrap) {
  const SeqNum top(0xffffffffu), zero(0);
  EXPECT_TRUE(top.Before(zero));
  EXPECT_TRUE(zero.After(top));
  EXPECT_TRUE(top.BeforeOrEq(top));
  EXPECT_TRUE(top.AfterOrEq(top));
  EXPECT_FALSE(top.Before(top));
  EXPECT_EQ((zero - top).value(), 1);
  EXPECT_EQ((top - zero).value(), -1);
}

TEST(SeqNum, HalfSpaceBoundary) {
  // Exactly 2^31 apart is "before" from the int32 point of view on one
  // side only: the comparison is antisymmetric everywhere except there.
  const SeqNum a(0), b(0x80000000u);
  EXPECT_TRUE(b.Before(a) || a.Before(b));
  const SeqNum c(0x7fffffffu);
  EXPECT_TRUE(a.Before(c));
  EXPECT_TRUE(c.After(a));
  EXPECT_EQ((c - a).value(), 0x7fffffff);
  const SeqNum d(0x80000001u);
  EXPECT_TRUE(d.Before(a)) << "2^31 + 1 ahead is behind";
}

TEST(SeqNum, ArithmeticWithDeltas) {
  for (uint32_t base : {0u, 1u, 0x7fffffffu, 0x80000000u, 0xfffffff0u, 0xffffffffu}) {
    for (int32_t d : {0, 1, -1, 1000, -1000, INT32_MAX, INT32_MIN + 1}) {
      const SeqNum s(base);
      const SeqNum t = s + SeqDelta(d);
      EXPECT_EQ((t - s).value(), d) << base << " " << d;
      EXPECT_EQ(t - SeqDelta(d), s);
      EXPECT_EQ(t.value(), base + static_cast<uint32_t>(d));
    }
  }
}

TEST(SeqNum, InWindow) {
  const SeqNum start(0xfffffff0u);
  EXPECT_TRUE(start.InWindow(start, 1));
  EXPECT_FALSE(start.InWindow(start, 0)) << "an empty window holds nothing";
  EXPECT_TRUE(SeqNum(0x0f).InWindow(start, 0x20));
  EXPECT_FALSE(SeqNum(0x10).InWindow(start, 0x20)) << "end is exclusive";
  EXPECT_FALSE(SeqNum(0xffffffefu).InWindow(start, 0x20)) << "one before start";
  EXPECT_TRUE(SeqNum(0x7ffffff0u).InWindow(SeqNum(0xfffffff0u), 0x80000001u));
}

TEST(SeqNum, ExhaustiveSmallOffsetsAroundEveryQuarter) {
  for (uint64_t q = 0; q < 4; ++q) {
    const uint32_t base = static_cast<uint32_t>(q << 30);
    for (int32_t i = -64; i <= 64; ++i) {
      const SeqNum a(base), b(base + static_cast<uint32_t>(i));
      EXPECT_EQ(b.After(a), i > 0);
      EXPECT_EQ(b.Before(a), i < 0);
      EXPECT_EQ((b - a).value(), i);
    }
  }
}

}  // namespace
}  // namespace moat::net
