#include "moat/cookie/cookie.h"

#include <cstring>

namespace moat::cookie {
namespace {

// The MAC message (cookie.h has the layout): every field little-endian, so
// the SipHash blocks are built from the fields in registers.
constexpr uint64_t kMacLenV4 = 4 + 4 + 2 + 2 + 4 + 1 + 6;    // 23: 2 words + final block
constexpr uint64_t kMacLenV6 = 16 + 16 + 2 + 2 + 4 + 1 + 6;  // 47: 5 words + final block
constexpr uint64_t kSlotMask = (uint64_t{1} << 48) - 1;      // exact: key_schedule.h kMinSlotNs

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
inline uint64_t PortsIsnWord(const CookieTuple& t, uint32_t client_isn) {
  return uint64_t{t.client_port} | (uint64_t{t.server_port} << 16) | (uint64_t{client_isn} << 32);
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

[[gnu::always_inline]] inline uint32_t WscaleCodeImpl(uint8_t wscale) {
  // Round down (see cookie.h): {none or < 6} -> 0, 6 -> 1, 7 -> 2, >= 8 -> 3.
  // kNoWindowScale (255) must not count as ">= 8".
  const uint32_t present = wscale != kNoWindowScale;
  return present * ((wscale >= 6) + (wscale >= 7) + (wscale >= 8));
}

[[gnu::always_inline]] inline uint32_t MssIndexImpl(bool ipv6, uint16_t mss) {
  // The tables ascend, so the largest index with table[i] <= mss is the
  // count of entries 1..7 that are <= mss. Branch-free.
  const uint16_t* table = ipv6 ? kMssTableV6 : kMssTableV4;
  uint32_t idx = 0;
  for (int i = 1; i < kMssTableSize; ++i) idx += table[i] <= mss;
  return idx;
}

}  // namespace

uint32_t CookieCodec::Mac(const SipKey& key, const CookieTuple& t, uint32_t client_isn,
                          uint64_t slot, uint32_t meta) {
  return MacImpl(key, t, client_isn, slot, meta);
}

uint32_t CookieCodec::WscaleCode(uint8_t wscale) { return WscaleCodeImpl(wscale); }

int CookieCodec::MssIndex(bool ipv6, uint16_t mss) {
  return static_cast<int>(MssIndexImpl(ipv6, mss));
}

uint16_t CookieCodec::MssFromIndex(bool ipv6, int idx) {
  return (ipv6 ? kMssTableV6 : kMssTableV4)[idx & (kMssTableSize - 1)];
}

uint32_t CookieCodec::MakeIsn(const CookieTuple& t, uint32_t client_isn, const SynOptions& o,
                              uint64_t now_ns) const {
  keys_->Refresh(now_ns);
  const uint64_t slot = keys_->slot();
  // A SYN without an MSS option means 536 (RFC 9293 §3.7.1) or 1220 for
  // IPv6 (RFC 8200 §5 minimum MTU): o.mss == 0 gives index 0 either way.
  const uint32_t meta = (keys_->current_key_id() << kKeyIdShift) |
                        (static_cast<uint32_t>(slot & 1) << kSlotParityShift) |
                        (MssIndexImpl(t.addr_len == 16, o.mss) << kMssIndexShift) |
                        (static_cast<uint32_t>(o.sack) * kSackBit) | WscaleCodeImpl(o.wscale);
  return (MacImpl(keys_->current_key(), t, client_isn, slot, meta) << kMacShift) | meta;
}

bool CookieCodec::CheckIsn(const CookieTuple& t, uint32_t client_isn, uint32_t cookie_isn,
                           uint64_t now_ns, SynOptions* out) const {
  keys_->Refresh(now_ns);
  const uint32_t meta = cookie_isn & kMetaMask;
  // The parity bit names the slot: this one, or the previous. Older
  // cookies land on the wrong slot number and fail the MAC.
  const uint64_t now_slot = keys_->slot();
  const uint64_t stale = (now_slot ^ (meta >> kSlotParityShift)) & 1;
  if (stale > now_slot) return false;  // slot 0: there is no previous slot
  const uint64_t slot = now_slot - stale;
  // The key-id bit names the key directly: keys_[id] is whichever of the
  // current and previous epoch has that parity.
  const SipKey& key = keys_->KeyForId(meta >> kKeyIdShift);
  if (MacImpl(key, t, client_isn, slot, meta) != (cookie_isn >> kMacShift)) return false;
  const uint32_t mss_index = (meta >> kMssIndexShift) & kMssIndexMask;
  out->mss = (t.addr_len == 16 ? kMssTableV6 : kMssTableV4)[mss_index];
  out->wscale = kWscaleCodes[meta & kWscaleCodeMask];
  out->sack = (meta & kSackBit) != 0;
  out->timestamps = false;
  out->ecn = false;
  return true;
}

uint32_t CookieCodec::EncodeTsval(uint32_t clock, const SynOptions& o) {
  // The parser already clamps shifts to 14 (RFC 7323 §2.3); clamp again so
  // nothing but kNoWindowScale can become the 0xf "none" code.
  const uint32_t ws = o.wscale == kNoWindowScale   ? kTsWscaleMask
                      : o.wscale > kMaxWindowScale ? kMaxWindowScale
                                                   : o.wscale;
  const uint32_t bits = ws | (static_cast<uint32_t>(o.sack) * kTsSackBit) |
                        (static_cast<uint32_t>(o.ecn) * kTsEcnBit);
  return (clock & ~kTsOptionMask) | bits;
}

void CookieCodec::DecodeTsecr(uint32_t tsecr, SynOptions* out) {
  const uint32_t ws = tsecr & kTsWscaleMask;
  // 0xf means none; the encoder never writes a shift above 14, so 15 is
  // unambiguous.
  out->wscale = ws == kTsWscaleMask ? kNoWindowScale : static_cast<uint8_t>(ws);
  out->sack = (tsecr & kTsSackBit) != 0;
  out->ecn = (tsecr & kTsEcnBit) != 0;
  out->timestamps = true;
}

bool CookieCodec::DecodeTsecrChecked(uint32_t tsecr, SynOptions* out) {
  SynOptions ts = *out;
  DecodeTsecr(tsecr, &ts);
  if (WscaleCode(ts.wscale) != WscaleCode(out->wscale) || ts.sack != out->sack) {
    // Not our echo. The ACK still carried timestamps, so they are in use.
    out->timestamps = true;
    return false;
  }
  *out = ts;
  return true;
}

}  // namespace moat::cookie
