#include "moat/net/checksum.h"

#include <cstring>

#include "moat/net/bytes.h"

namespace moat::net {

uint32_t ChecksumAccumulate(const void* data, size_t n, uint32_t sum) {
  // Sum 32-bit words into a 64-bit accumulator: the carries collect in the
  // high half and fold at the end (RFC 1071 §2(B), "deferred carries").
  // Native byte order is fine as long as the fold is byte-order aware: the
  // one's-complement sum commutes with byte swapping (RFC 1071 §2(A)), so we
  // sum little-endian words and swap once at the end.
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t acc = 0;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc += w >> 32;
    acc += w & 0xffffffffu;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    // The odd byte is the high byte of a big-endian word padded with zero,
    // which in native little-endian order is the low byte.
    acc += *p;
  }
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  uint32_t s32 = static_cast<uint32_t>(acc);
  uint32_t s16 = (s32 & 0xffff) + (s32 >> 16);
  s16 = (s16 & 0xffff) + (s16 >> 16);
  // Back to network order.
  s16 = __builtin_bswap16(static_cast<uint16_t>(s16));
  return sum + s16;
}

uint16_t Ipv4HeaderChecksum(const uint8_t* ip, size_t ihl_bytes) {
  // The checksum field itself (offset 10) counts as zero.
  uint32_t sum = ChecksumAccumulate(ip, 10);
  sum = ChecksumAccumulate(ip + 12, ihl_bytes - 12, sum);
  return ChecksumFinish(sum);
}

namespace {

uint16_t TcpChecksum(uint32_t pseudo, const uint8_t* tcp, size_t tcp_len) {
  // Skip the checksum field (offset 16) rather than requiring it zeroed.
  uint32_t sum = ChecksumAccumulate(tcp, 16, pseudo);
  sum = ChecksumAccumulate(tcp + 18, tcp_len - 18, sum);
  return ChecksumFinish(sum);
}

}  // namespace

uint16_t TcpChecksumV4(const uint8_t src[4], const uint8_t dst[4], const uint8_t* tcp,
                       size_t tcp_len) {
  // RFC 9293 §3.1 pseudo-header: src, dst, zero, protocol, TCP length.
  uint32_t sum = ChecksumAccumulate(src, 4);
  sum = ChecksumAccumulate(dst, 4, sum);
  sum += 6 + static_cast<uint32_t>(tcp_len);
  return TcpChecksum(sum, tcp, tcp_len);
}

uint16_t TcpChecksumV6(const uint8_t src[16], const uint8_t dst[16], const uint8_t* tcp,
                       size_t tcp_len) {
  // RFC 8200 §8.1 pseudo-header: src, dst, upper-layer length, next header.
  uint32_t sum = ChecksumAccumulate(src, 16);
  sum = ChecksumAccumulate(dst, 16, sum);
  sum += 6 + static_cast<uint32_t>(tcp_len);
  return TcpChecksum(sum, tcp, tcp_len);
}

}  // namespace moat::net
