#pragma once
// A fluent Ethernet/IP/TCP frame builder for tests:
//
//   std::vector<uint8_t> syn = moat::testing::TcpPacket()
//       .V4("198.18.0.1", "198.18.0.2").Ports(40000, 80)
//       .Seq(1).Flags(net::kTcpSyn)
//       .Mss(1460).WindowScale(7).SackPermitted().Timestamps(1, 0)
//       .Build();
//
// Frames come out of net::BuildTcpFrame, with options encoded by
// net::TcpOptionWriter, so every IP and TCP checksum is right; a test that
// wants a broken frame breaks it afterwards (and can call Refresh() to put
// the checksums right again after editing fields).
//
// Options appear in the order they are added and are padded with NOPs to a
// multiple of 4, like TcpOptionWriter::Finish. Opt() appends raw bytes for
// kinds the writer does not produce (unknown kinds, Fast Open, malformed
// options). Build() returns an empty vector when the spec cannot be built
// (more than 40 option bytes, more than two VLAN tags): check for it.
//
// Header-only, no gtest dependency, so any suite (net, proxy, fuzz) can use
// it.

#include <arpa/inet.h>

#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "moat/net/builder.h"
#include "moat/net/bytes.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"

namespace moat::testing {

// Parses a test frame in place. The view points into `f`: keep `f` alive and
// do not resize it while using the view.
inline net::ParseError Parse(std::vector<uint8_t>& f, net::PacketView* v) {
  return net::ParseFrame(f.data(), static_cast<uint16_t>(f.size()), v);
}

// Recomputes the IPv4 header checksum and the TCP checksum of a frame after
// a test edited it. Returns false if the frame does not parse as TCP.
inline bool Refresh(std::vector<uint8_t>& f) {
  net::PacketView v;
  if (Parse(f, &v) != net::ParseError::kOk || !v.is_tcp) return false;
  if (v.l3 == net::L3::kIpv4) net::FillIpv4HeaderChecksum(v);
  net::FillTcpChecksum(v);
  return true;
}

class TcpPacket {
 public:
  static constexpr const char* kDefaultSrc4 = "198.18.0.1";
  static constexpr const char* kDefaultDst4 = "198.18.0.2";

  TcpPacket() { V4(kDefaultSrc4, kDefaultDst4); }

  // Addresses in presentation form; an unparsable one aborts (a typo in a
  // test should not silently become 0.0.0.0).
  TcpPacket& V4(const char* src, const char* dst) {
    ipv6_ = false;
    Pton(AF_INET, src, src_);
    Pton(AF_INET, dst, dst_);
    return *this;
  }
  TcpPacket& V6(const char* src, const char* dst) {
    ipv6_ = true;
    Pton(AF_INET6, src, src_);
    Pton(AF_INET6, dst, dst_);
    return *this;
  }
  TcpPacket& Ports(uint16_t src, uint16_t dst) {
    spec_.src_port = src;
    spec_.dst_port = dst;
    return *this;
  }
  TcpPacket& Seq(uint32_t v) {
    spec_.seq = v;
    return *this;
  }
  TcpPacket& Ack(uint32_t v) {
    spec_.ack = v;
    return *this;
  }
  TcpPacket& Flags(uint8_t f) {
    spec_.flags = f;
    return *this;
  }
  TcpPacket& Window(uint16_t w) {
    spec_.window = w;
    return *this;
  }
  TcpPacket& Ttl(uint8_t ttl) {
    spec_.ttl = ttl;
    return *this;
  }
  TcpPacket& Tos(uint8_t tos_or_traffic_class) {
    spec_.tos_tclass = tos_or_traffic_class;
    return *this;
  }
  TcpPacket& IpId(uint16_t id) {
    spec_.ip_id = id;
    return *this;
  }
  TcpPacket& Macs(net::MacAddr src, net::MacAddr dst) {
    spec_.src_mac = src;
    spec_.dst_mac = dst;
    return *this;
  }
  // Adds an outer-to-inner VLAN tag; tpid 0x88a8 for an 802.1ad S-tag.
  // More than two tags makes Build() fail (the builder and parser cap it).
  TcpPacket& Vlan(uint16_t tci, uint16_t tpid = net::kEtherTypeVlan) {
    vlans_.push_back({tci, tpid});
    return *this;
  }

  // Typed options, encoded by net::TcpOptionWriter.
  TcpPacket& Mss(uint16_t mss) {
    return Typed(4, [&](net::TcpOptionWriter& w) { w.Mss(mss); });
  }
  TcpPacket& WindowScale(uint8_t shift) {
    return Typed(3, [&](net::TcpOptionWriter& w) { w.WindowScale(shift); });
  }
  TcpPacket& SackPermitted() {
    return Typed(2, [](net::TcpOptionWriter& w) { w.SackPermitted(); });
  }
  TcpPacket& SackOk() { return SackPermitted(); }
  TcpPacket& Timestamps(uint32_t tsval, uint32_t tsecr) {
    return Typed(10, [&](net::TcpOptionWriter& w) { w.Timestamps(tsval, tsecr); });
  }
  // 2n edges: left0, right0, left1, right1, ...  (1 <= n <= 4).
  TcpPacket& SackBlocks(std::initializer_list<uint32_t> edges) {
    const std::vector<uint32_t> e(edges);
    const int n = static_cast<int>(e.size() / 2);
    // Malformed SACK options are for Opt(); this is a test bug.
    if (e.size() % 2 != 0 || n < 1 || n > net::kMaxSackBlocks) std::abort();
    return Typed(2 + 8 * static_cast<size_t>(n),
                 [&](net::TcpOptionWriter& w) { w.SackBlocks(e.data(), n); });
  }
  TcpPacket& Nop() {
    return Typed(1, [](net::TcpOptionWriter& w) { w.Nop(); });
  }
  // Raw option bytes, appended as given.
  TcpPacket& Opt(std::initializer_list<uint8_t> bytes) {
    opts_.insert(opts_.end(), bytes);
    return *this;
  }
  TcpPacket& Opt(const std::vector<uint8_t>& bytes) {
    opts_.insert(opts_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  // Drops every option added so far.
  TcpPacket& NoOptions() {
    opts_.clear();
    return *this;
  }

  TcpPacket& Payload(std::string_view p) {
    payload_.assign(p.begin(), p.end());
    return *this;
  }
  TcpPacket& Payload(const std::vector<uint8_t>& p) {
    payload_ = p;
    return *this;
  }
  // `n` bytes of a recognisable pattern (byte i = i * 7 + 1).
  TcpPacket& PayloadSize(size_t n) {
    payload_.resize(n);
    for (size_t i = 0; i < n; ++i) payload_[i] = static_cast<uint8_t>(i * 7 + 1);
    return *this;
  }

  // The option bytes as they will appear in the header (NOP-padded).
  std::vector<uint8_t> OptionBytes() const {
    std::vector<uint8_t> o = opts_;
    while (o.size() % 4 != 0) o.push_back(net::kOptNop);
    return o;
  }

  std::vector<uint8_t> Build() const {
    const std::vector<uint8_t> opts = OptionBytes();
    if (opts.size() > 40 || vlans_.size() > 2) return {};
    net::TcpFrameSpec s = spec_;
    s.vlan_count = static_cast<uint8_t>(vlans_.size());
    for (size_t i = 0; i < vlans_.size(); ++i) {
      s.vlan_tci[i] = vlans_[i].tci;
      s.vlan_tpid[i] = vlans_[i].tpid;
    }
    s.ipv6 = ipv6_;
    s.src_addr = src_;
    s.dst_addr = dst_;
    s.options = opts.empty() ? nullptr : opts.data();
    s.options_len = static_cast<uint8_t>(opts.size());
    s.payload = payload_.empty() ? nullptr : payload_.data();
    s.payload_len = static_cast<uint16_t>(payload_.size());
    std::vector<uint8_t> buf(14 + 8 + 40 + 60 + payload_.size());
    buf.resize(net::BuildTcpFrame(buf.data(), buf.size(), s));
    return buf;
  }

  // Build() followed by appending `n` zero bytes after the IP datagram, as a
  // NIC delivers a frame shorter than the 60-byte Ethernet minimum.
  std::vector<uint8_t> BuildPadded(size_t n) const {
    std::vector<uint8_t> f = Build();
    if (!f.empty()) f.resize(f.size() + n, 0);
    return f;
  }

  bool ipv6() const { return ipv6_; }
  const uint8_t* src_addr() const { return src_; }
  const uint8_t* dst_addr() const { return dst_; }

 private:
  struct Tag {
    uint16_t tci;
    uint16_t tpid;
  };

  static void Pton(int af, const char* text, uint8_t* out) {
    if (inet_pton(af, text, out) != 1) std::abort();
  }

  template <typename F>
  TcpPacket& Typed(size_t len, F&& write) {
    uint8_t tmp[40] = {};
    net::TcpOptionWriter w(tmp, sizeof(tmp));
    write(w);
    opts_.insert(opts_.end(), tmp, tmp + (len <= sizeof(tmp) ? len : sizeof(tmp)));
    return *this;
  }

  net::TcpFrameSpec spec_ = DefaultSpec();
  bool ipv6_ = false;
  uint8_t src_[16] = {};
  uint8_t dst_[16] = {};
  std::vector<Tag> vlans_;
  std::vector<uint8_t> opts_;
  std::vector<uint8_t> payload_;

  static net::TcpFrameSpec DefaultSpec() {
    net::TcpFrameSpec s;
    s.src_mac = {{0x02, 0, 0, 0, 0, 0x01}};
    s.dst_mac = {{0x02, 0, 0, 0, 0, 0x02}};
    s.src_port = 40000;
    s.dst_port = 80;
    s.seq = 1;
    s.ack = 0;
    s.flags = net::kTcpAck;
    s.window = 1024;
    return s;
  }
};

}  // namespace moat::testing
