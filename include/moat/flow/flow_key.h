#pragma once
// The identity of a proxied connection. moat does not NAT, so the tuple is
// the same on the client and the backend half; a packet from the backend
// builds the key with its source as the server (swap src/dst), and finds
// the same flow.

#include <cstdint>
#include <bit>
#include <cstring>

namespace moat::flow {

// The engine builds keys as native 8-byte words (HashFlowWords, and the
// key words in lib/proxy) and checksums sum native words: little-endian
// hosts only, which is every platform DPDK 22.11 moat targets.
static_assert(std::endian::native == std::endian::little, "moat assumes a little-endian host");

struct FlowKey {
  uint8_t client_addr[16] = {};  // IPv4 in the first 4 bytes, rest zero
  uint8_t server_addr[16] = {};
  uint16_t client_port = 0;  // host order
  uint16_t server_port = 0;
  uint8_t addr_len = 4;  // 4 or 16: an IPv4 and an IPv6 key never compare equal
  uint8_t pad[3] = {};   // always zero: the key is compared and hashed as bytes

  static FlowKey Make(uint8_t addr_len, const uint8_t* client_addr, uint16_t client_port,
                      const uint8_t* server_addr, uint16_t server_port) {
    FlowKey k;
    std::memcpy(k.client_addr, client_addr, addr_len);
    std::memcpy(k.server_addr, server_addr, addr_len);
    k.client_port = client_port;
    k.server_port = server_port;
    k.addr_len = addr_len;
    return k;
  }

  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof(*this)) == 0; }
};
static_assert(sizeof(FlowKey) == 40, "FlowKey is hashed as five 8-byte words");

// Keyed 64-bit mix of the 40-byte key: three 64x64->128-bit multiply-fold
// rounds over the five words, every word and the seed entering a multiply.
//
// Not a cryptographic PRF, and it does not need to be. Its job is to stop
// an attacker who chooses tuples (source address and port are free for a
// client, and spoofable) from aiming them at one bucket chain. That takes a
// seed the attacker cannot learn: it is random per table (or derived from
// the cookie secret), never leaves the process, and the only signal a
// remote peer gets is timing noise. Even a perfect guess of the bucket
// layout costs linear probing, at a load factor <= 0.75, a longer probe in
// one worker; the tests measure the longest probe under churn. A
// cryptographic hash (SipHash is ~3x the cost) would buy nothing the
// secrecy of the seed does not already give.
uint64_t HashFlowKey(const FlowKey& key, uint64_t seed);

namespace internal {

inline uint64_t Mix(uint64_t a, uint64_t b) {
  // 64x64->128 multiply, then fold the halves: each output bit depends on
  // every input bit of both operands in one step.
  __extension__ typedef unsigned __int128 U128;
  const U128 r = static_cast<U128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

// Multiply-fold compresses well but does not avalanche: the low bits of
// a*b depend only on the low bits of a, so keys that differ in a few high
// bits of one word (sequential ports or addresses) land on low bits that
// move in lock-step, and for some seeds form one long cluster (measured:
// probe runs in the thousands at load 0.75). The table indexes with the
// low bits, so finish with xorshift-multiply rounds (a bijection on 64
// bits that carries every bit into the low ones).
inline uint64_t Finish(uint64_t h) {
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

// Odd constants with balanced bits; they keep an all-zero word (the upper
// 12 bytes of an IPv4 address) from zeroing a multiply operand.
inline constexpr uint64_t kP0 = 0xa0761d6478bd642full;
inline constexpr uint64_t kP1 = 0xe7037ed1a0b428dbull;
inline constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ull;
inline constexpr uint64_t kP3 = 0x589965cc75374cc3ull;

}  // namespace internal

// HashFlowKey over the key's five 8-byte words (native order) as values,
// inline: the engine builds a packet's key in registers and hashes it
// before storing it, so the hash never waits on those stores.
inline uint64_t HashFlowWords(uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3, uint64_t w4,
                              uint64_t seed) {
  using namespace internal;
  // A second, different use of the seed so the two parallel lanes are not
  // keyed identically (a difference cancelling in one would then cancel in
  // the other).
  const uint64_t seed2 = (seed << 29 | seed >> 35) ^ kP3;
  // Lanes a and b are independent, so the two multiplies overlap; the
  // final round joins them with the last word (ports, address length).
  const uint64_t a = Mix(w0 ^ seed ^ kP0, w1 ^ seed2 ^ kP1);
  const uint64_t b = Mix(w2 ^ seed2 ^ kP2, w3 ^ seed ^ kP3);
  return Finish(Mix(a ^ w4 ^ kP1, b ^ seed ^ kP2));
}

// 64 random bits from getrandom(), for callers that have no secret to
// derive a table seed from. Control plane only (may block at early boot).
uint64_t RandomHashSeed();

}  // namespace moat::flow
