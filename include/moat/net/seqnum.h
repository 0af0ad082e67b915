#pragma once
// TCP sequence numbers live in a 2^32 ring (RFC 9293 §3.4): "a < b" means
// "b is ahead of a by less than 2^31". SeqNum makes that the only
// comparison available, and SeqDelta is the signed distance between two
// of them, so an ISN offset can never be mixed up with a plain integer.

#include <cstdint>

namespace moat::net {

class SeqDelta {
 public:
  constexpr SeqDelta() = default;
  constexpr explicit SeqDelta(int32_t v) : v_(v) {}
  constexpr int32_t value() const { return v_; }
  constexpr SeqDelta operator-() const {
    return SeqDelta(static_cast<int32_t>(0u - static_cast<uint32_t>(v_)));
  }
  constexpr bool operator==(const SeqDelta&) const = default;

 private:
  int32_t v_ = 0;
};

class SeqNum {
 public:
  constexpr SeqNum() = default;
  constexpr explicit SeqNum(uint32_t v) : v_(v) {}
  constexpr uint32_t value() const { return v_; }

  constexpr SeqNum operator+(SeqDelta d) const {
    return SeqNum(v_ + static_cast<uint32_t>(d.value()));
  }
  constexpr SeqNum operator-(SeqDelta d) const {
    return SeqNum(v_ - static_cast<uint32_t>(d.value()));
  }
  // Distance from `other` to this, in (-2^31, 2^31].
  constexpr SeqDelta operator-(SeqNum other) const {
    return SeqDelta(static_cast<int32_t>(v_ - other.v_));
  }
  // Advance by a segment length (payload + SYN + FIN), which is unsigned.
  constexpr SeqNum Add(uint32_t n) const { return SeqNum(v_ + n); }

  constexpr bool Before(SeqNum o) const { return static_cast<int32_t>(v_ - o.v_) < 0; }
  constexpr bool After(SeqNum o) const { return static_cast<int32_t>(v_ - o.v_) > 0; }
  constexpr bool BeforeOrEq(SeqNum o) const { return !After(o); }
  constexpr bool AfterOrEq(SeqNum o) const { return !Before(o); }
  // start <= this < start + size, computed without overflow for any size.
  constexpr bool InWindow(SeqNum start, uint32_t size) const { return v_ - start.v_ < size; }

  constexpr bool operator==(const SeqNum&) const = default;

 private:
  uint32_t v_ = 0;
};

}  // namespace moat::net
