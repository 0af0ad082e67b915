#pragma once
// SipHash (Aumasson & Bernstein, 2012): a keyed PRF fast on short inputs,
// which is exactly the cookie's job (20 to 44 bytes per SYN).

#include <cstddef>
#include <cstdint>

namespace moat::cookie {

struct SipKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// SipHash-2-4: the conservative variant, used for key derivation.
uint64_t SipHash24(const SipKey& key, const void* data, size_t len);
// SipHash-1-3: the per-packet PRF for cookies (see cookie.h for why).
uint64_t SipHash13(const SipKey& key, const void* data, size_t len);

}  // namespace moat::cookie
