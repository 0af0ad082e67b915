#pragma once
// One segment of a client<->server connection, for the benchmarks' inputs
// (bm_engine.cc and the throughput pcaps): the addresses, ports and MACs
// of the connection, the direction, and the TCP fields that change.

#include <cstddef>
#include <cstdint>

#include "moat/net/builder.h"

namespace moat::bench {

struct Connection {
  net::MacAddr client_mac, server_mac;
  bool ipv6 = false;
  const uint8_t* client = nullptr;  // 4 or 16 bytes
  const uint8_t* server = nullptr;
  uint16_t client_port = 0, server_port = 80;
};

// Builds the segment into buf (zero payload bytes); returns its length, or
// 0 if it does not fit.
inline size_t BuildSegment(uint8_t* buf, size_t cap, const Connection& c, bool from_client,
                           uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t* opts,
                           uint8_t opts_len, uint16_t payload_len) {
  static const uint8_t kZeros[1500] = {};
  net::TcpFrameSpec s;
  s.src_mac = from_client ? c.client_mac : c.server_mac;
  s.dst_mac = from_client ? c.server_mac : c.client_mac;
  s.ipv6 = c.ipv6;
  s.src_addr = from_client ? c.client : c.server;
  s.dst_addr = from_client ? c.server : c.client;
  s.src_port = from_client ? c.client_port : c.server_port;
  s.dst_port = from_client ? c.server_port : c.client_port;
  s.seq = seq;
  s.ack = ack;
  s.flags = flags;
  s.window = 502;
  s.options = opts;
  s.options_len = opts_len;
  s.payload = payload_len ? kZeros : nullptr;
  s.payload_len = payload_len;
  return net::BuildTcpFrame(buf, cap, s);
}

}  // namespace moat::bench
