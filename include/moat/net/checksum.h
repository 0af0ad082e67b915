#pragma once
// Internet checksum (RFC 1071) and its incremental update (RFC 1624).
// Checksum values are always "the 16 bits as stored in the packet, read with
// LoadBe16", so callers never juggle byte orders.

#include <cstddef>
#include <cstdint>

namespace moat::net {

// One's-complement sum of `n` bytes in network order, added to `sum`. The
// result is unfolded: pass it on to more calls, then to ChecksumFinish.
// `n` may be odd only for the last chunk of a sum.
uint32_t ChecksumAccumulate(const void* p, size_t n, uint32_t sum = 0);

// Folds to 16 bits and complements: the value to store in the header.
inline uint16_t ChecksumFinish(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t Ipv4HeaderChecksum(const uint8_t* ip, size_t ihl_bytes);
uint16_t TcpChecksumV4(const uint8_t src[4], const uint8_t dst[4], const uint8_t* tcp,
                       size_t tcp_len);
uint16_t TcpChecksumV6(const uint8_t src[16], const uint8_t dst[16], const uint8_t* tcp,
                       size_t tcp_len);

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Unlike eqn. 2 it never produces
// 0xFFFF from a valid sum where the full computation gives 0x0000 (§3).
inline uint16_t ChecksumUpdate16(uint16_t csum, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = static_cast<uint16_t>(~csum) + static_cast<uint32_t>(static_cast<uint16_t>(~old_word)) + new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline uint16_t ChecksumUpdate32(uint16_t csum, uint32_t old_value, uint32_t new_value) {
  uint32_t sum = static_cast<uint16_t>(~csum);
  sum += static_cast<uint16_t>(~(old_value >> 16)) + static_cast<uint16_t>(~old_value & 0xffff);
  sum += (new_value >> 16) + (new_value & 0xffff);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace moat::net
