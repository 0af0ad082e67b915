#include "moat/cookie/fastopen.h"

#include <cstring>

namespace moat::cookie {

SipKey FastOpenCodec::DeriveKey(const SipKey& epoch_key) {
  // Two labels, one per key word; distinct from anything the SYN-cookie
  // MAC hashes (those inputs are 23 or 47 bytes, these 16).
  uint8_t msg[16];
  std::memcpy(msg, "moat-tfo-key-k0\0", 16);
  SipKey k;
  k.k0 = SipHash24(epoch_key, msg, sizeof(msg));
  msg[14] = '1';
  k.k1 = SipHash24(epoch_key, msg, sizeof(msg));
  return k;
}

const SipKey& FastOpenCodec::KeyFor(uint64_t epoch) {
  const size_t i = epoch & 1;
  if (cached_epoch_[i] != epoch) {
    const SipKey* k = keys_->KeyFor(epoch);
    // Only the current and previous epochs are asked for, which the
    // schedule always holds.
    cached_[i] = DeriveKey(k != nullptr ? *k : keys_->current_key());
    cached_epoch_[i] = epoch;
  }
  return cached_[i];
}

uint64_t FastOpenCodec::Mac(uint64_t epoch, uint8_t addr_len, const uint8_t* client_addr) {
  uint8_t msg[17];
  msg[0] = addr_len;
  std::memcpy(msg + 1, client_addr, addr_len);
  return SipHash24(KeyFor(epoch), msg, 1u + addr_len);
}

void FastOpenCodec::Make(uint8_t addr_len, const uint8_t* client_addr,
                         uint8_t out[kFastOpenCookieLen]) {
  const uint64_t epoch = keys_->epoch();
  const uint64_t c = (Mac(epoch, addr_len, client_addr) & ~1ull) | (epoch & 1);
  std::memcpy(out, &c, kFastOpenCookieLen);
}

bool FastOpenCodec::Check(uint8_t addr_len, const uint8_t* client_addr, const uint8_t* cookie,
                          uint8_t len) {
  if (len != kFastOpenCookieLen) return false;
  uint64_t c;
  std::memcpy(&c, cookie, kFastOpenCookieLen);
  const uint64_t epoch = keys_->epoch();
  // The parity bit names the epoch: the current one, or the one before.
  const uint64_t e = (c & 1) == (epoch & 1) ? epoch : epoch - 1;
  if (e != epoch && epoch == 0) return false;
  return ((Mac(e, addr_len, client_addr) & ~1ull) | (e & 1)) == c;
}

}  // namespace moat::cookie
