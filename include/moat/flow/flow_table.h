#pragma once
// Fixed-capacity flow table, one per worker: allocated once in Create(),
// never resized, never locked.
//
// Index: open addressing over 8-byte buckets {32-bit hash, value index + 1},
// at most 75% full, linear probing. Erase shifts the following run back
// (Knuth's algorithm R) instead of leaving tombstones, so a churn of SYN
// floods completing and closing can never degrade lookups or force a
// rehash. Values live in a separate 64-byte-aligned dense array indexed by
// a 32-bit id, so the timer wheel and the engine can name a flow by index.
//
// Full table: Insert returns nullptr. The engine then refuses the flow,
// counts drop_flow_table_full and sends the client a RST, so the client
// fails fast instead of retransmitting into a black hole.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "moat/flow/flow_key.h"

namespace moat::flow {

template <typename Value>
class FlowTable {
  static_assert(std::is_trivially_destructible_v<Value>, "values are freed without destructors");

 public:
  static constexpr uint32_t kMaxCapacity = 1u << 26;

  static absl::StatusOr<std::unique_ptr<FlowTable>> Create(uint32_t capacity, uint64_t seed) {
    if (capacity == 0 || capacity > kMaxCapacity) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flow table capacity ", capacity, " is out of range [1, ", kMaxCapacity, "]"));
    }
    uint64_t buckets = 8;
    while (buckets * 3 < static_cast<uint64_t>(capacity) * 4) buckets <<= 1;
    std::unique_ptr<FlowTable> t(new (std::nothrow) FlowTable(capacity, buckets, seed));
    if (!t || !t->buckets_ || !t->keys_ || !t->values_ || !t->free_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate a flow table of ", capacity, " flows (",
          (capacity * (sizeof(Value) + sizeof(FlowKey) + 4) + buckets * 8) >> 20,
          " MiB); lower --flow_capacity"));
    }
    return t;
  }

  ~FlowTable() {
    std::free(buckets_);
    std::free(keys_);
    std::free(values_);
    std::free(free_);
  }
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  uint32_t Hash(const FlowKey& key) const {
    return static_cast<uint32_t>(HashFlowKey(key, seed_));
  }

  void Prefetch(uint32_t hash) const { __builtin_prefetch(&buckets_[hash & mask_]); }

  Value* Find(const FlowKey& key, uint32_t hash) {
    for (uint32_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Bucket b = buckets_[i];
      if (b.index_plus_one == 0) return nullptr;
      if (b.hash == hash && keys_[b.index_plus_one - 1] == key) {
        return &values_[b.index_plus_one - 1];
      }
    }
  }

  // The key must be absent (Find first). Returns a value reset to Value{},
  // or nullptr when the table holds `capacity` flows.
  Value* Insert(const FlowKey& key, uint32_t hash) {
    if (free_top_ == 0) return nullptr;
    const uint32_t index = free_[--free_top_];
    uint32_t i = hash & mask_;
    while (buckets_[i].index_plus_one != 0) i = (i + 1) & mask_;
    buckets_[i] = Bucket{hash, index + 1};
    keys_[index] = key;
    values_[index] = Value{};
    return &values_[index];
  }

  void Erase(Value* v) {
    const uint32_t index = IndexOf(v);
    const uint32_t hash = Hash(keys_[index]);
    uint32_t i = hash & mask_;
    while (buckets_[i].index_plus_one != index + 1) i = (i + 1) & mask_;
    // Backward shift: pull each later entry of the run into the hole unless
    // that would move it before its home bucket.
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
  Value* At(uint32_t index) { return &values_[index]; }
  const FlowKey& KeyOf(const Value* v) const { return keys_[IndexOf(v)]; }
  uint32_t size() const { return capacity_ - free_top_; }
  uint32_t capacity() const { return capacity_; }
  uint32_t bucket_count() const { return mask_ + 1; }

  // Longest probe sequence over all entries (tests, diagnostics).
  uint32_t MaxProbeLength() const {
    uint32_t worst = 0;
    for (uint32_t i = 0; i <= mask_; ++i) {
      if (buckets_[i].index_plus_one == 0) continue;
      const uint32_t d = (i - (buckets_[i].hash & mask_)) & mask_;
      if (d + 1 > worst) worst = d + 1;
    }
    return worst;
  }

 private:
  struct Bucket {
    uint32_t hash = 0;
    uint32_t index_plus_one = 0;  // 0 = empty
  };
  static_assert(sizeof(Bucket) == 8);

  FlowTable(uint32_t capacity, uint64_t buckets, uint64_t seed)
      : capacity_(capacity), mask_(static_cast<uint32_t>(buckets - 1)), seed_(seed) {
    buckets_ = static_cast<Bucket*>(std::aligned_alloc(64, RoundUp(buckets * sizeof(Bucket))));
    keys_ = static_cast<FlowKey*>(std::aligned_alloc(64, RoundUp(capacity * sizeof(FlowKey))));
    values_ = static_cast<Value*>(std::aligned_alloc(64, RoundUp(capacity * sizeof(Value))));
    free_ = static_cast<uint32_t*>(std::aligned_alloc(64, RoundUp(capacity * sizeof(uint32_t))));
    if (!buckets_ || !keys_ || !values_ || !free_) return;
    for (uint64_t i = 0; i < buckets; ++i) buckets_[i] = Bucket{};
    for (uint32_t i = 0; i < capacity; ++i) {
      new (&keys_[i]) FlowKey();
      new (&values_[i]) Value();
      // Hand out low indexes first: a lightly loaded table stays compact.
      free_[i] = capacity - 1 - i;
    }
    free_top_ = capacity;
  }
  static size_t RoundUp(size_t n) { return (n + 63) & ~size_t{63}; }

  uint32_t capacity_;
  uint32_t mask_;
  uint64_t seed_;
  uint32_t free_top_ = 0;
  Bucket* buckets_ = nullptr;
  FlowKey* keys_ = nullptr;
  Value* values_ = nullptr;
  uint32_t* free_ = nullptr;
};

}  // namespace moat::flow
