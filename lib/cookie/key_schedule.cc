#include "moat/cookie/key_schedule.h"

#include <algorithm>
#include <cstring>

namespace moat::cookie {
namespace {

void StoreLe64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }  // LE host

}  // namespace

KeySchedule::KeySchedule(const MasterSecret& secret, uint64_t rotation_ns, uint64_t slot_ns)
    : secret_(secret) {
  slot_ns_ = std::max(slot_ns, kMinSlotNs);
  // A cookie lives < 2 slots; a rotation period of at least that means it
  // crosses at most one rotation, and the previous key is still live.
  rotation_ns_ = std::max(rotation_ns, 2 * slot_ns_);
  Advance(0);
}

SipKey KeySchedule::DeriveKey(const MasterSecret& secret, uint64_t epoch) {
  // SipHash-2-4 keyed with the secret's first 16 bytes, over a label, the
  // epoch and the secret's last 16 bytes, so all 256 secret bits matter.
  // Two labels give the two key words. A PRF over distinct epochs gives
  // keys that say nothing about each other: a leaked epoch key reveals
  // neither the secret nor other epochs' keys.
  const SipKey kdf_key = SipKeyFromBytes(secret.bytes);
  uint8_t msg[16 + 8 + 16];
  std::memcpy(msg, "moat-cookie-k0\0\0", 16);
  StoreLe64(msg + 16, epoch);
  std::memcpy(msg + 24, secret.bytes + 16, 16);
  SipKey out;
  out.k0 = SipHash24(kdf_key, msg, sizeof(msg));
  msg[13] = '1';  // "moat-cookie-k1"
  out.k1 = SipHash24(kdf_key, msg, sizeof(msg));
  return out;
}

void KeySchedule::Advance(uint64_t now_ns) {
  slot_ = now_ns / slot_ns_;
  const uint64_t e = now_ns / rotation_ns_;
  const uint64_t slot_start = slot_ * slot_ns_;
  const uint64_t epoch_start = e * rotation_ns_;
  // A rotation inside a slot must be noticed too: the fast path in
  // Refresh stops at whichever boundary comes first, either way in time.
  this_ns_ = std::max(slot_start, epoch_start);
  next_ns_ = std::min(slot_start + slot_ns_, epoch_start + rotation_ns_);
  if (e == epoch_) return;
  // keys_[i] holds the key of whichever of epochs e and e-1 has parity i.
  // Stepping forward by one keeps the old current key as the previous.
  // (The constructor starts from epoch_ = ~0, where "+1" would wrap to 0:
  // have_keys_ makes sure the first call derives both. At e = 0 the
  // "previous" key is epoch ~0's, a secret key no cookie was made with, so
  // key id 1 then fails like any forgery instead of meeting a known key.)
  if (!have_keys_ || e != epoch_ + 1) keys_[(e - 1) & 1] = DeriveKey(secret_, e - 1);
  keys_[e & 1] = DeriveKey(secret_, e);
  epoch_ = e;
  have_keys_ = true;
}

}  // namespace moat::cookie
