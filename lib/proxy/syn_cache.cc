// The SYN cache's table and the flood detector (include/moat/proxy/
// syn_cache.h). The engine's use of them (entries from SYNs, exact options
// for the third ACK, SYN-ACK retransmission, the mode switch) is in
// syn_answer.cc.

#include "moat/proxy/syn_cache.h"

#include <cstdlib>
#include <new>

#include "absl/strings/str_cat.h"

namespace moat::proxy {

namespace {

// 1 ms ticks; 4096 slots span 4 s, every deadline here is at most 4 s out.
constexpr uint64_t kTickNs = 1'000'000;
constexpr uint32_t kWheelSlots = 4096;

// Time from the SYN to the deadline of an entry that has made `retries`
// retransmissions.
constexpr uint64_t kDeadlineOffset[SynCache::kMaxRetries + 1] = {
    SynCache::kRetransmitNs[0],
    SynCache::kRetransmitNs[0] + SynCache::kRetransmitNs[1],
    SynCache::kRetransmitNs[0] + SynCache::kRetransmitNs[1] + SynCache::kLingerNs,
};

}  // namespace

// ---------------------------------------------------------------------------
// FloodDetector

FloodDetector::FloodDetector(uint32_t enter_rate, uint32_t leave_rate, uint64_t now_ns)
    : enter_per_window_(uint64_t{enter_rate} * kWindowNs / 1'000'000'000),
      leave_per_window_(uint64_t{leave_rate} * kWindowNs / 1'000'000'000),
      window_end_(now_ns + kWindowNs) {}

bool FloodDetector::Roll(uint64_t now_ns, uint32_t occupancy, uint32_t capacity) {
  // The window that just ended, then any empty ones after it (a quiet
  // worker sees no SYN for a while: those windows were calm too).
  const uint64_t ended = 1 + (now_ns - window_end_) / kWindowNs;
  const bool calm = window_syns_ <= leave_per_window_ &&
                    occupancy * 100ull < uint64_t{kLeaveOccupancyPct} * capacity;
  window_end_ += ended * kWindowNs;
  window_syns_ = 0;
  if (!cookie_only_) return false;
  if (!calm) {
    calm_windows_ = 0;
    return false;
  }
  // The ended window was calm; windows after it had no SYN at all.
  calm_windows_ += static_cast<uint32_t>(ended < kHoldWindows ? ended : kHoldWindows);
  if (calm_windows_ < kHoldWindows) return false;
  cookie_only_ = false;
  calm_windows_ = 0;
  return true;
}

// ---------------------------------------------------------------------------
// SynCache

uint32_t SynCache::BucketsFor(uint32_t entries) {
  uint32_t buckets = 1;
  while (buckets * kWays < entries) buckets <<= 1;
  return buckets;
}

uint64_t SynCache::MemoryBytes(uint32_t entries) {
  const uint64_t n = uint64_t{BucketsFor(entries)} * kWays;
  // Entries and signature rows (one spare row: a prefetch may read past the
  // last), plus the wheel (TimersBytes).
  return flow::RoundToLine(n * sizeof(SynCacheEntry)) +
         flow::RoundToLine((n / kWays) * sizeof(SigRow) + 64) + TimersBytes(entries);
}

uint64_t SynCache::TimersBytes(uint32_t entries) {
  return flow::TimerWheel::MemoryBytes(BucketsFor(entries) * kWays, kWheelSlots);
}

absl::StatusOr<std::unique_ptr<SynCache>> SynCache::Create(uint32_t entries, uint64_t now_ns,
                                                           const flow::MemoryHook& mem) {
  if (entries == 0 || entries > kMaxEntries) {
    return absl::InvalidArgumentError(absl::StrCat("--syn_cache_entries=", entries,
                                                   " is out of range [1, ", kMaxEntries, "]"));
  }
  const uint32_t n = BucketsFor(entries) * kWays;
  std::unique_ptr<SynCache> c(new (std::nothrow) SynCache(n, mem));
  if (!c) return absl::ResourceExhaustedError("cannot allocate the SYN cache");
  // Zeroed (and so touched) by the hook.
  c->entries_ = mem.AllocateArray<SynCacheEntry>(n, flow::MemoryUse::kSynCache);
  c->sigs_ = static_cast<SigRow*>(
      mem.Allocate((n / kWays) * sizeof(SigRow) + 64, flow::MemoryUse::kSynCache));
  if (c->entries_ == nullptr || c->sigs_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a SYN cache of ", n, " entries (", MemoryBytes(n) >> 10,
                     " KiB); lower --syn_cache_entries"));
  }
  auto wheel = flow::TimerWheel::Create(n, kTickNs, now_ns, kWheelSlots, mem,
                                        flow::MemoryUse::kSynCacheTimers);
  if (!wheel.ok()) return wheel.status();
  c->wheel_ = std::move(*wheel);
  return c;
}

SynCache::~SynCache() {
  mem_.Release(entries_);
  mem_.Release(sigs_);
}

uint32_t SynCache::Insert(const flow::FlowKey& key, uint32_t hash, uint64_t now_ns,
                          bool* evicted) {
  const uint32_t b = hash & bucket_mask_;
  uint16_t* row = sigs_[b].sig;
  uint32_t way = kWays;
  for (uint32_t w = 0; w < kWays; ++w) {
    if (row[w] == 0) {
      way = w;
      break;
    }
  }
  *evicted = false;
  if (way == kWays) {
    // Per-bucket limit: the oldest handshake goes. It was answered with a
    // cookie, so its ACK, if it ever comes, still validates (with the
    // cookie's options).
    uint64_t oldest = ~0ull;
    for (uint32_t w = 0; w < kWays; ++w) {
      const uint64_t birth = BirthNs(b * kWays + w);
      if (birth < oldest) {
        oldest = birth;
        way = w;
      }
    }
    Erase(b * kWays + way);
    *evicted = true;
  }
  const uint32_t id = b * kWays + way;
  row[way] = Sig(hash);
  ++size_;
  SynCacheEntry& e = entries_[id];
  std::memset(&e, 0, sizeof(e));
  std::memcpy(&e, &key, 36);
  if (key.addr_len == 16) e.bits = kSceV6;
  ScheduleNext(id, now_ns);
  return id;
}

void SynCache::Erase(uint32_t id) {
  sigs_[id / kWays].sig[id % kWays] = 0;
  wheel_->Cancel(id);
  --size_;
}

void SynCache::ScheduleNext(uint32_t id, uint64_t birth_ns) {
  wheel_->Schedule(id, birth_ns + kDeadlineOffset[entries_[id].retries()]);
}

uint64_t SynCache::BirthNs(uint32_t id) const {
  return wheel_->Deadline(id) - kDeadlineOffset[entries_[id].retries()];
}

}  // namespace moat::proxy
