#pragma once
// Engine configuration: the protected services and the options moat
// advertises. Parsed and validated on the control plane (absl::Status with
// a message naming the bad value); the engine only reads it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moat/cookie/cookie.h"
#include "moat/flow/memory.h"

namespace moat::proxy {

// One `--protect` entry: an address prefix and an inclusive port range.
struct ServiceRange {
  uint8_t addr_len = 4;     // 4 (IPv4) or 16 (IPv6)
  uint8_t prefix_len = 32;  // 0..32 or 0..128
  uint8_t addr[16] = {};    // network byte order, host bits zeroed
  uint16_t port_lo = 0;     // host byte order
  uint16_t port_hi = 65535;

  bool Contains(uint8_t len, const uint8_t* a, uint16_t port) const {
    return port >= port_lo && port <= port_hi && ContainsAddress(len, a);
  }
  bool ContainsAddress(uint8_t len, const uint8_t* a) const;
  std::string ToString() const;
};

// The set of protected services. Small and flat on purpose: deployments
// protect a handful of VIPs, and a linear scan of a few entries that sit in
// one or two cache lines beats any tree for that size. Every packet asks,
// so each range is also kept compiled to masked native words: one or two
// AND-compares per range, no byte loop, no memcmp call.
class ServiceSet {
 public:
  static constexpr size_t kMaxRanges = 64;

  absl::Status Add(const ServiceRange& range);
  bool Matches(uint8_t addr_len, const uint8_t* addr, uint16_t port) const {
    const Words a = Load(addr_len, addr);
    for (size_t i = 0; i < size_; ++i) {
      const Compiled& c = compiled_[i];
      if (c.addr_len == addr_len && port >= c.port_lo && port <= c.port_hi &&
          (a.w0 & c.mask0) == c.addr0 && (a.w1 & c.mask1) == c.addr1) {
        return true;
      }
    }
    return false;
  }
  // Address only, any port: for fragments, whose ports are unknown.
  bool MatchesAddress(uint8_t addr_len, const uint8_t* addr) const {
    const Words a = Load(addr_len, addr);
    for (size_t i = 0; i < size_; ++i) {
      const Compiled& c = compiled_[i];
      if (c.addr_len == addr_len && (a.w0 & c.mask0) == c.addr0 &&
          (a.w1 & c.mask1) == c.addr1) {
        return true;
      }
    }
    return false;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const ServiceRange& operator[](size_t i) const { return ranges_[i]; }
  std::string ToString() const;

 private:
  // An address as two native 8-byte words (IPv4 in the low 4 bytes of w0).
  struct Words {
    uint64_t w0, w1;
  };
  struct Compiled {
    uint64_t addr0, addr1;  // the prefix, host bits zero
    uint64_t mask0, mask1;  // prefix_len leading one bits, in address byte order
    uint16_t port_lo, port_hi;
    uint8_t addr_len;
  };
  static Words Load(uint8_t addr_len, const uint8_t* addr) {
    Words a{0, 0};
    if (addr_len == 16) {
      std::memcpy(&a.w0, addr, 8);
      std::memcpy(&a.w1, addr + 8, 8);
    } else {
      uint32_t v4;
      std::memcpy(&v4, addr, 4);
      a.w0 = v4;
    }
    return a;
  }

  std::array<ServiceRange, kMaxRanges> ranges_{};
  std::array<Compiled, kMaxRanges> compiled_{};
  size_t size_ = 0;
};

// Parses `ADDR[/LEN][:PORT[-PORT]],...`; IPv6 addresses with a port go in
// brackets (`[2001:2::2]:80`, `[2001:2::/64]:80-90`), a bare IPv6 prefix
// without a port may omit them (`2001:2::/64`). No port means every port.
absl::StatusOr<ServiceSet> ParseProtect(absl::string_view spec);

// Parses a `--allow` / `--deny` list, `ADDR[/LEN],...` (IPv4 and IPv6,
// brackets optional, no ports) into a set matched with MatchesAddress().
// Empty means no entry. Errors name `--<flag>` and the bad entry.
absl::StatusOr<ServiceSet> ParsePrefixList(absl::string_view flag, absl::string_view spec);

// The highest --synack_rate: beyond a million SYN-ACKs a second towards one
// prefix there is nothing left to limit.
inline constexpr uint32_t kMaxSynAckRate = 1'000'000;

struct EngineConfig {
  // --- The policy: what a reload may change (Engine::Reconfigure). ---
  ServiceSet services;

  // Anti-reflection (rate_limit.h): at most synack_rate SYN-ACKs per second
  // (bursts of as many) towards each client source prefix of these
  // lengths, per engine; 0 = off. The dataplane divides --synack_rate
  // among its workers.
  uint32_t synack_rate = 0;
  uint8_t synack_prefix_v4 = 24;
  uint8_t synack_prefix_v6 = 64;
  // Client source prefixes (MatchesAddress) never rate limited, and those
  // whose SYNs are dropped (drop_denied). Deny wins over allow.
  ServiceSet allow;
  ServiceSet deny;

  // --- Fixed at start-up. ---
  // Token buckets of the rate limiter, per engine (8 bytes each), a power
  // of two; allocated at Create() even when the limit is off, so a reload
  // can turn it on without allocating.
  uint32_t synack_rate_buckets = 65536;

  // What moat advertises in its SYN-ACK (--mss --wscale --sack
  // --timestamps). The defaults suit a Linux backend on a 1500-byte MTU:
  // moat's MSS must not exceed the backend's, since clients size their
  // segments to what moat said.
  uint16_t mss = 1460;  // IPv4; IPv6 advertises mss - 20
  // The ports' MTU (--mtu, kMinMtu..kMaxMtu in held_pool.h): the largest
  // IP packet moat carries. It sizes the held slots (FrameRoom), bounds
  // --mss (at most mtu - 40: IPv4 and TCP headers without options; the
  // IPv6 MSS, mss - 20, then fits mtu - 60 too) and caps the MSS moat
  // passes on to the backend in its SYN.
  uint16_t mtu = 1500;
  uint8_t wscale = 7;
  bool sack = true;
  bool timestamps = true;
  bool ecn = true;  // honour ECN setup when it can be carried (TSval bit)

  // Flow table and held-segment pool, per worker, fixed at start-up.
  uint32_t flow_capacity = 65536;
  uint32_t held_slots = 4096;

  // SYN cache (include/moat/proxy/syn_cache.h): pending handshakes kept
  // per worker so the backend SYN carries the client's exact options; 0
  // answers every SYN with a cookie only. Above syn_flood_rate SYNs per
  // second on a worker (or with the cache 75% full) the worker answers
  // with cookies only, and returns after a calm second below a quarter of
  // the rate.
  uint32_t syn_cache_entries = 4096;
  uint32_t syn_flood_rate = 20000;

  // TCP Fast Open (RFC 7413), moat as the server (lib/proxy/fastopen.cc):
  // SYN-ACKs carry cookies to clients that ask, and a SYN with a valid
  // cookie and data opens the flow at once. At most fastopen_max_pending
  // such flows per worker wait for their backend.
  bool fastopen = false;
  uint32_t fastopen_max_pending = 1024;

  // Offer clients only what each backend's SYN-ACKs agreed to (timestamps,
  // SACK, ECN, MSS), the flags being the upper bound (backend_table.h).
  bool learn_backends = true;

  // Backend handshake: initial RTO per RFC 6298 §2.1, doubled per retry.
  uint32_t backend_syn_rto_ms = 1000;
  uint32_t backend_syn_retries = 3;
  // Teardown and expiry.
  uint32_t time_wait_ms = 5000;
  uint32_t idle_timeout_s = 300;
  uint32_t half_closed_timeout_s = 60;

  // Cookie keys: a 32-byte master secret shared by a fleet, rotated
  // every key_rotation_s with the previous key still accepted.
  cookie::MasterSecret secret{};
  uint32_t key_rotation_s = 3600;

  // Seed for the flow table's keyed hash; random per worker in production.
  uint64_t hash_seed = 0;

  // Where the engine's tables come from (flow/memory.h): aligned_alloc by
  // default; the dataplane points it at hugepages on the worker's NUMA
  // socket. Engine::PlanMemory() says how much of each, exactly.
  flow::MemoryHook memory;

  // Verify the IPv4 header and TCP checksums of protected segments that
  // can create, answer or end state: no established flow yet, or SYN, FIN,
  // RST. Spliced data is only rewritten incrementally (RFC 1624), which
  // keeps a bad checksum bad for its receiver. Where the NIC checked a
  // frame (FrameMeta::rx_*, RX checksum offload) its verdict replaces the
  // software sum: GOOD skips it, BAD drops as a failed sum does. Off, no
  // checksum is judged at all, whatever the NIC said.
  bool verify_checksums = true;

  // Per Side: the port frames towards that side leave by completes IPv4
  // header and TCP checksums (TX checksum offload), so the frames moat
  // builds carry only the pseudo-header sum (frame_meta.h). Not a flag:
  // the dataplane sets it from the port's capabilities at start-up.
  bool tx_checksum_offload[2] = {false, false};
};

// Checks every value's range; the message names the flag and the range.
absl::Status ValidateConfig(const EngineConfig& config);
// The same for the reloadable part only (services, rate limit, lists).
absl::Status ValidatePolicy(const EngineConfig& config);

}  // namespace moat::proxy
