#include "moat/proxy/held_pool.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moat::proxy {

absl::StatusOr<std::unique_ptr<HeldPool>> HeldPool::Create(uint32_t slots, uint32_t frame_room,
                                                           const flow::MemoryHook& mem) {
  if (frame_room > kMaxFrame || frame_room % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "held slots of ", frame_room, " bytes: want a multiple of 8 up to ", kMaxFrame));
  }
  std::unique_ptr<HeldPool> p(new HeldPool(slots, frame_room, mem));
  p->slots_ = static_cast<uint8_t*>(
      mem.Allocate(uint64_t{slots} * p->slot_bytes_, flow::MemoryUse::kHeldPool));
  p->free_ = mem.AllocateArray<uint32_t>(slots, flow::MemoryUse::kHeldPool);
  if (slots != 0 && (p->slots_ == nullptr || p->free_ == nullptr)) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", slots,
                                                     " held-segment slots of ", p->slot_bytes_,
                                                     " bytes; lower --held_slots"));
  }
  // Handed out lowest index first.
  for (uint32_t i = 0; i < slots; ++i) p->free_[i] = slots - 1 - i;
  p->free_top_ = slots;
  return p;
}

HeldPool::~HeldPool() {
  mem_.Release(slots_);
  mem_.Release(free_);
}

bool HeldPool::Hold(Flow* f, const uint8_t* frame, uint16_t len, net::SeqNum seq,
                    uint32_t seg_len) {
  if (f->held_count >= kMaxHeldPerFlow || free_top_ == 0 || len > frame_room_) return false;
  const uint32_t slot = free_[--free_top_];
  Slot& s = At(slot);
  s.next = kNoHeld;
  s.len = len;
  s.seq = seq;
  s.seg_len = seg_len;
  std::memcpy(s.data(), frame, len);
  if (f->held_head == kNoHeld) {
    f->held_head = slot;
  } else {
    // At most kMaxHeldPerFlow - 1 links to walk.
    uint32_t tail = f->held_head;
    while (At(tail).next != kNoHeld) tail = At(tail).next;
    At(tail).next = slot;
  }
  ++f->held_count;
  return true;
}

}  // namespace moat::proxy
