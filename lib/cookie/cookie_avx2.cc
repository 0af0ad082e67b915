// The cookie codec's burst path on AVX2: MakeIsnBatch and CheckIsnBatch
// when SipBatchPath::kAvx2 is active (cookie.cc dispatches).
//
// Per burst, the items are split by family (IPv4 messages are 3 SipHash
// blocks, IPv6 6, and lanes of one register must run the same number of
// rounds), and each family goes through a two-stage pipeline over groups
// of 8 items (two sets of 4 lanes):
//
//   scalar:  stage group g+1: metadata, message blocks -> column staging
//   vector:  hash group g from its staging, emit ISNs or MAC verdicts
//
// The two stages run on different execution units (integer ALUs and
// load/store ports vs the vector pipes) and do not depend on each other
// within an iteration, so the out-of-order core runs them at once instead
// of one after the other; staging everything first, then hashing, cost
// about the sum of both. A staged group is read a whole group later,
// after its stores have left the store buffer: a 256-bit load of four
// fresh 64-bit stores cannot be forwarded and would stall. Every lane
// hashes exactly the block words MacImpl builds (the same helpers), so the
// ISNs are MakeIsn's and CheckIsn's bit for bit.

#include "cookie_internal.h"

#if MOAT_SIP_AVX2

#include <algorithm>

namespace moat::cookie::detail {
namespace {

using lanes::KeyInit;
using lanes::Lanes;
using lanes::Load4;

constexpr size_t kGroup = 8;  // items per pipeline step: two register sets of 4 lanes
constexpr size_t kBlocksV4 = 3;
constexpr size_t kBlocksV6 = 6;

// One group's staging: rows[j][l] is block j of lane l's message; a job
// may keep kExtraRows more rows per lane for its emit step.
template <size_t kRows>
struct alignas(32) Staging {
  uint64_t rows[kRows][kGroup];
};

// A lane's key comes from its own final block, whose low byte is the
// cookie metadata, whose bit 7 is the key id: all ones where it is 1.
MOAT_AVX2_INLINE __m256i KeyMask(__m256i final_block) {
  const __m256i bit = _mm256_set1_epi64x(kKeyIdBit);
  return _mm256_cmpeq_epi64(_mm256_and_si256(final_block, bit), bit);
}

static_assert(kMacCRounds == 1, "Rounds below runs one round per block");

// Round kRound of both register sets (one per block, then the
// finalization's); the next group is staged after round 0 (measured on
// Zen 2: ~10% faster than staging it before the rounds, after them, or
// spread between them).
template <size_t NB, size_t kRound, class Job, class S>
MOAT_AVX2_INLINE void Rounds(const S& cur, S& next, const Job& job, size_t g_next, bool more,
                             Lanes& a, Lanes& b) {
  constexpr size_t kRounds = NB + kMacDRounds;
  if constexpr (kRound < NB) {
    const __m256i ma = Load4(cur.rows[kRound]);
    const __m256i mb = Load4(cur.rows[kRound] + 4);
    a.v3 = _mm256_xor_si256(a.v3, ma);
    b.v3 = _mm256_xor_si256(b.v3, mb);
    lanes::Round(a);
    lanes::Round(b);
    a.v0 = _mm256_xor_si256(a.v0, ma);
    b.v0 = _mm256_xor_si256(b.v0, mb);
  } else {
    if constexpr (kRound == NB) {
      lanes::StartFinish(a);
      lanes::StartFinish(b);
    }
    lanes::Round(a);
    lanes::Round(b);
  }
  if constexpr (kRound == 0) {
    if (more) job.StageGroup(next.rows, g_next);
  }
  if constexpr (kRound + 1 < kRounds) Rounds<NB, kRound + 1>(cur, next, job, g_next, more, a, b);
}

// The pipeline over job.count items of messages of NB blocks.
template <size_t NB, class Job>
MOAT_AVX2_INLINE void Pipeline(const KeyInit& ki, const Job& job) {
  using S = Staging<NB + Job::kExtraRows>;
  const size_t groups = (job.pos.count + kGroup - 1) / kGroup;
  S buf[2];
  job.StageGroup(buf[0].rows, 0);
  for (size_t g = 0; g < groups; ++g) {
    const S& cur = buf[g & 1];
    S& next = buf[(g + 1) & 1];
    Lanes a = lanes::InitLanes(ki, KeyMask(Load4(cur.rows[NB - 1])));
    Lanes b = lanes::InitLanes(ki, KeyMask(Load4(cur.rows[NB - 1] + 4)));
    Rounds<NB, 0>(cur, next, job, g + 1, g + 1 < groups, a, b);
    job.Emit(cur.rows, g, lanes::Digest(a), lanes::Digest(b));
  }
}

// The MAC of each lane, as 64-bit lanes (MacImpl's truncation).
MOAT_AVX2_INLINE __m256i MacBits(__m256i digest) {
  return _mm256_srli_epi64(digest, 64 - kMacBits);
}

// Block words of one item: MacImpl's, the final block's metadata byte
// already or-ed in by the caller.
template <bool kV6>
[[gnu::always_inline]] inline void StageBlocks(uint64_t (*__restrict rows)[kGroup], size_t lane,
                                               const CookieTuple& t, uint32_t client_isn,
                                               uint64_t final_block) {
  if constexpr (kV6) {
    rows[0][lane] = Load64(t.client_addr);
    rows[1][lane] = Load64(t.client_addr + 8);
    rows[2][lane] = Load64(t.server_addr);
    rows[3][lane] = Load64(t.server_addr + 8);
    rows[4][lane] = PortsIsnWord(t, client_isn);
    rows[5][lane] = final_block;
  } else {
    rows[0][lane] = uint64_t{Load32(t.client_addr)} | (uint64_t{Load32(t.server_addr)} << 32);
    rows[1][lane] = PortsIsnWord(t, client_isn);
    rows[2][lane] = final_block;
  }
}

// Lanes past the end of the family's list: zero messages, hashed and
// their results dropped.
template <size_t kRows>
[[gnu::always_inline]] inline void PadLanes(uint64_t (*__restrict rows)[kGroup], size_t from) {
  for (size_t l = from; l < kGroup; ++l) {
    for (size_t j = 0; j < kRows; ++j) rows[j][l] = 0;
  }
}

// The items of group g: positions [8g, 8g + 8) of the family's list,
// clipped to its length. kList: the chunk mixes families and `at` maps a
// position to its item; otherwise the position is the item.
template <bool kList>
struct Positions {
  const uint8_t* at;
  size_t count;
  [[gnu::always_inline]] size_t Item(size_t k) const {
    if constexpr (kList) return at[k];
    return k;
  }
  [[gnu::always_inline]] size_t Lanes(size_t g) const {
    return std::min(kGroup, count - g * kGroup);
  }
};

template <bool kV6, bool kList>
struct MakeJob {
  static constexpr size_t kBlocks = kV6 ? kBlocksV6 : kBlocksV4;
  static constexpr size_t kExtraRows = 0;

  const CookieTuple* tuples;
  const uint32_t* client_isns;
  const SynOptions* syn;
  uint32_t* isns_out;
  uint32_t meta_base;   // key id and slot parity
  uint64_t final_base;  // the final block without the metadata byte
  Positions<kList> pos;

  MOAT_AVX2_INLINE void StageGroup(uint64_t (*__restrict rows)[kGroup], size_t g) const {
    // Locals, so that the compiler keeps them in registers across the
    // row stores.
    const CookieTuple* const t = tuples;
    const uint32_t* const cisn = client_isns;
    const SynOptions* const o = syn;
    const uint64_t fb = final_base | meta_base;
    const Positions<kList> p = pos;
    const size_t n = p.Lanes(g);
    for (size_t l = 0; l < n; ++l) {
      const size_t i = p.Item(g * kGroup + l);
      // MakeMeta, with the family known here.
      StageBlocks<kV6>(rows, l, t[i], cisn[i], fb | OptionBits(kV6, o[i]));
    }
    if (n < kGroup) [[unlikely]]
      PadLanes<kBlocks>(rows, n);
  }

  // ISN = MAC << 8 | metadata, the metadata being the final block's low
  // byte; packed to 32 bits and stored (scattered when the chunk mixes
  // families).
  MOAT_AVX2_INLINE void Emit(const uint64_t (*rows)[kGroup], size_t g, __m256i da,
                             __m256i db) const {
    const __m256i low = _mm256_set1_epi64x(kMetaMask);
    const __m256i isn_a = _mm256_or_si256(_mm256_slli_epi64(MacBits(da), kMacShift),
                                          _mm256_and_si256(Load4(rows[kBlocks - 1]), low));
    const __m256i isn_b = _mm256_or_si256(_mm256_slli_epi64(MacBits(db), kMacShift),
                                          _mm256_and_si256(Load4(rows[kBlocks - 1] + 4), low));
    // Dwords a0 b0 a1 b1 a2 b2 a3 b3, reordered to a0..a3 b0..b3.
    const __m256i packed =
        _mm256_permutevar8x32_epi32(_mm256_or_si256(isn_a, _mm256_slli_epi64(isn_b, 32)),
                                    _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    const size_t n = pos.Lanes(g);
    if (!kList && n == kGroup) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(isns_out + g * kGroup), packed);
      return;
    }
    alignas(32) uint32_t isn[kGroup];
    _mm256_store_si256(reinterpret_cast<__m256i*>(isn), packed);
    for (size_t l = 0; l < n; ++l) isns_out[pos.Item(g * kGroup + l)] = isn[l];
  }
};

// The check's final blocks without the metadata byte, by the metadata's
// slot parity bit, and by parity 1 << 32 where that parity names no slot
// (slot 0 has no previous one): a value no 24-bit MAC equals.
struct FinalBases {
  uint64_t block[2];
  uint64_t never[2];
};

template <bool kV6, bool kList>
struct CheckJob {
  static constexpr size_t kBlocks = kV6 ? kBlocksV6 : kBlocksV4;
  // Row kBlocks: the MAC the cookie carries, or a value no 24-bit MAC
  // equals when the cookie names a slot before slot 0.
  static constexpr size_t kExtraRows = 1;

  const CookieTuple* tuples;
  const uint32_t* client_isns;
  const uint32_t* cookie_isns;
  SynOptions* out;
  bool* valid_out;
  size_t* valid;
  FinalBases final;
  Positions<kList> pos;

  MOAT_AVX2_INLINE void StageGroup(uint64_t (*__restrict rows)[kGroup], size_t g) const {
    const CookieTuple* const t = tuples;
    const uint32_t* const cisn = client_isns;
    const uint32_t* const cookies = cookie_isns;
    const FinalBases f = final;
    const Positions<kList> p = pos;
    const size_t n = p.Lanes(g);
    for (size_t l = 0; l < n; ++l) {
      const size_t i = p.Item(g * kGroup + l);
      const uint32_t cookie = cookies[i];
      const uint32_t meta = cookie & kMetaMask;
      const uint32_t parity = (meta >> kSlotParityShift) & 1;
      StageBlocks<kV6>(rows, l, t[i], cisn[i], f.block[parity] | meta);
      rows[kBlocks][l] = (cookie >> kMacShift) | f.never[parity];
    }
    if (n < kGroup) [[unlikely]]
      PadLanes<kBlocks + kExtraRows>(rows, n);
  }

  // The verdicts, and CheckIsn's decoding for the valid ones (here rather
  // than in a pass of its own, so that it overlaps the next group's hash).
  MOAT_AVX2_INLINE void Emit(const uint64_t (*rows)[kGroup], size_t g, __m256i da,
                             __m256i db) const {
    const __m256i eq_a = _mm256_cmpeq_epi64(MacBits(da), Load4(rows[kBlocks]));
    const __m256i eq_b = _mm256_cmpeq_epi64(MacBits(db), Load4(rows[kBlocks] + 4));
    const uint32_t bits =
        static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(eq_a))) |
        (static_cast<uint32_t>(_mm256_movemask_pd(_mm256_castsi256_pd(eq_b))) << 4);
    const size_t n = pos.Lanes(g);
    const size_t first = g * kGroup;
    const uint32_t ok = bits;
    if (!kList && n == kGroup) {
      // The 8 verdicts as 8 bools in one store: byte l = bit l.
      const __m128i lane_bit = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 0, 0, 0, 0, 0, 0, 0, 0);
      const __m128i set =
          _mm_cmpeq_epi8(_mm_and_si128(_mm_set1_epi8(static_cast<char>(bits)), lane_bit), lane_bit);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(valid_out + first),
                       _mm_and_si128(set, _mm_set1_epi8(1)));
    } else {
      for (size_t l = 0; l < n; ++l) valid_out[pos.Item(first + l)] = (bits >> l) & 1;
    }
    // Decode the valid ones only (none in a flood of guesses). A loop over
    // all lanes, not over the set bits: its iterations are independent,
    // while clearing bit after bit chains each on the last (measured 13%
    // slower for a burst of valid cookies).
    size_t valid_here = 0;
    for (size_t l = 0; l < n; ++l) {
      if (!((ok >> l) & 1)) continue;
      ++valid_here;
      DecodeMeta(kV6, static_cast<uint32_t>(rows[kBlocks - 1][l]) & kMetaMask,
                 &out[pos.Item(first + l)]);
    }
    *valid += valid_here;
  }
};

// Splits chunk [0, m) of tuples by family into position lists.
struct Split {
  uint8_t at4[CookieCodec::kBatchChunk];
  uint8_t at6[CookieCodec::kBatchChunk];
  size_t n4 = 0;
  size_t n6 = 0;
  bool mixed = false;

  Split(const CookieTuple* tuples, size_t m) {
    // Most bursts are one family (a flood is): count first, and build the
    // lists (two stores per item) only for a mixed chunk.
    for (size_t i = 0; i < m; ++i) n6 += tuples[i].addr_len == 16;
    n4 = m - n6;
    mixed = n4 != 0 && n6 != 0;
    if (!mixed) return;
    size_t k4 = 0, k6 = 0;
    for (size_t i = 0; i < m; ++i) {
      // Branch-free: a mixed burst would mispredict a branch per item.
      const bool v6 = tuples[i].addr_len == 16;
      at4[k4] = static_cast<uint8_t>(i);
      at6[k6] = static_cast<uint8_t>(i);
      k4 += !v6;
      k6 += v6;
    }
  }
};
static_assert(CookieCodec::kBatchChunk <= 256, "family lists hold uint8_t positions");

// Runs Job<kV6, kList> over one family of a chunk: with position lists
// when the chunk is mixed, without when it is all this family.
template <template <bool, bool> class Job, bool kV6, class... Args>
MOAT_AVX2_INLINE void RunFamily(const KeyInit& ki, const Split& split, Args... args) {
  constexpr size_t kBlocks = kV6 ? kBlocksV6 : kBlocksV4;
  const size_t count = kV6 ? split.n6 : split.n4;
  if (count == 0) return;
  if (split.mixed) {
    const Job<kV6, true> job{args..., {kV6 ? split.at6 : split.at4, count}};
    Pipeline<kBlocks>(ki, job);
  } else {
    const Job<kV6, false> job{args..., {nullptr, count}};
    Pipeline<kBlocks>(ki, job);
  }
}

}  // namespace

MOAT_AVX2 void MakeIsnBatchAvx2(const SipKey& key, uint32_t meta_base, uint64_t slot,
                                const CookieTuple* tuples, const uint32_t* client_isns,
                                const SynOptions* syn, size_t n, uint32_t* isns_out) {
  const SipKey keys[2] = {key, key};  // every lane has the current key's id
  const KeyInit ki = lanes::MakeKeyInit(keys);
  const uint64_t final4 = FinalBlock(kMacLenV4, slot, 0);
  const uint64_t final6 = FinalBlock(kMacLenV6, slot, 0);
  for (size_t base = 0; base < n; base += CookieCodec::kBatchChunk) {
    const size_t m = std::min(CookieCodec::kBatchChunk, n - base);
    const Split split(tuples + base, m);
    RunFamily<MakeJob, false>(ki, split, tuples + base, client_isns + base, syn + base,
                              isns_out + base, meta_base, final4);
    RunFamily<MakeJob, true>(ki, split, tuples + base, client_isns + base, syn + base,
                             isns_out + base, meta_base, final6);
  }
}

MOAT_AVX2 size_t CheckIsnBatchAvx2(const SipKey keys[2], uint64_t now_slot,
                                   const CookieTuple* tuples, const uint32_t* client_isns,
                                   const uint32_t* cookie_isns, size_t n, SynOptions* out,
                                   bool* valid_out) {
  const KeyInit ki = lanes::MakeKeyInit(keys);
  // By slot parity p: the slot CheckIsn would check, and whether there is
  // one (at slot 0 the previous slot does not exist).
  FinalBases final4, final6;
  for (uint32_t p = 0; p < 2; ++p) {
    const uint64_t stale = StaleBit(now_slot, p << kSlotParityShift);
    final4.block[p] = FinalBlock(kMacLenV4, now_slot - stale, 0);
    final6.block[p] = FinalBlock(kMacLenV6, now_slot - stale, 0);
    final4.never[p] = final6.never[p] = stale > now_slot ? uint64_t{1} << 32 : 0;
  }
  size_t valid = 0;
  for (size_t base = 0; base < n; base += CookieCodec::kBatchChunk) {
    const size_t m = std::min(CookieCodec::kBatchChunk, n - base);
    const Split split(tuples + base, m);
    RunFamily<CheckJob, false>(ki, split, tuples + base, client_isns + base, cookie_isns + base,
                               out + base, valid_out + base, &valid, final4);
    RunFamily<CheckJob, true>(ki, split, tuples + base, client_isns + base, cookie_isns + base,
                              out + base, valid_out + base, &valid, final6);
  }
  return valid;
}

}  // namespace moat::cookie::detail

#endif  // MOAT_SIP_AVX2
