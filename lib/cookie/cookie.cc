#include "moat/cookie/cookie.h"

#include <cstring>

namespace moat::cookie {

uint32_t CookieCodec::Mac(const SipKey& key, const CookieTuple& t, uint32_t client_isn,
                          uint64_t slot, uint32_t meta) const {
  // Fixed layouts so IPv4 hashes 22 bytes and IPv6 46: addresses, ports,
  // client ISN, slot number (low 32 bits are plenty: 2^32 minutes), meta.
  uint8_t msg[16 + 16 + 2 + 2 + 4 + 4 + 1 + 1];
  const size_t a = t.addr_len == 16 ? 16 : 4;
  uint8_t* p = msg;
  std::memcpy(p, t.client_addr, a);
  p += a;
  std::memcpy(p, t.server_addr, a);
  p += a;
  std::memcpy(p, &t.client_port, 2);
  std::memcpy(p + 2, &t.server_port, 2);
  std::memcpy(p + 4, &client_isn, 4);
  const uint32_t slot32 = static_cast<uint32_t>(slot);
  std::memcpy(p + 8, &slot32, 4);
  p[12] = static_cast<uint8_t>(meta);
  p[13] = static_cast<uint8_t>(a);  // domain-separates the two families
  return static_cast<uint32_t>(SipHash13(key, msg, static_cast<size_t>(p + 14 - msg)) >>
                               (64 - kMacBits));
}

uint32_t CookieCodec::WscaleCode(uint8_t wscale) {
  if (wscale == kNoWindowScale) return 0;
  // Round down: telling the backend a smaller shift than the client uses
  // only understates the client's window.
  for (uint32_t code = 3; code > 0; --code) {
    if (kWscaleCodes[code] <= wscale) return code;
  }
  return 0;
}

int CookieCodec::MssIndex(bool ipv6, uint16_t mss) {
  const uint16_t* table = ipv6 ? kMssTableV6 : kMssTableV4;
  for (int i = 7; i > 0; --i) {
    if (table[i] <= mss) return i;
  }
  return 0;
}

uint16_t CookieCodec::MssFromIndex(bool ipv6, int idx) {
  return (ipv6 ? kMssTableV6 : kMssTableV4)[idx & 7];
}

uint32_t CookieCodec::MakeIsn(const CookieTuple& t, uint32_t client_isn, const SynOptions& o,
                              uint64_t now_ns) {
  keys_->Refresh(now_ns);
  const uint64_t slot = keys_->slot();
  const uint64_t epoch = keys_->epoch();
  // A SYN without an MSS option means 536 (RFC 9293 §3.7.1) or 1220 for
  // IPv6 (RFC 8200 §5 minimum MTU): index 0 either way.
  const uint16_t mss = o.mss ? o.mss : 0;
  uint32_t meta = (static_cast<uint32_t>(MssIndex(t.addr_len == 16, mss)) << kMssIndexShift) |
                  WscaleCode(o.wscale);
  if (epoch & 1) meta |= kKeyIdBit;
  if (slot & 1) meta |= kSlotParityBit;
  if (o.sack) meta |= kSackBit;
  const SipKey* key = keys_->KeyFor(epoch);
  return (Mac(*key, t, client_isn, slot, meta) << kMacShift) | meta;
}

bool CookieCodec::CheckIsn(const CookieTuple& t, uint32_t client_isn, uint32_t cookie_isn,
                           uint64_t now_ns, SynOptions* out) {
  keys_->Refresh(now_ns);
  const uint32_t meta = cookie_isn & ((1u << kMacShift) - 1);
  // The parity bit names the slot: this one, or the previous. Older
  // cookies land on the wrong slot number and fail the MAC.
  uint64_t slot = keys_->slot();
  if (((slot & 1) != 0) != ((meta & kSlotParityBit) != 0)) {
    if (slot == 0) return false;
    --slot;
  }
  uint64_t epoch = keys_->epoch();
  if (((epoch & 1) != 0) != ((meta & kKeyIdBit) != 0)) {
    if (epoch == 0) return false;
    --epoch;
  }
  const SipKey* key = keys_->KeyFor(epoch);
  if (key == nullptr) return false;
  if (Mac(*key, t, client_isn, slot, meta) != cookie_isn >> kMacShift) return false;
  out->mss = MssFromIndex(t.addr_len == 16, static_cast<int>((meta >> kMssIndexShift) & kMssIndexMask));
  out->wscale = kWscaleCodes[meta & kWscaleCodeMask];
  out->sack = (meta & kSackBit) != 0;
  out->timestamps = false;
  out->ecn = false;
  return true;
}

uint32_t CookieCodec::EncodeTsval(uint32_t clock, const SynOptions& o) {
  uint32_t bits = o.wscale == kNoWindowScale ? kTsWscaleMask : (o.wscale & kTsWscaleMask);
  if (o.sack) bits |= kTsSackBit;
  if (o.ecn) bits |= kTsEcnBit;
  return (clock & ~kTsOptionMask) | bits;
}

void CookieCodec::DecodeTsecr(uint32_t tsecr, SynOptions* out) {
  const uint32_t ws = tsecr & kTsWscaleMask;
  // 15 means "none"; 14 is the largest legal shift (RFC 7323 §2.3).
  out->wscale = ws == kTsWscaleMask ? kNoWindowScale : static_cast<uint8_t>(ws > 14 ? 14 : ws);
  out->sack = (tsecr & kTsSackBit) != 0;
  out->ecn = (tsecr & kTsEcnBit) != 0;
  out->timestamps = true;
}

}  // namespace moat::cookie
