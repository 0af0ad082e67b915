#pragma once
// The SYN cache: a bounded, per-worker table of handshakes moat has
// answered but whose third ACK has not come yet (FreeBSD's syncache, Linux's
// request sockets). With an entry, the backend SYN carries the client's
// options exactly (MSS, window-scale shift, SACK, ECN setup), where the
// cookie alone rounds the MSS to 8 values, drops a small shift without
// timestamps and carries ECN only in a TSval; and moat retransmits its
// SYN-ACK like a listener (RFC 6298 §2: 1 s, then doubled).
//
// It never replaces the cookie: the SYN-ACK's ISN is still the keyed
// cookie, and the third ACK is always checked against it. The cache only
// adds what the cookie could not carry, so an ACK whose entry was evicted
// or expired validates exactly as in cookie-only mode (docs/design.md).
//
// Layout: buckets of kWays entries, picked by the flow table's keyed hash
// of the 4-tuple (seeded from the secret: nobody outside can aim SYNs at
// one bucket). Each bucket has a 16-byte row of 16-bit signatures (0 =
// free), so a lookup reads one signature row and then only the entries
// whose signature matches. A full bucket evicts its oldest entry (the
// per-bucket limit is kWays). Entries are 64 bytes, allocated once with the
// signature rows and a timer wheel for the retransmissions; nothing is
// allocated afterwards.
//
// Timers: one per entry, in a TimerWheel indexed by entry id: the first
// SYN-ACK retransmission kRetransmitNs[0] after the SYN, the second
// kRetransmitNs[1] after that, and expiry kLingerNs after the last. An
// entry's age is derived from its deadline and retry count, so the entry
// needs no birth time.
//
// Mode (FloodDetector below): while the SYN rate or the occupancy is
// high, the engine stops adding entries and answers with cookies only.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/flow/flow_key.h"
#include "moat/flow/timer_wheel.h"

namespace moat::proxy {

// SynCacheEntry::bits
inline constexpr uint8_t kSceV6 = 1 << 0;
inline constexpr uint8_t kSceSack = 1 << 1;       // client SACK-permitted (and moat agreed)
inline constexpr uint8_t kSceTs = 1 << 2;         // timestamps on the client leg
inline constexpr uint8_t kSceEcn = 1 << 3;        // ECN setup agreed (RFC 3168 §6.1.1)
inline constexpr uint8_t kSceFastOpen = 1 << 4;   // the SYN asked for a Fast Open cookie
inline constexpr uint8_t kSceVlanShift = 5;       // 2 bits: VLAN tag count
inline constexpr uint8_t kSceVlanMask = 3 << kSceVlanShift;
inline constexpr uint8_t kSceOuterQinQ = 1 << 7;  // tag 0's TPID is 0x88a8 (else 0x8100)
// SynCacheEntry::ws_retries
inline constexpr uint8_t kSceWsMask = 0x0f;  // client's shift 0..14; 0xf: no option
inline constexpr uint8_t kSceNoWs = 0x0f;
inline constexpr uint8_t kSceRetryShift = 4;  // 2 bits: SYN-ACK retransmissions so far
inline constexpr uint8_t kSceRetryMask = 3 << kSceRetryShift;
inline constexpr uint8_t kSceInnerQinQ = 1 << 6;  // tag 1's TPID is 0x88a8
inline constexpr uint8_t kSceFastOpenExp = 1 << 7;  // ... in the pre-RFC option (254/0xF989)

// One pending handshake: what the client's SYN said that the cookie cannot
// carry, and what a retransmitted SYN-ACK needs (addresses, L2 path).
// The first 36 bytes are laid out like flow::FlowKey's, so a key compares
// with one memcmp.
struct SynCacheEntry {
  uint8_t client_addr[16];  // IPv4 in the first 4 bytes, rest zero
  uint8_t server_addr[16];
  uint16_t client_port;  // host order
  uint16_t server_port;
  uint32_t client_isn;
  uint32_t client_tsval;  // the SYN's TSval (echoed by a retransmitted SYN-ACK)
  uint16_t mss;           // the client's MSS option; 0 = absent
  uint8_t client_mac[6];  // source MAC of the SYN
  uint8_t server_mac[6];  // its destination MAC
  uint16_t vlan_tci[2];
  uint8_t bits;        // kSce*
  uint8_t ws_retries;  // kSceWs*, kSceRetry*, kSceInnerQinQ

  bool Has(uint8_t b) const { return (bits & b) != 0; }
  bool v6() const { return Has(kSceV6); }
  uint8_t wscale() const { return ws_retries & kSceWsMask; }  // kSceNoWs: none
  uint8_t retries() const { return (ws_retries & kSceRetryMask) >> kSceRetryShift; }
  uint8_t vlan_count() const { return (bits & kSceVlanMask) >> kSceVlanShift; }
  bool SameKey(const flow::FlowKey& k) const {
    return std::memcmp(this, &k, 36) == 0 && (k.addr_len == 16) == v6();
  }
};
static_assert(sizeof(SynCacheEntry) == 64, "a SYN-cache entry is one cache line");
static_assert(offsetof(SynCacheEntry, client_port) == offsetof(flow::FlowKey, client_port) &&
                  offsetof(SynCacheEntry, server_port) == offsetof(flow::FlowKey, server_port),
              "entry and flow key share their first 36 bytes");

// Per-worker SYN-rate and occupancy watch with hysteresis. Time is cut into
// kWindowNs windows; the SYNs of the current window are counted as they
// come.
// - Enter cookie-only mode as soon as the current window holds more than
//   enter_rate * window SYNs, or the cache is at least kEnterOccupancyPct
//   full: no waiting for the window to end, a flood is acted on within
//   its first window.
// - Leave it after kHoldWindows consecutive windows each below
//   leave_rate * window SYNs with the cache below kLeaveOccupancyPct: one
//   calm second, so a pulsing flood does not flip the mode every window.
class FloodDetector {
 public:
  static constexpr uint64_t kWindowNs = 100'000'000;  // 100 ms
  static constexpr uint32_t kHoldWindows = 10;        // 1 s of calm to leave
  static constexpr uint32_t kEnterOccupancyPct = 75;
  static constexpr uint32_t kLeaveOccupancyPct = 25;

  FloodDetector(uint32_t enter_rate, uint32_t leave_rate, uint64_t now_ns);

  // Counts one SYN; true when the mode changed.
  bool OnSyn(uint64_t now_ns, uint32_t occupancy, uint32_t capacity) {
    bool changed = false;
    if (now_ns >= window_end_) [[unlikely]]
      changed = Roll(now_ns, occupancy, capacity);
    ++window_syns_;
    if (!cookie_only_ && (window_syns_ > enter_per_window_ ||
                          occupancy * 100ull >= uint64_t{kEnterOccupancyPct} * capacity)) {
      cookie_only_ = true;
      calm_windows_ = 0;
      changed = true;
    }
    return changed;
  }
  // From the timer tick, so calm is noticed without SYNs. True when the
  // mode changed.
  bool OnTick(uint64_t now_ns, uint32_t occupancy, uint32_t capacity) {
    return now_ns >= window_end_ && Roll(now_ns, occupancy, capacity);
  }
  bool cookie_only() const { return cookie_only_; }
  uint32_t window_syns() const { return window_syns_; }

 private:
  bool Roll(uint64_t now_ns, uint32_t occupancy, uint32_t capacity);

  uint64_t enter_per_window_;
  uint64_t leave_per_window_;
  uint64_t window_end_;
  uint32_t window_syns_ = 0;
  uint32_t calm_windows_ = 0;
  bool cookie_only_ = false;
};

class SynCache {
 public:
  static constexpr uint32_t kWays = 8;
  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr uint32_t kMaxEntries = 1u << 22;
  // SYN-ACK retransmissions (RFC 6298 §2.1: 1 s, doubled), then how long
  // the entry stays for a late third ACK before the cookie alone serves it.
  static constexpr uint64_t kRetransmitNs[2] = {1'000'000'000, 2'000'000'000};
  static constexpr uint64_t kLingerNs = 4'000'000'000;
  static constexpr uint8_t kMaxRetries = 2;

  // entries: rounded up to a multiple of kWays (a power-of-two bucket
  // count); 1..kMaxEntries.
  // Its arrays come from `mem` (flow/memory.h), zeroed at once.
  static absl::StatusOr<std::unique_ptr<SynCache>> Create(uint32_t entries, uint64_t now_ns,
                                                          const flow::MemoryHook& mem = {});
  // Bytes Create() allocates for `entries` (entries, signature rows, timer
  // wheel), for the start-up plan.
  static uint64_t MemoryBytes(uint32_t entries);
  // Of which its timer wheel.
  static uint64_t TimersBytes(uint32_t entries);
  static uint32_t BucketsFor(uint32_t entries);
  ~SynCache();
  SynCache(const SynCache&) = delete;
  SynCache& operator=(const SynCache&) = delete;

  // `hash` is the flow table's keyed hash of the key.
  uint32_t Find(const flow::FlowKey& key, uint32_t hash) const {
    const uint32_t b = hash & bucket_mask_;
    const uint16_t sig = Sig(hash);
    const uint16_t* row = sigs_[b].sig;
    for (uint32_t w = 0; w < kWays; ++w) {
      if (row[w] == sig && entries_[b * kWays + w].SameKey(key)) return b * kWays + w;
    }
    return kNone;
  }
  void Prefetch(uint32_t hash) const { __builtin_prefetch(&sigs_[hash & bucket_mask_]); }

  // A slot for `key` (absent: the caller missed in Find), with its key
  // fields set and the rest zero, timed from now_ns. A full bucket gives up
  // its oldest entry (*evicted = true).
  uint32_t Insert(const flow::FlowKey& key, uint32_t hash, uint64_t now_ns, bool* evicted);
  void Erase(uint32_t id);

  SynCacheEntry& At(uint32_t id) { return entries_[id]; }
  const SynCacheEntry& At(uint32_t id) const { return entries_[id]; }
  // The retry count goes into the entry; the timer to the next step.
  void ScheduleNext(uint32_t id, uint64_t birth_ns);
  // When the entry was made (its SYN), from its timer and retry count.
  uint64_t BirthNs(uint32_t id) const;

  // Fires due entry timers, at most `max`: on_expire(id) may Erase(id) or
  // ScheduleNext(id, ...).
  template <typename F>
  size_t Advance(uint64_t now_ns, F&& on_expire, size_t max) {
    return wheel_->Advance(now_ns, on_expire, max);
  }

  uint32_t size() const { return size_; }
  uint32_t capacity() const { return capacity_; }

 private:
  struct alignas(16) SigRow {
    uint16_t sig[kWays];  // 0: free
  };
  static_assert(sizeof(SigRow) == 16);

  SynCache(uint32_t capacity, const flow::MemoryHook& mem)
      : capacity_(capacity), bucket_mask_(capacity / kWays - 1), mem_(mem) {}
  static uint16_t Sig(uint32_t hash) { return static_cast<uint16_t>(hash >> 16) | 1; }

  const uint32_t capacity_;
  const uint32_t bucket_mask_;
  const flow::MemoryHook mem_;
  uint32_t size_ = 0;
  SynCacheEntry* entries_ = nullptr;
  SigRow* sigs_ = nullptr;
  std::unique_ptr<flow::TimerWheel> wheel_;
};

}  // namespace moat::proxy
