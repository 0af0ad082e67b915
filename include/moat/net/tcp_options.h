#pragma once
// TCP options (RFC 9293 §3.2): what moat reads from a segment, and a writer
// that emits exactly the options it is told — unknown kinds a client sent
// are never echoed back.

#include <cstddef>
#include <cstdint>

#include "moat/net/bytes.h"
#include "moat/net/packet.h"

namespace moat::net {

inline constexpr uint8_t kOptEol = 0;
inline constexpr uint8_t kOptNop = 1;
inline constexpr uint8_t kOptMss = 2;
inline constexpr uint8_t kOptWscale = 3;
inline constexpr uint8_t kOptSackPermitted = 4;
inline constexpr uint8_t kOptSack = 5;
inline constexpr uint8_t kOptTimestamps = 8;
inline constexpr uint8_t kOptFastOpen = 34;       // RFC 7413
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

// Inline: the SYN-ACK and every generated frame write options, a few
// stores each; out of line, the calls cost more than the stores.
inline bool TcpOptionWriter::Room(size_t n) {
  if (overflow_ || len_ + n > cap_) {
    overflow_ = true;
    return false;
  }
  return true;
}

inline TcpOptionWriter& TcpOptionWriter::Mss(uint16_t mss) {
  if (Room(4)) {
    buf_[len_] = kOptMss;
    buf_[len_ + 1] = 4;
    StoreBe16(buf_ + len_ + 2, mss);
    len_ += 4;
  }
  return *this;
}

inline TcpOptionWriter& TcpOptionWriter::WindowScale(uint8_t shift) {
  if (Room(3)) {
    buf_[len_] = kOptWscale;
    buf_[len_ + 1] = 3;
    buf_[len_ + 2] = shift;
    len_ += 3;
  }
  return *this;
}

inline TcpOptionWriter& TcpOptionWriter::SackPermitted() {
  if (Room(2)) {
    buf_[len_] = kOptSackPermitted;
    buf_[len_ + 1] = 2;
    len_ += 2;
  }
  return *this;
}

inline TcpOptionWriter& TcpOptionWriter::Timestamps(uint32_t tsval, uint32_t tsecr) {
  if (Room(10)) {
    buf_[len_] = kOptTimestamps;
    buf_[len_ + 1] = 10;
    StoreBe32(buf_ + len_ + 2, tsval);
    StoreBe32(buf_ + len_ + 6, tsecr);
    len_ += 10;
  }
  return *this;
}

inline TcpOptionWriter& TcpOptionWriter::SackBlocks(const uint32_t* edges, int n) {
  if (n <= 0 || n > kMaxSackBlocks) {
    overflow_ = true;
    return *this;
  }
  const size_t bytes = 2 + 8 * static_cast<size_t>(n);
  if (Room(bytes)) {
    buf_[len_] = kOptSack;
    buf_[len_ + 1] = static_cast<uint8_t>(bytes);
    for (int k = 0; k < 2 * n; ++k) StoreBe32(buf_ + len_ + 2 + 4 * k, edges[k]);
    len_ += bytes;
  }
  return *this;
}

inline TcpOptionWriter& TcpOptionWriter::Nop() {
  if (Room(1)) buf_[len_++] = kOptNop;
  return *this;
}

inline size_t TcpOptionWriter::Finish() {
  while (!overflow_ && len_ % 4 != 0) Nop();
  return overflow_ || len_ > 40 ? 0 : len_;
}

}  // namespace moat::net
