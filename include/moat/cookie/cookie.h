#pragma once
// Stateless SYN cookies (RFC 4987 §3.6): the ISN moat sends in its SYN-ACK
// is a MAC over the connection, so the client's ACK proves the handshake
// without moat keeping anything between the two.
//
// ISN layout (bit 31 first):
//
//   | 31 ............................ 8 | 7  | 6  | 5 4 3 | 2    | 1 0    |
//   | MAC: top 24 bits of SipHash-1-3   | key| slot| MSS  | SACK | wscale |
//   |                                   | id | par.| index|      | code   |
//
// The MAC covers the 4-tuple, the client's ISN, the full time-slot number
// and the low 8 bits, so none of them can be changed without the MAC
// failing. Every value of the low 8 bits is one a genuine cookie can carry,
// so a forged ACK (for a tuple and ISN the attacker chose) validates with
// probability exactly 2^-24: blind brute force costs 2^23 ACKs on average
// per connection, and each success lasts only one connection. At 10 Mpps
// that is one forged flow per ~1.7 s for an attacker who can send 10 M
// spoofed packets a second and still gets only what a real client gets: a
// backend connection moat tracks and can tear down.
//
// Time: slots of kSlotSeconds. A cookie is accepted in its own slot and the
// next one, so it lives between 60 and 120 s. The slot parity bit says which
// of the two slots to recompute; a cookie two slots old fails the MAC.
// Keys: derived from a master secret per rotation epoch (key_schedule.h);
// the current and the previous epoch's keys are live and the key-id bit
// (epoch parity) selects one, so a rotation never invalidates a handshake
// in flight.
//
// Why SipHash-1-3: it is a keyed PRF built for short inputs (our message is
// 22 or 46 bytes), needs no special instructions, and measures ~1.5x faster
// than SipHash-2-4 here (bench/bm_cookie.cc). The attacker sees 24
// truncated output bits per chosen input under a key that rotates hourly;
// 1-3's security margin is ample for that, which is why Linux and Rust's
// std use it for hash-flooding defence too. AES-NI constructions would be
// faster on x86 but tie the build to -maes and a CPU feature check.
//
// Options: 8-entry MSS tables per family; window scale in 2 bits as
// {none, 6, 7, 8}, rounding down, which can only make the backend think the
// client's window is smaller than it is (slower, never wrong). When the
// client sent timestamps, the exact shift, SACK and ECN ride in the low 6
// bits of the TSval moat sends instead (RFC 7323 §5.4: the peer only echoes
// TSval), and the echo in the ACK's TSecr overrides the ISN bits.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "moat/cookie/key_schedule.h"

namespace moat::cookie {

inline constexpr uint8_t kNoWindowScale = 0xff;

struct CookieTuple {
  uint8_t addr_len = 4;  // 4 or 16
  const uint8_t* client_addr = nullptr;
  const uint8_t* server_addr = nullptr;
  uint16_t client_port = 0;  // host order
  uint16_t server_port = 0;
};

struct SynOptions {
  uint16_t mss = 0;
  uint8_t wscale = kNoWindowScale;
  bool sack = false;
  bool timestamps = false;
  bool ecn = false;
};

// Bit layout, named.
inline constexpr int kMacBits = 24;
inline constexpr int kMacShift = 8;
inline constexpr uint32_t kKeyIdBit = 1u << 7;
inline constexpr uint32_t kSlotParityBit = 1u << 6;
inline constexpr int kMssIndexShift = 3;
inline constexpr uint32_t kMssIndexMask = 0x7;
inline constexpr uint32_t kSackBit = 1u << 2;
inline constexpr uint32_t kWscaleCodeMask = 0x3;
inline constexpr uint8_t kWscaleCodes[4] = {kNoWindowScale, 6, 7, 8};

// TSval low bits.
inline constexpr uint32_t kTsOptionBits = 6;
inline constexpr uint32_t kTsOptionMask = (1u << kTsOptionBits) - 1;
inline constexpr uint32_t kTsWscaleMask = 0xf;  // 0xf = no window scale
inline constexpr uint32_t kTsSackBit = 1u << 4;
inline constexpr uint32_t kTsEcnBit = 1u << 5;

inline constexpr uint16_t kMssTableV4[8] = {536, 1200, 1360, 1400, 1440, 1452, 1460, 8960};
inline constexpr uint16_t kMssTableV6[8] = {1220, 1340, 1380, 1400, 1420, 1432, 1440, 8940};

class CookieCodec {
 public:
  explicit CookieCodec(KeySchedule* keys) : keys_(keys) {}

  // Both refresh the key schedule to now_ns first (a compare per call).
  uint32_t MakeIsn(const CookieTuple& t, uint32_t client_isn, const SynOptions& o,
                   uint64_t now_ns);
  // cookie_isn = the ACK's ack number - 1; client_isn = its seq - 1.
  // On success fills mss, wscale and sack from the ISN bits.
  bool CheckIsn(const CookieTuple& t, uint32_t client_isn, uint32_t cookie_isn,
                uint64_t now_ns, SynOptions* out);

  static uint32_t EncodeTsval(uint32_t clock, const SynOptions& o);
  // Overrides wscale, sack and ecn (and sets timestamps) from an echoed TSval.
  static void DecodeTsecr(uint32_t tsecr, SynOptions* out);

  static uint16_t MssFromIndex(bool ipv6, int idx);
  // The largest table entry <= mss (index 0 when below every entry).
  static int MssIndex(bool ipv6, uint16_t mss);
  static uint32_t WscaleCode(uint8_t wscale);

 private:
  uint32_t Mac(const SipKey& key, const CookieTuple& t, uint32_t client_isn, uint64_t slot,
               uint32_t meta) const;
  KeySchedule* keys_;
};

}  // namespace moat::cookie
