#pragma once
// A parsed packet's flow key, built in registers. The engine hashes the
// five words before it stores the key, so the hash never waits on those
// stores: a wide load over narrower fresh stores cannot be
// store-forwarded, and FlowKey::Make's byte-wise copies made every packet
// stall on that.

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "moat/flow/flow_key.h"
#include "moat/net/packet.h"

namespace moat::flow {

// FlowKey as its five native 8-byte words.
struct FlowKeyWords {
  uint64_t w[5];

  // Word by word from registers: a 40-byte copy of a stack array would
  // load 16 bytes at a time over the 8-byte stores that built it, and stall.
  void StoreTo(FlowKey* key) const {
    uint8_t* k = reinterpret_cast<uint8_t*>(key);
    std::memcpy(k, &w[0], 8);
    std::memcpy(k + 8, &w[1], 8);
    std::memcpy(k + 16, &w[2], 8);
    std::memcpy(k + 24, &w[3], 8);
    std::memcpy(k + 32, &w[4], 8);
  }
};

static_assert(offsetof(FlowKey, client_addr) == 0 && offsetof(FlowKey, server_addr) == 16 &&
                  offsetof(FlowKey, client_port) == 32 && offsetof(FlowKey, server_port) == 34 &&
                  offsetof(FlowKey, addr_len) == 36 && sizeof(FlowKey) == 40,
              "FlowKeyWords mirrors FlowKey's layout");

// The key of TCP packet `v` (a kOk view with is_tcp). moat does not NAT: a
// client-side packet's source is the client, a server-side packet's
// destination is.
inline FlowKeyWords KeyWordsFromPacket(const net::PacketView& v, bool from_client) {
  const uint8_t* client = from_client ? v.src_addr() : v.dst_addr();
  const uint8_t* server = from_client ? v.dst_addr() : v.src_addr();
  const uint64_t client_port = from_client ? v.src_port() : v.dst_port();
  const uint64_t server_port = from_client ? v.dst_port() : v.src_port();
  FlowKeyWords k;
  if (v.ipv6()) {
    std::memcpy(&k.w[0], client, 8);
    std::memcpy(&k.w[1], client + 8, 8);
    std::memcpy(&k.w[2], server, 8);
    std::memcpy(&k.w[3], server + 8, 8);
  } else {
    uint32_t c, s;
    std::memcpy(&c, client, 4);
    std::memcpy(&s, server, 4);
    k.w[0] = c;
    k.w[1] = 0;
    k.w[2] = s;
    k.w[3] = 0;
  }
  k.w[4] = client_port | server_port << 16 | static_cast<uint64_t>(v.addr_len()) << 32;
  return k;
}

}  // namespace moat::flow
