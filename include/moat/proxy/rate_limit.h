#pragma once
// Anti-reflection: a cap on the SYN-ACKs moat sends towards one client
// source prefix. moat answers every SYN for a protected service, so a flood
// of SYNs spoofed from a victim's addresses would make moat send the victim
// one SYN-ACK per SYN (RFC 4987 §3.6 leaves SYN cookies stateless, which is
// what makes them reflectable). With --synack_rate=N each source prefix
// (--synack_prefix_v4/--synack_prefix_v6) gets at most N SYN-ACKs a second,
// in bursts of at most N; the excess SYNs are dropped (drop_synack_rate).
//
// Structure: a fixed array of token buckets indexed by a keyed hash of the
// prefix, not a map of prefixes. Why, against the alternatives:
//   - A table keyed by prefix would grow with the number of prefixes, and
//     a random-source flood brings all of them (2^24 IPv4 /24s): either
//     memory grows, or entries are evicted and an attacker's churn resets
//     every bucket it evicts.
//   - A count-min sketch bounds memory too, but estimates a rate with d
//     hashes and d memory lines per SYN, and needs windows rather than
//     smooth refill; its advantage (fewer false positives from collisions)
//     matters only when the array is small relative to the flood.
//   - Hashed buckets cost one hash and one 8-byte read-modify-write per SYN.
//     Prefixes that collide share a bucket, which errs towards limiting:
//     a bucket is never more permissive than N for any prefix in it. The
//     hash is keyed with a per-worker secret seed, so an attacker cannot
//     choose spoofed prefixes that land in a given client's bucket. Under
//     a random-source flood of R SYN/s per worker each bucket sees about
//     R / buckets of it; legitimate prefixes are unaffected while that
//     stays well below N (65536 buckets, N = 100: up to ~6.5 M SYN/s).
//
// Each bucket is one 64-bit word: the "theoretical arrival time" of the
// generic cell rate algorithm (ITU-T I.371), which is a token bucket stored
// as a time instead of a count. With interval T = 1 s / N and tolerance
// tau = (burst - 1) * T, a SYN at time t is admitted when
// max(TAT, t) - t <= tau, and then TAT = max(TAT, t) + T. That is exactly
// a bucket of `burst` tokens refilled at N per second, with no division
// and no separate refill step on the packet path. Time is the engine's
// now_ns (wall clock); a TAT further ahead than tau + T can only come from
// the clock stepping back, and is treated as a fresh bucket.
//
// Memory: buckets x 8 bytes, fixed at Create() (64 Ki buckets: 512 KiB per
// worker), whatever the number of prefixes. No allocation, no lock after
// Create(); one instance per engine (worker).

#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/flow/flow_key.h"
#include "moat/flow/memory.h"

namespace moat::proxy {

class SynRateLimiter {
 public:
  // `buckets` a power of two (ValidatePolicy checks it); `seed` keys the hash.
  // The buckets come from `mem` (flow/memory.h), zeroed at once.
  static absl::StatusOr<std::unique_ptr<SynRateLimiter>> Create(
      uint32_t buckets, uint64_t seed, const flow::MemoryHook& mem = {});
  ~SynRateLimiter();
  SynRateLimiter(const SynRateLimiter&) = delete;
  SynRateLimiter& operator=(const SynRateLimiter&) = delete;
  // Bytes Create() allocates, exactly.
  static uint64_t MemoryBytes(uint32_t buckets) {
    return flow::RoundToLine(uint64_t{buckets} * sizeof(uint64_t));
  }

  // Rate in SYN-ACKs per second per prefix (0 = off), bursts of up to
  // `rate`, and the prefix lengths that group sources. Keeps the buckets:
  // a rate change applies to the state they already hold.
  void Configure(uint32_t rate, uint8_t prefix_v4, uint8_t prefix_v6);

  bool enabled() const { return interval_ns_ != 0; }

  // One SYN from source `addr` (4 or 16 bytes) at `now_ns`: true when a
  // SYN-ACK may go, false when this prefix is over its rate.
  bool Admit(uint8_t addr_len, const uint8_t* addr, uint64_t now_ns) {
    uint64_t& tat = tat_[BucketOf(addr_len, addr)];
    uint64_t t = tat > now_ns ? tat : now_ns;
    if (t - now_ns > tolerance_ns_) {
      // Over the rate, or the wall clock stepped back (see above).
      if (t - now_ns <= tolerance_ns_ + interval_ns_) return false;
      t = now_ns;
    }
    tat = t + interval_ns_;
    return true;
  }

  // Starts loading the source's bucket: a random-source flood touches a
  // random line of the array per SYN, a cache miss unless the burst's
  // classification stage fetched it (Engine::Classify) while earlier SYNs
  // were being answered.
  void Prefetch(uint8_t addr_len, const uint8_t* addr) const {
    __builtin_prefetch(&tat_[BucketOf(addr_len, addr)], 1);
  }

  // Which bucket a source falls into (tests: collisions, independence).
  uint32_t BucketOf(uint8_t addr_len, const uint8_t* addr) const {
    uint64_t w0 = 0, w1 = 0;
    if (addr_len == 16) {
      std::memcpy(&w0, addr, 8);
      std::memcpy(&w1, addr + 8, 8);
      w0 &= mask_v6_[0];
      w1 &= mask_v6_[1];
    } else {
      uint32_t a;
      std::memcpy(&a, addr, 4);
      w0 = a & mask_v4_;
    }
    // The flow table's keyed multiply-fold (flow_key.h says why a secret
    // seed is what matters, not a PRF), one round for a key of at most two
    // words, then its avalanche; a seed of this limiter's own. The family
    // is in the key, so an IPv4 and an IPv6 prefix differ in it.
    using flow::internal::Finish;
    using flow::internal::Mix;
    const uint64_t h =
        Finish(Mix(w0 ^ seed_ ^ flow::internal::kP0, w1 ^ seed2_ ^ (uint64_t{addr_len} << 56)));
    return static_cast<uint32_t>(h >> 32) & mask_;
  }

  uint32_t buckets() const { return mask_ + 1; }
  size_t memory_bytes() const { return static_cast<size_t>(buckets()) * sizeof(uint64_t); }
  uint64_t interval_ns() const { return interval_ns_; }

 private:
  SynRateLimiter(uint32_t buckets, uint64_t seed, const flow::MemoryHook& mem);

  uint64_t* tat_ = nullptr;  // per bucket: theoretical arrival time (ns), 0 = idle
  flow::MemoryHook mem_;
  uint32_t mask_;
  uint64_t seed_;
  uint64_t seed2_;                  // a second use of the seed for the second word
  uint64_t interval_ns_ = 0;        // 1 s / rate; 0 = off
  uint64_t tolerance_ns_ = 0;       // (burst - 1) * interval
  uint32_t mask_v4_ = 0xffffffffu;  // prefix masks in address byte order, as native words
  uint64_t mask_v6_[2] = {~0ull, ~0ull};
};

}  // namespace moat::proxy
