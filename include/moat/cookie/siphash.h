#pragma once
// SipHash (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012):
// a keyed PRF that is fast on short inputs, which is exactly the cookie's
// job (23 bytes per IPv4 SYN, 47 per IPv6).
//
// The template is in the header so the cookie codec, whose message length
// is a compile-time constant, gets a fully unrolled body with no call; the
// named functions below are the out-of-line entry points for everything
// else (key derivation, tests, benchmarks).

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moat::cookie {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// SipHash-2-4: the conservative variant, used for key derivation.
uint64_t SipHash24(const SipKey& key, const void* data, size_t len);
// SipHash-1-3: the per-packet PRF for cookies (see cookie.h for why).
uint64_t SipHash13(const SipKey& key, const void* data, size_t len);

// A 128-bit key from 16 bytes, read little-endian as the paper specifies
// (k0 = bytes 0..7), so that the reference vectors apply verbatim.
SipKey SipKeyFromBytes(const uint8_t bytes[16]);

namespace internal {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "SipHash word loads assume a little-endian host");

inline constexpr uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

struct SipState {
  uint64_t v0, v1, v2, v3;

  explicit SipState(const SipKey& k)
      : v0(k.k0 ^ 0x736f6d6570736575ull),  // "somepseudorandomlygeneratedbytes"
        v1(k.k1 ^ 0x646f72616e646f6dull),
        v2(k.k0 ^ 0x6c7967656e657261ull),
        v3(k.k1 ^ 0x7465646279746573ull) {}

  inline void Round() {
    v0 += v1;
    v1 = Rotl(v1, 13);
    v1 ^= v0;
    v0 = Rotl(v0, 32);
    v2 += v3;
    v3 = Rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = Rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = Rotl(v1, 17);
    v1 ^= v2;
    v2 = Rotl(v2, 32);
  }

  template <int C>
  inline void Compress(uint64_t m) {
    v3 ^= m;
    for (int i = 0; i < C; ++i) Round();
    v0 ^= m;
  }

  template <int D>
  inline uint64_t Finish() {
    v2 ^= 0xff;
    for (int i = 0; i < D; ++i) Round();
    return v0 ^ v1 ^ v2 ^ v3;
  }
};

// SipHash-C-D of len bytes at data.
template <int C, int D>
inline uint64_t SipHash(const SipKey& key, const void* data, size_t len) {
  SipState s(key);
  const uint8_t* p = static_cast<const uint8_t*>(data);
  const uint8_t* end = p + (len & ~size_t{7});
  for (; p != end; p += 8) {
    uint64_t m;
    std::memcpy(&m, p, 8);  // little-endian words, as the spec reads them
    s.Compress<C>(m);
  }
  // Last block: the remaining 0..7 bytes, and len mod 256 in the top byte.
  uint64_t b = static_cast<uint64_t>(len) << 56;
  switch (len & 7) {
    case 7:
      b |= static_cast<uint64_t>(p[6]) << 48;
      [[fallthrough]];
    case 6:
      b |= static_cast<uint64_t>(p[5]) << 40;
      [[fallthrough]];
    case 5:
      b |= static_cast<uint64_t>(p[4]) << 32;
      [[fallthrough]];
    case 4:
      b |= static_cast<uint64_t>(p[3]) << 24;
      [[fallthrough]];
    case 3:
      b |= static_cast<uint64_t>(p[2]) << 16;
      [[fallthrough]];
    case 2:
      b |= static_cast<uint64_t>(p[1]) << 8;
      [[fallthrough]];
    case 1:
      b |= static_cast<uint64_t>(p[0]);
      break;
    default:
      break;
  }
  s.Compress<C>(b);
  return s.Finish<D>();
}

// The same function over a message already split into SipHash's blocks:
// the full little-endian 64-bit words, then the final block (the 0..7
// trailing bytes with len mod 256 in the top byte). SipHash<C, D>(m) ==
// SipHashBlocks<C, D>(blocks of m). For callers that assemble a short
// fixed-layout message from fields: building the words in registers avoids
// the byte-stores-then-word-loads round trip through memory (a
// store-forwarding stall per block on x86).
template <int C, int D, size_t N>
inline uint64_t SipHashBlocks(const SipKey& key, const uint64_t (&blocks)[N]) {
  SipState s(key);
  for (size_t i = 0; i < N; ++i) s.Compress<C>(blocks[i]);
  return s.Finish<D>();
}

}  // namespace internal
}  // namespace moat::cookie
