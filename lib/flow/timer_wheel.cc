#include "moat/flow/timer_wheel.h"

#include "absl/strings/str_cat.h"

namespace moat::flow {

absl::StatusOr<std::unique_ptr<TimerWheel>> TimerWheel::Create(uint32_t capacity, uint64_t tick_ns,
                                                               uint64_t now_ns, uint32_t slots) {
  if (capacity == 0 || capacity == kNone) {
    return absl::InvalidArgumentError(absl::StrCat("timer wheel capacity ", capacity, " invalid"));
  }
  if (tick_ns == 0) return absl::InvalidArgumentError("timer wheel tick must be > 0");
  if (slots == 0 || (slots & (slots - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("timer wheel slots ", slots, " must be a power of two"));
  }
  return std::unique_ptr<TimerWheel>(new TimerWheel(capacity, tick_ns, now_ns, slots));
}

TimerWheel::TimerWheel(uint32_t capacity, uint64_t tick_ns, uint64_t now_ns, uint32_t slots)
    : tick_ns_(tick_ns),
      mask_(slots - 1),
      work_list_(slots),
      next_tick_(now_ns / tick_ns),
      head_(slots + 1, kNone),
      next_(capacity, kNone),
      prev_(capacity, kNone),
      list_(capacity, kNone),
      deadline_(capacity, 0) {}

void TimerWheel::Link(uint32_t list, uint32_t id) {
  prev_[id] = kNone;
  next_[id] = head_[list];
  if (head_[list] != kNone) prev_[head_[list]] = id;
  head_[list] = id;
  list_[id] = list;
  ++pending_;
}

void TimerWheel::Unlink(uint32_t id) {
  const uint32_t list = list_[id];
  if (prev_[id] != kNone) {
    next_[prev_[id]] = next_[id];
  } else {
    head_[list] = next_[id];
  }
  if (next_[id] != kNone) prev_[next_[id]] = prev_[id];
  list_[id] = kNone;
  --pending_;
}

uint32_t TimerWheel::SlotFor(uint64_t deadline_ns) const {
  // Round up: slot t is processed once now >= t * tick, so every timer in
  // it is due by then.
  uint64_t tick = (deadline_ns + tick_ns_ - 1) / tick_ns_;
  const uint64_t earliest = next_tick_ + (in_advance_ ? 1 : 0);
  if (tick < earliest) tick = earliest;
  return static_cast<uint32_t>(tick & mask_);
}

void TimerWheel::Schedule(uint32_t id, uint64_t deadline_ns) {
  if (list_[id] != kNone) Unlink(id);
  deadline_[id] = deadline_ns;
  Link(SlotFor(deadline_ns), id);
}

void TimerWheel::Cancel(uint32_t id) {
  if (list_[id] != kNone) Unlink(id);
}

}  // namespace moat::flow
