// What moat has learned about each protected backend from its SYN-ACKs
// (docs/design.md, "Backends that differ from the flags").
//
// moat answers a client's SYN before the backend has said anything, so the
// flags (--mss, --timestamps, --sack, --ecn) are a guess at what the backend
// will agree to. A backend with timestamps off (Windows' default, many
// tuned hosts), SACK off or a smaller MSS (tunnels) then leaves clients with
// options it does not honour: a client that negotiated timestamps receives
// segments without them, which RFC 7323 §3.2 lets it drop. So each worker
// remembers, per backend (address, port), what its SYN-ACKs said to what
// moat asked, and offers later clients only that: no timestamps or SACK if
// the backend refused them, an MSS no larger than the backend's, no ECN if
// it refused ECN. The flags stay the upper bound. A SYN-ACK that disagrees
// updates the record; records older than the TTL are ignored, so a backend
// that was reconfigured is tried with the flags again.
//
// Fixed size (kBuckets x kWays entries of 32 bytes), per worker, no
// allocation after Create, oldest-first eviction within a bucket. Only
// completed cookie handshakes teach it, so a spoofed flood cannot.

#pragma once

#include <cstdint>
#include <cstring>

namespace moat::proxy {

struct BackendInfo {
  // Options moat asked the backend for and its SYN-ACK's answer, as bits:
  // `asked` says which are known, `has` which the backend agreed to.
  static constexpr uint8_t kTs = 1;
  static constexpr uint8_t kSack = 2;
  static constexpr uint8_t kEcn = 4;

  uint8_t addr[16];
  uint16_t port;      // host order
  uint8_t addr_len;   // 4 or 16; 0 = free
  uint8_t asked;
  uint8_t has;
  uint8_t unused;
  uint16_t mss;       // the SYN-ACK's MSS (RFC 9293 §3.7.1 default if absent)
  uint64_t learned_ns;

  // False only when the backend refused `bit` the last time moat asked.
  bool Allows(uint8_t bit) const { return !(asked & bit) || (has & bit); }
};
static_assert(sizeof(BackendInfo) == 32);

class BackendTable {
 public:
  static constexpr uint32_t kBuckets = 64;
  static constexpr uint32_t kWays = 4;
  static constexpr uint64_t kTtlNs = 600ull * 1'000'000'000;  // 10 min

  // The live record for a backend, or nullptr (none, or older than kTtlNs).
  const BackendInfo* Find(uint8_t addr_len, const uint8_t* addr, uint16_t port,
                          uint64_t now_ns) const {
    const BackendInfo* b = Bucket(addr_len, addr, port);
    for (uint32_t w = 0; w < kWays; ++w) {
      if (Same(b[w], addr_len, addr, port)) {
        return now_ns - b[w].learned_ns < kTtlNs ? &b[w] : nullptr;
      }
    }
    return nullptr;
  }

  // Records a SYN-ACK's answer: `asked` the option bits moat's SYN carried,
  // `has` those the SYN-ACK agreed to. Returns true when this changed what
  // moat knew (a new backend, or a changed answer).
  bool Learn(uint8_t addr_len, const uint8_t* addr, uint16_t port, uint8_t asked, uint8_t has,
             uint16_t mss, uint64_t now_ns) {
    BackendInfo* b = Bucket(addr_len, addr, port);
    BackendInfo* slot = nullptr;
    for (uint32_t w = 0; w < kWays; ++w) {
      if (Same(b[w], addr_len, addr, port)) {
        slot = &b[w];
        break;
      }
    }
    bool changed = false;
    if (slot == nullptr) {
      // A free way, else the one learned longest ago.
      slot = &b[0];
      for (uint32_t w = 0; w < kWays && slot->addr_len != 0; ++w) {
        if (b[w].addr_len == 0 || b[w].learned_ns < slot->learned_ns) slot = &b[w];
      }
      if (slot->addr_len == 0) ++size_;
      std::memset(slot, 0, sizeof(*slot));
      std::memcpy(slot->addr, addr, addr_len);
      slot->addr_len = addr_len;
      slot->port = port;
      changed = true;
    } else if (now_ns - slot->learned_ns >= kTtlNs) {
      slot->asked = 0;  // expired: start again
      changed = true;
    }
    // What moat did not ask this time stays as it was known.
    const uint8_t has_now = static_cast<uint8_t>((slot->has & ~asked) | (has & asked));
    changed |= has_now != slot->has || (slot->asked | asked) != slot->asked || slot->mss != mss;
    slot->asked |= asked;
    slot->has = has_now;
    slot->mss = mss;
    slot->learned_ns = now_ns;
    return changed;
  }

  uint32_t size() const { return size_; }
  // Every slot, free ones with addr_len 0 (for telemetry and tests).
  const BackendInfo* slots() const { return slots_; }
  static constexpr uint32_t capacity() { return kBuckets * kWays; }

 private:
  static bool Same(const BackendInfo& e, uint8_t addr_len, const uint8_t* addr, uint16_t port) {
    return e.addr_len == addr_len && e.port == port && std::memcmp(e.addr, addr, addr_len) == 0;
  }
  BackendInfo* Bucket(uint8_t addr_len, const uint8_t* addr, uint16_t port) {
    return &slots_[BucketOf(addr_len, addr, port) * kWays];
  }
  const BackendInfo* Bucket(uint8_t addr_len, const uint8_t* addr, uint16_t port) const {
    return &slots_[BucketOf(addr_len, addr, port) * kWays];
  }
  // Backends are the operator's protected services, not attacker-chosen
  // keys, so a plain multiplicative hash is enough.
  static uint32_t BucketOf(uint8_t addr_len, const uint8_t* addr, uint16_t port) {
    uint64_t h = port;
    for (uint8_t i = 0; i < addr_len; i += 4) {
      uint32_t w;
      std::memcpy(&w, addr + i, 4);
      h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    }
    return static_cast<uint32_t>(h >> 58) % kBuckets;
  }

  alignas(64) BackendInfo slots_[kBuckets * kWays] = {};
  uint32_t size_ = 0;
};

}  // namespace moat::proxy
