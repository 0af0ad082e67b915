// A new policy on a running engine (reload): the protected services, the
// SYN-ACK rate limit and the allow/deny lists change between two bursts,
// on the engine's own thread; the flow table, the timers and every flow's
// state stay as they are.
//
// A service that the new policy no longer protects may still have spliced
// flows: their segments need their translation until the flows end, or
// both ends would see the other's unshifted sequence numbers and reset.
// Classify() decides "protected" from the services before it probes the
// table, so the removed services are kept in retired_: a segment that no
// current service matches but a retired one does is looked up, and handled
// by its flow if there is one; without a flow it is bridged like any other
// traffic (a new connection to a removed service is the backend's own).
// Retired services are forgotten when a later policy protects them again;
// at most ServiceSet::kMaxRanges are kept, the oldest forgotten first. The
// cost is one flow-table probe for the segments of removed services only.

#include <array>

#include "moat/proxy/engine.h"

namespace moat::proxy {
namespace {

bool SameRange(const ServiceRange& a, const ServiceRange& b) {
  return a.addr_len == b.addr_len && a.prefix_len == b.prefix_len && a.port_lo == b.port_lo &&
         a.port_hi == b.port_hi && std::memcmp(a.addr, b.addr, a.addr_len) == 0;
}

bool Has(const ServiceSet& set, const ServiceRange& r) {
  for (size_t i = 0; i < set.size(); ++i) {
    if (SameRange(set[i], r)) return true;
  }
  return false;
}

}  // namespace

void Engine::Reconfigure(const EngineConfig& next) {
  // Oldest first: what was retired before, then what this policy removes.
  std::array<ServiceRange, 2 * ServiceSet::kMaxRanges> keep;
  size_t n = 0;
  for (size_t i = 0; i < retired_.size(); ++i) {
    if (!Has(next.services, retired_[i])) keep[n++] = retired_[i];
  }
  for (size_t i = 0; i < config_.services.size(); ++i) {
    const ServiceRange& r = config_.services[i];
    if (!Has(next.services, r) && !Has(retired_, r)) keep[n++] = r;
  }
  const size_t first = n > ServiceSet::kMaxRanges ? n - ServiceSet::kMaxRanges : 0;
  ServiceSet retired;
  for (size_t i = first; i < n; ++i) (void)retired.Add(keep[i]);  // fits: at most kMaxRanges

  const uint64_t before = retired_.size();
  retired_ = retired;
  stats_.Dec(Counter::k_services_retired, before);
  stats_.Inc(Counter::k_services_retired, retired_.size());

  config_.services = next.services;
  config_.synack_rate = next.synack_rate;
  config_.synack_prefix_v4 = next.synack_prefix_v4;
  config_.synack_prefix_v6 = next.synack_prefix_v6;
  config_.allow = next.allow;
  config_.deny = next.deny;
  limiter_->Configure(config_.synack_rate, config_.synack_prefix_v4, config_.synack_prefix_v6);
  stats_.Inc(Counter::k_config_reloads);
}

}  // namespace moat::proxy
