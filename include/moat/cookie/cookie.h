#pragma once
// Stateless SYN cookies (RFC 4987 §3.6): the ISN moat sends in its SYN-ACK
// is a MAC over the connection, so the client's ACK proves the handshake
// without moat keeping anything between the two.
//
// ISN layout (bit 31 first):
//
//   | 31 .......................... 8 |  7  |   6    | 5 4 3 |  2   |  1 0   |
//   | MAC: top 24 bits of SipHash-1-3 | key | slot   |  MSS  | SACK | wscale |
//   |                                 | id  | parity | index |      |  code  |
//
// MAC input (fixed layout; IPv4 23 bytes, IPv6 47, so the SipHash length
// byte also separates the families; numbers little-endian):
//   client addr | server addr | client port (16) | server port (16) |
//   client ISN (32) | low 8 bits of the cookie (8) | slot number (48)
// under the key of the epoch named by the key-id bit. So the MAC covers the
// 4-tuple, the client's ISN, the full slot number, the key id and all eight
// metadata bits: none can be changed without the MAC failing.
//
// Forgery: every value of the low 8 bits is one a genuine cookie can carry
// (8 MSS indexes, 4 wscale codes, both SACK, parity and key-id values), so
// the validator never rejects on them and only the 24-bit MAC matters: for
// any tuple and client ISN the attacker picks, a blind ACK validates with
// probability 2^-24 (~6e-8). A flood of random ACKs at R packets/s yields
// R / 2^24 forged flows per second (0.6/s at 10 Mpps), each costing us
// what a real client does: a flow entry and a backend SYN. An attacker
// after one chosen (spoofed) tuple enumerates the 2^24 MAC values: 2^23
// ACKs on average, 2^24 at most, ~0.8 s at 10 Mpps, well inside the
// cookie's 60..120 s life. That is inherent to a 32-bit cookie, and it
// buys the attacker one connection per 2^23 packets, never a key: the MAC
// is a PRF, so failed guesses teach nothing about other tuples. Linux's
// syncookies reach 2^-29 (2 of 256 counter values x 4 MSS indexes / 2^24)
// by spending fewer ISN bits on metadata
// (2 bits of MSS, a range-checked time counter) and carrying window scale
// and SACK only in timestamps; moat keeps wscale and SACK in the ISN so
// clients without timestamps keep them, at the price of those 4 bits.
//
// Time: slots of kSlotSeconds (60 s). A cookie is accepted in its own slot
// and the next, so it lives between 60 and 120 s depending on where in its
// slot it was made. The slot parity bit says which of the two slots to
// recompute; a cookie two slots old is checked against the wrong slot
// number and fails the MAC like any forgery.
// Keys: derived from a master secret per rotation epoch (key_schedule.h);
// the current and previous epochs' keys are live and the key-id bit (epoch
// parity) selects one, so a rotation never invalidates a cookie in flight.
//
// Why SipHash-1-3, by measurement (bench/bm_cookie.cc; Xeon 2.6 GHz,
// GCC 12 -O2, medians of 5; per cookie, single and burst-of-32 agree):
//
//                          SipHash-1-3   SipHash-2-4
//   MAC, IPv4 (23 bytes)     8.3 ns        13.4 ns     (1.6x)
//   MAC, IPv6 (47 bytes)    12.5 ns        21.2 ns     (1.7x)
//   MakeIsn V4 / V6         14.8 / 19.9 ns (with 1-3; 2-4 adds ~5 / ~9 ns)
//   CheckIsn V4 / V6        12.5 / 16.9 ns
//
// The cookie must be a real keyed PRF: with CRC, jhash or any unkeyed or
// linear hash an attacker predicts or correlates MACs and forges at will.
// SipHash is a PRF designed for inputs this short and needs no special
// instructions. The cookie runs on the flood path (every spoofed SYN,
// every forged ACK), where one core's budget at 10GbE line rate (14.88
// Mpps of 64-byte frames) is 67 ns per packet: 2-4 would spend a third
// more per SYN for a margin this use cannot exploit. The attacker sees at
// most 24 truncated output bits per chosen input (and only for sources it
// can receive at), under a key that changes every hour, and even a perfect
// PRF leaves forgery at the 24-bit tag's 2^-24; no published attack
// recovers a key or forges on full SipHash-1-3. Rust's std HashMap and
// CPython (since 3.11) use 1-3 for hash-flooding defence; the Linux kernel
// is more conservative and keeps 1-3 (hsiphash) for hash tables while its
// syncookies use 2-4, which is the choice to revisit if 1-3 ever shows a
// weakness: kMacCRounds/kMacDRounds below switch it (and change every
// known answer). Key derivation, once an hour, uses 2-4.
// AES-NI constructions (one AES block as a PRF) would change the function
// (every cookie, and a fleet mixing versions), need a software AES for CPUs
// without AES-NI that computes exactly the same, and buy little: the
// 23-byte IPv4 message is two AES blocks, 20 AES rounds, while a burst of
// SipHash-1-3 in AVX2 lanes already costs ~7 TSC cycles per IPv4 MAC and
// ~11 per IPv6 (bench/bm_cookie.cc BM_Cookie_SipHash13Batch_*, AMD EPYC
// Zen 2), below what the metadata and message staging around it cost.
//
// Bursts: MakeIsnBatch and CheckIsnBatch give exactly the ISNs and
// verdicts of MakeIsn and CheckIsn item by item, on every path
// (siphash_batch.h: scalar, or 8 messages in AVX2 lanes, chosen at run
// time). Measured in one run (release, bursts of 32, AMD EPYC Zen 2 on a
// busy shared VM, TSC cycles per cookie from CPU time, best of 5):
//
//                          one at a time   burst, avx2   burst, scalar
//   make IPv4                 35.6           16.2 (15.4/64)  29.7
//   make IPv6                 48.7           19.4            42.9
//   check IPv4, valid         38.4           19.4            36.3
//   check IPv4, random ACKs   35.6           16.6            34.6
//   check IPv6, valid         52.6           23.9            51.0
//   make, IPv4/IPv6 mixed      -             33.0            34.4
//
// A burst that mixes families at random gains little: each family runs as
// its own short pipeline, with its start, end and padded lanes exposed.
// Floods are one family.
//
// Options: 8-entry MSS tables per family (the largest entry <= the
// client's MSS; index 0, the RFC 9293 §3.7.1 / RFC 8200 §5 default, when
// the client's is smaller or absent). Window scale in 2 bits as {none, 6,
// 7, 8}, the largest <= the client's shift (none counts as shift 0). That
// can only make the backend read the client's windows as smaller than they
// are (a shift of 5 read as "no scaling" is a window 32x too small): the
// backend sends less than the client could take, slower but never beyond
// the client's buffer, which is the failure that would matter.
// When the client sent timestamps the exact shift, SACK and ECN also ride
// in the low 6 bits of the TSval moat sends (RFC 7323 §5.4: TSval is
// opaque to the peer, which only echoes it), and the echo in the ACK's
// TSecr overrides the ISN's coarse bits (DecodeTsecrChecked).

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "moat/cookie/key_schedule.h"

namespace moat::cookie {

inline constexpr uint8_t kNoWindowScale = 0xff;
inline constexpr uint8_t kMaxWindowScale = 14;  // RFC 7323 §2.3

struct CookieTuple {
  uint8_t addr_len = 4;  // 4 or 16
  const uint8_t* client_addr = nullptr;
  const uint8_t* server_addr = nullptr;
  uint16_t client_port = 0;  // host order
  uint16_t server_port = 0;
};

struct SynOptions {
  uint16_t mss = 0;                 // 0 = absent
  uint8_t wscale = kNoWindowScale;  // kNoWindowScale if absent
  bool sack = false;
  bool timestamps = false;
  bool ecn = false;
};

// The cookie MAC: SipHash-c-d with these round counts (see above).
inline constexpr int kMacCRounds = 1;
inline constexpr int kMacDRounds = 3;

// ISN bit layout, named.
inline constexpr int kMacBits = 24;
inline constexpr int kMacShift = 8;
inline constexpr uint32_t kMetaMask = (1u << kMacShift) - 1;
inline constexpr uint32_t kKeyIdBit = 1u << 7;
inline constexpr int kKeyIdShift = 7;
inline constexpr uint32_t kSlotParityBit = 1u << 6;
inline constexpr int kSlotParityShift = 6;
inline constexpr int kMssIndexShift = 3;
inline constexpr uint32_t kMssIndexMask = 0x7;
inline constexpr uint32_t kSackBit = 1u << 2;
inline constexpr uint32_t kWscaleCodeMask = 0x3;
// Code -> shift. Code 0 means "no window scale option".
inline constexpr uint8_t kWscaleCodes[4] = {kNoWindowScale, 6, 7, 8};
static_assert(kMacBits + 1 + 1 + 3 + 1 + 2 == 32, "ISN layout must fill 32 bits");

// TSval low bits (when the client sent timestamps).
inline constexpr uint32_t kTsOptionBits = 6;
inline constexpr uint32_t kTsOptionMask = (1u << kTsOptionBits) - 1;
inline constexpr uint32_t kTsWscaleMask = 0xf;  // the shift 0..14; 0xf = none
inline constexpr uint32_t kTsSackBit = 1u << 4;
inline constexpr uint32_t kTsEcnBit = 1u << 5;

inline constexpr int kMssTableSize = 8;
inline constexpr uint16_t kMssTableV4[kMssTableSize] = {536,  1200, 1360, 1400,
                                                        1440, 1452, 1460, 8960};
inline constexpr uint16_t kMssTableV6[kMssTableSize] = {1220, 1340, 1380, 1400,
                                                        1420, 1432, 1440, 8940};

class CookieCodec {
 public:
  // keys must outlive the codec; both are per worker.
  explicit CookieCodec(KeySchedule* keys) : keys_(keys) {}

  // Both refresh the key schedule to now_ns first (one compare per call).
  // Allocation-free; the only branches are the rare key/slot refresh.
  uint32_t MakeIsn(const CookieTuple& t, uint32_t client_isn, const SynOptions& o,
                   uint64_t now_ns) const;
  // cookie_isn = the ACK's ack number - 1; client_isn = its seq - 1.
  // On success fills mss, wscale and sack from the ISN bits (timestamps
  // and ecn false: apply DecodeTsecrChecked when the ACK has timestamps).
  bool CheckIsn(const CookieTuple& t, uint32_t client_isn, uint32_t cookie_isn, uint64_t now_ns,
                SynOptions* out) const;

  // The same for a burst: isns_out[i] = MakeIsn(tuples[i], client_isns[i],
  // syn[i], now_ns) for every i < n, bit for bit, on every CPU and path
  // (see siphash_batch.h). IPv4 and IPv6 tuples may be mixed (a burst of
  // one family is fastest); any n (0 included; bursts above kBatchChunk
  // run as several chunks). Refreshes the keys once, so the whole burst
  // gets one slot and key. No allocation; isns_out must not overlap the
  // inputs.
  void MakeIsnBatch(const CookieTuple* tuples, const uint32_t* client_isns, const SynOptions* syn,
                    size_t n, uint64_t now_ns, uint32_t* isns_out) const;
  // valid_out[i] = CheckIsn(tuples[i], client_isns[i], cookie_isns[i],
  // now_ns, &out[i]) for every i < n, and out[i] is what CheckIsn would
  // decode where valid_out[i]; where not, out[i] is left untouched, as
  // CheckIsn leaves it. Returns the number of valid cookies. Same
  // guarantees as MakeIsnBatch; out and valid_out must not overlap the
  // inputs.
  size_t CheckIsnBatch(const CookieTuple* tuples, const uint32_t* client_isns,
                       const uint32_t* cookie_isns, size_t n, uint64_t now_ns, SynOptions* out,
                       bool* valid_out) const;
  // Longer batches run as chunks of this many (the family split keeps
  // 8-bit positions on the stack). Any n works; this is no limit.
  static constexpr size_t kBatchChunk = 64;
  // The implementation the batch calls use (scalar, avx2), for the
  // start-up log; SetSipBatchPath() in siphash_batch.h forces one.
  static const char* BatchPathName();

  // The TSval for moat's SYN-ACK: clock with its low 6 bits replaced by
  // the client's exact window shift (0xf = none), SACK and ECN.
  static uint32_t EncodeTsval(uint32_t clock, const SynOptions& o);
  // Sets wscale, sack and ecn (and timestamps) from an echoed TSval.
  static void DecodeTsecr(uint32_t tsecr, SynOptions* out);
  // For the engine: *out holds what CheckIsn decoded. Applies the TSecr
  // bits only when they agree with the ISN's coarse bits (same wscale code,
  // same SACK), which a faithful echo always does; a peer or middlebox
  // that mangles TSecr then gets the ISN's values instead of garbage.
  // Returns whether the TSecr bits were used.
  static bool DecodeTsecrChecked(uint32_t tsecr, SynOptions* out);

  static uint16_t MssFromIndex(bool ipv6, int idx);
  // The largest table entry <= mss (index 0 when below every entry or 0).
  static int MssIndex(bool ipv6, uint16_t mss);
  // The largest code whose shift <= wscale (0 = none, also for shifts < 6).
  static uint32_t WscaleCode(uint8_t wscale);

 private:
  friend class CookieCodecPeer;  // tests: raw MAC access

  static uint32_t Mac(const SipKey& key, const CookieTuple& t, uint32_t client_isn, uint64_t slot,
                      uint32_t meta);
  KeySchedule* keys_;
};

}  // namespace moat::cookie
