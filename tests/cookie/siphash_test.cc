#include "moat/cookie/siphash.h"

#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"

namespace moat::cookie {
namespace {

// The reference vectors of the SipHash paper (Aumasson & Bernstein 2012,
// and vectors.h of the reference implementation): key 00 01 .. 0f,
// message 00 01 .. (len-1), 64-bit SipHash-2-4 output read little-endian.
// All 64 are public; we pin a spread covering every tail length (0..7),
// the one-block boundary and the longest.
struct Vector {
  size_t len;
  uint64_t out;
};
constexpr Vector kSipHash24Vectors[] = {
    {0, 0x726fdb47dd0e0e31},  {1, 0x74f839c593dc67fd},  {2, 0x0d6c8009d9a94f5a},
    {3, 0x85676696d7fb7e2d},  {4, 0xcf2794e0277187b7},  {5, 0x18765564cd99a68d},
    {6, 0xcbc9466e58fee3ce},  {7, 0xab0200f58b01d137},  {8, 0x93f5f5799a932462},
    {9, 0x9e0082df0ba9e4b0},  {10, 0x7a5dbbc594ddb9f3}, {11, 0xf4b32f46226bada7},
    {12, 0x751e8fbc860ee5fb}, {13, 0x14ea5627c0843d90}, {14, 0xf723ca908e7af2ee},
    {15, 0xa129ca6149be45e5},  // the paper's worked example (Appendix A)
    {16, 0x3f2acc7f57c29bdb}, {17, 0x699ae9f52cbe4794}, {23, 0xa80c038ccd5ccec8},
    {24, 0xb8ad50c6f649af94}, {32, 0x7127512f72f27cce}, {47, 0xd06c98cd5c0975eb},
    {48, 0xe612a3cb9ecba951}, {63, 0x958a324ceb064572},
};

// SipHash-1-3 has no vectors in the paper. These are outputs of the
// reference implementation built with cROUNDS=1, dROUNDS=3, key all zero,
// the same messages (as published in OCaml's testsuite; the empty-message
// value is also Rust's DefaultHasher with zero keys).
constexpr Vector kSipHash13ZeroKeyVectors[] = {
    {0, 0xd1fba762150c532c},  {1, 0x68a914128e01e473},  {2, 0x010bac45c41e3669},
    {3, 0x4d4c9a4a8ef6e0ad},  {4, 0x7cc43f98813e4dbd},  {5, 0x5abe2169dff36275},
    {6, 0xe3c25f87624f1cdb},  {7, 0x2f098ab0c751325a},  {8, 0xead411e67ebe2eea},
    {9, 0x75927f9d95124362},  {15, 0xf30eb725bb91c9ea}, {16, 0x8972188433a5c5b7},
    {23, 0x37332b1389daa4ff}, {24, 0x31185a47af932f3a}, {47, 0x8485f7f5ae725a0d},
    {63, 0x385d3e39e5f37359},
};

uint8_t g_message[64];
uint8_t g_key_bytes[16];

class SipHashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 64; ++i) g_message[i] = static_cast<uint8_t>(i);
    for (int i = 0; i < 16; ++i) g_key_bytes[i] = static_cast<uint8_t>(i);
  }
};

TEST_F(SipHashTest, KeyIsReadLittleEndian) {
  const SipKey k = SipKeyFromBytes(g_key_bytes);
  EXPECT_EQ(k.k0, 0x0706050403020100u);
  EXPECT_EQ(k.k1, 0x0f0e0d0c0b0a0908u);
}

TEST_F(SipHashTest, SipHash24ReferenceVectors) {
  const SipKey k = SipKeyFromBytes(g_key_bytes);
  for (const Vector& v : kSipHash24Vectors) {
    EXPECT_EQ(SipHash24(k, g_message, v.len), v.out) << "len " << v.len;
  }
}

TEST_F(SipHashTest, SipHash13ReferenceVectors) {
  const SipKey zero{};
  for (const Vector& v : kSipHash13ZeroKeyVectors) {
    EXPECT_EQ(SipHash13(zero, g_message, v.len), v.out) << "len " << v.len;
  }
}

TEST_F(SipHashTest, InlineTemplateMatchesOutOfLine) {
  const SipKey k = SipKeyFromBytes(g_key_bytes);
  for (size_t len = 0; len <= 64; ++len) {
    EXPECT_EQ((internal::SipHash<1, 3>(k, g_message, len)), SipHash13(k, g_message, len));
    EXPECT_EQ((internal::SipHash<2, 4>(k, g_message, len)), SipHash24(k, g_message, len));
  }
}

TEST_F(SipHashTest, BlocksFormMatchesByteForm) {
  // SipHashBlocks takes the words SipHash would read from memory plus the
  // final block with the length byte; for any message both agree.
  const SipKey k = SipKeyFromBytes(g_key_bytes);
  uint64_t w[6];
  for (size_t len : {size_t{7}, size_t{23}, size_t{47}}) {
    const size_t full = len / 8;
    for (size_t i = 0; i < full; ++i) std::memcpy(&w[i], g_message + 8 * i, 8);
    uint64_t last = static_cast<uint64_t>(len) << 56;
    for (size_t i = 0; i < len % 8; ++i) {
      last |= static_cast<uint64_t>(g_message[8 * full + i]) << (8 * i);
    }
    w[full] = last;
    uint64_t got13 = 0, got24 = 0;
    if (len == 7) {
      const uint64_t b[1] = {w[0]};
      got13 = internal::SipHashBlocks<1, 3>(k, b);
      got24 = internal::SipHashBlocks<2, 4>(k, b);
    } else if (len == 23) {
      const uint64_t b[3] = {w[0], w[1], w[2]};
      got13 = internal::SipHashBlocks<1, 3>(k, b);
      got24 = internal::SipHashBlocks<2, 4>(k, b);
    } else {
      const uint64_t b[6] = {w[0], w[1], w[2], w[3], w[4], w[5]};
      got13 = internal::SipHashBlocks<1, 3>(k, b);
      got24 = internal::SipHashBlocks<2, 4>(k, b);
    }
    EXPECT_EQ(got13, SipHash13(k, g_message, len)) << "len " << len;
    EXPECT_EQ(got24, SipHash24(k, g_message, len)) << "len " << len;
  }
  EXPECT_EQ(SipHash24(k, g_message, 23), 0xa80c038ccd5ccec8u);
}

TEST_F(SipHashTest, UnalignedInput) {
  // Packets put addresses at any offset; the word loads must not care.
  alignas(16) uint8_t buf[80];
  const SipKey k = SipKeyFromBytes(g_key_bytes);
  for (int off = 0; off < 8; ++off) {
    for (int i = 0; i < 64; ++i) buf[off + i] = static_cast<uint8_t>(i);
    EXPECT_EQ(SipHash24(k, buf + off, 15), 0xa129ca6149be45e5u) << "offset " << off;
  }
}

TEST_F(SipHashTest, KeyAndVariantMatter) {
  const SipKey k = SipKeyFromBytes(g_key_bytes);
  SipKey k2 = k;
  k2.k1 ^= 1;
  EXPECT_NE(SipHash13(k, g_message, 23), SipHash13(k2, g_message, 23));
  EXPECT_NE(SipHash13(k, g_message, 23), SipHash24(k, g_message, 23));
}

}  // namespace
}  // namespace moat::cookie
