// The burst paths (siphash_batch.h, CookieCodec::MakeIsnBatch and
// CheckIsnBatch) against the one-at-a-time functions, on every path this
// CPU supports: a fleet shares cookies across machines whose CPUs pick
// different paths, so every path must give the same bits.

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/cookie/cookie.h"
#include "moat/cookie/siphash.h"
#include "moat/cookie/siphash_batch.h"

namespace moat::cookie {
namespace {

constexpr uint64_t kSec = kNsPerSecond;
constexpr uint64_t kSlot = kSlotSeconds * kSec;
constexpr uint64_t kRotation = kDefaultRotationSeconds * kSec;
constexpr uint64_t kT0 = 1'700'000'000ull * kSec;  // slot odd, epoch even (cookie_test.cc)
constexpr size_t kMaxN = 64;
// Bursts up to here, to cross CookieCodec::kBatchChunk twice.
constexpr size_t kBurstItems = 2 * kMaxN + 2;
static_assert(CookieCodec::kBatchChunk <= kMaxN);

const SipBatchPath kPaths[] = {SipBatchPath::kScalar, SipBatchPath::kAvx2};

MasterSecret TestSecret(uint8_t salt = 0) {
  MasterSecret s;
  for (size_t i = 0; i < kSecretBytes; ++i) s.bytes[i] = static_cast<uint8_t>(i ^ salt);
  return s;
}

// Runs each test once per batch path; skipped where the CPU lacks it, and
// the default path is restored after.
class PathTest : public ::testing::TestWithParam<SipBatchPath> {
 protected:
  void SetUp() override {
    saved_ = ActiveSipBatchPath();
    if (!SipBatchPathSupported(GetParam())) {
      GTEST_SKIP() << SipBatchPathName(GetParam()) << " not supported on this CPU";
    }
    ASSERT_TRUE(SetSipBatchPath(GetParam()));
    ASSERT_EQ(ActiveSipBatchPath(), GetParam());
  }
  void TearDown() override { SetSipBatchPath(saved_); }

  SipBatchPath saved_ = SipBatchPath::kScalar;
};

std::string PathName(const ::testing::TestParamInfo<SipBatchPath>& info) {
  return SipBatchPathName(info.param);
}

// A message's SipHash blocks (SipHashBlocks form) into column i.
void PutBlocks(const uint8_t* msg, size_t len, size_t stride, size_t i, uint64_t* blocks) {
  const size_t full = len / 8;
  for (size_t j = 0; j < full; ++j) std::memcpy(&blocks[j * stride + i], msg + 8 * j, 8);
  uint64_t last = static_cast<uint64_t>(len) << 56;
  for (size_t k = 0; k < len % 8; ++k) last |= uint64_t{msg[8 * full + k]} << (8 * k);
  blocks[full * stride + i] = last;
}

TEST(SipBatchPathTest, ControlAndNames) {
  const SipBatchPath saved = ActiveSipBatchPath();
  EXPECT_STREQ(SipBatchPathName(SipBatchPath::kScalar), "scalar");
  EXPECT_STREQ(SipBatchPathName(SipBatchPath::kAvx2), "avx2");
  EXPECT_TRUE(SipBatchPathSupported(SipBatchPath::kScalar));
  // The default is the fastest supported path.
  EXPECT_EQ(saved, SipBatchPathSupported(SipBatchPath::kAvx2) ? SipBatchPath::kAvx2
                                                              : SipBatchPath::kScalar);
  EXPECT_STREQ(CookieCodec::BatchPathName(), SipBatchPathName(saved));
  RecordProperty("default_batch_path", SipBatchPathName(saved));

  ASSERT_TRUE(SetSipBatchPath(SipBatchPath::kScalar));
  EXPECT_EQ(ActiveSipBatchPath(), SipBatchPath::kScalar);
  EXPECT_STREQ(CookieCodec::BatchPathName(), "scalar");
  // An unsupported path is refused and changes nothing.
  EXPECT_EQ(SetSipBatchPath(SipBatchPath::kAvx2), SipBatchPathSupported(SipBatchPath::kAvx2));
  EXPECT_EQ(SetSipBatchPath(static_cast<SipBatchPath>(7)), false);
  SetSipBatchPath(saved);
  EXPECT_EQ(ActiveSipBatchPath(), saved);
}

class SipHashBatchTest : public PathTest {};

// The paper's SipHash-2-4 vectors (key 00..0f, message 00..len-1) and the
// reference implementation's SipHash-1-3 zero-key ones (siphash_test.cc
// has their provenance), every length there, each message in many lanes
// of batches of several sizes, alongside lanes under another key.
TEST_P(SipHashBatchTest, PublishedVectorsInEveryLane) {
  struct Vector {
    size_t len;
    uint64_t out;
  };
  const Vector v24[] = {
      {0, 0x726fdb47dd0e0e31},  {1, 0x74f839c593dc67fd},  {7, 0xab0200f58b01d137},
      {8, 0x93f5f5799a932462},  {15, 0xa129ca6149be45e5}, {16, 0x3f2acc7f57c29bdb},
      {23, 0xa80c038ccd5ccec8}, {24, 0xb8ad50c6f649af94}, {32, 0x7127512f72f27cce},
      {47, 0xd06c98cd5c0975eb}, {48, 0xe612a3cb9ecba951}, {63, 0x958a324ceb064572},
  };
  const Vector v13[] = {
      {0, 0xd1fba762150c532c},  {1, 0x68a914128e01e473},  {7, 0x2f098ab0c751325a},
      {8, 0xead411e67ebe2eea},  {15, 0xf30eb725bb91c9ea}, {16, 0x8972188433a5c5b7},
      {23, 0x37332b1389daa4ff}, {24, 0x31185a47af932f3a}, {47, 0x8485f7f5ae725a0d},
      {63, 0x385d3e39e5f37359},
  };
  uint8_t msg[64];
  uint8_t key_bytes[16];
  for (int i = 0; i < 64; ++i) msg[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 16; ++i) key_bytes[i] = static_cast<uint8_t>(i);
  const SipKey paper_key = SipKeyFromBytes(key_bytes);
  const SipKey other{0x1111111111111111, 0x2222222222222222};
  for (size_t n : {size_t{1}, size_t{3}, size_t{4}, size_t{8}, size_t{13}, size_t{32}}) {
    std::vector<uint64_t> blocks(kSipBatchMaxBlocks * n);
    std::vector<uint8_t> ids(n);
    std::vector<uint64_t> out(n);
    for (bool v13_variant : {false, true}) {
      // 1-3's vectors are under the zero key.
      const SipKey keys[2] = {v13_variant ? SipKey{} : paper_key, other};
      for (const Vector& v : v13_variant ? std::vector<Vector>(std::begin(v13), std::end(v13))
                                         : std::vector<Vector>(std::begin(v24), std::end(v24))) {
        for (size_t i = 0; i < n; ++i) {
          PutBlocks(msg, v.len, n, i, blocks.data());
          ids[i] = static_cast<uint8_t>(i % 3 == 2);  // every third lane under `other`
        }
        const size_t nb = v.len / 8 + 1;
        (v13_variant ? SipHash13Batch : SipHash24Batch)(keys, ids.data(), blocks.data(), nb, n, n,
                                                        out.data());
        const uint64_t other_want =
            v13_variant ? SipHash13(other, msg, v.len) : SipHash24(other, msg, v.len);
        for (size_t i = 0; i < n; ++i) {
          EXPECT_EQ(out[i], ids[i] ? other_want : v.out)
              << (v13_variant ? "1-3" : "2-4") << " len " << v.len << " n " << n << " lane " << i;
        }
      }
    }
  }
}

// Random messages of every length 0..63 in batches of every size 0..64,
// random per-lane keys, a stride wider than the batch: each lane is the
// one-message function's answer. The columns are exactly n wide on the
// heap, so ASan (scripts/test's build-san) flags any read past lane n - 1.
TEST_P(SipHashBatchTest, RandomMessagesMatchOneAtATime) {
  std::mt19937_64 rng(11);
  const SipKey keys[2] = {{rng(), rng()}, {rng(), rng()}};
  for (size_t n = 0; n <= kMaxN; ++n) {
    for (size_t len = n % 8; len < 64; len += 7) {
      const size_t nb = len / 8 + 1;
      const size_t stride = n + (n % 3);
      std::vector<uint8_t> msgs(n * 64);
      std::vector<uint64_t> blocks(nb * stride);
      std::vector<uint8_t> ids(n);
      for (size_t i = 0; i < n; ++i) {
        for (size_t b = 0; b < 64; ++b) msgs[i * 64 + b] = static_cast<uint8_t>(rng());
        PutBlocks(&msgs[i * 64], len, stride, i, blocks.data());
        ids[i] = static_cast<uint8_t>(rng());  // only the low bit counts
      }
      std::vector<uint64_t> out13(n), out24(n), out_k0(n);
      SipHash13Batch(keys, ids.data(), blocks.data(), nb, stride, n, out13.data());
      SipHash24Batch(keys, ids.data(), blocks.data(), nb, stride, n, out24.data());
      SipHash13Batch(keys, nullptr, blocks.data(), nb, stride, n, out_k0.data());
      for (size_t i = 0; i < n; ++i) {
        const SipKey& k = keys[ids[i] & 1];
        ASSERT_EQ(out13[i], SipHash13(k, &msgs[i * 64], len)) << "n " << n << " len " << len;
        ASSERT_EQ(out24[i], SipHash24(k, &msgs[i * 64], len)) << "n " << n << " len " << len;
        ASSERT_EQ(out_k0[i], SipHash13(keys[0], &msgs[i * 64], len));
      }
    }
  }
}

TEST_P(SipHashBatchTest, OutOfRangeArgumentsWriteNothing) {
  const SipKey keys[2] = {};
  uint64_t blocks[kSipBatchMaxBlocks + 1][4] = {};
  uint64_t out[4] = {1, 2, 3, 4};
  SipHash13Batch(keys, nullptr, &blocks[0][0], 3, 4, 0, out);                       // n = 0
  SipHash13Batch(keys, nullptr, &blocks[0][0], 0, 4, 4, out);                       // no blocks
  SipHash13Batch(keys, nullptr, &blocks[0][0], kSipBatchMaxBlocks + 1, 4, 4, out);  // too many
  EXPECT_EQ(out[0], 1u);
  EXPECT_EQ(out[3], 4u);
}

INSTANTIATE_TEST_SUITE_P(Paths, SipHashBatchTest, ::testing::ValuesIn(kPaths), PathName);

// Inputs for the codec: random tuples of the chosen families, client ISNs
// and SYN options that cover every MSS index (and MSS 0, odd values and
// values above the tables), every window-scale code (absent, < 6, above
// 14) and both SACK values.
enum class Mix { kV4, kV6, kMixed };

struct Burst {
  uint8_t addrs[kBurstItems][32];
  CookieTuple tuples[kBurstItems];
  uint32_t client_isns[kBurstItems];
  SynOptions syn[kBurstItems];

  Burst(std::mt19937_64& rng, Mix mix) {
    for (size_t i = 0; i < kBurstItems; ++i) {
      for (auto& b : addrs[i]) b = static_cast<uint8_t>(rng());
      const bool v6 = mix == Mix::kV6 || (mix == Mix::kMixed && (rng() & 1));
      tuples[i] = CookieTuple{static_cast<uint8_t>(v6 ? 16 : 4), addrs[i], addrs[i] + 16,
                              static_cast<uint16_t>(rng()), static_cast<uint16_t>(rng())};
      client_isns[i] = static_cast<uint32_t>(rng());
      const uint16_t mss_choices[] = {0, 88, 536, 1220, 1339, 1400, 1440, 1460, 8940, 8960, 65535};
      SynOptions o;
      o.mss =
          (rng() & 1) ? mss_choices[rng() % std::size(mss_choices)] : static_cast<uint16_t>(rng());
      const uint8_t ws_choices[] = {kNoWindowScale, 0, 5, 6, 7, 8, 14, 15, 200};
      o.wscale = ws_choices[rng() % std::size(ws_choices)];
      o.sack = rng() & 1;
      o.timestamps = rng() & 1;
      syn[i] = o;
    }
  }
};

// Times that give each key id and slot parity: kT0 is an odd slot in an
// even epoch; a slot later flips parity, a rotation later flips the key.
// The last is a second before a rotation, so a slot later its cookies are
// checked under the previous epoch's key.
const uint64_t kTimes[] = {kT0, kT0 + kSlot, kT0 + kRotation, kT0 + kRotation + kSlot + 7,
                           (kT0 / kRotation + 1) * kRotation - kSec};

class CookieBatchTest : public PathTest {
 protected:
  CookieBatchTest() : keys_(TestSecret()), codec_(&keys_) {}

  KeySchedule keys_;
  CookieCodec codec_;
};

TEST_P(CookieBatchTest, MakeIsnBatchMatchesMakeIsnForEveryLength) {
  std::mt19937_64 rng(21);
  int key_ids_seen = 0, parities_seen = 0;
  for (Mix mix : {Mix::kV4, Mix::kV6, Mix::kMixed}) {
    for (uint64_t now : kTimes) {
      const Burst b(rng, mix);
      // 0..64, and across the chunk boundary (kBatchChunk) up to 130.
      for (size_t n = 0; n <= kBurstItems; n += (n < kMaxN ? 1 : 33)) {
        uint32_t isns[kBurstItems + 1];
        isns[n] = 0xdeadbeef;  // one past the end: must stay untouched
        codec_.MakeIsnBatch(b.tuples, b.client_isns, b.syn, n, now, isns);
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(isns[i], codec_.MakeIsn(b.tuples[i], b.client_isns[i], b.syn[i], now))
              << "n " << n << " item " << i << " v6 " << (b.tuples[i].addr_len == 16);
          key_ids_seen |= 1 << ((isns[i] & kKeyIdBit) != 0);
          parities_seen |= 1 << ((isns[i] & kSlotParityBit) != 0);
        }
        ASSERT_EQ(isns[n], 0xdeadbeefu);
      }
    }
  }
  EXPECT_EQ(key_ids_seen, 3);
  EXPECT_EQ(parities_seen, 3);
}

// The pinned known answers (cookie_test.cc KnownAnswers) through the burst
// API: the same ISNs on the wire whichever path made them.
TEST_P(CookieBatchTest, KnownAnswers) {
  const uint8_t c4[4] = {198, 18, 0, 1}, s4[4] = {198, 19, 0, 2};
  const uint8_t c6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const uint8_t s6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  const CookieTuple tuples[3] = {
      {4, c4, s4, 40000, 80}, {16, c6, s6, 40000, 443}, {4, c4, s4, 40000, 80}};
  const uint32_t cisns[3] = {0x12345678, 0x12345678, 0};
  const SynOptions syn[3] = {{1460, 7, true, true, false}, {1460, 7, true, true, false}, {}};
  uint32_t isns[3];
  codec_.MakeIsnBatch(tuples, cisns, syn, 3, kT0, isns);
  EXPECT_EQ(isns[0], 0x15dba676u);
  EXPECT_EQ(isns[1], 0x5249c976u);
  EXPECT_EQ(isns[2], 0x82d7e440u);
  codec_.MakeIsnBatch(tuples, cisns, syn, 1, kT0 + kRotation, isns);
  EXPECT_EQ(isns[0], 0x19fb36f6u);
}

// What an ACK can carry: its own cookie, a cookie with one bit flipped, a
// cookie for another ISN or tuple, an expired one (two or more slots
// old), one minted under another secret (a wrong key), or random bits.
TEST_P(CookieBatchTest, CheckIsnBatchMatchesCheckIsnForEveryLength) {
  std::mt19937_64 rng(22);
  KeySchedule other_keys(TestSecret(0x5a));
  const CookieCodec other(&other_keys);
  int valid_seen = 0, invalid_seen = 0;
  for (Mix mix : {Mix::kV4, Mix::kV6, Mix::kMixed}) {
    for (uint64_t made : kTimes) {
      const Burst b(rng, mix);
      constexpr size_t kN = kBurstItems;
      uint32_t genuine[kN], cookies[kN];
      codec_.MakeIsnBatch(b.tuples, b.client_isns, b.syn, kN, made, genuine);
      for (size_t i = 0; i < kN; ++i) {
        switch (rng() % 7) {
          case 0:
          case 1:
            cookies[i] = genuine[i];
            break;
          case 2:
            cookies[i] = genuine[i] ^ (1u << (rng() % 32));
            break;
          case 3:
            cookies[i] = codec_.MakeIsn(b.tuples[i], b.client_isns[i] + 1, b.syn[i], made);
            break;
          case 4:
            cookies[i] = codec_.MakeIsn(b.tuples[(i + 1) % kN], b.client_isns[i], b.syn[i], made);
            break;
          case 5:
            cookies[i] = other.MakeIsn(b.tuples[i], b.client_isns[i], b.syn[i], made);
            break;
          default:
            cookies[i] = static_cast<uint32_t>(rng());
            break;
        }
      }
      // Checked now, a slot later (still valid), two slots later
      // (expired) and three (parity matches again, still expired).
      for (uint64_t now : {made, made + kSlot, made + 2 * kSlot, made + 3 * kSlot}) {
        for (size_t n = 0; n <= kN; n += (n < kMaxN ? 1 : 33)) {
          SynOptions out[kN + 1];
          bool valid[kN + 1];
          const SynOptions sentinel{1, 2, true, true, true};
          for (size_t i = 0; i <= n; ++i) out[i] = sentinel;
          valid[n] = true;
          const size_t count =
              codec_.CheckIsnBatch(b.tuples, b.client_isns, cookies, n, now, out, valid);
          size_t want_count = 0;
          for (size_t i = 0; i < n; ++i) {
            SynOptions want = sentinel;
            const bool ok = codec_.CheckIsn(b.tuples[i], b.client_isns[i], cookies[i], now, &want);
            want_count += ok;
            ASSERT_EQ(valid[i], ok) << "n " << n << " item " << i;
            // Valid: the decoded options; invalid: left as they were.
            ASSERT_EQ(std::memcmp(&out[i], &want, sizeof(want)), 0) << "n " << n << " item " << i;
            (ok ? valid_seen : invalid_seen)++;
          }
          ASSERT_EQ(count, want_count) << "n " << n;
          ASSERT_TRUE(valid[n]);  // one past the end: untouched
          ASSERT_EQ(std::memcmp(&out[n], &sentinel, sizeof(sentinel)), 0);
        }
      }
    }
  }
  EXPECT_GT(valid_seen, 10000);
  EXPECT_GT(invalid_seen, 10000);
}

// In slot 0 a cookie whose parity names the previous slot names none:
// rejected by both paths even with the MAC of slot 2^48 - 1 (what the
// subtraction wraps to) under the key its id names.
TEST_P(CookieBatchTest, NoPreviousSlotAtTimeZero) {
  KeySchedule keys(TestSecret());
  const CookieCodec codec(&keys);
  const uint8_t c[4] = {198, 18, 0, 1}, s[4] = {198, 19, 0, 2};
  CookieTuple tuples[9];
  uint32_t cisns[9], cookies[9];
  for (int i = 0; i < 9; ++i) {
    tuples[i] = CookieTuple{4, c, s, static_cast<uint16_t>(40000 + i), 80};
    cisns[i] = i;
    cookies[i] = codec.MakeIsn(tuples[i], cisns[i], SynOptions{}, 0) ^ (i & 1 ? kSlotParityBit : 0);
  }
  SynOptions out[9];
  bool valid[9];
  EXPECT_EQ(codec.CheckIsnBatch(tuples, cisns, cookies, 9, kSec, out, valid), 5u);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(valid[i], (i & 1) == 0) << i;
}

// A flood of random ACKs through the burst check validates at the
// documented 2^-24 (cookie_test.cc measures the rate itself on the
// one-at-a-time path): 2^22 guesses expect 0.25, and Poisson(0.25)
// exceeds 5 with probability ~3e-7, while a lane that compared wrongly
// would pass thousands. The inputs are seeded, so the test is
// deterministic.
TEST_P(CookieBatchTest, RandomAcksValidateAtMostAtTheDocumentedRate) {
  std::mt19937_64 rng(5);
  constexpr size_t kBurst = 32;
  uint8_t clients[kBurst][4];
  const uint8_t server[4] = {198, 19, 0, 2};
  CookieTuple tuples[kBurst];
  uint32_t cisns[kBurst], cookies[kBurst];
  SynOptions out[kBurst];
  bool valid[kBurst];
  uint64_t hits = 0;
  for (uint64_t round = 0; round < (uint64_t{1} << 22) / kBurst; ++round) {
    for (size_t i = 0; i < kBurst; ++i) {
      const uint64_t r = rng();
      std::memcpy(clients[i], &r, 4);
      tuples[i] = CookieTuple{4, clients[i], server, static_cast<uint16_t>(r >> 32), 80};
      cisns[i] = static_cast<uint32_t>(r >> 16);
      cookies[i] = static_cast<uint32_t>(rng());
    }
    hits += codec_.CheckIsnBatch(tuples, cisns, cookies, kBurst, kT0, out, valid);
  }
  RecordProperty("forged_hits", static_cast<int>(hits));
  EXPECT_LE(hits, 5u);
}

INSTANTIATE_TEST_SUITE_P(Paths, CookieBatchTest, ::testing::ValuesIn(kPaths), PathName);

}  // namespace
}  // namespace moat::cookie
