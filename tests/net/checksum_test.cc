// Internet checksum (RFC 1071) against scapy's, an independent
// implementation, and against a byte-at-a-time reference; RFC 1624
// incremental updates (ChecksumUpdate16/32 and the PacketView rewrites)
// against full recomputation, bit for bit, including the 0x0000 corner.
#include "moat/net/checksum.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/bytes.h"
#include "moat/net/packet.h"
#include "scapy_vectors.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

using moat::testing::ScapyVectors;
using moat::testing::TcpPacket;

// RFC 1071 the slow, obvious way: big-endian 16-bit words, a trailing odd
// byte padded with zero on the right, end-around carry.
uint16_t RefChecksum(const std::vector<uint8_t>& d) {
  uint64_t s = 0;
  for (size_t i = 0; i + 1 < d.size(); i += 2) s += (d[i] << 8) | d[i + 1];
  if (d.size() % 2) s += d.back() << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

// Reference TCP checksum of a parsed view: pseudo-header (RFC 9293 §3.1 /
// RFC 8200 §8.1) + segment with the checksum field zeroed.
uint16_t RefTcpChecksum(const PacketView& v) {
  std::vector<uint8_t> d;
  d.insert(d.end(), v.src_addr(), v.src_addr() + v.addr_len());
  d.insert(d.end(), v.dst_addr(), v.dst_addr() + v.addr_len());
  const uint16_t len = v.tcp_len();
  if (v.ipv6()) {
    d.insert(d.end(), {0, 0, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len), 0, 0, 0,
                       kIpProtoTcp});
  } else {
    d.insert(d.end(), {0, kIpProtoTcp, static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
  }
  const size_t at = d.size();
  d.insert(d.end(), v.tcp(), v.tcp() + len);
  d[at + 16] = d[at + 17] = 0;
  return RefChecksum(d);
}

uint16_t FullTcpChecksum(const PacketView& v) {
  return v.ipv6() ? TcpChecksumV6(v.src_addr(), v.dst_addr(), v.tcp(), v.tcp_len())
                  : TcpChecksumV4(v.src_addr(), v.dst_addr(), v.tcp(), v.tcp_len());
}

TEST(Checksum, Ipv4HeaderMatchesScapy) {
  int checked = 0;
  for (const auto& sv : ScapyVectors()) {
    if (sv.l3 != L3::kIpv4) continue;
    SCOPED_TRACE(sv.name);
    const uint8_t* ip = sv.frame.data() + sv.l3_offset;
    const size_t ihl = (ip[0] & 0xfu) * 4;
    EXPECT_EQ(Ipv4HeaderChecksum(ip, ihl), sv.ip_checksum);
    EXPECT_EQ(LoadBe16(ip + 10), sv.ip_checksum) << "vector is self-consistent";
    ++checked;
  }
  EXPECT_GE(checked, 10);
}

TEST(Checksum, TcpMatchesScapy) {
  int v4 = 0, v6 = 0;
  for (const auto& sv : ScapyVectors()) {
    if (!sv.is_tcp) continue;
    SCOPED_TRACE(sv.name);
    const uint8_t* ip = sv.frame.data() + sv.l3_offset;
    const uint8_t* tcp = sv.frame.data() + sv.l4_offset;
    const size_t tcp_len = sv.l3_end - sv.l4_offset;
    if (sv.l3 == L3::kIpv6) {
      EXPECT_EQ(TcpChecksumV6(ip + 8, ip + 24, tcp, tcp_len), sv.tcp_checksum);
      ++v6;
    } else {
      EXPECT_EQ(TcpChecksumV4(ip + 12, ip + 16, tcp, tcp_len), sv.tcp_checksum);
      ++v4;
    }
    // The field's own content must not matter: it is skipped, not summed.
    std::vector<uint8_t> f = sv.frame;
    StoreBe16(f.data() + sv.l4_offset + 16, 0x1234);
    const uint8_t* ip2 = f.data() + sv.l3_offset;
    const uint8_t* tcp2 = f.data() + sv.l4_offset;
    EXPECT_EQ(sv.l3 == L3::kIpv6 ? TcpChecksumV6(ip2 + 8, ip2 + 24, tcp2, tcp_len)
                                 : TcpChecksumV4(ip2 + 12, ip2 + 16, tcp2, tcp_len),
              sv.tcp_checksum);
  }
  EXPECT_GE(v4, 8);
  EXPECT_GE(v6, 5);
}

TEST(Checksum, ZeroResultIsZeroNotFfff) {
  // scapy made these sum to 0xFFFF, so the stored checksum is 0x0000; a
  // sum over non-zero data can never produce 0xFFFF.
  int seen = 0;
  for (const auto& sv : ScapyVectors()) {
    const std::string name = sv.name;
    if (name.find("zero") == std::string::npos) continue;
    SCOPED_TRACE(name);
    ++seen;
    EXPECT_EQ(sv.tcp_checksum, 0x0000);
    std::vector<uint8_t> f = sv.frame;
    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    EXPECT_EQ(FullTcpChecksum(v), 0x0000);
    EXPECT_TRUE(VerifyTcpChecksum(v));
    if (v.l3 == L3::kIpv4) {
      EXPECT_EQ(sv.ip_checksum, 0x0000);
      EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
    }
  }
  EXPECT_EQ(seen, 2);
}

TEST(Checksum, FinishFoldsAndComplements) {
  EXPECT_EQ(ChecksumFinish(0), 0xffff);
  EXPECT_EQ(ChecksumFinish(0xffff), 0x0000);
  EXPECT_EQ(ChecksumFinish(0x10000), 0xfffe);  // carry wraps around
  EXPECT_EQ(ChecksumFinish(0x1fffe), 0x0000);  // fffe + 1 = ffff
  EXPECT_EQ(ChecksumFinish(0xffffffffu), 0x0000);
  EXPECT_EQ(ChecksumFinish(0xfffe + 0xffff), ChecksumFinish(0xfffe))
      << "adding 0xFFFF (-0) changes nothing";
}

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
  const uint8_t d[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(ChecksumFinish(ChecksumAccumulate(d, sizeof(d))), static_cast<uint16_t>(~0xddf2));
}

TEST(Checksum, AccumulateMatchesReferenceAtAnyLengthAndAlignment) {
  std::mt19937 rng(1071);
  std::vector<uint8_t> backing(600);
  for (size_t len = 0; len <= 300; ++len) {
    for (size_t align = 0; align < 8; ++align) {
      for (auto& b : backing) b = static_cast<uint8_t>(rng());
      // All-0xFF data: the carries pile up as fast as they can.
      if (len % 37 == 0) std::memset(backing.data(), 0xff, backing.size());
      const std::vector<uint8_t> d(backing.begin() + align, backing.begin() + align + len);
      ASSERT_EQ(ChecksumFinish(ChecksumAccumulate(backing.data() + align, len)), RefChecksum(d))
          << "len " << len << " align " << align;
    }
  }
}

TEST(Checksum, AccumulateChainsAtEvenSplitPoints) {
  std::mt19937 rng(1);
  std::vector<uint8_t> data(301);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const uint16_t whole = ChecksumFinish(ChecksumAccumulate(data.data(), data.size()));
  ASSERT_EQ(whole, RefChecksum(data));
  // Only the last chunk may be odd (the contract); splitting anywhere even
  // must not change the result, nor chaining three pieces.
  for (size_t cut = 0; cut <= data.size(); cut += 2) {
    uint32_t s = ChecksumAccumulate(data.data(), cut);
    s = ChecksumAccumulate(data.data() + cut, data.size() - cut, s);
    EXPECT_EQ(ChecksumFinish(s), whole) << cut;
    const size_t cut2 = cut + (data.size() - cut) / 4 * 2;
    uint32_t t = ChecksumAccumulate(data.data(), cut);
    t = ChecksumAccumulate(data.data() + cut, cut2 - cut, t);
    t = ChecksumAccumulate(data.data() + cut2, data.size() - cut2, t);
    EXPECT_EQ(ChecksumFinish(t), whole) << cut << "," << cut2;
  }
}

TEST(Checksum, TcpMatchesReferenceOnBuiltFrames) {
  std::mt19937 rng(793);
  for (int trial = 0; trial < 500; ++trial) {
    TcpPacket p;
    if (trial % 2) p.V6("2001:db8::1", "2001:db8:ffff::ffff");
    p.Seq(static_cast<uint32_t>(rng())).Ack(static_cast<uint32_t>(rng())).PayloadSize(rng() % 200);
    if (trial % 3 == 0) p.Timestamps(static_cast<uint32_t>(rng()), 0).Mss(1200);
    auto f = p.Build();
    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    ASSERT_EQ(FullTcpChecksum(v), RefTcpChecksum(v)) << trial;
  }
}

// A segment whose checksum computes to 0x0000 may carry 0xFFFF (the other
// one's-complement zero): both verify, and nothing else does. Found in the
// lab: moat dropped such valid segments as drop_bad_checksum, about one in
// 65536.
TEST(Checksum, NegativeZeroFieldVerifies) {
  for (bool v6 : {false, true}) {
    TcpPacket p;
    if (v6) p.V6("2001:db8::1", "2001:db8::2");
    p.Seq(1000).Ack(2000).PayloadSize(2);
    auto f = p.Build();
    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    // With the payload word zero, setting it to the checksum makes the
    // full sum 0xFFFF, so the computed checksum becomes 0x0000.
    StoreBe16(v.payload(), 0);
    FillTcpChecksum(v);
    StoreBe16(v.payload(), v.tcp_checksum());
    FillTcpChecksum(v);
    ASSERT_EQ(v.tcp_checksum(), 0x0000) << v6;
    EXPECT_TRUE(VerifyTcpChecksum(v)) << v6;
    StoreBe16(v.tcp() + 16, 0xffff);
    EXPECT_TRUE(VerifyTcpChecksum(v)) << v6;
    StoreBe16(v.tcp() + 16, 0xfffe);
    EXPECT_FALSE(VerifyTcpChecksum(v)) << v6;
  }
  // The IPv4 header checksum, the same way: steer the ID field.
  TcpPacket p;
  auto f = p.Build();
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
  uint8_t* ip = v.ip();
  StoreBe16(ip + 4, 0);
  FillIpv4HeaderChecksum(v);
  StoreBe16(ip + 4, LoadBe16(ip + 10));
  FillIpv4HeaderChecksum(v);
  ASSERT_EQ(LoadBe16(ip + 10), 0x0000);
  StoreBe16(ip + 10, 0xffff);
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
}

TEST(ChecksumUpdate, Rfc1624Example) {
  // RFC 1624 §4: the other header octets sum to 0xCD7A, a field goes from
  // 0x5555 to 0x3285. Eqn. 3 gives 0x0000 where eqn. 2 would give 0xFFFF.
  const uint16_t hc = 0xdd2f;
  EXPECT_EQ(ChecksumFinish(0xcd7a + 0x5555), hc);
  EXPECT_EQ(ChecksumUpdate16(hc, 0x5555, 0x3285), 0x0000);
  EXPECT_EQ(ChecksumUpdate16(0x0000, 0x3285, 0x5555), hc) << "and back";
  EXPECT_EQ(ChecksumUpdate32(hc, 0x00005555, 0x00003285), 0x0000);
  EXPECT_EQ(ChecksumUpdate32(hc, 0x55550000, 0x32850000), 0x0000);
}

TEST(ChecksumUpdate, NoChangeIsNoOp) {
  for (uint32_t c : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0xfffeu}) {
    for (uint32_t w : {0x0000u, 0x0001u, 0xffffu, 0x1234u}) {
      EXPECT_EQ(ChecksumUpdate16(static_cast<uint16_t>(c), static_cast<uint16_t>(w),
                                 static_cast<uint16_t>(w)),
                c);
      EXPECT_EQ(ChecksumUpdate32(static_cast<uint16_t>(c), w * 0x10001u, w * 0x10001u), c);
    }
  }
}

// A buffer that looks like a checksummed region: word 0 is fixed and
// non-zero (as a pseudo-header always is), so a correct checksum is never
// 0xFFFF and incremental results must match full ones bit for bit.
class Region {
 public:
  explicit Region(std::mt19937& rng, size_t n = 64) : d_(n) {
    for (auto& b : d_) b = static_cast<uint8_t>(rng());
    d_[0] = 0;
    d_[1] = kIpProtoTcp;
    csum_ = Full();
  }
  uint16_t Full() const { return ChecksumFinish(ChecksumAccumulate(d_.data(), d_.size())); }
  uint16_t csum() const { return csum_; }
  size_t size() const { return d_.size(); }
  // Sum of everything but the 16-bit word at `at`, as ChecksumFinish sees it.
  uint16_t ChecksumWithout(size_t at) const {
    std::vector<uint8_t> c = d_;
    c[at] = c[at + 1] = 0;
    return ChecksumFinish(ChecksumAccumulate(c.data(), c.size()));
  }
  void Set16(size_t at, uint16_t v) {
    const uint16_t old = LoadBe16(&d_[at]);
    StoreBe16(&d_[at], v);
    csum_ = ChecksumUpdate16(csum_, old, v);
  }
  void Set32(size_t at, uint32_t v) {
    const uint32_t old = LoadBe32(&d_[at]);
    StoreBe32(&d_[at], v);
    csum_ = ChecksumUpdate32(csum_, old, v);
  }

 private:
  std::vector<uint8_t> d_;
  uint16_t csum_;
};

uint16_t Interesting16(std::mt19937& rng) {
  static const uint16_t kEdges[] = {0x0000, 0xffff, 0x0001, 0xfffe, 0x8000, 0x7fff};
  return rng() % 4 == 0 ? kEdges[rng() % 6] : static_cast<uint16_t>(rng());
}
uint32_t Interesting32(std::mt19937& rng) {
  static const uint32_t kEdges[] = {0x00000000, 0xffffffff, 0x0000ffff, 0xffff0000,
                                    0x00000001, 0x80000000, 0xfffffffe};
  return rng() % 4 == 0 ? kEdges[rng() % 7] : static_cast<uint32_t>(rng());
}

TEST(ChecksumUpdate, RandomUpdatesEqualRecompute) {
  std::mt19937 rng(1624);
  for (int trial = 0; trial < 2000; ++trial) {
    Region r(rng, 8 + 2 * (rng() % 40));
    // A run of updates on the same region: errors would accumulate.
    for (int step = 0; step < 8; ++step) {
      if (rng() % 2) {
        const size_t at = 2 + 2 * (rng() % ((r.size() - 2) / 2));
        r.Set16(at, Interesting16(rng));
      } else {
        const size_t at = 2 + 2 * (rng() % ((r.size() - 4) / 2));
        r.Set32(at, Interesting32(rng));
      }
      ASSERT_EQ(r.csum(), r.Full()) << "trial " << trial << " step " << step;
    }
  }
}

TEST(ChecksumUpdate, UpdatesIntoAndOutOfZero) {
  // Choose the new word so the full checksum is exactly 0x0000 (sum
  // 0xFFFF), the RFC 1624 §3 corner; then move away from it again.
  std::mt19937 rng(3);
  int hit_zero = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Region r(rng, 40);
    const size_t at = 2 + 2 * (rng() % 19);
    // The rest sums to S with ~S = c; the word must bring it to 0xFFFF,
    // i.e. equal c. When c == 0 (S == 0xFFFF), 0xFFFF works as well.
    const uint16_t c = r.ChecksumWithout(at);
    const uint16_t word = (c == 0 && trial % 2) ? 0xffff : c;
    r.Set16(at, word);
    ASSERT_EQ(r.Full(), 0x0000) << trial;
    ASSERT_EQ(r.csum(), 0x0000) << "incremental update gave 0xFFFF-style result, trial " << trial;
    ++hit_zero;
    r.Set16(at, Interesting16(rng));
    ASSERT_EQ(r.csum(), r.Full()) << "leaving 0x0000, trial " << trial;
    r.Set32(2, Interesting32(rng));
    ASSERT_EQ(r.csum(), r.Full());
  }
  EXPECT_EQ(hit_zero, 3000);
}

TEST(ChecksumUpdate, Update32IntoZero) {
  std::mt19937 rng(32);
  for (int trial = 0; trial < 3000; ++trial) {
    Region r(rng, 48);
    const size_t at = 2 + 2 * (rng() % 22);
    // Zero the 32-bit field, then pick a value whose two halves bring the
    // sum to 0xFFFF: split c into hi + lo (one's complement) at random.
    r.Set32(at, 0);
    const uint16_t c = r.csum();
    const uint16_t hi = static_cast<uint16_t>(rng() % (c + 1u));
    const uint16_t lo = static_cast<uint16_t>(c - hi);
    r.Set32(at, (static_cast<uint32_t>(hi) << 16) | lo);
    ASSERT_EQ(r.Full(), 0x0000) << trial;
    ASSERT_EQ(r.csum(), 0x0000) << trial;
  }
}

// --- PacketView rewrites -------------------------------------------------

std::vector<uint8_t> RandomFrame(std::mt19937& rng, int trial) {
  TcpPacket p;
  if (trial % 2) p.V6("2001:2::1", "2001:2::2");
  if (trial % 5 == 1) p.Vlan(static_cast<uint16_t>(rng() & 0xfff));
  p.Seq(static_cast<uint32_t>(rng())).Ack(static_cast<uint32_t>(rng()));
  p.Window(static_cast<uint16_t>(rng())).Flags(static_cast<uint8_t>(rng()));
  switch (rng() % 4) {
    case 0:
      break;
    case 1:
      p.Nop().Nop().Timestamps(static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()));
      break;
    case 2:
      p.Mss(static_cast<uint16_t>(rng())).SackPermitted().Timestamps(1, 2).Nop().WindowScale(7);
      break;
    default:
      p.Nop().Nop().SackBlocks({static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng()),
                                static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())});
  }
  p.PayloadSize(rng() % 64);  // odd lengths half the time
  return p.Build();
}

bool OverlapsChecksum(uint16_t off, uint16_t width) { return off < 18 && off + width > 16; }

TEST(PacketViewRewrite, RandomRewritesEqualRecompute) {
  std::mt19937 rng(9293);
  int odd = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto f = RandomFrame(rng, trial);
    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    ASSERT_TRUE(VerifyTcpChecksum(v));
    for (int step = 0; step < 10; ++step) {
      SCOPED_TRACE(::testing::Message() << "trial " << trial << " step " << step);
      switch (rng() % 5) {
        case 0: {
          const SeqNum s(Interesting32(rng));
          v.SetSeq(s);
          ASSERT_EQ(v.seq(), s);
          break;
        }
        case 1: {
          const SeqNum a(Interesting32(rng));
          v.SetAck(a);
          ASSERT_EQ(v.ack(), a);
          break;
        }
        case 2: {
          const uint16_t w = Interesting16(rng);
          v.SetWindow(w);
          ASSERT_EQ(v.window(), w);
          break;
        }
        case 3: {
          // Any offset, even or odd, that does not touch the checksum field.
          uint16_t off;
          do off = static_cast<uint16_t>(rng() % (v.tcp_len() - 3));
          while (OverlapsChecksum(off, 4));
          odd += off & 1;
          const uint32_t x = Interesting32(rng);
          v.RewriteTcp32(off, x);
          ASSERT_EQ(LoadBe32(v.tcp() + off), x);
          break;
        }
        default: {
          uint16_t off;
          do off = static_cast<uint16_t>(rng() % (v.tcp_len() - 1));
          while (OverlapsChecksum(off, 2));
          odd += off & 1;
          const uint16_t x = Interesting16(rng);
          v.RewriteTcp16(off, x);
          ASSERT_EQ(LoadBe16(v.tcp() + off), x);
          break;
        }
      }
      ASSERT_EQ(v.tcp_checksum(), FullTcpChecksum(v));
      ASSERT_EQ(v.tcp_checksum(), RefTcpChecksum(v));
    }
  }
  EXPECT_GT(odd, 1000) << "odd offsets were exercised";
}

// The batched rewriter: any mix of 16- and 32-bit fields at even and odd
// offsets, overlapping or not, then one checksum update, equals a full
// recompute.
TEST(TcpRewriter, BatchedRewritesEqualRecompute) {
  std::mt19937 rng(1624);
  int odd = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    SCOPED_TRACE(::testing::Message() << "trial " << trial);
    auto f = RandomFrame(rng, trial);
    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    {
      TcpRewriter w(v);
      const int steps = 1 + static_cast<int>(rng() % 8);
      for (int step = 0; step < steps; ++step) {
        uint16_t off;
        if (rng() % 2) {
          do off = static_cast<uint16_t>(rng() % (v.tcp_len() - 3));
          while (OverlapsChecksum(off, 4));
          w.Set32(off, Interesting32(rng));
        } else {
          do off = static_cast<uint16_t>(rng() % (v.tcp_len() - 1));
          while (OverlapsChecksum(off, 2));
          w.Set16(off, Interesting16(rng));
        }
        odd += off & 1;
      }
    }  // the destructor writes the checksum
    // The reference computation, or its other zero (eqn. 3 may give -0).
    const uint16_t ref = RefTcpChecksum(v);
    ASSERT_TRUE(v.tcp_checksum() == ref || (ref == 0 && v.tcp_checksum() == 0xffff));
  }
  EXPECT_GT(odd, 1000) << "odd offsets were exercised";
}

TEST(PacketViewRewrite, TimestampAndSackEdgesAtTheirParsedOffsets) {
  auto f = TcpPacket()
               .Nop()
               .Nop()
               .Timestamps(100, 200)
               .Nop()
               .Nop()
               .SackBlocks({1, 2, 3, 4})
               .Payload("x")
               .Build();
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
  v.RewriteTcp32(24, 0xfffffff0u);  // TSval after two NOPs, kind and length
  v.RewriteTcp32(28, 0x0000000fu);  // TSecr
  for (uint16_t e = 0; e < 4; ++e) v.RewriteTcp32(36 + 4 * e, 0xffffffffu - e);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  EXPECT_EQ(LoadBe32(v.tcp() + 24), 0xfffffff0u);
  EXPECT_EQ(LoadBe32(v.tcp() + 36), 0xffffffffu);
}

TEST(PacketViewRewrite, OddOffsetFieldsStraddleWords) {
  // Timestamps after a single NOP: TSval at TCP offset 23, odd.
  auto f = TcpPacket().Nop().Timestamps(0x01020304, 0x05060708).Nop().Payload("abc").Build();
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
  ASSERT_EQ(LoadBe32(v.tcp() + 23), 0x01020304u);
  v.RewriteTcp32(23, 0xdeadbeef);
  EXPECT_EQ(LoadBe32(v.tcp() + 23), 0xdeadbeefu);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  v.RewriteTcp32(27, 0xffffffff);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  v.RewriteTcp16(21, 0xbeef);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  // The last byte of an odd-length segment is padded on the right; a
  // rewrite that ends there must account for that.
  v.RewriteTcp16(static_cast<uint16_t>(v.tcp_len() - 2), 0x1234);
  EXPECT_TRUE(VerifyTcpChecksum(v));
}

TEST(PacketViewRewrite, IntoAndOutOfZeroChecksum) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 1000; ++trial) {
    auto f = RandomFrame(rng, trial);
    PacketView v;
    ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
    SCOPED_TRACE(trial);
    // Window: with the window zeroed the checksum is c = ~S; window c makes
    // the sum 0xFFFF and the checksum 0x0000.
    v.SetWindow(0);
    const uint16_t c = v.tcp_checksum();
    v.SetWindow(c);
    ASSERT_EQ(FullTcpChecksum(v), 0x0000);
    ASSERT_EQ(v.tcp_checksum(), 0x0000);
    v.SetSeq(SeqNum(Interesting32(rng)));
    ASSERT_EQ(v.tcp_checksum(), FullTcpChecksum(v)) << "leaving zero";

    // The same through a 32-bit field: c2 in either half of seq.
    v.SetSeq(SeqNum(0));
    const uint16_t c2 = v.tcp_checksum();
    v.SetSeq(SeqNum(static_cast<uint32_t>(c2) << (trial % 2 ? 16 : 0)));
    ASSERT_EQ(FullTcpChecksum(v), 0x0000);
    ASSERT_EQ(v.tcp_checksum(), 0x0000);

    // And at an odd offset (inside the payload, or the options): there the
    // field's bytes land swapped in the sum.
    if (v.tcp_len() >= 24) {
      const uint16_t off = static_cast<uint16_t>(v.tcp_len() % 2 ? v.tcp_len() - 2 : 21);
      if (off & 1) {
        v.RewriteTcp16(off, 0);
        const uint16_t c3 = v.tcp_checksum();
        v.RewriteTcp16(off, __builtin_bswap16(c3));
        ASSERT_EQ(FullTcpChecksum(v), 0x0000) << "off " << off;
        ASSERT_EQ(v.tcp_checksum(), 0x0000) << "off " << off;
        v.RewriteTcp16(off, 0x4242);
        ASSERT_EQ(v.tcp_checksum(), FullTcpChecksum(v));
      }
    }
  }
}

TEST(PacketViewRewrite, FillAndVerifyRoundTrip) {
  auto f = TcpPacket().V6("2001:2::1", "2001:2::2").Payload("hello").Build();
  PacketView v;
  ASSERT_EQ(moat::testing::Parse(f, &v), ParseError::kOk);
  EXPECT_TRUE(VerifyTcpChecksum(v));
  f[f.size() - 1] ^= 0x01;  // corrupt the payload
  EXPECT_FALSE(VerifyTcpChecksum(v));
  FillTcpChecksum(v);
  EXPECT_TRUE(VerifyTcpChecksum(v));

  auto g = TcpPacket().Build();
  ASSERT_EQ(moat::testing::Parse(g, &v), ParseError::kOk);
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
  g[14 + 8] = 1;  // TTL
  EXPECT_FALSE(VerifyIpv4HeaderChecksum(v));
  FillIpv4HeaderChecksum(v);
  EXPECT_TRUE(VerifyIpv4HeaderChecksum(v));
}

}  // namespace
}  // namespace moat::net
