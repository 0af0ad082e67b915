#include "moat/flow/timer_wheel.h"

#include <new>

#include "absl/strings/str_cat.h"

namespace moat::flow {

absl::StatusOr<std::unique_ptr<TimerWheel>> TimerWheel::Create(uint32_t capacity, uint64_t tick_ns,
                                                               uint64_t now_ns, uint32_t slots,
                                                               const MemoryHook& mem,
                                                               MemoryUse use) {
  if (capacity == 0 || capacity == kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat("timer wheel capacity ", capacity, " is out of range [1, ", kNone - 1, "]"));
  }
  if (tick_ns == 0) return absl::InvalidArgumentError("timer wheel tick must be > 0 ns");
  if (slots < kMinSlots || slots > kMaxSlots || (slots & (slots - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("timer wheel slots ", slots,
                                                   " must be a power of two in [", kMinSlots, ", ",
                                                   kMaxSlots, "]"));
  }
  std::unique_ptr<TimerWheel> w(
      new (std::nothrow) TimerWheel(capacity, tick_ns, now_ns, slots, mem, use));
  if (!w || !w->nodes_ || !w->head_ || !w->occupied_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate a timer wheel for ", capacity, " timers (",
        MemoryBytes(capacity, slots) >> 20, " MiB)"));
  }
  return w;
}

uint64_t TimerWheel::MemoryBytes(uint32_t capacity, uint32_t slots) {
  return RoundToLine(uint64_t{capacity} * sizeof(Node)) +
         RoundToLine((2 * uint64_t{slots} + 1) * sizeof(uint32_t)) +
         RoundToLine(uint64_t{slots} / 64 * sizeof(uint64_t));
}

TimerWheel::TimerWheel(uint32_t capacity, uint64_t tick_ns, uint64_t now_ns, uint32_t slots,
                       const MemoryHook& mem, MemoryUse use)
    : capacity_(capacity),
      tick_ns_(tick_ns),
      slots_(slots),
      mask_(slots - 1),
      shift_(static_cast<uint32_t>(std::countr_zero(slots))),
      work_list_(2 * slots),
      next_tick_(now_ns / tick_ns),
      cascaded_epoch_(next_tick_ >> shift_),
      mem_(mem),
      nodes_(mem.AllocateArray<Node>(capacity, use)),
      head_(mem.AllocateArray<uint32_t>(2 * static_cast<size_t>(slots) + 1, use)),
      occupied_(mem.AllocateArray<uint64_t>(slots / 64, use)) {
  if (!nodes_ || !head_ || !occupied_) return;
  // The hook zeroed every page (no page faults on the hot path); these
  // are the initial values.
  for (uint32_t i = 0; i < capacity; ++i) nodes_[i] = Node{0, 0, kNone, kNone, kNone, 0};
  for (uint32_t i = 0; i <= work_list_; ++i) head_[i] = kNone;
  for (uint32_t i = 0; i < slots / 64; ++i) occupied_[i] = 0;
}

TimerWheel::~TimerWheel() {
  mem_.Release(nodes_);
  mem_.Release(head_);
  mem_.Release(occupied_);
}

void TimerWheel::MoveList(uint32_t from, uint32_t to) {
  while (head_[from] != kNone) {
    const uint32_t id = head_[from];
    Unlink(id);
    Link(to, id);
  }
}

void TimerWheel::EnterEpoch(uint64_t now_tick) {
  uint64_t epoch = next_tick_ >> shift_;
  const uint64_t now_epoch = now_tick >> shift_;
  if (now_epoch - epoch >= slots_) {
    // Paused for more than a whole level-1 turn: stepping epoch by epoch
    // would visit each level-1 list many times. Start instead at the one
    // turn that ends now, after pulling in everything due before it.
    epoch = now_epoch - slots_ + 1;
    Rebase(epoch);
  }
  // Bring this epoch's timers down to level 0 before its first tick. A
  // level-1 list also holds timers of later turns (same epoch mod slots);
  // they stay. "<=" rather than "==" is for Rebase's benefit only.
  const uint32_t list = slots_ + static_cast<uint32_t>(epoch & mask_);
  for (uint32_t id = head_[list]; id != kNone;) {
    const uint32_t next = nodes_[id].next;
    if ((nodes_[id].tick >> shift_) <= epoch) {
      Unlink(id);
      Place(id, next_tick_);
    }
    id = next;
  }
  cascaded_epoch_ = epoch;
}

void TimerWheel::Rebase(uint64_t new_epoch) {
  // Level 0 only ever holds the current and next turn, all now overdue;
  // level 1 holds some overdue timers among later ones.
  for (uint32_t s = 0; s < slots_; ++s) MoveList(s, work_list_);
  for (uint32_t s = 0; s < slots_; ++s) {
    for (uint32_t id = head_[slots_ + s]; id != kNone;) {
      const uint32_t next = nodes_[id].next;
      if ((nodes_[id].tick >> shift_) < new_epoch) {
        Unlink(id);
        Link(work_list_, id);
      }
      id = next;
    }
  }
  next_tick_ = new_epoch << shift_;
  // All overdue: they land in the first tick of the new epoch.
  while (head_[work_list_] != kNone) {
    const uint32_t id = head_[work_list_];
    Unlink(id);
    Place(id, next_tick_);
  }
}

}  // namespace moat::flow
