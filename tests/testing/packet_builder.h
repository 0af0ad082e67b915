#pragma once
// A fluent TCP packet builder for tests (Katran's lib/testing style):
//   auto f = TcpPacket().V4("198.18.0.1", "198.18.0.2").Ports(40000, 80)
//                .Seq(1).Flags(net::kTcpSyn).Mss(1460).SackOk().Build();
// Built on net::BuildTcpFrame, so every frame has correct checksums unless
// a test breaks one on purpose afterwards.

#include <arpa/inet.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "moat/net/builder.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"

namespace moat::testing {

class TcpPacket {
 public:
  TcpPacket() { V4("198.18.0.1", "198.18.0.2"); }

  TcpPacket& V4(const char* src, const char* dst) {
    ipv6_ = false;
    inet_pton(AF_INET, src, src_);
    inet_pton(AF_INET, dst, dst_);
    return *this;
  }
  TcpPacket& V6(const char* src, const char* dst) {
    ipv6_ = true;
    inet_pton(AF_INET6, src, src_);
    inet_pton(AF_INET6, dst, dst_);
    return *this;
  }
  TcpPacket& Ports(uint16_t s, uint16_t d) {
    sport_ = s;
    dport_ = d;
    return *this;
  }
  TcpPacket& Seq(uint32_t v) { seq_ = v; return *this; }
  TcpPacket& Ack(uint32_t v) { ack_ = v; return *this; }
  TcpPacket& Flags(uint8_t f) { flags_ = f; return *this; }
  TcpPacket& Window(uint16_t w) { window_ = w; return *this; }
  TcpPacket& Vlan(uint16_t tci) { vlans_.push_back(tci); return *this; }
  TcpPacket& Mss(uint16_t m) { return Opt({2, 4, uint8_t(m >> 8), uint8_t(m)}); }
  TcpPacket& WindowScale(uint8_t s) { return Opt({1, 3, 3, s}); }
  TcpPacket& SackOk() { return Opt({1, 1, 4, 2}); }
  TcpPacket& Timestamps(uint32_t val, uint32_t ecr) {
    return Opt({1, 1, 8, 10, uint8_t(val >> 24), uint8_t(val >> 16), uint8_t(val >> 8),
                uint8_t(val), uint8_t(ecr >> 24), uint8_t(ecr >> 16), uint8_t(ecr >> 8),
                uint8_t(ecr)});
  }
  // Raw option bytes, appended as given (pad to 4 yourself, or let Build
  // pad with EOL).
  TcpPacket& Opt(std::initializer_list<uint8_t> bytes) {
    opts_.insert(opts_.end(), bytes);
    return *this;
  }
  TcpPacket& Payload(const std::string& p) {
    payload_.assign(p.begin(), p.end());
    return *this;
  }

  std::vector<uint8_t> Build() const {
    std::vector<uint8_t> opts = opts_;
    while (opts.size() % 4 != 0) opts.push_back(0);  // EOL padding
    net::TcpFrameSpec s;
    s.src_mac = {{0x02, 0, 0, 0, 0, 0x01}};
    s.dst_mac = {{0x02, 0, 0, 0, 0, 0x02}};
    s.vlan_count = static_cast<uint8_t>(vlans_.size());
    for (size_t i = 0; i < vlans_.size() && i < 2; ++i) s.vlan_tci[i] = vlans_[i];
    s.ipv6 = ipv6_;
    s.src_addr = src_;
    s.dst_addr = dst_;
    s.src_port = sport_;
    s.dst_port = dport_;
    s.seq = seq_;
    s.ack = ack_;
    s.flags = flags_;
    s.window = window_;
    s.options = opts.empty() ? nullptr : opts.data();
    s.options_len = static_cast<uint8_t>(opts.size());
    s.payload = payload_.empty() ? nullptr : payload_.data();
    s.payload_len = static_cast<uint16_t>(payload_.size());
    std::vector<uint8_t> buf(2048);
    buf.resize(net::BuildTcpFrame(buf.data(), buf.size(), s));
    return buf;
  }

 private:
  bool ipv6_ = false;
  uint8_t src_[16] = {}, dst_[16] = {};
  uint16_t sport_ = 40000, dport_ = 80;
  uint32_t seq_ = 1, ack_ = 0;
  uint8_t flags_ = net::kTcpAck;
  uint16_t window_ = 1024;
  std::vector<uint16_t> vlans_;
  std::vector<uint8_t> opts_;
  std::vector<uint8_t> payload_;
};

}  // namespace moat::testing
