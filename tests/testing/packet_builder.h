#pragma once
// The one Ethernet/IP/TCP frame builder for tests, fuzzers and benchmarks:
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
// Three ways to get the bytes:
//   Build()       a std::vector sized to the frame (an empty one when the
//                 spec cannot be built: check for it);
//   BuildFrame()  a Frame, the fixed 2 KiB buffer the engine tests and the
//                 engine fuzzer hand to Engine::Process (which rewrites in
//                 place); a spec that cannot be built aborts;
//   BuildInto()   into the caller's buffer, without allocating: what the
//                 benchmarks use to fill their templates (built once, before
//                 the timed loop).
//
// Options appear in the order they are added and are padded with NOPs to a
// multiple of 4 at the end, like TcpOptionWriter::Finish. After
// AlignOptions(), each typed option is preceded by the NOPs that make its
// own length a multiple of 4 (NOP NOP SACK-permitted, NOP NOP timestamps,
// NOP window scale), the layout RFC 7323 Appendix A recommends and BSD
// stacks send. Opt() appends raw bytes for kinds the writer does not
// produce (unknown kinds, malformed options), never aligned.
//
// Endpoints names the two ends of one connection (addresses, ports, MACs)
// and starts a packet in either direction, so a scenario or a benchmark
// writes each segment as "from the client" or "from the server".
//
// Header-only, no gtest dependency: any suite (net, proxy, fuzz, bench) can
// use it. Setting up a packet allocates (std::vector members); building
// one with BuildInto() does not.

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "moat/net/builder.h"
#include "moat/net/bytes.h"
#include "moat/net/checksum.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"

namespace moat::testing {

// The size of Frame's buffer: proxy::kMaxFrame (a frame of the largest
// --mtu), which the engine tests static_assert (this header does not
// depend on lib/proxy).
inline constexpr size_t kFrameCapacity = 9024;

// A frame in a fixed buffer, as an mbuf's data room holds it.
struct Frame {
  uint8_t buf[kFrameCapacity] = {};
  uint16_t len = 0;
};

// Parses a test frame in place. The view points into the frame: keep it
// alive (and, for a vector, do not resize it) while using the view.
inline net::ParseError Parse(std::vector<uint8_t>& f, net::PacketView* v) {
  return net::ParseFrame(f.data(), static_cast<uint16_t>(f.size()), v);
}
inline net::ParseError Parse(Frame& f, net::PacketView* v) {
  return net::ParseFrame(f.buf, f.len, v);
}

// Recomputes the IPv4 header checksum and the TCP checksum of a frame after
// a test edited it. Returns false if the frame does not parse as TCP.
inline bool Refresh(uint8_t* frame, size_t len) {
  net::PacketView v;
  if (net::ParseFrame(frame, static_cast<uint16_t>(len), &v) != net::ParseError::kOk || !v.is_tcp) {
    return false;
  }
  if (v.l3 == net::L3::kIpv4) net::FillIpv4HeaderChecksum(v);
  net::FillTcpChecksum(v);
  return true;
}
inline bool Refresh(std::vector<uint8_t>& f) { return Refresh(f.data(), f.size()); }

// What a NIC does to a frame sent with TX checksum offload (DPDK's
// TX_IP_CKSUM and TX_TCP_CKSUM): the IPv4 header checksum over `l3_len`
// bytes, its field 0 before; the TCP checksum over the segment from
// l2_len + l3_len to the frame's end, whose field holds the pseudo-header
// sum before. A frame left with complete checksums comes out wrong.
inline void CompleteChecksumsAsNic(uint8_t* frame, size_t len, size_t l2_len, size_t l3_len,
                                   bool ipv4) {
  uint8_t* ip = frame + l2_len;
  if (ipv4) net::StoreBe16(ip + 10, net::ChecksumFinish(net::ChecksumAccumulate(ip, l3_len)));
  uint8_t* tcp = ip + l3_len;
  const size_t tcp_len = len - l2_len - l3_len;
  net::StoreBe16(tcp + 16, net::ChecksumFinish(net::ChecksumAccumulate(tcp, tcp_len)));
}
inline bool Refresh(Frame& f) { return Refresh(f.buf, f.len); }

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
  // Addresses as bytes in network order: 4 each, or 16 with `ipv6`.
  TcpPacket& Addresses(bool ipv6, const uint8_t* src, const uint8_t* dst) {
    ipv6_ = ipv6;
    std::memcpy(src_, src, AddrLen());
    std::memcpy(dst_, dst, AddrLen());
    return *this;
  }
  // Replaces the source only (same family).
  TcpPacket& SrcAddr(const uint8_t* src) {
    std::memcpy(src_, src, AddrLen());
    return *this;
  }
  // Replaces the destination only (same family).
  TcpPacket& DstAddr(const uint8_t* dst) {
    std::memcpy(dst_, dst, AddrLen());
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
  // Adds an outer-to-inner VLAN tag; tpid net::kEtherTypeQinQ for an
  // 802.1ad S-tag. More than two tags makes the build fail (the builder and
  // the parser cap it).
  TcpPacket& Vlan(uint16_t tci, uint16_t tpid = net::kEtherTypeVlan) {
    vlans_.push_back({tci, tpid});
    return *this;
  }

  // Typed options added from here on start NOP-aligned (see the top).
  TcpPacket& AlignOptions(bool on = true) {
    align_ = on;
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
  // A Fast Open cookie request: kind 34, length 2, no cookie (RFC 7413
  // §4.1.1). Raw, never aligned.
  TcpPacket& FastOpenRequest() { return Opt({net::kOptFastOpen, 2}); }
  TcpPacket& Nop() { return Opt({net::kOptNop}); }
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
  TcpPacket& Payload(const uint8_t* data, size_t n) {
    payload_.assign(data, data + n);
    return *this;
  }
  // `n` bytes of a recognisable pattern (byte i = i * 7 + 1).
  TcpPacket& PayloadSize(size_t n) {
    payload_.resize(n);
    for (size_t i = 0; i < n; ++i) payload_[i] = static_cast<uint8_t>(i * 7 + 1);
    return *this;
  }
  // `n` copies of `byte`.
  TcpPacket& PayloadFill(size_t n, uint8_t byte) {
    payload_.assign(n, byte);
    return *this;
  }

  // The option bytes as they will appear in the header (NOP-padded).
  std::vector<uint8_t> OptionBytes() const {
    std::vector<uint8_t> o = opts_;
    while (o.size() % 4 != 0) o.push_back(net::kOptNop);
    return o;
  }

  // Writes the frame into buf[0..cap) and returns its length, or 0 when the
  // spec cannot be built (more than 40 option bytes, more than two VLAN
  // tags) or does not fit. Allocates nothing.
  size_t BuildInto(uint8_t* buf, size_t cap) const {
    uint8_t opts[40];
    size_t opts_len = opts_.size();
    if (opts_len > sizeof(opts) || vlans_.size() > 2 || payload_.size() > 0xffff) return 0;
    if (opts_len != 0) std::memcpy(opts, opts_.data(), opts_len);
    while (opts_len % 4 != 0) opts[opts_len++] = net::kOptNop;
    net::TcpFrameSpec s = spec_;
    s.vlan_count = static_cast<uint8_t>(vlans_.size());
    for (size_t i = 0; i < vlans_.size(); ++i) {
      s.vlan_tci[i] = vlans_[i].tci;
      s.vlan_tpid[i] = vlans_[i].tpid;
    }
    s.ipv6 = ipv6_;
    s.src_addr = src_;
    s.dst_addr = dst_;
    s.options = opts_len != 0 ? opts : nullptr;
    s.options_len = static_cast<uint8_t>(opts_len);
    s.payload = payload_.empty() ? nullptr : payload_.data();
    s.payload_len = static_cast<uint16_t>(payload_.size());
    return net::BuildTcpFrame(buf, cap, s);
  }

  std::vector<uint8_t> Build() const {
    std::vector<uint8_t> buf(kMaxHeaders + payload_.size());
    buf.resize(BuildInto(buf.data(), buf.size()));
    return buf;
  }

  // For frames a test means to send: one that cannot be built is a bug in
  // the test, reported at once rather than sent as an empty frame.
  Frame BuildFrame() const {
    Frame f;
    f.len = static_cast<uint16_t>(BuildInto(f.buf, sizeof(f.buf)));
    if (f.len == 0) {
      std::fprintf(stderr,
                   "TcpPacket::BuildFrame: the frame cannot be built (over 40 option bytes, "
                   "over two VLAN tags, or over %zu bytes)\n",
                   sizeof(f.buf));
      std::abort();
    }
    return f;
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
  // Ethernet, two VLAN tags, IPv6, TCP with 40 option bytes.
  static constexpr size_t kMaxHeaders = 14 + 8 + 40 + 60;

  struct Tag {
    uint16_t tci;
    uint16_t tpid;
  };

  size_t AddrLen() const { return ipv6_ ? 16 : 4; }

  static void Pton(int af, const char* text, uint8_t* out) {
    if (inet_pton(af, text, out) != 1) std::abort();
  }

  template <typename F>
  TcpPacket& Typed(size_t len, F&& write) {
    if (align_) opts_.insert(opts_.end(), (4 - len % 4) % 4, net::kOptNop);
    uint8_t tmp[40] = {};
    net::TcpOptionWriter w(tmp, sizeof(tmp));
    write(w);
    opts_.insert(opts_.end(), tmp, tmp + (len <= sizeof(tmp) ? len : sizeof(tmp)));
    return *this;
  }

  net::TcpFrameSpec spec_ = DefaultSpec();
  bool ipv6_ = false;
  bool align_ = false;
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

// The two ends of one TCP connection. FromClient()/FromServer() start a
// segment in that direction with addresses, ports and MACs filled in, and
// TcpPacket's defaults for everything else (seq 1, ack 0, ACK, window 1024,
// no options, no payload).
struct Endpoints {
  bool ipv6 = false;
  uint8_t client_addr[16] = {198, 18, 0, 1};
  uint8_t server_addr[16] = {198, 18, 0, 2};
  uint16_t client_port = 40000;
  uint16_t server_port = 80;
  net::MacAddr client_mac = {{0x02, 0, 0, 0, 0, 0x01}};
  net::MacAddr server_mac = {{0x02, 0, 0, 0, 0, 0x02}};

  // Addresses as bytes in network order: 4 each, or 16 with `ipv6`.
  static Endpoints Make(bool ipv6, const uint8_t* client, uint16_t client_port,
                        const uint8_t* server, uint16_t server_port) {
    Endpoints e;
    e.ipv6 = ipv6;
    std::memset(e.client_addr, 0, sizeof(e.client_addr));
    std::memset(e.server_addr, 0, sizeof(e.server_addr));
    std::memcpy(e.client_addr, client, ipv6 ? 16 : 4);
    std::memcpy(e.server_addr, server, ipv6 ? 16 : 4);
    e.client_port = client_port;
    e.server_port = server_port;
    return e;
  }

  TcpPacket FromClient() const {
    TcpPacket p;
    p.Addresses(ipv6, client_addr, server_addr)
        .Ports(client_port, server_port)
        .Macs(client_mac, server_mac);
    return p;
  }
  TcpPacket FromServer() const {
    TcpPacket p;
    p.Addresses(ipv6, server_addr, client_addr)
        .Ports(server_port, client_port)
        .Macs(server_mac, client_mac);
    return p;
  }
};

}  // namespace moat::testing
