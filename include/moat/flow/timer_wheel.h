#pragma once
// A hashed timing wheel (Varghese & Lauck) for per-flow timers: backend SYN
// retransmission, handshake timeout, TIME_WAIT and idle expiry. One timer
// per id (flow index); schedule, cancel and each expiry are O(1). Deadlines
// beyond one turn of the wheel sit in their slot and are skipped until the
// turn they are due in, so nothing fires early and nothing is lost.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"

namespace moat::flow {

class TimerWheel {
 public:
  static constexpr uint32_t kDefaultSlots = 4096;

  static absl::StatusOr<std::unique_ptr<TimerWheel>> Create(uint32_t capacity, uint64_t tick_ns,
                                                            uint64_t now_ns,
                                                            uint32_t slots = kDefaultSlots);

  // Replaces any pending timer of `id`. A deadline in the past fires on the
  // next Advance.
  void Schedule(uint32_t id, uint64_t deadline_ns);
  void Cancel(uint32_t id);
  bool Pending(uint32_t id) const { return list_[id] != kNone; }
  uint64_t Deadline(uint32_t id) const { return deadline_[id]; }
  size_t pending_count() const { return pending_; }

  // Fires (calls on_expire(id)) every timer whose deadline is <= now_ns, at
  // most `max` of them; the rest fire on the next call. The callback may
  // schedule or cancel any id, including the one firing. Returns how many
  // fired.
  template <typename F>
  size_t Advance(uint64_t now_ns, F&& on_expire, size_t max = std::numeric_limits<size_t>::max());

 private:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  TimerWheel(uint32_t capacity, uint64_t tick_ns, uint64_t now_ns, uint32_t slots);
  void Link(uint32_t list, uint32_t id);
  void Unlink(uint32_t id);
  uint32_t SlotFor(uint64_t deadline_ns) const;

  uint64_t tick_ns_;
  uint32_t mask_;
  uint32_t work_list_;  // index of the list being expired (== slot count)
  uint64_t next_tick_;  // first tick not yet processed
  size_t pending_ = 0;
  // True inside Advance: the slot of next_tick_ is being expired, so timers
  // scheduled for it then go to the next tick instead (they would otherwise
  // wait a whole turn of the wheel).
  bool in_advance_ = false;
  std::vector<uint32_t> head_;  // per slot, plus the work list
  std::vector<uint32_t> next_, prev_, list_;
  std::vector<uint64_t> deadline_;
};

template <typename F>
size_t TimerWheel::Advance(uint64_t now_ns, F&& on_expire, size_t max) {
  const uint64_t now_tick = now_ns / tick_ns_;
  size_t fired = 0;
  in_advance_ = true;
  // After a long pause one turn of the wheel visits every slot; past that
  // the ticks are empty by construction.
  const uint64_t turn = static_cast<uint64_t>(mask_) + 1;
  if (now_tick >= next_tick_ + turn) next_tick_ = now_tick + 1 - turn;
  while (next_tick_ <= now_tick) {
    const uint32_t slot = static_cast<uint32_t>(next_tick_ & mask_);
    // Move the slot's list to the work list, then pop one at a time: the
    // callback can then cancel or reschedule anything safely.
    while (head_[slot] != kNone) {
      const uint32_t id = head_[slot];
      Unlink(id);
      Link(work_list_, id);
    }
    while (head_[work_list_] != kNone) {
      const uint32_t id = head_[work_list_];
      if (deadline_[id] > now_ns) {
        // Due in a later turn of the wheel.
        Unlink(id);
        Link(slot, id);
        continue;
      }
      if (fired == max) {
        // Out of budget: put the rest back and resume at this tick.
        while (head_[work_list_] != kNone) {
          const uint32_t rest = head_[work_list_];
          Unlink(rest);
          Link(slot, rest);
        }
        in_advance_ = false;
        return fired;
      }
      Unlink(id);
      ++fired;
      on_expire(id);
    }
    ++next_tick_;
  }
  in_advance_ = false;
  return fired;
}

}  // namespace moat::flow
