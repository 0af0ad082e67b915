#include "moat/net/checksum.h"

#include <cstring>

#include "moat/net/bytes.h"

namespace moat::net {

namespace {

// The one's-complement sum (RFC 1071) of n bytes as native-order 64-bit
// words in a 128-bit accumulator: one add-with-carry per 8 bytes, carries
// collected in the high half and folded once at the end (§2(B), "deferred
// carries"). Summing little-endian words is fine because the sum commutes
// with byte swapping (§2(A)); Fold() swaps once. Since 2^16-1 divides
// 2^64-1, the 64-bit sum folds to the same 16-bit sum. The start of each
// chunk must be at an even offset of the message (odd lengths only last);
// a short tail is summed in smaller words, which leaves the byte positions
// (and so the sum mod 2^16-1) as they were.
__extension__ typedef unsigned __int128 Acc;

inline Acc Sum(const uint8_t* p, size_t n, Acc acc) {
  while (n >= 32) {
    uint64_t w[4];
    std::memcpy(w, p, 32);
    acc += w[0];
    acc += w[1];
    acc += w[2];
    acc += w[3];
    p += 32;
    n -= 32;
  }
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc += w;
    p += 8;
    n -= 8;
  }
  // Fixed-size loads for the tail (a variable-length memcpy is a call).
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
  if (n == 1) acc += *p;  // the high byte of a zero-padded network-order word
  return acc;
}

// 16-bit native-order word at an even offset, to take out of a sum: in
// one's-complement arithmetic, subtracting w is adding ~w.
inline Acc Minus16(const uint8_t* p) {
  uint16_t w;
  std::memcpy(&w, p, 2);
  return static_cast<uint16_t>(~w);
}

// Folds to 16 bits and returns them in network order (as LoadBe16 reads).
inline uint32_t Fold(Acc acc) {
  uint64_t lo = static_cast<uint64_t>(acc);
  const uint64_t hi = static_cast<uint64_t>(acc >> 64);
  lo += hi;
  lo += lo < hi;  // end-around carry
  lo = (lo & 0xffffffffu) + (lo >> 32);
  lo = (lo & 0xffffffffu) + (lo >> 32);
  uint32_t s = static_cast<uint32_t>((lo & 0xffff) + (lo >> 16));
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return __builtin_bswap16(static_cast<uint16_t>(s));
}

// TCP checksum over the pseudo-header sum `acc` and the segment, with the
// checksum field (offset 16) left out rather than required to be zero, in
// one pass over the segment.
inline uint16_t TcpChecksum(Acc acc, const uint8_t* tcp, size_t tcp_len) {
  acc = Sum(tcp, tcp_len, acc);
  acc += Minus16(tcp + 16);
  // Protocol and length: a 32-bit value in network order, added after the
  // fold in the same (network-order) domain.
  return ChecksumFinish(Fold(acc) + 6 + static_cast<uint32_t>(tcp_len));
}

}  // namespace

uint32_t ChecksumAccumulate(const void* data, size_t n, uint32_t sum) {
  return sum + Fold(Sum(static_cast<const uint8_t*>(data), n, 0));
}

uint16_t Ipv4HeaderChecksum(const uint8_t* ip, size_t ihl_bytes) {
  // The checksum field itself (offset 10) counts as zero.
  return ChecksumFinish(Fold(Sum(ip, ihl_bytes, 0) + Minus16(ip + 10)));
}

uint16_t TcpChecksumV4(const uint8_t src[4], const uint8_t dst[4], const uint8_t* tcp,
                       size_t tcp_len) {
  // RFC 9293 §3.1 pseudo-header: src, dst, zero, protocol, TCP length.
  uint32_t s, d;
  std::memcpy(&s, src, 4);
  std::memcpy(&d, dst, 4);
  return TcpChecksum(Acc{s} + d, tcp, tcp_len);
}

uint16_t TcpChecksumV6(const uint8_t src[16], const uint8_t dst[16], const uint8_t* tcp,
                       size_t tcp_len) {
  // RFC 8200 §8.1 pseudo-header: src, dst, upper-layer length, next header.
  return TcpChecksum(Sum(dst, 16, Sum(src, 16, 0)), tcp, tcp_len);
}

}  // namespace moat::net
