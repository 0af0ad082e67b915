#include "moat/cookie/key_schedule.h"

#include <cstring>

namespace moat::cookie {

KeySchedule::KeySchedule(const MasterSecret& secret, uint64_t rotation_ns, uint64_t slot_ns)
    : secret_(secret),
      rotation_ns_(rotation_ns ? rotation_ns : kDefaultRotationSeconds * kNsPerSecond),
      slot_ns_(slot_ns ? slot_ns : kSlotSeconds * kNsPerSecond) {
  Advance(0);
}

SipKey KeySchedule::DeriveKey(const MasterSecret& secret, uint64_t epoch) {
  // KDF: SipHash-2-4 keyed with the secret's first half over a label, the
  // epoch and the secret's second half; two labels give the two key words.
  // All 256 secret bits matter and epochs give independent-looking keys.
  SipKey k;
  std::memcpy(&k.k0, secret.bytes, 8);
  std::memcpy(&k.k1, secret.bytes + 8, 8);
  uint8_t msg[16 + 8 + 16];
  std::memcpy(msg, "moat-cookie-key", 16);  // 15 chars + NUL
  std::memcpy(msg + 16, &epoch, 8);
  std::memcpy(msg + 24, secret.bytes + 16, 16);
  SipKey out;
  msg[15] = 0;
  out.k0 = SipHash24(k, msg, sizeof(msg));
  msg[15] = 1;
  out.k1 = SipHash24(k, msg, sizeof(msg));
  return out;
}

void KeySchedule::Advance(uint64_t now_ns) {
  slot_ = now_ns / slot_ns_;
  this_ns_ = slot_ * slot_ns_;
  next_ns_ = this_ns_ + slot_ns_;
  const uint64_t e = now_ns / rotation_ns_;
  // A rotation inside a slot must be noticed too: stop the fast path at
  // whichever boundary comes first.
  const uint64_t next_epoch_ns = (e + 1) * rotation_ns_;
  if (next_epoch_ns < next_ns_) next_ns_ = next_epoch_ns;
  if (e == epoch_) return;
  keys_[e & 1] = DeriveKey(secret_, e);
  if (e > 0) keys_[(e - 1) & 1] = DeriveKey(secret_, e - 1);
  epoch_ = e;
}

}  // namespace moat::cookie
