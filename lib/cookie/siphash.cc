#include "moat/cookie/siphash.h"

#include <cstring>

namespace moat::cookie {

uint64_t SipHash24(const SipKey& key, const void* data, size_t len) {
  return internal::SipHash<2, 4>(key, data, len);
}

uint64_t SipHash13(const SipKey& key, const void* data, size_t len) {
  return internal::SipHash<1, 3>(key, data, len);
}

SipKey SipKeyFromBytes(const uint8_t bytes[16]) {
  SipKey k;
  std::memcpy(&k.k0, bytes, 8);  // little-endian host (static_assert in siphash.h)
  std::memcpy(&k.k1, bytes + 8, 8);
  return k;
}

}  // namespace moat::cookie
