#pragma once
// TCP options (RFC 9293 §3.2): what moat reads from a segment, and a writer
// that emits exactly the options it is told — unknown kinds a client sent
// are never echoed back.

#include <cstddef>
#include <cstdint>

#include "moat/net/packet.h"

namespace moat::net {

inline constexpr uint8_t kOptEol = 0;
inline constexpr uint8_t kOptNop = 1;
inline constexpr uint8_t kOptMss = 2;
inline constexpr uint8_t kOptWscale = 3;
inline constexpr uint8_t kOptSackPermitted = 4;
inline constexpr uint8_t kOptSack = 5;
inline constexpr uint8_t kOptTimestamps = 8;
inline constexpr uint8_t kOptFastOpen = 34;      // RFC 7413
inline constexpr uint8_t kOptExperimental = 254;  // RFC 6994; 0xF989 = TFO
inline constexpr uint16_t kFastOpenExid = 0xF989;
inline constexpr uint8_t kMaxWscale = 14;  // RFC 7323 §2.3
inline constexpr int kMaxSackBlocks = 4;

// struct TcpOptions (what a segment's options say) is in packet.h: every
// parsed TCP view carries one.


// Parses the options of a TCP header whose length was already checked
// against the packet (ParseFrame does). Duplicated options: the last wins.
ParseError ParseTcpOptions(const uint8_t* tcp, uint16_t tcp_header_len, TcpOptions* out);

class TcpOptionWriter {
 public:
  TcpOptionWriter(uint8_t* buf, size_t cap) : buf_(buf), cap_(cap) {}

  TcpOptionWriter& Mss(uint16_t mss);
  TcpOptionWriter& WindowScale(uint8_t shift);
  TcpOptionWriter& SackPermitted();
  TcpOptionWriter& Timestamps(uint32_t tsval, uint32_t tsecr);
  TcpOptionWriter& SackBlocks(const uint32_t* edges, int n);  // 2n edges
  TcpOptionWriter& Nop();
  // Pads to a multiple of 4 with NOPs; returns the length, or 0 when the
  // options did not fit (the buffer content is then unspecified).
  size_t Finish();

 private:
  bool Room(size_t n);
  uint8_t* buf_;
  size_t cap_;
  size_t len_ = 0;
  bool overflow_ = false;
};

}  // namespace moat::net
