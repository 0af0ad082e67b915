#include "moat/cookie/cookie.h"

#include "cookie_internal.h"
#include "moat/cookie/siphash_batch.h"

namespace moat::cookie {

using detail::DecodeMeta;
using detail::MacImpl;
using detail::MakeMeta;
using detail::MssIndexImpl;
using detail::StaleBit;
using detail::WscaleCodeImpl;

const char* CookieCodec::BatchPathName() { return SipBatchPathName(ActiveSipBatchPath()); }

void CookieCodec::MakeIsnBatch(const CookieTuple* tuples, const uint32_t* client_isns,
                               const SynOptions* syn, size_t n, uint64_t now_ns,
                               uint32_t* isns_out) const {
  keys_->Refresh(now_ns);
  const uint64_t slot = keys_->slot();
  const uint32_t key_id = keys_->current_key_id();
  const SipKey& key = keys_->current_key();
#if MOAT_SIP_AVX2
  if (ActiveSipBatchPath() == SipBatchPath::kAvx2) {
    const uint32_t meta_base =
        (key_id << kKeyIdShift) | (static_cast<uint32_t>(slot & 1) << kSlotParityShift);
    detail::MakeIsnBatchAvx2(key, meta_base, slot, tuples, client_isns, syn, n, isns_out);
    return;
  }
#endif
  // The scalar path: MakeIsn's body per item (independent items, so the
  // CPU overlaps their hashes somewhat on its own).
  for (size_t i = 0; i < n; ++i) {
    const uint32_t meta = MakeMeta(key_id, slot, tuples[i], syn[i]);
    isns_out[i] = (MacImpl(key, tuples[i], client_isns[i], slot, meta) << kMacShift) | meta;
  }
}

size_t CookieCodec::CheckIsnBatch(const CookieTuple* tuples, const uint32_t* client_isns,
                                  const uint32_t* cookie_isns, size_t n, uint64_t now_ns,
                                  SynOptions* out, bool* valid_out) const {
  keys_->Refresh(now_ns);
  const uint64_t now_slot = keys_->slot();
#if MOAT_SIP_AVX2
  if (ActiveSipBatchPath() == SipBatchPath::kAvx2) {
    const SipKey keys[2] = {keys_->KeyForId(0), keys_->KeyForId(1)};
    return detail::CheckIsnBatchAvx2(keys, now_slot, tuples, client_isns, cookie_isns, n, out,
                                     valid_out);
  }
#endif
  size_t valid = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t meta = cookie_isns[i] & kMetaMask;
    const uint64_t stale = StaleBit(now_slot, meta);
    const SipKey& key = keys_->KeyForId(meta >> kKeyIdShift);
    const bool ok = stale <= now_slot && MacImpl(key, tuples[i], client_isns[i], now_slot - stale,
                                                 meta) == (cookie_isns[i] >> kMacShift);
    valid_out[i] = ok;
    if (!ok) continue;
    ++valid;
    DecodeMeta(tuples[i].addr_len == 16, meta, &out[i]);
  }
  return valid;
}

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
  const uint32_t meta = MakeMeta(keys_->current_key_id(), slot, t, o);
  return (MacImpl(keys_->current_key(), t, client_isn, slot, meta) << kMacShift) | meta;
}

bool CookieCodec::CheckIsn(const CookieTuple& t, uint32_t client_isn, uint32_t cookie_isn,
                           uint64_t now_ns, SynOptions* out) const {
  keys_->Refresh(now_ns);
  const uint32_t meta = cookie_isn & kMetaMask;
  const uint64_t now_slot = keys_->slot();
  const uint64_t stale = StaleBit(now_slot, meta);
  if (stale > now_slot) return false;  // slot 0: there is no previous slot
  const uint64_t slot = now_slot - stale;
  // The key-id bit names the key directly: keys_[id] is whichever of the
  // current and previous epoch has that parity.
  const SipKey& key = keys_->KeyForId(meta >> kKeyIdShift);
  if (MacImpl(key, t, client_isn, slot, meta) != (cookie_isn >> kMacShift)) return false;
  DecodeMeta(t.addr_len == 16, meta, out);
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
