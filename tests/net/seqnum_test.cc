// SeqNum/SeqDelta: RFC 9293 §3.4 modular comparison, across the 2^31 and
// 2^32 boundaries, and the arithmetic between the two types.
#include "moat/net/seqnum.h"

#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace moat::net {
namespace {

constexpr uint32_t kHalf = 0x80000000u;  // 2^31
constexpr uint32_t kMax = 0xffffffffu;   // 2^32 - 1

// Everything is usable in constant expressions (the engine builds constants
// from them).
static_assert(SeqNum(1).After(SeqNum(0)));
static_assert(SeqNum(0).Before(SeqNum(1)));
static_assert(SeqNum(0).After(SeqNum(kMax)), "wraps past 2^32");
static_assert(SeqNum(kMax).Before(SeqNum(0)));
static_assert(SeqNum(5).BeforeOrEq(SeqNum(5)) && SeqNum(5).AfterOrEq(SeqNum(5)));
static_assert(SeqNum(0xfffffff0u).Add(0x20) == SeqNum(0x10));
static_assert(SeqNum(10) + SeqDelta(-20) == SeqNum(kMax - 9));
static_assert(SeqNum(10) - SeqDelta(-20) == SeqNum(30));
static_assert((SeqNum(0) - SeqNum(kMax)).value() == 1);
static_assert((SeqNum(kMax) - SeqNum(0)).value() == -1);
static_assert(-SeqDelta(5) == SeqDelta(-5));
static_assert(SeqNum(3).InWindow(SeqNum(kMax), 5));
static_assert(!SeqNum(4).InWindow(SeqNum(kMax), 5));
static_assert(SeqNum().value() == 0 && SeqDelta().value() == 0);
static_assert(sizeof(SeqNum) == 4 && sizeof(SeqDelta) == 4);

TEST(SeqNum, OrderAcrossTheWrap) {
  const SeqNum top(kMax), zero(0);
  EXPECT_TRUE(top.Before(zero));
  EXPECT_TRUE(zero.After(top));
  EXPECT_FALSE(top.After(zero));
  EXPECT_FALSE(zero.Before(top));
  EXPECT_TRUE(top.BeforeOrEq(zero));
  EXPECT_TRUE(zero.AfterOrEq(top));
  EXPECT_TRUE(top.BeforeOrEq(top));
  EXPECT_TRUE(top.AfterOrEq(top));
  EXPECT_FALSE(top.Before(top));
  EXPECT_FALSE(top.After(top));
  EXPECT_EQ((zero - top).value(), 1);
  EXPECT_EQ((top - zero).value(), -1);
  EXPECT_EQ(top.Add(1), zero);
  EXPECT_EQ(top + SeqDelta(1), zero);
  EXPECT_EQ(zero - SeqDelta(1), top);
}

TEST(SeqNum, HalfSpaceBoundary) {
  // Up to 2^31 - 1 ahead is "after"; 2^31 + 1 ahead is "before" (it is
  // 2^31 - 1 behind).
  for (uint32_t base : {0u, 1u, 0x7fffffffu, kHalf, 0xdeadbeefu, kMax}) {
    SCOPED_TRACE(base);
    const SeqNum a(base);
    const SeqNum just_ahead(base + 0x7fffffffu);
    EXPECT_TRUE(just_ahead.After(a));
    EXPECT_TRUE(a.Before(just_ahead));
    EXPECT_EQ((just_ahead - a).value(), std::numeric_limits<int32_t>::max());
    const SeqNum past_half(base + kHalf + 1);
    EXPECT_TRUE(past_half.Before(a));
    EXPECT_TRUE(a.After(past_half));
    EXPECT_EQ((past_half - a).value(), -0x7fffffff);
    // Exactly 2^31 apart, RFC 9293 gives no order. This implementation
    // (like Linux's before()/after()) calls each "before" the other: the
    // distance is INT32_MIN both ways. Pin that down so a change is noticed.
    const SeqNum opposite(base + kHalf);
    EXPECT_TRUE(opposite.Before(a));
    EXPECT_TRUE(a.Before(opposite));
    EXPECT_FALSE(opposite.After(a));
    EXPECT_FALSE(a.After(opposite));
    EXPECT_EQ((opposite - a).value(), std::numeric_limits<int32_t>::min());
    EXPECT_EQ((a - opposite).value(), std::numeric_limits<int32_t>::min());
  }
}

TEST(SeqNum, ArithmeticWithDeltas) {
  for (uint32_t base : {0u, 1u, 0x7fffffffu, kHalf, 0x80000001u, 0xfffffff0u, kMax}) {
    for (int32_t d :
         {0, 1, -1, 1000, -1000, std::numeric_limits<int32_t>::max(),
          std::numeric_limits<int32_t>::min() + 1, std::numeric_limits<int32_t>::min()}) {
      SCOPED_TRACE(::testing::Message() << base << " " << d);
      const SeqNum s(base);
      const SeqNum t = s + SeqDelta(d);
      EXPECT_EQ(t.value(), base + static_cast<uint32_t>(d));
      EXPECT_EQ((t - s).value(), d);
      EXPECT_EQ(t - SeqDelta(d), s);
      EXPECT_EQ(s - (-SeqDelta(d)), t);
      if (d > 0) {
        EXPECT_TRUE(t.After(s));
        EXPECT_EQ(s.Add(static_cast<uint32_t>(d)), t);
      } else if (d < 0 && d != std::numeric_limits<int32_t>::min()) {
        EXPECT_TRUE(t.Before(s));
      }
    }
  }
}

TEST(SeqDelta, SignHandling) {
  EXPECT_EQ((-SeqDelta(7)).value(), -7);
  EXPECT_EQ((-SeqDelta(-7)).value(), 7);
  EXPECT_EQ((-SeqDelta(0)).value(), 0);
  EXPECT_EQ((-SeqDelta(std::numeric_limits<int32_t>::max())).value(),
            -std::numeric_limits<int32_t>::max());
  // -INT32_MIN does not exist; negation wraps (no UB) to itself, which is
  // still the same point in the 2^32 ring.
  EXPECT_EQ((-SeqDelta(std::numeric_limits<int32_t>::min())).value(),
            std::numeric_limits<int32_t>::min());
  // A negative delta subtracted moves forward, and across zero.
  EXPECT_EQ(SeqNum(kMax) - SeqDelta(-2), SeqNum(1));
  EXPECT_EQ(SeqNum(1) + SeqDelta(-2), SeqNum(kMax));
  // The ISN-offset idiom the proxy uses: delta = server_isn - cookie_isn,
  // applied to every sequence number and undone with the negation.
  const SeqNum cookie(0xfffffff0u), server(0x00000020u);
  const SeqDelta shift = server - cookie;
  EXPECT_EQ(shift.value(), 0x30);
  EXPECT_EQ(cookie + shift, server);
  EXPECT_EQ(server + (-shift), cookie);
  EXPECT_EQ(SeqNum(cookie.value() + 1000) + shift, SeqNum(server.value() + 1000));
}

TEST(SeqNum, InWindow) {
  const SeqNum start(0xfffffff0u);
  EXPECT_TRUE(start.InWindow(start, 1));
  EXPECT_FALSE(start.InWindow(start, 0)) << "an empty window holds nothing";
  EXPECT_FALSE(SeqNum(0).InWindow(SeqNum(0), 0));
  EXPECT_TRUE(SeqNum(0x0f).InWindow(start, 0x20)) << "inside, across 2^32";
  EXPECT_TRUE(SeqNum(kMax).InWindow(start, 0x20));
  EXPECT_TRUE(SeqNum(0).InWindow(start, 0x20));
  EXPECT_FALSE(SeqNum(0x10).InWindow(start, 0x20)) << "end is exclusive";
  EXPECT_FALSE(SeqNum(0xffffffefu).InWindow(start, 0x20)) << "one before start";
  // Windows of 2^31 and more: still start <= x < start + size.
  EXPECT_TRUE(SeqNum(0x7ffffff0u).InWindow(start, 0x80000001u));
  EXPECT_FALSE(SeqNum(0x7ffffff1u).InWindow(start, 0x80000001u));
  EXPECT_TRUE(SeqNum(start.value() - 2).InWindow(start, kMax));
  EXPECT_FALSE(SeqNum(start.value() - 1).InWindow(start, kMax)) << "the one excluded value";
}

TEST(SeqNum, InWindowMatchesWideArithmetic) {
  std::mt19937 rng(9293);
  for (int i = 0; i < 20000; ++i) {
    const uint32_t start = static_cast<uint32_t>(rng());
    const uint32_t size = (i % 4 == 0) ? static_cast<uint32_t>(rng()) : rng() % 70000;
    const uint32_t x = (i % 3 == 0) ? static_cast<uint32_t>(rng())
                                    : start + static_cast<uint32_t>(rng() % 140000) - 70000u;
    // Reference in 64 bits: x is in if it is start + k for some k < size.
    const uint64_t k = (static_cast<uint64_t>(x) + (uint64_t{1} << 32) - start) & 0xffffffffu;
    ASSERT_EQ(SeqNum(x).InWindow(SeqNum(start), size), k < size)
        << x << " in [" << start << ", +" << size << ")";
  }
}

TEST(SeqNum, ExhaustiveSmallOffsetsAroundEveryQuarter) {
  // Around 0, 2^30, 2^31 and 3*2^30, including the 2^32 wrap at 0.
  for (uint64_t q = 0; q < 4; ++q) {
    const uint32_t base = static_cast<uint32_t>(q << 30);
    for (int32_t i = -64; i <= 64; ++i) {
      const SeqNum a(base), b(base + static_cast<uint32_t>(i));
      EXPECT_EQ(b.After(a), i > 0);
      EXPECT_EQ(b.Before(a), i < 0);
      EXPECT_EQ(b.AfterOrEq(a), i >= 0);
      EXPECT_EQ(b.BeforeOrEq(a), i <= 0);
      EXPECT_EQ((b - a).value(), i);
      EXPECT_EQ(a + (b - a), b);
    }
  }
}

TEST(SeqNum, ComparisonsAreConsistent) {
  // For any two points not exactly 2^31 apart, exactly one of <, ==, > holds,
  // and Before/After agree with the sign of the distance.
  std::mt19937 rng(793);
  for (int i = 0; i < 20000; ++i) {
    const SeqNum a(static_cast<uint32_t>(rng())), b(static_cast<uint32_t>(rng()));
    if (b.value() - a.value() == kHalf) continue;
    const int32_t d = (b - a).value();
    ASSERT_EQ(b.After(a), d > 0);
    ASSERT_EQ(b.Before(a), d < 0);
    ASSERT_EQ(a.Before(b), b.After(a));
    ASSERT_EQ(
        static_cast<int>(a.Before(b)) + static_cast<int>(a.After(b)) + static_cast<int>(a == b), 1);
  }
}

}  // namespace
}  // namespace moat::net
