#include "moat/proxy/held_pool.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moat::proxy {

absl::StatusOr<std::unique_ptr<HeldPool>> HeldPool::Create(uint32_t slots,
                                                           const flow::MemoryHook& mem) {
  std::unique_ptr<HeldPool> p(new HeldPool(slots, mem));
  p->slots_ = mem.AllocateArray<Slot>(slots, flow::MemoryUse::kHeldPool);
  p->free_ = mem.AllocateArray<uint32_t>(slots, flow::MemoryUse::kHeldPool);
  if (slots != 0 && (p->slots_ == nullptr || p->free_ == nullptr)) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", slots,
                                                     " held-segment slots of ", sizeof(Slot),
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
  if (f->held_count >= kMaxHeldPerFlow || free_top_ == 0 || len > kMaxFrame) return false;
  const uint32_t slot = free_[--free_top_];
  Slot& s = slots_[slot];
  s.next = kNoHeld;
  s.len = len;
  s.seq = seq;
  s.seg_len = seg_len;
  std::memcpy(s.data, frame, len);
  if (f->held_head == kNoHeld) {
    f->held_head = slot;
  } else {
    // At most kMaxHeldPerFlow - 1 links to walk.
    uint32_t tail = f->held_head;
    while (slots_[tail].next != kNoHeld) tail = slots_[tail].next;
    slots_[tail].next = slot;
  }
  ++f->held_count;
  return true;
}

}  // namespace moat::proxy
