#include "moat/cookie/cookie.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

#include "gtest/gtest.h"
#include "moat/cookie/siphash.h"
#include "moat/cookie/siphash_batch.h"

// Counts heap allocations so the hot-path test can assert there are none.
// (GCC flags malloc/free inside replaced operators as mismatched, wrongly:
// they are the replacement pair.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static thread_local uint64_t g_allocations = 0;
void* operator new(size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace moat::cookie {

// Test-only access to the raw MAC (friend of CookieCodec).
class CookieCodecPeer {
 public:
  static uint32_t Mac(const SipKey& key, const CookieTuple& t, uint32_t client_isn, uint64_t slot,
                      uint32_t meta) {
    return CookieCodec::Mac(key, t, client_isn, slot, meta);
  }
};

namespace {

constexpr uint64_t kSec = kNsPerSecond;
constexpr uint64_t kSlot = kSlotSeconds * kSec;
constexpr uint64_t kRotation = kDefaultRotationSeconds * kSec;
// 2023-11-14 22:13:20 UTC: slot 28333333 (odd), epoch 472222 (even).
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;

MasterSecret TestSecret(uint8_t salt = 0) {
  MasterSecret s;
  for (size_t i = 0; i < kSecretBytes; ++i) s.bytes[i] = static_cast<uint8_t>(i ^ salt);
  return s;
}

// 198.18.0.1:40000 -> 198.19.0.2:80 and [2001:2::1]:40000 -> [2001:2::2]:443.
const uint8_t kClientV4[4] = {198, 18, 0, 1};
const uint8_t kServerV4[4] = {198, 19, 0, 2};
const uint8_t kClientV6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
const uint8_t kServerV6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

CookieTuple TupleV4() { return CookieTuple{4, kClientV4, kServerV4, 40000, 80}; }
CookieTuple TupleV6() { return CookieTuple{16, kClientV6, kServerV6, 40000, 443}; }

constexpr uint32_t kClientIsn = 0x12345678;
constexpr SynOptions kLinuxSyn{1460, 7, true, true, false};  // what Linux sends

class CookieTest : public ::testing::Test {
 protected:
  CookieTest() : keys_(TestSecret()), codec_(&keys_) {}

  bool Check(const CookieTuple& t, uint32_t cisn, uint32_t cookie, uint64_t now,
             SynOptions* out = nullptr) {
    SynOptions scratch;
    return codec_.CheckIsn(t, cisn, cookie, now, out ? out : &scratch);
  }

  KeySchedule keys_;
  CookieCodec codec_;
};

// MakeIsn, CheckIsn (valid and invalid), the TSval codec and the key
// refreshes they trigger (slot and epoch boundaries) never touch the heap.
TEST_F(CookieTest, HotPathDoesNotAllocate) {
  {  // the counter works
    const uint64_t probe = g_allocations;
    int* volatile p = new int(1);
    delete p;
    ASSERT_EQ(g_allocations, probe + 1);
  }
  SynOptions out;
  uint32_t sink = 0;
  const uint64_t before = g_allocations;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t now = kT0 + i * 7 * kSec;  // crosses slots and a rotation
    const CookieTuple t = (i & 1) ? TupleV6() : TupleV4();
    const uint32_t c = codec_.MakeIsn(t, i, kLinuxSyn, now);
    sink += codec_.CheckIsn(t, i, c, now, &out);
    sink += codec_.CheckIsn(t, i, c ^ 0x100, now, &out);
    sink += CookieCodec::EncodeTsval(i, kLinuxSyn);
    sink += CookieCodec::DecodeTsecrChecked(i, &out);
  }
  // The burst calls, on every path this CPU has.
  const SipBatchPath saved = ActiveSipBatchPath();
  for (SipBatchPath path : {SipBatchPath::kScalar, SipBatchPath::kAvx2}) {
    if (!SetSipBatchPath(path)) continue;
    CookieTuple tuples[70];
    uint32_t cisns[70], isns[70];
    SynOptions syn[70], outs[70];
    bool valid[70];
    for (int i = 0; i < 70; ++i) {
      tuples[i] = (i % 3) ? TupleV4() : TupleV6();
      cisns[i] = i;
      syn[i] = kLinuxSyn;
    }
    for (int n = 0; n <= 70; n += 7) {
      codec_.MakeIsnBatch(tuples, cisns, syn, n, kT0 + n * kSec, isns);
      sink += codec_.CheckIsnBatch(tuples, cisns, isns, n, kT0 + n * kSec, outs, valid);
    }
  }
  SetSipBatchPath(saved);
  EXPECT_EQ(g_allocations, before);
  EXPECT_NE(sink, 0u);
}

TEST(CookieLayoutTest, FieldsTileTheIsn) {
  const uint32_t mac = ((1u << kMacBits) - 1) << kMacShift;
  const uint32_t mss = kMssIndexMask << kMssIndexShift;
  const uint32_t fields[] = {mac, kKeyIdBit, kSlotParityBit, mss, kSackBit, kWscaleCodeMask};
  uint32_t all = 0;
  for (uint32_t f : fields) {
    EXPECT_EQ(all & f, 0u) << "overlap";
    all |= f;
  }
  EXPECT_EQ(all, 0xffffffffu);
  EXPECT_EQ(kMetaMask, 0xffu);
  EXPECT_EQ(kKeyIdBit, 1u << kKeyIdShift);
  EXPECT_EQ(kSlotParityBit, 1u << kSlotParityShift);
  // TSval bits.
  EXPECT_EQ(kTsWscaleMask | kTsSackBit | kTsEcnBit, kTsOptionMask);
}

TEST(CookieLayoutTest, MssTablesAscend) {
  for (int i = 1; i < kMssTableSize; ++i) {
    EXPECT_LT(kMssTableV4[i - 1], kMssTableV4[i]);
    EXPECT_LT(kMssTableV6[i - 1], kMssTableV6[i]);
  }
  // Index 0 is the default when the SYN has no MSS option (RFC 9293
  // §3.7.1: 536; RFC 8200 §5: 1280 - 60 = 1220).
  EXPECT_EQ(kMssTableV4[0], 536);
  EXPECT_EQ(kMssTableV6[0], 1220);
}

// The MAC is SipHash-1-3 over exactly the byte string cookie.h documents.
TEST_F(CookieTest, MacMatchesDocumentedLayout) {
  const SipKey key{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
  const uint64_t slot = 0x0000a1b2c3d4e5f6ull;
  const uint32_t meta = 0xa5;
  for (const CookieTuple& t : {TupleV4(), TupleV6()}) {
    uint8_t msg[64];
    size_t n = 0;
    std::memcpy(msg + n, t.client_addr, t.addr_len);
    n += t.addr_len;
    std::memcpy(msg + n, t.server_addr, t.addr_len);
    n += t.addr_len;
    msg[n++] = t.client_port & 0xff;
    msg[n++] = t.client_port >> 8;
    msg[n++] = t.server_port & 0xff;
    msg[n++] = t.server_port >> 8;
    for (int i = 0; i < 4; ++i) msg[n++] = static_cast<uint8_t>(kClientIsn >> (8 * i));
    msg[n++] = meta;
    for (int i = 0; i < 6; ++i) msg[n++] = static_cast<uint8_t>(slot >> (8 * i));
    EXPECT_EQ(n, t.addr_len == 4 ? 23u : 47u);
    const uint32_t want = static_cast<uint32_t>(SipHash13(key, msg, n) >> 40);
    EXPECT_EQ(CookieCodecPeer::Mac(key, t, kClientIsn, slot, meta), want);
  }
}

// Known answers: a fixed secret, time and connection. Pinned once from this
// implementation; a change here changes every cookie on the wire and
// breaks fleets that mix versions, so it must be deliberate.
TEST_F(CookieTest, KnownAnswers) {
  EXPECT_EQ(keys_.slot(), 0u);
  const uint32_t v4 = codec_.MakeIsn(TupleV4(), kClientIsn, kLinuxSyn, kT0);
  EXPECT_EQ(keys_.slot(), 28333333u);
  EXPECT_EQ(keys_.epoch(), 472222u);
  const uint32_t v6 = codec_.MakeIsn(TupleV6(), kClientIsn, kLinuxSyn, kT0);
  const uint32_t v4_bare = codec_.MakeIsn(TupleV4(), 0, SynOptions{}, kT0);
  // Next epoch: key id flips.
  const uint32_t v4_next = codec_.MakeIsn(TupleV4(), kClientIsn, kLinuxSyn, kT0 + kRotation);
  EXPECT_EQ(v4, 0x15dba676u);
  EXPECT_EQ(v6, 0x5249c976u);
  EXPECT_EQ(v4_bare, 0x82d7e440u);
  EXPECT_EQ(v4_next, 0x19fb36f6u);
  // The low byte is the metadata, readable without the key:
  // key id 0 (even epoch), parity 1 (odd slot), MSS 1460 = index 6, SACK,
  // wscale 7 = code 2.
  EXPECT_EQ(v4 & kMetaMask, (1u << 6) | (6u << 3) | (1u << 2) | 2u);
  EXPECT_EQ(v6 & kMetaMask, (1u << 6) | (6u << 3) | (1u << 2) | 2u);  // 1440 = v6 index 6
  EXPECT_EQ(v4_bare & kMetaMask, 1u << 6);
  EXPECT_EQ(v4_next & kKeyIdBit, kKeyIdBit);
}

TEST(CookieCodecTest, MssIndexRoundsDown) {
  EXPECT_EQ(CookieCodec::MssIndex(false, 0), 0);   // option absent
  EXPECT_EQ(CookieCodec::MssIndex(false, 88), 0);  // below every entry
  EXPECT_EQ(CookieCodec::MssIndex(false, 536), 0);
  EXPECT_EQ(CookieCodec::MssIndex(false, 1199), 0);
  EXPECT_EQ(CookieCodec::MssIndex(false, 1200), 1);
  EXPECT_EQ(CookieCodec::MssIndex(false, 1459), 5);
  EXPECT_EQ(CookieCodec::MssIndex(false, 1460), 6);
  EXPECT_EQ(CookieCodec::MssIndex(false, 1461), 6);
  EXPECT_EQ(CookieCodec::MssIndex(false, 8960), 7);
  EXPECT_EQ(CookieCodec::MssIndex(false, 65535), 7);
  EXPECT_EQ(CookieCodec::MssIndex(true, 0), 0);
  EXPECT_EQ(CookieCodec::MssIndex(true, 1300), 0);
  EXPECT_EQ(CookieCodec::MssIndex(true, 1440), 6);
  EXPECT_EQ(CookieCodec::MssIndex(true, 1460), 6);
  EXPECT_EQ(CookieCodec::MssIndex(true, 9000), 7);
  for (int i = 0; i < kMssTableSize; ++i) {
    EXPECT_EQ(CookieCodec::MssFromIndex(false, i), kMssTableV4[i]);
    EXPECT_EQ(CookieCodec::MssFromIndex(true, i), kMssTableV6[i]);
    EXPECT_LE(CookieCodec::MssFromIndex(false, CookieCodec::MssIndex(false, 1000 + 999 * i)),
              std::max(536, 1000 + 999 * i));
  }
}

// The codec looks the MSS index and window-scale code up in tables made at
// compile time; every possible input gives what the definitions say (the
// largest MSS table entry <= mss, index 0 when none is; the largest code
// whose shift <= wscale, 0 for "none").
TEST(CookieCodecTest, LookupsMatchTheDefinitionForEveryInput) {
  for (bool v6 : {false, true}) {
    const uint16_t* table = v6 ? kMssTableV6 : kMssTableV4;
    for (uint32_t mss = 0; mss <= 0xffff; ++mss) {
      int want = 0;
      for (int i = 0; i < kMssTableSize; ++i) {
        if (table[i] <= mss) want = i;
      }
      ASSERT_EQ(CookieCodec::MssIndex(v6, static_cast<uint16_t>(mss)), want)
          << "v6 " << v6 << " mss " << mss;
    }
  }
  for (uint32_t ws = 0; ws <= 0xff; ++ws) {
    uint32_t want = 0;
    if (ws != kNoWindowScale) {
      for (uint32_t code = 1; code < 4; ++code) {
        if (kWscaleCodes[code] <= ws) want = code;
      }
    }
    ASSERT_EQ(CookieCodec::WscaleCode(static_cast<uint8_t>(ws)), want) << "wscale " << ws;
  }
}

TEST(CookieCodecTest, WscaleCodeRoundsDown) {
  EXPECT_EQ(CookieCodec::WscaleCode(kNoWindowScale), 0u);
  for (uint8_t ws = 0; ws < 6; ++ws) EXPECT_EQ(CookieCodec::WscaleCode(ws), 0u) << int{ws};
  EXPECT_EQ(CookieCodec::WscaleCode(6), 1u);
  EXPECT_EQ(CookieCodec::WscaleCode(7), 2u);
  for (uint8_t ws = 8; ws <= 14; ++ws) EXPECT_EQ(CookieCodec::WscaleCode(ws), 3u) << int{ws};
  // Never overstates: the decoded shift is <= the client's ("none" = 0).
  for (uint8_t ws = 0; ws <= 14; ++ws) {
    const uint8_t back = kWscaleCodes[CookieCodec::WscaleCode(ws)];
    EXPECT_LE(back == kNoWindowScale ? 0 : back, ws);
  }
}

// Every MSS index x window-scale x SACK combination, both families, with
// the MSS exactly on a table entry and just above it.
TEST_F(CookieTest, RoundTripEveryOptionCombination) {
  int checked = 0;
  for (const CookieTuple& t : {TupleV4(), TupleV6()}) {
    const bool v6 = t.addr_len == 16;
    const uint16_t* table = v6 ? kMssTableV6 : kMssTableV4;
    for (int idx = 0; idx < kMssTableSize; ++idx) {
      for (uint16_t mss : {table[idx], static_cast<uint16_t>(table[idx] + 1)}) {
        for (int ws = -1; ws <= 14; ++ws) {
          for (bool sack : {false, true}) {
            SynOptions in;
            in.mss = mss;
            in.wscale = ws < 0 ? kNoWindowScale : static_cast<uint8_t>(ws);
            in.sack = sack;
            const uint32_t isn = codec_.MakeIsn(t, kClientIsn + checked, in, kT0);
            SynOptions out;
            ASSERT_TRUE(Check(t, kClientIsn + checked, isn, kT0 + kSec, &out))
                << "v6=" << v6 << " mss=" << mss << " ws=" << ws << " sack=" << sack;
            EXPECT_EQ(out.mss, table[idx]);
            EXPECT_EQ(out.wscale, kWscaleCodes[CookieCodec::WscaleCode(in.wscale)]);
            EXPECT_EQ(out.sack, sack);
            EXPECT_FALSE(out.timestamps);
            EXPECT_FALSE(out.ecn);
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 2 * 8 * 2 * 16 * 2);
}

TEST_F(CookieTest, NoMssOptionDecodesAsDefault) {
  SynOptions out;
  const uint32_t v4 = codec_.MakeIsn(TupleV4(), 1, SynOptions{}, kT0);
  ASSERT_TRUE(Check(TupleV4(), 1, v4, kT0, &out));
  EXPECT_EQ(out.mss, 536);
  EXPECT_EQ(out.wscale, kNoWindowScale);
  EXPECT_FALSE(out.sack);
  const uint32_t v6 = codec_.MakeIsn(TupleV6(), 1, SynOptions{}, kT0);
  ASSERT_TRUE(Check(TupleV6(), 1, v6, kT0, &out));
  EXPECT_EQ(out.mss, 1220);
}

// Lifetime: accepted in its slot and the next, so 60..120 s. The make
// times straddle a key rotation (kT1 = an epoch start) so every edge is
// also checked across a rotation.
TEST_F(CookieTest, ExpiryAtTheWindowEdges) {
  const uint64_t rotation = (kT0 / kRotation + 1) * kRotation;  // next epoch start
  ASSERT_EQ(rotation % kSlot, 0u);
  const uint64_t slot_start = rotation - kSlot;  // last slot of the old epoch
  const uint64_t slot_end = rotation;            // = first slot of the new epoch
  const CookieTuple t = TupleV4();

  // Made at the very start of its slot: lives 120 s.
  const uint32_t early = codec_.MakeIsn(t, kClientIsn, kLinuxSyn, slot_start);
  EXPECT_TRUE(Check(t, kClientIsn, early, slot_start));
  EXPECT_TRUE(Check(t, kClientIsn, early, slot_end - 1));
  EXPECT_TRUE(Check(t, kClientIsn, early, slot_end));  // rotation boundary
  EXPECT_TRUE(Check(t, kClientIsn, early, slot_end + 59'999'000'000));
  EXPECT_TRUE(Check(t, kClientIsn, early, slot_end + kSlot - 1));
  EXPECT_FALSE(Check(t, kClientIsn, early, slot_end + kSlot));  // 120 s: two slots old
  EXPECT_FALSE(Check(t, kClientIsn, early, slot_end + 2 * kSlot));
  EXPECT_FALSE(Check(t, kClientIsn, early, slot_end + 3 * kSlot));  // parity matches again

  // Made in the last nanosecond of its slot: lives 60 s.
  const uint32_t late = codec_.MakeIsn(t, kClientIsn, kLinuxSyn, slot_end - 1);
  EXPECT_TRUE(Check(t, kClientIsn, late, slot_end - 1));
  EXPECT_TRUE(Check(t, kClientIsn, late, slot_end + 59'999'000'000));
  EXPECT_FALSE(Check(t, kClientIsn, late, slot_end + kSlot));
  EXPECT_FALSE(Check(t, kClientIsn, late, slot_end + 121 * kSec));
}

TEST_F(CookieTest, RotationWithCookiesInFlight) {
  const uint64_t rotation = (kT0 / kRotation + 1) * kRotation;
  const CookieTuple t = TupleV6();
  // Several cookies made in the last second before the rotation...
  uint32_t cookies[10];
  for (int i = 0; i < 10; ++i) {
    cookies[i] = codec_.MakeIsn(t, kClientIsn + i, kLinuxSyn, rotation - kSec + i * 100'000'000);
  }
  const uint64_t old_epoch = keys_.epoch();
  // ...and one made just after it, under the new key.
  const uint32_t fresh = codec_.MakeIsn(t, kClientIsn, kLinuxSyn, rotation + 1);
  EXPECT_EQ(keys_.epoch(), old_epoch + 1);
  EXPECT_NE(cookies[0] & kKeyIdBit, fresh & kKeyIdBit);
  for (int i = 0; i < 10; ++i) {
    SynOptions out;
    EXPECT_TRUE(Check(t, kClientIsn + i, cookies[i], rotation + 1, &out)) << i;
    EXPECT_EQ(out.mss, 1440);
    EXPECT_TRUE(Check(t, kClientIsn + i, cookies[i], rotation + 59 * kSec)) << i;
  }
  EXPECT_TRUE(Check(t, kClientIsn, fresh, rotation + 1));
}

// A rotation period that is not a multiple of the slot: the rotation
// lands inside a slot, and cookies from either side of it in that slot
// stay valid through the next slot.
TEST(CookieRotationTest, RotationInsideASlot) {
  KeySchedule keys(TestSecret(), 150 * kSec, 60 * kSec);  // epochs at 150, 300 s
  const CookieCodec codec(&keys);
  const CookieTuple t = TupleV4();
  SynOptions out;
  const uint32_t before = codec.MakeIsn(t, 7, kLinuxSyn, 150 * kSec - 1);  // slot 2, epoch 0
  const uint32_t after = codec.MakeIsn(t, 7, kLinuxSyn, 150 * kSec);       // slot 2, epoch 1
  EXPECT_NE(before & kKeyIdBit, after & kKeyIdBit);
  EXPECT_EQ(before & kSlotParityBit, after & kSlotParityBit);
  for (uint64_t now : {150 * kSec, 179 * kSec, 180 * kSec, 240 * kSec - 1}) {
    EXPECT_TRUE(codec.CheckIsn(t, 7, before, now, &out)) << now;
    EXPECT_TRUE(codec.CheckIsn(t, 7, after, now, &out)) << now;
  }
  EXPECT_FALSE(codec.CheckIsn(t, 7, before, 240 * kSec, &out));
  EXPECT_FALSE(codec.CheckIsn(t, 7, after, 240 * kSec, &out));
}

// A fleet: instances that share the secret validate each other's cookies
// with no communication, whenever each last refreshed; other secrets don't.
TEST(CookieFleetTest, SharedSecretValidatesAcrossInstances) {
  KeySchedule keys_a(TestSecret()), keys_b(TestSecret()), keys_other(TestSecret(0x5a));
  const CookieCodec a(&keys_a), b(&keys_b), other(&keys_other);
  keys_b.Refresh(kT0 - 5 * kRotation);  // b has been idle for hours
  std::mt19937 rng(1);
  int accepted_b = 0, accepted_other = 0;
  constexpr int kN = 1000;
  for (int i = 0; i < kN; ++i) {
    uint8_t client[4] = {10, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i), 1};
    const CookieTuple t{4, client, kServerV4, static_cast<uint16_t>(rng()), 80};
    const uint32_t cisn = rng();
    const uint64_t made = kT0 + i * 7 * kSec;  // crosses slots and a rotation
    const uint32_t cookie = a.MakeIsn(t, cisn, kLinuxSyn, made);
    SynOptions out;
    accepted_b += b.CheckIsn(t, cisn, cookie, made + 30 * kSec, &out);
    accepted_other += other.CheckIsn(t, cisn, cookie, made + 30 * kSec, &out);
  }
  EXPECT_EQ(accepted_b, kN);
  EXPECT_EQ(accepted_other, 0);
}

// Flip each of the 32 ISN bits, for many connections: all rejected. The
// metadata bits are covered too: a flipped MSS, SACK or wscale bit would
// otherwise let a client (or attacker) change the options it is granted,
// and a flipped parity or key-id bit points the validator at another slot
// or key.
TEST_F(CookieTest, EveryFlippedBitIsRejected) {
  std::mt19937 rng(2);
  for (int n = 0; n < 64; ++n) {
    const bool v6 = n & 1;
    uint8_t client[16], server[16];
    for (auto& b : client) b = static_cast<uint8_t>(rng());
    for (auto& b : server) b = static_cast<uint8_t>(rng());
    const CookieTuple t{static_cast<uint8_t>(v6 ? 16 : 4), client, server,
                        static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng())};
    const uint32_t cisn = rng();
    const uint64_t now = kT0 + rng() % kRotation;
    const uint32_t cookie = codec_.MakeIsn(t, cisn, kLinuxSyn, now);
    ASSERT_TRUE(Check(t, cisn, cookie, now + kSec));
    for (int bit = 0; bit < 32; ++bit) {
      EXPECT_FALSE(Check(t, cisn, cookie ^ (1u << bit), now + kSec)) << "bit " << bit;
    }
  }
}

TEST_F(CookieTest, TamperedTupleOrIsnIsRejected) {
  for (const bool v6 : {false, true}) {
    uint8_t client[16], server[16];
    std::memcpy(client, v6 ? kClientV6 : kClientV4, v6 ? 16 : 4);
    std::memcpy(server, v6 ? kServerV6 : kServerV4, v6 ? 16 : 4);
    const uint8_t len = v6 ? 16 : 4;
    const CookieTuple t{len, client, server, 40000, 80};
    const uint32_t cookie = codec_.MakeIsn(t, kClientIsn, kLinuxSyn, kT0);
    ASSERT_TRUE(Check(t, kClientIsn, cookie, kT0));
    // Every bit of both addresses.
    for (int i = 0; i < len * 8; ++i) {
      client[i / 8] ^= 1 << (i % 8);
      EXPECT_FALSE(Check(t, kClientIsn, cookie, kT0)) << "client bit " << i;
      client[i / 8] ^= 1 << (i % 8);
      server[i / 8] ^= 1 << (i % 8);
      EXPECT_FALSE(Check(t, kClientIsn, cookie, kT0)) << "server bit " << i;
      server[i / 8] ^= 1 << (i % 8);
    }
    // Ports, swapped direction, client ISN.
    for (int i = 0; i < 16; ++i) {
      CookieTuple u = t;
      u.client_port ^= 1 << i;
      EXPECT_FALSE(Check(u, kClientIsn, cookie, kT0));
      u = t;
      u.server_port ^= 1 << i;
      EXPECT_FALSE(Check(u, kClientIsn, cookie, kT0));
    }
    const CookieTuple swapped{len, server, client, 80, 40000};
    EXPECT_FALSE(Check(swapped, kClientIsn, cookie, kT0));
    for (int i = 0; i < 32; ++i) {
      EXPECT_FALSE(Check(t, kClientIsn ^ (1u << i), cookie, kT0)) << "isn bit " << i;
    }
    EXPECT_TRUE(Check(t, kClientIsn, cookie, kT0));  // untouched again
  }
  // The same first four address bytes as IPv6 is a different message.
  uint8_t c6[16] = {}, s6[16] = {};
  std::memcpy(c6, kClientV4, 4);
  std::memcpy(s6, kServerV4, 4);
  const uint32_t cookie = codec_.MakeIsn(TupleV4(), kClientIsn, kLinuxSyn, kT0);
  EXPECT_FALSE(Check(CookieTuple{16, c6, s6, 40000, 80}, kClientIsn, cookie, kT0));
}

// In the first slot (or epoch) there is no previous one: a cookie naming
// it must fail, and in epoch 0 the "previous" key must not be a known
// (zero) key that would let anyone mint key-id-1 cookies.
TEST(CookieEdgeTest, TimeZeroHasNoPreviousSlotOrKey) {
  KeySchedule keys(TestSecret());
  const CookieCodec codec(&keys);
  const CookieTuple t = TupleV4();
  SynOptions out;
  const uint32_t c = codec.MakeIsn(t, 1, kLinuxSyn, 0);
  EXPECT_EQ(c & kSlotParityBit, 0u);
  EXPECT_TRUE(codec.CheckIsn(t, 1, c, kSec, &out));
  EXPECT_FALSE(codec.CheckIsn(t, 1, c ^ kSlotParityBit, kSec, &out));
  // Forge with the all-zero key and key id 1.
  const uint32_t meta = kKeyIdBit | (c & kMetaMask & ~kKeyIdBit);
  const uint32_t forged = (CookieCodecPeer::Mac(SipKey{}, t, 1, 0, meta) << kMacShift) | meta;
  EXPECT_FALSE(codec.CheckIsn(t, 1, forged, kSec, &out));
}

// Random ACKs validate at the documented rate, 2^-24. 2^26 fully random
// guesses (tuple, client ISN, cookie all random, as a flood would send)
// expect 4 hits; the bound below fails only if the rate is several times
// the claim (Poisson(4) exceeds 16 with probability ~1e-6, and the inputs
// are seeded, so the test is deterministic anyway). About 2 s at -O2. The rate is then
// checked with statistical power on a 12-bit slice of the same MAC.
TEST(CookieForgeryTest, RandomAcksValidateAtMostAtTheDocumentedRate) {
  KeySchedule keys(TestSecret());
  const CookieCodec codec(&keys);
  std::mt19937_64 rng(3);
  const auto start = std::chrono::steady_clock::now();
  constexpr uint64_t kTrials = uint64_t{1} << 26;
  uint64_t hits = 0;
  uint8_t client[4], server[4] = {198, 19, 0, 2};
  const CookieTuple t{4, client, server, 0, 80};
  CookieTuple tt = t;
  for (uint64_t i = 0; i < kTrials; ++i) {
    const uint64_t r = rng();
    std::memcpy(client, &r, 4);
    tt.client_port = static_cast<uint16_t>(r >> 32);
    SynOptions out;
    hits +=
        codec.CheckIsn(tt, static_cast<uint32_t>(r >> 16), static_cast<uint32_t>(rng()), kT0, &out);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("forged_hits", static_cast<int>(hits));
  EXPECT_LE(hits, 16u) << "expected ~" << kTrials / (1u << kMacBits) << " in " << secs << " s";
}

TEST(CookieForgeryTest, TruncatedMacSliceIsUniform) {
  // The top 12 of the 24 MAC bits of random inputs hit a fixed value with
  // probability 2^-12: 2^22 trials expect 1024 (sd 32). A MAC with
  // structure (e.g. ignoring an input or biased bits) would be far off.
  const SipKey key = KeySchedule::DeriveKey(TestSecret(), 1);
  std::mt19937_64 rng(4);
  uint8_t client[16], server[16];
  int hits = 0;
  for (int i = 0; i < (1 << 22); ++i) {
    const uint64_t r = rng();
    std::memcpy(client, &r, 8);
    std::memcpy(server, &r, 8);
    server[0] ^= 0x55;
    const CookieTuple t{static_cast<uint8_t>((i & 1) ? 16 : 4), client, server,
                        static_cast<uint16_t>(r >> 40), 443};
    const uint32_t mac = CookieCodecPeer::Mac(key, t, static_cast<uint32_t>(r >> 8), i, r & 0xff);
    hits += (mac >> 12) == 0xabc;
  }
  EXPECT_GT(hits, 1024 - 6 * 32);
  EXPECT_LT(hits, 1024 + 6 * 32);
}

TEST(CookieTsvalTest, RoundTripsEveryOption) {
  for (int ws = -1; ws <= 14; ++ws) {
    for (bool sack : {false, true}) {
      for (bool ecn : {false, true}) {
        SynOptions in;
        in.wscale = ws < 0 ? kNoWindowScale : static_cast<uint8_t>(ws);
        in.sack = sack;
        in.ecn = ecn;
        in.timestamps = true;
        const uint32_t clock = 0xdeadbeef;
        const uint32_t tsval = CookieCodec::EncodeTsval(clock, in);
        EXPECT_EQ(tsval & ~kTsOptionMask, clock & ~kTsOptionMask);  // clock kept
        SynOptions out;
        out.mss = 1460;
        CookieCodec::DecodeTsecr(tsval, &out);
        EXPECT_EQ(out.wscale, in.wscale);
        EXPECT_EQ(out.sack, sack);
        EXPECT_EQ(out.ecn, ecn);
        EXPECT_TRUE(out.timestamps);
        EXPECT_EQ(out.mss, 1460);  // untouched
      }
    }
  }
  // Shifts above 14 are clamped (RFC 7323 §2.3), never read as "none".
  SynOptions big;
  big.wscale = 15;
  SynOptions out;
  CookieCodec::DecodeTsecr(CookieCodec::EncodeTsval(0, big), &out);
  EXPECT_EQ(out.wscale, 14);
}

// The full client path: the SYN had timestamps, so the exact shift (5,
// which the ISN can only carry as "none") comes back through TSecr.
TEST_F(CookieTest, TsecrRestoresExactOptionsAfterCheck) {
  const SynOptions syn{1460, 5, true, true, true};
  const uint32_t cookie = codec_.MakeIsn(TupleV4(), kClientIsn, syn, kT0);
  const uint32_t tsval = CookieCodec::EncodeTsval(123456789, syn);
  SynOptions out;
  ASSERT_TRUE(Check(TupleV4(), kClientIsn, cookie, kT0 + kSec, &out));
  EXPECT_EQ(out.wscale, kNoWindowScale);  // the ISN's coarse view
  EXPECT_TRUE(CookieCodec::DecodeTsecrChecked(tsval, &out));
  EXPECT_EQ(out.wscale, 5);
  EXPECT_TRUE(out.sack);
  EXPECT_TRUE(out.ecn);
  EXPECT_TRUE(out.timestamps);
  EXPECT_EQ(out.mss, 1460);

  // A TSecr that disagrees with the ISN (mangled, or not our echo) is
  // ignored in favour of the MAC-protected bits.
  SynOptions out2;
  ASSERT_TRUE(Check(TupleV4(), kClientIsn, cookie, kT0 + kSec, &out2));
  SynOptions liar = syn;
  liar.wscale = 14;
  EXPECT_FALSE(CookieCodec::DecodeTsecrChecked(CookieCodec::EncodeTsval(1, liar), &out2));
  EXPECT_EQ(out2.wscale, kNoWindowScale);
  EXPECT_TRUE(out2.sack);
  EXPECT_FALSE(out2.ecn);
  EXPECT_TRUE(out2.timestamps);
  SynOptions out3;
  ASSERT_TRUE(Check(TupleV4(), kClientIsn, cookie, kT0 + kSec, &out3));
  EXPECT_FALSE(CookieCodec::DecodeTsecrChecked(0, &out3));  // zero echo: sack mismatch
}

}  // namespace
}  // namespace moat::cookie
