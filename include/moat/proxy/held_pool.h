#pragma once
// Client segments that arrive while the backend handshake runs (the data
// a client sends right after its third ACK, before moat has a backend
// sequence space to put it in). Kept whole, headers included, in a fixed
// pool of frame-sized slots allocated once; each flow chains its own in
// arrival order, bounded per flow (kMaxHeldPerFlow) and by the pool, so a
// client that floods data during the handshake cannot take more than its
// share. Released (translated and sent) when the backend answers, freed
// when the flow goes.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/flow/memory.h"
#include "moat/net/seqnum.h"
#include "moat/proxy/flow_state.h"

namespace moat::proxy {

inline constexpr size_t kMaxFrame = 2048;
// Client segments kept per flow while the backend handshake runs.
inline constexpr uint8_t kMaxHeldPerFlow = 4;

class HeldPool {
 public:
  // Slots and free list from `mem` (flow/memory.h), zeroed at once.
  static absl::StatusOr<std::unique_ptr<HeldPool>> Create(uint32_t slots,
                                                         const flow::MemoryHook& mem = {});
  ~HeldPool();
  HeldPool(const HeldPool&) = delete;
  HeldPool& operator=(const HeldPool&) = delete;

  // Appends a copy of `frame`, a segment occupying [seq, seq + seg_len), to
  // f's chain. False (nothing kept) when the flow already holds
  // kMaxHeldPerFlow, the pool is empty, or the frame is larger than a slot.
  bool Hold(Flow* f, const uint8_t* frame, uint16_t len, net::SeqNum seq, uint32_t seg_len);

  // Whether one of f's held segments already covers [seq, seq + seg_len):
  // a retransmitted copy (the client's RTO fires while the backend is slow
  // to answer), which must not take another slot. A copy that adds bytes
  // is new data.
  bool Covers(const Flow* f, net::SeqNum seq, uint32_t seg_len) const {
    const net::SeqNum end = seq.Add(seg_len);
    for (uint32_t slot = f->held_head; slot != kNoHeld; slot = slots_[slot].next) {
      const Slot& s = slots_[slot];
      if (seq.AfterOrEq(s.seq) && end.BeforeOrEq(s.seq.Add(s.seg_len))) return true;
    }
    return false;
  }

  // Calls fn(const uint8_t* frame, uint16_t len) for each of f's segments in
  // arrival order, then returns them all to the pool.
  template <typename Fn>
  void Release(Flow* f, Fn&& fn) {
    for (uint32_t slot = f->held_head; slot != kNoHeld;) {
      const Slot& s = slots_[slot];
      const uint32_t next = s.next;
      fn(static_cast<const uint8_t*>(s.data), s.len);
      free_[free_top_++] = slot;
      slot = next;
    }
    f->held_head = kNoHeld;
    f->held_count = 0;
  }
  // Returns f's segments to the pool unsent.
  void Free(Flow* f) {
    Release(f, [](const uint8_t*, uint16_t) {});
  }

  uint32_t free_slots() const { return free_top_; }
  uint32_t capacity() const { return capacity_; }
  static constexpr uint64_t MemoryBytes(uint32_t slots) {
    return flow::RoundToLine(uint64_t{slots} * sizeof(Slot)) +
           flow::RoundToLine(uint64_t{slots} * sizeof(uint32_t));
  }

 private:
  struct Slot {
    uint32_t next;
    uint16_t len;
    net::SeqNum seq;  // the segment's sequence range, for Covers()
    uint32_t seg_len;
    uint8_t data[kMaxFrame];
  };
  HeldPool(uint32_t slots, const flow::MemoryHook& mem) : capacity_(slots), mem_(mem) {}

  const uint32_t capacity_;
  const flow::MemoryHook mem_;
  Slot* slots_ = nullptr;
  uint32_t* free_ = nullptr;  // stack of free slot indices
  uint32_t free_top_ = 0;
};

}  // namespace moat::proxy
