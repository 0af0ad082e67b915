#pragma once
// Cookie keys as a pure function of (master secret, time): every worker and
// every moat instance that shares the secret derives the same key for the
// same epoch with no communication, which is what a fleet behind ECMP needs
// (the SYN-ACK may come from one box and the ACK land on another). For that
// the instances need the same secret, the same rotation period and slot
// length (the defaults), and clocks that agree to well under a slot: now_ns
// is wall-clock time (CLOCK_REALTIME), not time since boot.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "moat/cookie/siphash.h"

namespace moat::cookie {

inline constexpr size_t kSecretBytes = 32;
inline constexpr uint64_t kNsPerSecond = 1'000'000'000ull;
inline constexpr uint64_t kSlotSeconds = 60;
inline constexpr uint64_t kDefaultRotationSeconds = 3600;
// The MAC carries the slot number in 48 bits; a slot of at least 1 ms
// keeps every uint64 nanosecond time below 2^45 slots, so it is exact.
inline constexpr uint64_t kMinSlotNs = 1'000'000;

struct MasterSecret {
  uint8_t bytes[kSecretBytes] = {};
};

// The first 32 bytes of the file are the secret, used as raw bytes (a hex
// file would work but carry half the entropy: make it with
// `head -c 32 /dev/urandom > FILE && chmod 600 FILE`). Bytes past 32 are
// ignored. Refused, with the path and the fix in the message: missing or
// unreadable, not a regular file, shorter than 32 bytes, or readable or
// writable by group or others (mode & 077: whoever reads the secret can
// mint cookies for every instance of the fleet).
absl::StatusOr<MasterSecret> LoadSecretFile(const std::string& path);
// From getrandom(2) (falling back to /dev/urandom); used when no file is
// given, which is right for a single instance. Aborts if the kernel gives
// no randomness at all: a predictable secret is worse than not starting.
MasterSecret RandomSecret();

class KeySchedule {
 public:
  // rotation_ns is raised to at least 2 * slot_ns so that a cookie (which
  // lives < 2 slots) never spans more than one rotation, and slot_ns to at
  // least kMinSlotNs.
  explicit KeySchedule(const MasterSecret& secret,
                       uint64_t rotation_ns = kDefaultRotationSeconds * kNsPerSecond,
                       uint64_t slot_ns = kSlotSeconds * kNsPerSecond);

  // Moves to the slot and epoch of now_ns, re-deriving keys when the epoch
  // changed. A single compare until the next slot or epoch boundary, so the
  // hot path calls it per packet without a division.
  void Refresh(uint64_t now_ns) {
    if (now_ns >= next_ns_ || now_ns < this_ns_) [[unlikely]]
      Advance(now_ns);
  }

  uint64_t epoch() const { return epoch_; }
  uint64_t slot() const { return slot_; }
  uint64_t slot_ns() const { return slot_ns_; }
  uint64_t rotation_ns() const { return rotation_ns_; }

  // The key id of a cookie is the parity of its epoch. keys_[i] always
  // holds the key of whichever of {current, previous} epoch has parity i,
  // so the validator picks the key by the id bit with no branch.
  uint32_t current_key_id() const { return static_cast<uint32_t>(epoch_ & 1); }
  const SipKey& current_key() const { return keys_[epoch_ & 1]; }
  const SipKey& KeyForId(uint32_t key_id) const { return keys_[key_id & 1]; }

  // The key for `epoch` if it is the current or the previous one (after
  // Refresh), else nullptr.
  const SipKey* KeyFor(uint64_t epoch) const {
    if (epoch == epoch_ || epoch + 1 == epoch_) return &keys_[epoch & 1];
    return nullptr;
  }

  // KDF: SipHash-2-4 keyed by the secret over a label and the epoch.
  // Public and pinned by a known-answer test: changing it breaks fleets
  // that mix versions.
  static SipKey DeriveKey(const MasterSecret& secret, uint64_t epoch);

 private:
  void Advance(uint64_t now_ns);

  MasterSecret secret_;
  uint64_t rotation_ns_;
  uint64_t slot_ns_;
  uint64_t epoch_ = ~0ull;
  uint64_t slot_ = 0;
  uint64_t this_ns_ = 0;  // start of the current slot (or epoch, if later)
  uint64_t next_ns_ = 0;  // next slot or epoch boundary, whichever is first
  bool have_keys_ = false;
  SipKey keys_[2];
};

}  // namespace moat::cookie
