#pragma once
// The identity of a proxied connection. moat does not NAT, so the tuple is
// the same on the client and the backend half; a packet from the backend
// builds the key with its source as the server (swap src/dst), and finds
// the same flow.

#include <cstdint>
#include <cstring>

namespace moat::flow {

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

// 64 random bits from getrandom(), for callers that have no secret to
// derive a table seed from. Control plane only (may block at early boot).
uint64_t RandomHashSeed();

}  // namespace moat::flow
