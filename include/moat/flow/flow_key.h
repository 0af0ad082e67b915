#pragma once
// The identity of a proxied connection. moat does not NAT, so the tuple is
// the same on the client and the backend half; a packet from the backend
// builds the key with its source as the server.

#include <cstdint>
#include <cstring>

namespace moat::flow {

struct FlowKey {
  uint8_t client_addr[16] = {};  // IPv4 in the first 4 bytes, rest zero
  uint8_t server_addr[16] = {};
  uint16_t client_port = 0;  // host order
  uint16_t server_port = 0;
  uint8_t addr_len = 4;
  uint8_t pad[3] = {};

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

// Keyed 64-bit mix of the 40-byte key. Not a cryptographic PRF: its job is
// to keep an attacker who does not know `seed` from aiming tuples at one
// bucket chain. The seed is random per table and never leaves the process,
// and probe lengths are bounded by the load factor (tests measure them).
uint64_t HashFlowKey(const FlowKey& key, uint64_t seed);

}  // namespace moat::flow
