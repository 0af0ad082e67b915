#include "moat/proxy/config.h"
#include "moat/proxy/held_pool.h"
#include "moat/proxy/syn_cache.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moat::proxy {
namespace {

void MaskPrefix(uint8_t* addr, uint8_t addr_len, uint8_t prefix_len) {
  for (uint8_t i = 0; i < addr_len; ++i) {
    const int bits_left = static_cast<int>(prefix_len) - 8 * i;
    if (bits_left >= 8) continue;
    addr[i] &= bits_left <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits_left));
  }
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view flag, absl::string_view s,
                                   absl::string_view entry) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": bad port '", s, "' in '", entry, "' (expected 0-65535)"));
  }
  return static_cast<uint16_t>(value);
}

// One `ADDR[/LEN][:PORT[-PORT]]` of `--<flag>`; *has_port says whether a
// port was written.
absl::StatusOr<ServiceRange> ParseEntry(absl::string_view flag, absl::string_view entry,
                                        bool* has_port) {
  ServiceRange r;
  *has_port = false;
  absl::string_view addr_part = entry;
  absl::string_view port_part;
  if (absl::ConsumePrefix(&addr_part, "[")) {
    const size_t close = addr_part.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": missing ']' in '", entry, "'"));
    }
    absl::string_view rest = addr_part.substr(close + 1);
    addr_part = addr_part.substr(0, close);
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":")) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", flag, ": expected ':PORT' after ']' in '", entry, "'"));
      }
      port_part = rest;
    }
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    const size_t colon = entry.find(':');
    addr_part = entry.substr(0, colon);
    port_part = entry.substr(colon + 1);
  }
  // else: IPv4 without a port, or a bare IPv6 prefix without a port.

  absl::string_view len_part;
  if (const size_t slash = addr_part.find('/'); slash != absl::string_view::npos) {
    len_part = addr_part.substr(slash + 1);
    addr_part = addr_part.substr(0, slash);
  }
  const std::string addr_str(addr_part);
  if (inet_pton(AF_INET, addr_str.c_str(), r.addr) == 1) {
    r.addr_len = 4;
  } else if (inet_pton(AF_INET6, addr_str.c_str(), r.addr) == 1) {
    r.addr_len = 16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, ": '", addr_part, "' in '", entry,
        "' is not an IPv4 or IPv6 address (IPv6 with a port goes in brackets: "
        "[2001:2::2]:80)"));
  }
  const unsigned max_len = r.addr_len * 8;
  r.prefix_len = static_cast<uint8_t>(max_len);
  if (!len_part.empty()) {
    unsigned len = 0;
    auto [ptr, ec] = std::from_chars(len_part.data(), len_part.data() + len_part.size(), len);
    if (ec != std::errc() || ptr != len_part.data() + len_part.size() || len > max_len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": bad prefix length '/", len_part, "' in '", entry,
          "' (expected 0-", max_len, ")"));
    }
    r.prefix_len = static_cast<uint8_t>(len);
  }
  MaskPrefix(r.addr, r.addr_len, r.prefix_len);

  if (!port_part.empty()) {
    absl::string_view lo = port_part, hi = port_part;
    if (const size_t dash = port_part.find('-'); dash != absl::string_view::npos) {
      lo = port_part.substr(0, dash);
      hi = port_part.substr(dash + 1);
    }
    auto lo_or = ParsePort(flag, lo, entry);
    if (!lo_or.ok()) return lo_or.status();
    auto hi_or = ParsePort(flag, hi, entry);
    if (!hi_or.ok()) return hi_or.status();
    if (*lo_or > *hi_or) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": port range '", port_part, "' in '", entry, "' is reversed"));
    }
    r.port_lo = *lo_or;
    r.port_hi = *hi_or;
    *has_port = true;
  } else if (absl::EndsWith(entry, ":")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": empty port in '", entry, "'"));
  }
  return r;
}

absl::Status CheckRange(absl::string_view flag, uint64_t value, uint64_t lo, uint64_t hi,
                        absl::string_view why = "") {
  if (value >= lo && value <= hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "--%s=%d is out of range [%d, %d]%s%s", flag, value, lo, hi,
      why.empty() ? "" : ": ", why));
}

}  // namespace

bool ServiceRange::ContainsAddress(uint8_t len, const uint8_t* a) const {
  if (len != addr_len) return false;
  const uint8_t full = prefix_len / 8;
  if (std::memcmp(a, addr, full) != 0) return false;
  const uint8_t rem = prefix_len % 8;
  if (rem == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rem));
  return (a[full] & mask) == addr[full];
}

std::string ServiceRange::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(addr_len == 4 ? AF_INET : AF_INET6, addr, buf, sizeof(buf));
  std::string out = addr_len == 16 ? absl::StrCat("[", buf) : std::string(buf);
  if (prefix_len != addr_len * 8) absl::StrAppend(&out, "/", prefix_len);
  if (addr_len == 16) out += "]";
  if (port_lo == 0 && port_hi == 65535) return out;
  absl::StrAppend(&out, ":", port_lo);
  if (port_hi != port_lo) absl::StrAppend(&out, "-", port_hi);
  return out;
}

absl::Status ServiceSet::Add(const ServiceRange& range) {
  if (size_ == kMaxRanges) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "--protect: more than ", kMaxRanges, " entries; use prefixes or port ranges"));
  }
  // Mask and prefix in address byte order, read as native words like the
  // packet's address in Matches().
  uint8_t mask[16] = {};
  const uint8_t bits = std::min<uint8_t>(range.prefix_len, range.addr_len * 8);
  for (uint8_t i = 0; i < bits / 8; ++i) mask[i] = 0xff;
  if (bits % 8) mask[bits / 8] = static_cast<uint8_t>(0xff << (8 - bits % 8));
  uint8_t addr[16] = {};
  for (int i = 0; i < range.addr_len; ++i) addr[i] = range.addr[i] & mask[i];
  Compiled c;
  std::memcpy(&c.addr0, addr, 8);
  std::memcpy(&c.addr1, addr + 8, 8);
  std::memcpy(&c.mask0, mask, 8);
  std::memcpy(&c.mask1, mask + 8, 8);
  c.port_lo = range.port_lo;
  c.port_hi = range.port_hi;
  c.addr_len = range.addr_len;
  compiled_[size_] = c;
  ranges_[size_++] = range;
  return absl::OkStatus();
}

std::string ServiceSet::ToString() const {
  std::string out;
  for (size_t i = 0; i < size_; ++i) {
    if (i) out += ",";
    out += ranges_[i].ToString();
  }
  return out;
}

absl::StatusOr<ServiceSet> ParseProtect(absl::string_view spec) {
  ServiceSet set;
  if (absl::StripAsciiWhitespace(spec).empty()) {
    return absl::InvalidArgumentError(
        "--protect is required: name at least one service, e.g. "
        "--protect=198.18.0.2:80,[2001:2::2]:80");
  }
  for (absl::string_view entry : absl::StrSplit(spec, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--protect: empty entry in '", spec, "'"));
    }
    bool has_port = false;
    auto range = ParseEntry("protect", entry, &has_port);
    if (!range.ok()) return range.status();
    if (absl::Status s = set.Add(*range); !s.ok()) return s;
  }
  return set;
}

absl::StatusOr<ServiceSet> ParsePrefixList(absl::string_view flag, absl::string_view spec) {
  ServiceSet set;
  if (absl::StripAsciiWhitespace(spec).empty()) return set;
  for (absl::string_view entry : absl::StrSplit(spec, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": empty entry in '", spec, "'"));
    }
    bool has_port = false;
    auto range = ParseEntry(flag, entry, &has_port);
    if (!range.ok()) return range.status();
    if (has_port) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": '", entry,
          "' has a port; it takes source address prefixes only, e.g. 198.18.7.0/24,2001:2::/48"));
    }
    if (set.size() == ServiceSet::kMaxRanges) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", flag, ": more than ", ServiceSet::kMaxRanges,
          " prefixes; use shorter prefixes, or filter large lists in front of moat"));
    }
    if (absl::Status s = set.Add(*range); !s.ok()) return s;
  }
  return set;
}

absl::Status ValidateConfig(const EngineConfig& c) {
  if (c.services.empty()) {
    return absl::InvalidArgumentError("--protect is required: no service to protect");
  }
  // 536 is the IPv4 default MSS (RFC 9293 §3.7.1); a larger value than the
  // path allows makes clients send segments the backend cannot take.
  if (absl::Status s = CheckRange("mss", c.mss, 536, 9000); !s.ok()) return s;
  // 1280: the IPv6 minimum (RFC 8200 §5), which moat bridges; 9000: the
  // jumbo size its buffers and the cookie's MSS tables are built for.
  if (absl::Status s = CheckRange("mtu", c.mtu, kMinMtu, kMaxMtu); !s.ok()) return s;
  // What the SYN-ACK advertises must fit the MTU, or clients send segments
  // that no port on the path carries: 20 bytes of IPv4 header and 20 of
  // TCP header without options (RFC 9293 §3.7.1 counts the MSS so; the
  // IPv6 SYN-ACK advertises mss - 20 for its 40-byte header).
  if (c.mss + 40u > c.mtu) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--mss=%d does not fit --mtu=%d: a %d-byte MTU carries an MSS of at most %d (MTU - 40 "
        "bytes of IPv4 and TCP headers); lower --mss or raise --mtu",
        c.mss, c.mtu, c.mtu, c.mtu - 40));
  }
  // RFC 7323 §2.3: shift counts above 14 are not allowed.
  if (absl::Status s = CheckRange("wscale", c.wscale, 0, 14); !s.ok()) return s;
  if (absl::Status s = CheckRange("flow_capacity", c.flow_capacity, 1, 1u << 24,
                                  "the table is allocated per worker at start-up");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("held_slots", c.held_slots, 1, 1u << 20); !s.ok()) return s;
  if (absl::Status s = CheckRange("syn_cache_entries", c.syn_cache_entries, 0,
                                  SynCache::kMaxEntries, "0 turns the SYN cache off");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("syn_flood_rate", c.syn_flood_rate, 40, 100'000'000,
                                  "SYNs per second per worker");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("fastopen_max_pending", c.fastopen_max_pending, 1, 1u << 20);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("backend_syn_rto_ms", c.backend_syn_rto_ms, 10, 60000);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("backend_syn_retries", c.backend_syn_retries, 0, 10);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("time_wait_ms", c.time_wait_ms, 0, 240000); !s.ok()) return s;
  if (absl::Status s = CheckRange("idle_timeout_s", c.idle_timeout_s, 1, 86400); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("half_closed_timeout_s", c.half_closed_timeout_s, 1, 86400);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("key_rotation_s", c.key_rotation_s, 120, 7 * 86400,
                                  "a key must outlive a cookie (120 s)");
      !s.ok()) {
    return s;
  }
  return ValidatePolicy(c);
}

absl::Status ValidatePolicy(const EngineConfig& c) {
  if (c.services.empty()) {
    return absl::InvalidArgumentError("--protect is required: no service to protect");
  }
  if (absl::Status s = CheckRange("synack_rate", c.synack_rate, 0, kMaxSynAckRate,
                                  "SYN-ACKs per second per source prefix, 0 = off");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("synack_prefix_v4", c.synack_prefix_v4, 0, 32); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("synack_prefix_v6", c.synack_prefix_v6, 0, 128); !s.ok()) {
    return s;
  }
  const uint32_t b = c.synack_rate_buckets;
  if (b < 64 || b > (1u << 24) || (b & (b - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "synack_rate_buckets=%d must be a power of two in [64, 2^24]", b));
  }
  return absl::OkStatus();
}

}  // namespace moat::proxy
