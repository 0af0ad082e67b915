#pragma once
// A hashed timing wheel (Varghese & Lauck, "Hashed and Hierarchical Timing
// Wheels", 1987) for per-flow timers: backend SYN retransmission, the
// handshake timeout, TIME_WAIT and idle expiry. One timer per id (a flow
// index, 0..capacity-1); the wheel owns the intrusive links, sized once in
// Create(), and never allocates afterwards.
//
// Two levels of `slots` lists each:
//   level 0: one list per tick, for deadlines less than one turn
//            (slots ticks) ahead; a list holds only timers due at exactly
//            that tick, so expiring it touches nothing that is not due.
//   level 1: one list per turn of level 0 ("epoch"), for deadlines further
//            out. When the wheel enters an epoch it moves that epoch's
//            list down to level 0 (each timer once). Deadlines beyond
//            slots^2 ticks (4.6 h at 4096 x 1 ms) stay parked in their
//            level-1 list and are looked at once per slots^2 ticks until
//            their epoch comes round: no loss, no early fire.
// So Schedule, Cancel and each expiry are O(1), and a 300 s idle timer is
// moved once rather than rescanned every turn of a 4 s wheel. A bitmap of
// non-empty level-0 lists lets Advance skip empty ticks 64 at a time.
//
// Timers fire at tick granularity and never early: a deadline d is due at
// tick ceil(d / tick_ns), and Advance(now) fires ticks <= now / tick_ns.

#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>

#include "absl/status/statusor.h"
#include "moat/flow/memory.h"

namespace moat::flow {

class TimerWheel {
 public:
  static constexpr uint32_t kDefaultSlots = 4096;
  static constexpr uint64_t kDefaultTickNs = 1'000'000;  // 1 ms
  static constexpr uint32_t kMinSlots = 64;
  static constexpr uint32_t kMaxSlots = 1u << 20;

  // capacity: ids are 0..capacity-1. slots: a power of two in
  // [kMinSlots, kMaxSlots]. now_ns: the clock Advance will be fed (the
  // engine's is monotonic). Its arrays come from `mem` as `use`.
  static absl::StatusOr<std::unique_ptr<TimerWheel>> Create(
      uint32_t capacity, uint64_t tick_ns, uint64_t now_ns, uint32_t slots = kDefaultSlots,
      const MemoryHook& mem = {}, MemoryUse use = MemoryUse::kFlowTimers);
  // Bytes Create() allocates, exactly (memory.h).
  static uint64_t MemoryBytes(uint32_t capacity, uint32_t slots = kDefaultSlots);
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms `id` for deadline_ns, replacing any pending timer of `id`. A
  // deadline already past fires on the next Advance that reaches the next
  // tick (from inside a callback: never in the same tick, so a callback
  // that keeps re-arming in the past cannot loop).
  void Schedule(uint32_t id, uint64_t deadline_ns);
  // No-op when `id` is not pending.
  void Cancel(uint32_t id);
  bool Pending(uint32_t id) const { return nodes_[id].list != kNone; }
  // The deadline last given to Schedule(id) (meaningful while pending).
  uint64_t Deadline(uint32_t id) const { return nodes_[id].deadline_ns; }
  size_t pending_count() const { return pending_; }
  uint32_t capacity() const { return capacity_; }
  uint64_t tick_ns() const { return tick_ns_; }

  // Calls on_expire(id) for every pending timer with deadline <= now_ns,
  // at most `max` of them, in deadline order at tick granularity (ids due
  // in the same tick in no set order); returns how many fired. If it
  // returns `max`, more may be due: the rest fire on the next call, which
  // resumes where this one stopped. The callback may Schedule or Cancel any
  // id, the firing one included. A clock that jumps (a stalled worker)
  // still fires each due timer exactly once; after a pause of more than
  // slots^2 ticks the timers overdue by more than that fire first, in no
  // set order among themselves.
  template <typename F>
  size_t Advance(uint64_t now_ns, F&& on_expire, size_t max = std::numeric_limits<size_t>::max());

 private:
  static constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

  // One cache-line half per id: a schedule or cancel touches one line
  // (plus its neighbours' links).
  struct Node {
    uint64_t deadline_ns;
    uint64_t tick;  // ceil(deadline_ns / tick_ns_)
    uint32_t next;
    uint32_t prev;
    uint32_t list;  // kNone, a level-0 slot, slots + a level-1 slot, or work_list_
    uint32_t pad;
  };
  static_assert(sizeof(Node) == 32);

  TimerWheel(uint32_t capacity, uint64_t tick_ns, uint64_t now_ns, uint32_t slots,
             const MemoryHook& mem, MemoryUse use);
  void Link(uint32_t list, uint32_t id);
  void Unlink(uint32_t id);
  // Links `id` for max(its tick, earliest); earliest >= next_tick_.
  void Place(uint32_t id, uint64_t earliest);
  // First non-empty level-0 slot in [from, limit), or limit.
  uint32_t FindOccupied(uint32_t from, uint32_t limit) const;
  // Called before the first tick of `epoch` is processed: moves the
  // epoch's level-1 timers down to level 0. After a pause of more than a
  // level-1 turn, first fast-forwards (see Rebase).
  void EnterEpoch(uint64_t now_tick);
  void Rebase(uint64_t new_epoch);
  void MoveList(uint32_t from, uint32_t to);

  const uint32_t capacity_;
  const uint64_t tick_ns_;
  const uint32_t slots_;
  const uint32_t mask_;
  const uint32_t shift_;      // log2(slots_)
  const uint32_t work_list_;  // 2 * slots_: the list being expired
  uint64_t next_tick_;        // first tick not yet fully processed
  uint64_t cascaded_epoch_;   // last epoch whose level-1 list moved down
  size_t pending_ = 0;
  uint32_t level0_ = 0;  // timers in level-0 lists
  // True while a tick's list is being expired: timers scheduled then go to
  // a later tick.
  bool in_advance_ = false;
  MemoryHook mem_;
  Node* nodes_;
  uint32_t* head_;      // 2 * slots_ + 1 lists
  uint64_t* occupied_;  // bit per level-0 slot: list non-empty
};

inline void TimerWheel::Link(uint32_t list, uint32_t id) {
  Node& n = nodes_[id];
  n.prev = kNone;
  n.next = head_[list];
  if (n.next != kNone) nodes_[n.next].prev = id;
  head_[list] = id;
  n.list = list;
  ++pending_;
  if (list < slots_) {
    ++level0_;
    occupied_[list >> 6] |= uint64_t{1} << (list & 63);
  }
}

inline void TimerWheel::Unlink(uint32_t id) {
  Node& n = nodes_[id];
  const uint32_t list = n.list;
  if (n.prev != kNone) {
    nodes_[n.prev].next = n.next;
  } else {
    head_[list] = n.next;
  }
  if (n.next != kNone) nodes_[n.next].prev = n.prev;
  n.list = kNone;
  --pending_;
  if (list < slots_) {
    --level0_;
    if (head_[list] == kNone) occupied_[list >> 6] &= ~(uint64_t{1} << (list & 63));
  }
}

inline void TimerWheel::Place(uint32_t id, uint64_t earliest) {
  const uint64_t t = nodes_[id].tick < earliest ? earliest : nodes_[id].tick;
  if (t - next_tick_ < slots_) {
    Link(static_cast<uint32_t>(t & mask_), id);
  } else {
    Link(slots_ + static_cast<uint32_t>((t >> shift_) & mask_), id);
  }
}

inline uint32_t TimerWheel::FindOccupied(uint32_t from, uint32_t limit) const {
  if (level0_ == 0) return limit;
  uint32_t w = from >> 6;
  uint64_t bits = occupied_[w] & (~uint64_t{0} << (from & 63));
  const uint32_t last_word = (limit - 1) >> 6;
  while (bits == 0) {
    if (++w > last_word) return limit;
    bits = occupied_[w];
  }
  const uint32_t slot = (w << 6) + static_cast<uint32_t>(std::countr_zero(bits));
  return slot < limit ? slot : limit;
}

inline void TimerWheel::Schedule(uint32_t id, uint64_t deadline_ns) {
  assert(id < capacity_);
  Node& n = nodes_[id];
  if (n.list != kNone) Unlink(id);
  n.deadline_ns = deadline_ns;
  // Round up (without overflow): tick t is processed once now >= t * tick,
  // so nothing fires before its deadline.
  n.tick = deadline_ns / tick_ns_ + (deadline_ns % tick_ns_ != 0 ? 1 : 0);
  Place(id, next_tick_ + (in_advance_ ? 1 : 0));
}

inline void TimerWheel::Cancel(uint32_t id) {
  assert(id < capacity_);
  if (nodes_[id].list != kNone) Unlink(id);
}

template <typename F>
size_t TimerWheel::Advance(uint64_t now_ns, F&& on_expire, size_t max) {
  const uint64_t now_tick = now_ns / tick_ns_;
  size_t fired = 0;
  while (next_tick_ <= now_tick) {
    if (pending_ == 0) {
      // Nothing anywhere: jump straight to now.
      next_tick_ = now_tick + 1;
      cascaded_epoch_ = next_tick_ >> shift_;
      break;
    }
    if ((next_tick_ >> shift_) != cascaded_epoch_) EnterEpoch(now_tick);
    // The next tick with timers, looking no further than now_tick and the
    // end of this epoch (where the next level-1 list comes down).
    const uint32_t from = static_cast<uint32_t>(next_tick_ & mask_);
    const uint64_t ahead = now_tick - next_tick_;
    const uint32_t limit =
        ahead < slots_ - from ? from + static_cast<uint32_t>(ahead) + 1 : slots_;
    const uint32_t slot = FindOccupied(from, limit);
    next_tick_ += slot - from;
    if (slot == limit) continue;  // now_tick + 1, or the next epoch
    // Detach the tick's list first, then pop one at a time: the callback
    // can cancel or reschedule any id, and whatever it schedules lands in
    // a later tick, never in the list being walked.
    MoveList(slot, work_list_);
    in_advance_ = true;
    while (head_[work_list_] != kNone) {
      const uint32_t id = head_[work_list_];
      if (fired == max) {
        // Out of budget: put the rest back; the next call resumes here.
        MoveList(work_list_, slot);
        in_advance_ = false;
        return fired;
      }
      Unlink(id);
      ++fired;
      on_expire(id);
    }
    in_advance_ = false;
    ++next_tick_;
  }
  return fired;
}

}  // namespace moat::flow
