// The SYN-ACK rate limiter (include/moat/proxy/rate_limit.h) and the
// engine's admission check for a client SYN: deny list, allow list, rate.

#include "moat/proxy/rate_limit.h"

#include <new>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "internal.h"
#include "moat/proxy/engine.h"

namespace moat::proxy {
namespace {

// A prefix mask of `bits` leading one bits over `len` bytes, in address
// byte order.
void PrefixMask(uint8_t bits, uint8_t len, uint8_t* mask) {
  std::memset(mask, 0, len);
  for (uint8_t i = 0; i < len && bits > 0; ++i) {
    const uint8_t b = bits >= 8 ? 8 : bits;
    mask[i] = static_cast<uint8_t>(0xff00 >> b);
    bits = static_cast<uint8_t>(bits - b);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SynRateLimiter>> SynRateLimiter::Create(
    uint32_t buckets, uint64_t seed, const flow::MemoryHook& mem) {
  if (buckets == 0 || (buckets & (buckets - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("synack_rate_buckets=%d is not a power of two", buckets));
  }
  std::unique_ptr<SynRateLimiter> l(new SynRateLimiter(buckets, seed, mem));
  l->tat_ = mem.AllocateArray<uint64_t>(buckets, flow::MemoryUse::kRateLimiter);
  if (l->tat_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("cannot allocate %d SYN-ACK rate buckets", buckets));
  }
  return l;
}

SynRateLimiter::SynRateLimiter(uint32_t buckets, uint64_t seed, const flow::MemoryHook& mem)
    : mem_(mem),
      mask_(buckets - 1),
      seed_(seed),
      seed2_((seed << 29 | seed >> 35) ^ flow::internal::kP1) {}

SynRateLimiter::~SynRateLimiter() { mem_.Release(tat_); }

void SynRateLimiter::Configure(uint32_t rate, uint8_t prefix_v4, uint8_t prefix_v6) {
  if (rate == 0) {
    interval_ns_ = 0;
    tolerance_ns_ = 0;
  } else {
    // Rounded to the nearest nanosecond: at most 0.05 % off below 10^6/s.
    interval_ns_ = (internal::kNsPerSec + rate / 2) / rate;
    // A burst of `rate` SYN-ACKs: the first goes at TAT = t, the rate-th at
    // TAT = t + (rate - 1) * T.
    tolerance_ns_ = static_cast<uint64_t>(rate - 1) * interval_ns_;
  }
  uint8_t m[16];
  PrefixMask(prefix_v4 > 32 ? 32 : prefix_v4, 4, m);
  std::memcpy(&mask_v4_, m, 4);
  PrefixMask(prefix_v6 > 128 ? 128 : prefix_v6, 16, m);
  std::memcpy(&mask_v6_[0], m, 8);
  std::memcpy(&mask_v6_[1], m + 8, 8);
}

// A client SYN for a protected service, before it is answered. Deny first
// (a denied prefix is never answered, even if also allowed), then allow
// (never limited), then the rate. Dropping silently is the point: any reply
// would go to the spoofed source.
Engine::SynAckGate Engine::GateSynAck(uint8_t len, const uint8_t* src, uint64_t now_ns) {
  if (!config_.deny.empty() && config_.deny.MatchesAddress(len, src)) return SynAckGate::kDenied;
  if (!limiter_->enabled()) return SynAckGate::kSend;
  if (!config_.allow.empty() && config_.allow.MatchesAddress(len, src)) return SynAckGate::kSend;
  return limiter_->Admit(len, src, now_ns) ? SynAckGate::kSend : SynAckGate::kOverRate;
}

bool Engine::AdmitSyn(const net::PacketView& v, uint64_t now_ns) {
  switch (GateSynAck(v.addr_len(), v.src_addr(), now_ns)) {
    case SynAckGate::kSend:
      return true;
    case SynAckGate::kDenied:
      stats_.Inc(Counter::k_drop_denied);
      return false;
    case SynAckGate::kOverRate:
      stats_.Inc(Counter::k_drop_synack_rate);
      return false;
  }
  return false;
}

}  // namespace moat::proxy
