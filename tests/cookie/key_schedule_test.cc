#include "moat/cookie/key_schedule.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace moat::cookie {
namespace {

constexpr uint64_t kSec = kNsPerSecond;
constexpr uint64_t kSlot = kSlotSeconds * kSec;
constexpr uint64_t kRotation = kDefaultRotationSeconds * kSec;
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;

MasterSecret TestSecret() {
  MasterSecret s;
  for (size_t i = 0; i < kSecretBytes; ++i) s.bytes[i] = static_cast<uint8_t>(i);
  return s;
}

bool SameKey(const SipKey& a, const SipKey& b) { return a.k0 == b.k0 && a.k1 == b.k1; }

// The KDF is part of the wire format of a fleet: pinned.
TEST(KeyScheduleTest, DeriveKeyKnownAnswers) {
  const SipKey e0 = KeySchedule::DeriveKey(TestSecret(), 0);
  const SipKey e1 = KeySchedule::DeriveKey(TestSecret(), 1);
  const SipKey et = KeySchedule::DeriveKey(TestSecret(), kT0 / kRotation);
  EXPECT_EQ(e0.k0, 0x8eb4587705f3a048u);
  EXPECT_EQ(e0.k1, 0xa2cc65efeebb0c59u);
  EXPECT_EQ(e1.k0, 0x010cea593a66d133u);
  EXPECT_EQ(e1.k1, 0xd740c5fc7e4e087cu);
  EXPECT_EQ(et.k0, 0x6afe19d01cf1f7dau);
  EXPECT_EQ(et.k1, 0x835dd7b95054d181u);
}

TEST(KeyScheduleTest, EveryEpochAndSecretByteGivesAnotherKey) {
  const MasterSecret s = TestSecret();
  const SipKey base = KeySchedule::DeriveKey(s, 472222);
  EXPECT_NE(base.k0, base.k1);
  for (uint64_t e : {0ull, 1ull, 472221ull, 472223ull, 472222ull + (1ull << 32)}) {
    EXPECT_FALSE(SameKey(base, KeySchedule::DeriveKey(s, e))) << e;
  }
  for (size_t i = 0; i < kSecretBytes; ++i) {
    MasterSecret t = s;
    t.bytes[i] ^= 0x01;
    EXPECT_FALSE(SameKey(base, KeySchedule::DeriveKey(t, 472222))) << "secret byte " << i;
  }
}

TEST(KeyScheduleTest, SlotAndEpochFollowTime) {
  KeySchedule keys(TestSecret());
  EXPECT_EQ(keys.slot(), 0u);
  EXPECT_EQ(keys.epoch(), 0u);
  keys.Refresh(kT0);
  EXPECT_EQ(keys.slot(), kT0 / kSlot);
  EXPECT_EQ(keys.epoch(), kT0 / kRotation);
  EXPECT_EQ(keys.current_key_id(), (kT0 / kRotation) & 1);
  const uint64_t next_slot = (kT0 / kSlot + 1) * kSlot;
  keys.Refresh(next_slot - 1);
  EXPECT_EQ(keys.slot(), kT0 / kSlot);
  keys.Refresh(next_slot);
  EXPECT_EQ(keys.slot(), kT0 / kSlot + 1);
  // Backwards (a clock step): follows.
  keys.Refresh(kT0 - kRotation);
  EXPECT_EQ(keys.epoch(), kT0 / kRotation - 1);
  EXPECT_EQ(keys.slot(), (kT0 - kRotation) / kSlot);
}

// Pure function of (secret, now): whatever the history of Refresh calls,
// the live keys at time T are those of a schedule created at T.
TEST(KeyScheduleTest, KeysDependOnlyOnSecretAndNow) {
  KeySchedule walked(TestSecret());
  for (uint64_t t = kT0 - 3 * kRotation; t < kT0; t += 17 * kSec) walked.Refresh(t);
  walked.Refresh(kT0);
  KeySchedule fresh(TestSecret());
  fresh.Refresh(kT0);
  const uint64_t e = fresh.epoch();
  ASSERT_EQ(walked.epoch(), e);
  for (uint64_t epoch : {e, e - 1}) {
    ASSERT_NE(fresh.KeyFor(epoch), nullptr);
    EXPECT_TRUE(SameKey(*walked.KeyFor(epoch), *fresh.KeyFor(epoch)));
    EXPECT_TRUE(SameKey(*fresh.KeyFor(epoch), KeySchedule::DeriveKey(TestSecret(), epoch)));
    EXPECT_TRUE(SameKey(fresh.KeyForId(epoch & 1), *fresh.KeyFor(epoch)));
  }
  EXPECT_EQ(fresh.KeyFor(e - 2), nullptr);
  EXPECT_EQ(fresh.KeyFor(e + 1), nullptr);
  EXPECT_TRUE(SameKey(fresh.current_key(), KeySchedule::DeriveKey(TestSecret(), e)));
}

TEST(KeyScheduleTest, RotationShorterThanTwoSlotsIsRaised) {
  KeySchedule keys(TestSecret(), 30 * kSec, 60 * kSec);
  EXPECT_EQ(keys.rotation_ns(), 120 * kSec);
  KeySchedule tiny(TestSecret(), 1, 1);
  EXPECT_EQ(tiny.slot_ns(), kMinSlotNs);
  EXPECT_EQ(tiny.rotation_ns(), 2 * kMinSlotNs);
}

// Rotation landing inside a slot is noticed by the fast path.
TEST(KeyScheduleTest, RotationInsideSlotIsNoticed) {
  KeySchedule keys(TestSecret(), 150 * kSec, 60 * kSec);
  keys.Refresh(121 * kSec);
  EXPECT_EQ(keys.slot(), 2u);
  EXPECT_EQ(keys.epoch(), 0u);
  keys.Refresh(150 * kSec);
  EXPECT_EQ(keys.slot(), 2u);
  EXPECT_EQ(keys.epoch(), 1u);
  keys.Refresh(149 * kSec);  // and back again
  EXPECT_EQ(keys.epoch(), 0u);
}

}  // namespace
}  // namespace moat::cookie
