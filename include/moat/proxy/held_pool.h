#pragma once
// Client segments that arrive while the backend handshake runs (the data
// a client sends right after its third ACK, before moat has a backend
// sequence space to put it in). Kept whole, headers included, in a fixed
// pool of frame-sized slots allocated once; each flow chains its own in
// arrival order, bounded per flow (kMaxHeldPerFlow) and by the pool, so a
// client that floods data during the handshake cannot take more than its
// share. Released (translated and sent) when the backend answers, freed
// when the flow goes.
//
// Slots are FrameRoom(--mtu) bytes: a full-size segment of the configured
// MTU is held like any other (with --mtu=9000 a client's first jumbo
// segments would otherwise be lost on every connection and cost it a
// retransmission timeout). The price is memory: held_slots x ~9 KiB per
// worker at 9000 (README, sizing). A frame longer than a slot (only when
// the link lets through more than --mtu) is not held: counted as
// drop_held_oversize, and the client retransmits it.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/flow/memory.h"
#include "moat/net/seqnum.h"
#include "moat/proxy/flow_state.h"

namespace moat::proxy {

// Frame sizes. The IP packets moat carries are at most --mtu bytes
// (kMinMtu..kMaxMtu), behind the L2 header it parses: Ethernet and up to
// two VLAN tags. One number holds a whole frame of a given MTU and sizes
// the mbuf data room (lib/dataplane), the held slots and the engine's
// frame buffers.
// RFC 8200 §5: every link that carries IPv6 has an MTU of at least 1280.
inline constexpr uint32_t kMinMtu = 1280;
// The common jumbo size; the cookie's MSS tables top out at 9000 - 40.
inline constexpr uint32_t kMaxMtu = 9000;
inline constexpr uint32_t kMaxL2Header = 14 + 2 * 4;
// At least 2048 (a standard mbuf's data room, so a 1500-byte MTU keeps the
// sizes moat always had), else the frame rounded up to a cache line.
constexpr uint32_t FrameRoom(uint32_t mtu) {
  const uint32_t frame = (mtu + kMaxL2Header + 63) / 64 * 64;
  return frame < 2048 ? 2048 : frame;
}
// The engine's frame buffers (Output, Fast Open's held copy) hold a frame
// of the largest MTU.
inline constexpr size_t kMaxFrame = FrameRoom(kMaxMtu);
static_assert(kMaxFrame == 9024 && FrameRoom(1500) == 2048);
// Client segments kept per flow while the backend handshake runs.
inline constexpr uint8_t kMaxHeldPerFlow = 4;

class HeldPool {
 public:
  // Slots and free list from `mem` (flow/memory.h), zeroed at once;
  // `frame_room` bytes per slot (FrameRoom(--mtu)), at most kMaxFrame.
  static absl::StatusOr<std::unique_ptr<HeldPool>> Create(uint32_t slots,
                                                          uint32_t frame_room = FrameRoom(1500),
                                                          const flow::MemoryHook& mem = {});
  ~HeldPool();
  HeldPool(const HeldPool&) = delete;
  HeldPool& operator=(const HeldPool&) = delete;

  // Appends a copy of `frame`, a segment occupying [seq, seq + seg_len), to
  // f's chain. False (nothing kept) when the flow already holds
  // kMaxHeldPerFlow, the pool is empty, or the frame is larger than a slot
  // (len > frame_room()).
  bool Hold(Flow* f, const uint8_t* frame, uint16_t len, net::SeqNum seq, uint32_t seg_len);

  // Whether one of f's held segments already covers [seq, seq + seg_len):
  // a retransmitted copy (the client's RTO fires while the backend is slow
  // to answer), which must not take another slot. A copy that adds bytes
  // is new data.
  bool Covers(const Flow* f, net::SeqNum seq, uint32_t seg_len) const {
    const net::SeqNum end = seq.Add(seg_len);
    for (uint32_t slot = f->held_head; slot != kNoHeld; slot = At(slot).next) {
      const Slot& s = At(slot);
      if (seq.AfterOrEq(s.seq) && end.BeforeOrEq(s.seq.Add(s.seg_len))) return true;
    }
    return false;
  }

  // Calls fn(const uint8_t* frame, uint16_t len) for each of f's segments in
  // arrival order, then returns them all to the pool.
  template <typename Fn>
  void Release(Flow* f, Fn&& fn) {
    for (uint32_t slot = f->held_head; slot != kNoHeld;) {
      const Slot& s = At(slot);
      const uint32_t next = s.next;
      fn(s.data(), s.len);
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
  uint32_t frame_room() const { return frame_room_; }
  static constexpr uint64_t MemoryBytes(uint32_t slots, uint32_t frame_room = FrameRoom(1500)) {
    return flow::RoundToLine(uint64_t{slots} * SlotBytes(frame_room)) +
           flow::RoundToLine(uint64_t{slots} * sizeof(uint32_t));
  }

 private:
  // A slot is this header and then frame_room bytes of frame.
  struct Slot {
    uint32_t next;
    uint16_t len;
    net::SeqNum seq;  // the segment's sequence range, for Covers()
    uint32_t seg_len;
    uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
    const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(this + 1); }
  };
  static constexpr uint64_t SlotBytes(uint32_t frame_room) { return sizeof(Slot) + frame_room; }
  HeldPool(uint32_t slots, uint32_t frame_room, const flow::MemoryHook& mem)
      : capacity_(slots), frame_room_(frame_room), slot_bytes_(SlotBytes(frame_room)), mem_(mem) {}
  Slot& At(uint32_t i) { return *reinterpret_cast<Slot*>(slots_ + i * slot_bytes_); }
  const Slot& At(uint32_t i) const {
    return *reinterpret_cast<const Slot*>(slots_ + i * slot_bytes_);
  }

  const uint32_t capacity_;
  const uint32_t frame_room_;
  const size_t slot_bytes_;
  const flow::MemoryHook mem_;
  uint8_t* slots_ = nullptr;
  uint32_t* free_ = nullptr;  // stack of free slot indices
  uint32_t free_top_ = 0;
};

}  // namespace moat::proxy
