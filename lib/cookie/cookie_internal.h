#pragma once
// The cookie codec's building blocks (private to lib/cookie), shared by
// the one-at-a-time path (cookie.cc) and the AVX2 burst path
// (cookie_avx2.cc), so that both hash exactly the same message.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "moat/cookie/cookie.h"
#include "moat/cookie/siphash.h"
#include "sip_lanes_avx2.h"

namespace moat::cookie::detail {

// The MAC message (cookie.h has the layout): every field little-endian, so
// the SipHash blocks are built from the fields in registers.
inline constexpr uint64_t kMacLenV4 = 4 + 4 + 2 + 2 + 4 + 1 + 6;    // 23: 2 words + final block
inline constexpr uint64_t kMacLenV6 = 16 + 16 + 2 + 2 + 4 + 1 + 6;  // 47: 5 words + final block
inline constexpr uint64_t kSlotMask = (uint64_t{1} << 48) - 1;  // exact: key_schedule.h kMinSlotNs

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian host (static_assert in siphash.h)
  return v;
}
inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ports and ISN: bytes 0-1 client port, 2-3 server port, 4-7 client ISN.
// The two ports sit next to each other in CookieTuple, in that order, so
// on this little-endian host they are one 32-bit load.
static_assert(offsetof(CookieTuple, server_port) == offsetof(CookieTuple, client_port) + 2);
inline uint64_t PortsIsnWord(const CookieTuple& t, uint32_t client_isn) {
  uint32_t ports;
  std::memcpy(&ports, reinterpret_cast<const uint8_t*>(&t) + offsetof(CookieTuple, client_port), 4);
  return uint64_t{ports} | (uint64_t{client_isn} << 32);
}
// final block: meta, slot (48 bits), then the message length (SipHash).
inline uint64_t FinalBlock(uint64_t len, uint64_t slot, uint32_t meta) {
  return (len << 56) | ((slot & kSlotMask) << 8) | (meta & 0xff);
}

// Forced inline into MakeIsn and CheckIsn: at -O2 GCC otherwise calls
// these, and the calls cost a third of a cookie.
[[gnu::always_inline]] inline uint32_t MacImpl(const SipKey& key, const CookieTuple& t,
                                               uint32_t client_isn, uint64_t slot, uint32_t meta) {
  uint64_t h;
  if (t.addr_len == 16) {
    const uint64_t blocks[6] = {Load64(t.client_addr),       Load64(t.client_addr + 8),
                                Load64(t.server_addr),       Load64(t.server_addr + 8),
                                PortsIsnWord(t, client_isn), FinalBlock(kMacLenV6, slot, meta)};
    h = internal::SipHashBlocks<kMacCRounds, kMacDRounds>(key, blocks);
  } else {
    const uint64_t blocks[3] = {
        uint64_t{Load32(t.client_addr)} | (uint64_t{Load32(t.server_addr)} << 32),
        PortsIsnWord(t, client_isn), FinalBlock(kMacLenV4, slot, meta)};
    h = internal::SipHashBlocks<kMacCRounds, kMacDRounds>(key, blocks);
  }
  return static_cast<uint32_t>(h >> (64 - kMacBits));
}

// Round down (see cookie.h): {none or < 6} -> 0, 6 -> 1, 7 -> 2, >= 8 -> 3.
// kNoWindowScale (255) must not count as ">= 8".
constexpr uint32_t WscaleCodeFormula(uint32_t wscale) {
  const uint32_t present = wscale != kNoWindowScale;
  return present * ((wscale >= 6) + (wscale >= 7) + (wscale >= 8));
}

// The MSS index (cookie.h): the largest i with table[i] <= mss, 0 when
// none is. As the table ascends, that is the count of entries 1..7 <= mss.
constexpr uint32_t MssIndexFormula(const uint16_t (&table)[kMssTableSize], uint32_t mss) {
  uint32_t idx = 0;
  for (int i = 1; i < kMssTableSize; ++i) idx += table[i] <= mss;
  return idx;
}

// The formulas above, looked up, because MakeIsn runs them for every SYN of
// a flood: two loads instead of ~25 ALU ops.
//
// MSS by mss / 4: every entry of both tables is a multiple of 4, so the
// index only changes at multiples of 4, and every MSS from the largest
// entry up gets index 7. Entries are the index already shifted into place.
// 2.2 KB per family, of which real traffic (a few common MSS values)
// touches a few cache lines.
constexpr bool AllMultiplesOf4(const uint16_t (&table)[kMssTableSize]) {
  for (uint16_t v : table) {
    if (v % 4 != 0) return false;
  }
  return true;
}
static_assert(AllMultiplesOf4(kMssTableV4) && AllMultiplesOf4(kMssTableV6),
              "the MSS lookup steps by 4: a table entry that is not a multiple of 4 needs "
              "another lookup");
inline constexpr uint32_t kMssLutCap = kMssTableV4[kMssTableSize - 1] / 4;
static_assert(kMssTableV6[kMssTableSize - 1] / 4 <= kMssLutCap);
constexpr std::array<uint8_t, kMssLutCap + 1> MakeMssLut(const uint16_t (&table)[kMssTableSize]) {
  std::array<uint8_t, kMssLutCap + 1> lut{};
  for (uint32_t k = 0; k <= kMssLutCap; ++k) {
    lut[k] = static_cast<uint8_t>(MssIndexFormula(table, 4 * k) << kMssIndexShift);
  }
  return lut;
}
inline constexpr auto kMssLutV4 = MakeMssLut(kMssTableV4);
inline constexpr auto kMssLutV6 = MakeMssLut(kMssTableV6);

// Window scale and SACK by the two bytes they occupy in SynOptions
// (wscale, then sack as 0 or 1): the code in bits 0-1, kSackBit.
inline constexpr auto kWscaleSackLut = [] {
  std::array<uint8_t, 512> lut{};
  for (uint32_t w = 0; w < 256; ++w) {
    lut[w] = static_cast<uint8_t>(WscaleCodeFormula(w));
    lut[256 + w] = static_cast<uint8_t>(WscaleCodeFormula(w) | kSackBit);
  }
  return lut;
}();
static_assert(offsetof(SynOptions, mss) == 0 && offsetof(SynOptions, wscale) == 2 &&
                  offsetof(SynOptions, sack) == 3 && sizeof(bool) == 1,
              "OptionBits reads mss, wscale and sack as one 32-bit word");

// The option bits of the metadata (MSS index, SACK, wscale code) for a
// SYN's options. A SYN without an MSS option means 536 (RFC 9293 §3.7.1)
// or 1220 for IPv6 (RFC 8200 §5 minimum MTU): mss == 0 gives index 0
// either way.
[[gnu::always_inline]] inline uint32_t OptionBits(bool ipv6, const SynOptions& o) {
  uint32_t w;
  std::memcpy(&w, &o, 4);  // mss | wscale << 16 | sack << 24, little-endian
  const uint32_t mss_k = std::min<uint32_t>((w & 0xffff) >> 2, kMssLutCap);
  return (ipv6 ? kMssLutV6 : kMssLutV4)[mss_k] | kWscaleSackLut[(w >> 16) & 0x1ff];
}

[[gnu::always_inline]] inline uint32_t WscaleCodeImpl(uint8_t wscale) {
  return kWscaleSackLut[wscale];
}

[[gnu::always_inline]] inline uint32_t MssIndexImpl(bool ipv6, uint16_t mss) {
  const uint32_t k = std::min<uint32_t>(mss >> 2, kMssLutCap);
  return (ipv6 ? kMssLutV6 : kMssLutV4)[k] >> kMssIndexShift;
}

// The metadata byte MakeIsn puts under the MAC and in the ISN's low bits.
[[gnu::always_inline]] inline uint32_t MakeMeta(uint32_t key_id, uint64_t slot,
                                                const CookieTuple& t, const SynOptions& o) {
  return (key_id << kKeyIdShift) | (static_cast<uint32_t>(slot & 1) << kSlotParityShift) |
         OptionBits(t.addr_len == 16, o);
}

// The slot a cookie with this metadata names, checked at now_slot: the
// parity bit says this one or the previous. Older cookies land on the
// wrong slot number and fail the MAC. `stale` is 1 for the previous slot;
// at now_slot 0 there is none, and the caller rejects.
[[gnu::always_inline]] inline uint64_t StaleBit(uint64_t now_slot, uint32_t meta) {
  return (now_slot ^ (meta >> kSlotParityShift)) & 1;
}

// What a valid cookie's metadata grants: the MSS of its index, the
// window scale of its code, SACK; timestamps and ECN only come from TSecr.
constexpr SynOptions DecodeMetaFormula(bool ipv6, uint32_t meta) {
  SynOptions o;
  o.mss = (ipv6 ? kMssTableV6 : kMssTableV4)[(meta >> kMssIndexShift) & kMssIndexMask];
  o.wscale = kWscaleCodes[meta & kWscaleCodeMask];
  o.sack = (meta & kSackBit) != 0;
  o.timestamps = false;
  o.ecn = false;
  return o;
}
// By the metadata's option bits (the low 6), so that a valid ACK's
// options are one 6-byte copy.
inline constexpr uint32_t kOptionBitsMask = (1u << kSlotParityShift) - 1;
constexpr std::array<SynOptions, kOptionBitsMask + 1> MakeDecodeLut(bool ipv6) {
  std::array<SynOptions, kOptionBitsMask + 1> lut{};
  for (uint32_t m = 0; m <= kOptionBitsMask; ++m) lut[m] = DecodeMetaFormula(ipv6, m);
  return lut;
}
inline constexpr auto kDecodeLutV4 = MakeDecodeLut(false);
inline constexpr auto kDecodeLutV6 = MakeDecodeLut(true);

[[gnu::always_inline]] inline void DecodeMeta(bool ipv6, uint32_t meta, SynOptions* out) {
  *out = (ipv6 ? kDecodeLutV6 : kDecodeLutV4)[meta & kOptionBitsMask];
}

#if MOAT_SIP_AVX2
// cookie_avx2.cc, only called when the AVX2 path is active.
// isns_out[i] = MakeIsn's ISN for item i, under `key` (the current one,
// whose id and the slot's parity are in meta_base) in slot `slot`.
void MakeIsnBatchAvx2(const SipKey& key, uint32_t meta_base, uint64_t slot,
                      const CookieTuple* tuples, const uint32_t* client_isns, const SynOptions* syn,
                      size_t n, uint32_t* isns_out);
// CheckIsnBatch's results (valid_out, out for the valid, the count) under
// the live keys (keys[id] has key id id) at now_slot.
size_t CheckIsnBatchAvx2(const SipKey keys[2], uint64_t now_slot, const CookieTuple* tuples,
                         const uint32_t* client_isns, const uint32_t* cookie_isns, size_t n,
                         SynOptions* out, bool* valid_out);
#endif

}  // namespace moat::cookie::detail
