#pragma once
// TCP Fast Open cookies (RFC 7413 §4.1.2): moat is the Fast Open server for
// the services it protects. A cookie is 8 bytes, a MAC of the client's IP
// address only (not its port: a client reuses one cookie for every
// connection to the server, RFC 7413 §4.1.1), so it proves that the client
// once received a SYN-ACK at that address.
//
// Keys come from the SYN-cookie key schedule (key_schedule.h): for each
// rotation epoch, the epoch's key is stretched with a label of its own
// (DeriveKey below), so the Fast Open key differs from the SYN-cookie key
// yet every instance that shares --cookie_secret_file agrees on it, and a
// rotation keeps the previous epoch's cookies valid, like SYN cookies. The
// cookie's lowest bit is the epoch parity, so a check computes one MAC.
// A cookie thus lives one to two rotation periods (1-2 h by default);
// Linux's server keys live until changed by hand.
//
// The MAC is SipHash-2-4 over the address family and address: 63 bits of
// tag, far beyond what a blind attacker can guess, and computed only for
// SYNs that carry a Fast Open option.

#include <cstdint>

#include "moat/cookie/key_schedule.h"
#include "moat/cookie/siphash.h"

namespace moat::cookie {

inline constexpr uint8_t kFastOpenCookieLen = 8;

class FastOpenCodec {
 public:
  // keys must outlive the codec; the caller refreshes them (the engine does
  // per packet through the SYN-cookie codec and per tick).
  explicit FastOpenCodec(const KeySchedule* keys) : keys_(keys) {}

  // The cookie for a client address (4 or 16 bytes), under the current
  // epoch's key, as the 8 bytes that go on the wire.
  void Make(uint8_t addr_len, const uint8_t* client_addr, uint8_t out[kFastOpenCookieLen]);
  // True when `cookie` (of `len` bytes) is what Make gave this address in
  // the current or the previous epoch.
  bool Check(uint8_t addr_len, const uint8_t* client_addr, const uint8_t* cookie, uint8_t len);

  // The epoch's Fast Open key: SipHash-2-4 under the epoch's SYN-cookie key
  // over a label. Pinned by a known-answer test (a fleet must agree).
  static SipKey DeriveKey(const SipKey& epoch_key);

 private:
  uint64_t Mac(uint64_t epoch, uint8_t addr_len, const uint8_t* client_addr);
  const SipKey& KeyFor(uint64_t epoch);

  const KeySchedule* keys_;
  // Derived keys cached by epoch parity (one derivation per epoch).
  uint64_t cached_epoch_[2] = {~0ull, ~0ull};
  SipKey cached_[2] = {};
};

}  // namespace moat::cookie
