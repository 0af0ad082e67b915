#pragma once
// Cookie keys as a pure function of (master secret, time): every worker and
// every moat instance that shares the secret derives the same key for the
// same epoch with no communication, which is what a fleet behind ECMP needs
// (the SYN-ACK may come from one box and the ACK land on another).

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "moat/cookie/siphash.h"

namespace moat::cookie {

inline constexpr size_t kSecretBytes = 32;
inline constexpr uint64_t kNsPerSecond = 1'000'000'000ull;
inline constexpr uint64_t kSlotSeconds = 60;
inline constexpr uint64_t kDefaultRotationSeconds = 3600;

struct MasterSecret {
  uint8_t bytes[kSecretBytes] = {};
};

// The first 32 bytes of the file are the secret. Refused, with the path and
// the fix in the message: missing or unreadable, shorter than 32 bytes, or
// readable by group or others (a leaked secret lets anyone mint cookies).
absl::StatusOr<MasterSecret> LoadSecretFile(const std::string& path);
// From getrandom(2); used when no file is given (a single instance).
MasterSecret RandomSecret();

class KeySchedule {
 public:
  explicit KeySchedule(const MasterSecret& secret,
                       uint64_t rotation_ns = kDefaultRotationSeconds * kNsPerSecond,
                       uint64_t slot_ns = kSlotSeconds * kNsPerSecond);

  // Moves to the slot and epoch of now_ns, re-deriving keys when the epoch
  // changed. A single compare until the next slot boundary, so the hot path
  // can call it per packet without a division.
  void Refresh(uint64_t now_ns) {
    if (now_ns >= next_ns_ || now_ns < this_ns_) Advance(now_ns);
  }

  uint64_t epoch() const { return epoch_; }
  uint64_t slot() const { return slot_; }
  uint64_t slot_ns() const { return slot_ns_; }
  uint64_t rotation_ns() const { return rotation_ns_; }

  // The key for `epoch` if it is the current or the previous one (after
  // Refresh), else nullptr.
  const SipKey* KeyFor(uint64_t epoch) const {
    if (epoch == epoch_) return &keys_[epoch & 1];
    if (epoch + 1 == epoch_) return &keys_[epoch & 1];
    return nullptr;
  }

  static SipKey DeriveKey(const MasterSecret& secret, uint64_t epoch);

 private:
  void Advance(uint64_t now_ns);

  MasterSecret secret_;
  uint64_t rotation_ns_;
  uint64_t slot_ns_;
  uint64_t epoch_ = ~0ull;
  uint64_t slot_ = 0;
  uint64_t this_ns_ = 0;  // start of the current slot
  uint64_t next_ns_ = 0;  // start of the next one
  SipKey keys_[2];
};

}  // namespace moat::cookie
