// Fast Open cookies (include/moat/cookie/fastopen.h): bound to the client
// address, agreed by every instance with the same secret, valid across one
// rotation and not two, and pinned by known answers.

#include "moat/cookie/fastopen.h"

#include <cstring>

#include "gtest/gtest.h"

namespace moat::cookie {
namespace {

constexpr uint64_t kRotation = 3600 * kNsPerSecond;
constexpr uint64_t kT0 = 1'700'000'000ull * kNsPerSecond;
constexpr uint8_t kA4[4] = {198, 18, 0, 1};
constexpr uint8_t kB4[4] = {198, 18, 0, 9};
constexpr uint8_t kA6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

MasterSecret Secret(uint8_t salt) {
  MasterSecret s;
  for (size_t i = 0; i < kSecretBytes; ++i) s.bytes[i] = static_cast<uint8_t>(i * 13 + salt);
  return s;
}

uint64_t AsU64(const uint8_t* c) {
  uint64_t v;
  std::memcpy(&v, c, 8);
  return v;
}

TEST(FastOpenCookieTest, KnownAnswers) {
  // Changing the derivation breaks fleets that mix versions: these pin it
  // (recorded from this implementation; the cookie is little-endian on the
  // wire as stored).
  const SipKey k = FastOpenCodec::DeriveKey(KeySchedule::DeriveKey(Secret(1), 7));
  EXPECT_EQ(k.k0, 0xae38b3af2cdc7c90u) << std::hex << k.k0;
  EXPECT_EQ(k.k1, 0x1eb7ba7c7a8ce50cu) << std::hex << k.k1;
  KeySchedule keys(Secret(1), kRotation);
  keys.Refresh(kT0);
  FastOpenCodec codec(&keys);
  uint8_t c[8];
  codec.Make(4, kA4, c);
  EXPECT_EQ(AsU64(c), 0x2104f6aee51c05fau) << std::hex << AsU64(c);
}

TEST(FastOpenCookieTest, BoundToTheAddressAndTheFamily) {
  KeySchedule keys(Secret(1), kRotation);
  keys.Refresh(kT0);
  FastOpenCodec codec(&keys);
  uint8_t a[8], b[8], v6[8];
  codec.Make(4, kA4, a);
  codec.Make(4, kB4, b);
  codec.Make(16, kA6, v6);
  EXPECT_TRUE(codec.Check(4, kA4, a, 8));
  EXPECT_FALSE(codec.Check(4, kB4, a, 8));
  EXPECT_TRUE(codec.Check(4, kB4, b, 8));
  EXPECT_TRUE(codec.Check(16, kA6, v6, 8));
  EXPECT_FALSE(codec.Check(16, kA6, a, 8));
  EXPECT_NE(AsU64(a), AsU64(b));
  // Any changed bit fails; so does a short cookie.
  for (int bit = 0; bit < 64; ++bit) {
    uint8_t x[8];
    std::memcpy(x, a, 8);
    x[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(codec.Check(4, kA4, x, 8)) << bit;
  }
  EXPECT_FALSE(codec.Check(4, kA4, a, 4));
}

TEST(FastOpenCookieTest, AFleetAgreesAndRotationKeepsThePreviousKey) {
  KeySchedule k1(Secret(1), kRotation), k2(Secret(1), kRotation), other(Secret(2), kRotation);
  k1.Refresh(kT0);
  k2.Refresh(kT0);
  other.Refresh(kT0);
  FastOpenCodec c1(&k1), c2(&k2), c3(&other);
  uint8_t a[8], b[8];
  c1.Make(4, kA4, a);
  c2.Make(4, kA4, b);
  EXPECT_EQ(AsU64(a), AsU64(b));
  EXPECT_TRUE(c2.Check(4, kA4, a, 8));
  EXPECT_FALSE(c3.Check(4, kA4, a, 8));
  // Not the SYN-cookie key: a separate key per epoch.
  EXPECT_NE(FastOpenCodec::DeriveKey(k1.current_key()).k0, k1.current_key().k0);
  // Next epoch: still valid, and new cookies differ; two epochs on: gone.
  k1.Refresh(kT0 + kRotation);
  EXPECT_TRUE(c1.Check(4, kA4, a, 8));
  uint8_t fresh[8];
  c1.Make(4, kA4, fresh);
  EXPECT_NE(AsU64(fresh), AsU64(a));
  k1.Refresh(kT0 + 2 * kRotation);
  EXPECT_FALSE(c1.Check(4, kA4, a, 8));
  EXPECT_TRUE(c1.Check(4, kA4, fresh, 8));
}

}  // namespace
}  // namespace moat::cookie
