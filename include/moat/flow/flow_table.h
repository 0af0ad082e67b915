#pragma once
// Fixed-capacity flow table, one per worker: allocated once in Create(),
// never resized, never rehashed, never locked, no allocation afterwards.
//
// Index: open addressing over 8-byte buckets {32-bit hash signature, value
// index + 1}, sized to a power of two >= capacity / 0.75 so the load factor
// never exceeds 0.75, linear probing. A bucket holds the full 32-bit hash,
// so a probe compares the 40-byte key only on a signature match. Erase
// shifts the rest of the run back into the hole (Knuth, TAOCP vol. 3,
// 6.4 Algorithm R) instead of leaving a tombstone, so any amount of
// insert/erase churn (a SYN flood completing and closing) leaves the
// index exactly as if the survivors had been inserted fresh: lookups never
// degrade and nothing ever needs a rehash.
//
// Values live in a separate dense array, 64-byte aligned so a value of one
// or two cache lines never straddles a third, indexed by a 32-bit id that
// the timer wheel and the engine use to name a flow. Free ids sit on a
// stack; the lowest ids go out first so a lightly loaded table stays
// compact in cache.
//
// Hashing: Hash(key) is keyed with the table's seed (see HashFlowKey). The
// caller computes the hash once per packet (and may Prefetch() it a few
// packets ahead in a burst) and passes it to Find and Insert; Insert
// records it, so Erase never rehashes and any hash function the caller
// uses consistently works.
//
// Full table: Insert returns nullptr. The caller (the engine) must then
// refuse the flow: count it (drop_flow_table_full) and send the client a
// RST, so the client fails fast instead of retransmitting into a black
// hole. Nothing is evicted to make room: evicting would let a flood of
// valid-cookie handshakes push out established connections.

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "moat/flow/flow_key.h"
#include "moat/flow/memory.h"

namespace moat::flow {

template <typename Value>
class FlowTable {
  static_assert(std::is_trivially_destructible_v<Value>,
                "values are recycled without running destructors");
  static_assert(std::is_default_constructible_v<Value>, "Insert hands out Value{}");

 public:
  // 2^26 flows: buckets then span 2^27 and every index fits the bucket's
  // 32-bit field with room to spare.
  static constexpr uint32_t kMaxCapacity = 1u << 26;
  static constexpr uint32_t kNoIndex = 0xffffffffu;

  // Its arrays come from `mem` (memory.h), zeroed and touched at once.
  static absl::StatusOr<std::unique_ptr<FlowTable>> Create(uint32_t capacity, uint64_t seed,
                                                          const MemoryHook& mem = {}) {
    if (capacity == 0 || capacity > kMaxCapacity) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flow table capacity ", capacity, " is out of range [1, ", kMaxCapacity, "]"));
    }
    const uint64_t buckets = BucketCountFor(capacity);
    std::unique_ptr<FlowTable> t(new (std::nothrow) FlowTable(capacity, buckets, seed, mem));
    if (!t || !t->buckets_ || !t->keys_ || !t->values_ || !t->hashes_ || !t->free_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate a flow table of ", capacity, " flows (", MemoryBytes(capacity) >> 20,
          " MiB); lower the flow capacity or add memory"));
    }
    return t;
  }

  // Smallest power of two >= capacity / 0.75 (at least 8).
  static constexpr uint64_t BucketCountFor(uint32_t capacity) {
    uint64_t buckets = 8;
    while (buckets * 3 < static_cast<uint64_t>(capacity) * 4) buckets <<= 1;
    return buckets;
  }
  // Bytes Create() allocates for `capacity` flows (all of it up front),
  // exactly: each array rounded to a cache line as MemoryHook rounds it.
  static constexpr uint64_t MemoryBytes(uint32_t capacity) {
    const uint64_t n = capacity;
    return RoundToLine(BucketCountFor(capacity) * sizeof(Bucket)) +
           RoundToLine(n * sizeof(FlowKey)) + RoundToLine(n * sizeof(Value)) +
           2 * RoundToLine(n * sizeof(uint32_t));
  }

  ~FlowTable() {
    mem_.Release(buckets_);
    mem_.Release(keys_);
    mem_.Release(values_);
    mem_.Release(hashes_);
    mem_.Release(free_);
  }
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  uint32_t Hash(const FlowKey& key) const {
    return static_cast<uint32_t>(HashFlowKey(key, seed_));
  }
  // The same hash from the key's five 8-byte words (see HashFlowWords).
  uint32_t HashWords(uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3, uint64_t w4) const {
    return static_cast<uint32_t>(HashFlowWords(w0, w1, w2, w3, w4, seed_));
  }

  // Pulls the key's home bucket into cache; call a few packets ahead of
  // Find in a burst.
  void Prefetch(uint32_t hash) const { __builtin_prefetch(&buckets_[hash & mask_]); }

  // Pulls the values the next `n` Inserts will hand out into cache (for
  // writing): a new flow's state is otherwise a cold miss per cache line in
  // a large table, since free slots are scattered. Cheap when nothing is
  // inserted: the same lines, already cached, are prefetched again.
  void PrefetchFree(uint32_t n) const {
    for (uint32_t k = 1; k <= n && k <= free_top_; ++k) {
      const char* p = reinterpret_cast<const char*>(&values_[free_[free_top_ - k]]);
      for (size_t off = 0; off < sizeof(Value); off += 64) __builtin_prefetch(p + off, 1);
    }
  }

  // `hash` must be what Insert got for this key (normally Hash(key)).
  Value* Find(const FlowKey& key, uint32_t hash) {
    const uint32_t index = FindIndex(key, hash);
    return index == kNoIndex ? nullptr : &values_[index];
  }
  const Value* Find(const FlowKey& key, uint32_t hash) const {
    const uint32_t index = FindIndex(key, hash);
    return index == kNoIndex ? nullptr : &values_[index];
  }

  // The key must be absent (the caller has just missed in Find). Returns
  // a value reset to Value{}, or nullptr when the table already holds
  // capacity() flows: see the full-table contract at the top.
  Value* Insert(const FlowKey& key, uint32_t hash) {
    assert(FindIndex(key, hash) == kNoIndex && "Insert of a key already present");
    if (free_top_ == 0) return nullptr;
    const uint32_t index = free_[--free_top_];
    uint32_t i = hash & mask_;
    // Terminates: at most 75% of the buckets are ever in use.
    while (buckets_[i].index_plus_one != 0) i = (i + 1) & mask_;
    buckets_[i] = Bucket{hash, index + 1};
    keys_[index] = key;
    hashes_[index] = hash;
    // Copied from a zeroed constant rather than value-initialized in place,
    // which GCC emits as `rep stos` (slow to start for 128 bytes).
    static const Value kEmpty{};
    values_[index] = kEmpty;
    return &values_[index];
  }

  // `v` must be a live value of this table. Its id may be handed out again
  // by the next Insert, so cancel its timer first.
  void Erase(Value* v) {
    const uint32_t index = IndexOf(v);
    assert(index < capacity_);
    uint32_t i = hashes_[index] & mask_;
    while (buckets_[i].index_plus_one != index + 1) {
      assert(buckets_[i].index_plus_one != 0 && "Erase of a value not in the table");
      i = (i + 1) & mask_;
    }
    // Backward shift: walk the rest of the run; an entry whose home bucket
    // is not cyclically inside (hole, j] can move into the hole, which
    // then moves to where it was. The run ends at the first empty bucket.
    for (uint32_t j = (i + 1) & mask_;; j = (j + 1) & mask_) {
      const Bucket b = buckets_[j];
      if (b.index_plus_one == 0) break;
      const uint32_t home = b.hash & mask_;
      if (((j - home) & mask_) >= ((j - i) & mask_)) {
        buckets_[i] = b;
        i = j;
      }
    }
    buckets_[i] = Bucket{};
    free_[free_top_++] = index;
  }

  uint32_t IndexOf(const Value* v) const { return static_cast<uint32_t>(v - values_); }
  // Any index < capacity(); the value is meaningful only while in use.
  Value* At(uint32_t index) { return &values_[index]; }
  const Value* At(uint32_t index) const { return &values_[index]; }
  const FlowKey& KeyOf(const Value* v) const { return keys_[IndexOf(v)]; }
  uint32_t size() const { return capacity_ - free_top_; }
  uint32_t capacity() const { return capacity_; }
  bool full() const { return free_top_ == 0; }
  uint32_t bucket_count() const { return mask_ + 1; }

  // Calls f(Value*) for every flow in the table, in bucket order. The
  // callback must not Insert or Erase (collect ids and erase afterwards).
  // Control plane: O(bucket_count()).
  template <typename F>
  void ForEach(F&& f) {
    for (uint32_t i = 0; i <= mask_; ++i) {
      if (buckets_[i].index_plus_one != 0) f(&values_[buckets_[i].index_plus_one - 1]);
    }
  }

  // Longest probe sequence, in buckets, over all entries (1 = found in its
  // home bucket). Tests and diagnostics: O(bucket_count()).
  uint32_t MaxProbeLength() const {
    uint32_t worst = 0;
    for (uint32_t i = 0; i <= mask_; ++i) {
      if (buckets_[i].index_plus_one == 0) continue;
      const uint32_t d = ((i - (buckets_[i].hash & mask_)) & mask_) + 1;
      if (d > worst) worst = d;
    }
    return worst;
  }
  // Sum of all entries' probe lengths (divide by size() for the mean
  // successful lookup cost). Diagnostics: O(bucket_count()).
  uint64_t TotalProbeLength() const {
    uint64_t sum = 0;
    for (uint32_t i = 0; i <= mask_; ++i) {
      if (buckets_[i].index_plus_one == 0) continue;
      sum += ((i - (buckets_[i].hash & mask_)) & mask_) + 1;
    }
    return sum;
  }

 private:
  struct Bucket {
    uint32_t hash = 0;            // full hash: the signature checked before the key
    uint32_t index_plus_one = 0;  // 0 = empty
  };
  static_assert(sizeof(Bucket) == 8);

  uint32_t FindIndex(const FlowKey& key, uint32_t hash) const {
    // Terminates at an empty bucket, and there always is one.
    for (uint32_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Bucket b = buckets_[i];
      if (b.index_plus_one == 0) return kNoIndex;
      if (b.hash == hash && keys_[b.index_plus_one - 1] == key) return b.index_plus_one - 1;
    }
  }

  FlowTable(uint32_t capacity, uint64_t buckets, uint64_t seed, const MemoryHook& mem)
      : capacity_(capacity), mask_(static_cast<uint32_t>(buckets - 1)), seed_(seed), mem_(mem) {
    buckets_ = Allocate<Bucket>(buckets);
    keys_ = Allocate<FlowKey>(capacity);
    values_ = Allocate<Value>(capacity);
    hashes_ = Allocate<uint32_t>(capacity);
    free_ = Allocate<uint32_t>(capacity);
    if (!buckets_ || !keys_ || !values_ || !hashes_ || !free_) return;
    // The hook wrote every byte (faulting the pages in, so the first flows
    // do not pay page faults on the hot path); constructing is cheap.
    for (uint64_t i = 0; i < buckets; ++i) new (&buckets_[i]) Bucket();
    for (uint32_t i = 0; i < capacity; ++i) {
      new (&keys_[i]) FlowKey();
      new (&values_[i]) Value();
      hashes_[i] = 0;
      free_[i] = capacity - 1 - i;  // index 0 on top of the stack
    }
    free_top_ = capacity;
  }

  template <typename T>
  T* Allocate(uint64_t n) const {
    return mem_.AllocateArray<T>(n, MemoryUse::kFlowTable);
  }

  uint32_t capacity_;
  uint32_t mask_;
  uint64_t seed_;
  MemoryHook mem_;
  uint32_t free_top_ = 0;
  Bucket* buckets_ = nullptr;
  FlowKey* keys_ = nullptr;
  Value* values_ = nullptr;   // 64-byte aligned
  uint32_t* hashes_ = nullptr;  // per index: the hash Insert got (for Erase)
  uint32_t* free_ = nullptr;    // stack of free indexes, free_top_ entries
};

}  // namespace moat::flow
