// Randomized mutation test: corrupted frames from both sides (bit flips,
// truncations, random option bytes, random lengths, random flags and
// numbers, some with checksums repaired so they reach the state machine)
// go through ParseFrame and Engine::Process next to live flows. Nothing may
// crash (run under ASan/UBSan), every verdict is a Verdict, every kDrop
// bumps exactly one drop counter and nothing else does, every emitted frame
// is well-formed, and all state drains when time runs out.

#include <cstdio>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpFin;
using net::kTcpRst;
using net::kTcpSyn;

constexpr int kIterations = 150'000;

struct Sample {
  Side side;
  Frame frame;
};

// Valid traffic for a few live flows, both families, all states.
std::vector<Sample> BuildCorpus(Harness& h, std::mt19937_64& rng, uint16_t base_port) {
  std::vector<Sample> corpus;
  auto add = [&](Side s, const TcpPacket& seg) { corpus.push_back(Sample{s, seg.BuildFrame()}); };
  for (int i = 0; i < 8; ++i) {
    Conn c;
    c.v6 = i & 1;
    // Mutated frames may have left flows (passthrough, say) on any port:
    // take one that is free in both families.
    c.client_port = static_cast<uint16_t>(base_port + i);
    while (h.engine().FindFlow(KeyFor(false, c.client_port)) != nullptr ||
           h.engine().FindFlow(KeyFor(true, c.client_port)) != nullptr) {
      c.client_port = static_cast<uint16_t>(c.client_port + 97);
    }
    SCOPED_TRACE(::testing::Message() << "corpus flow on port " << c.client_port);
    c.client_isn = static_cast<uint32_t>(rng());
    c.backend_isn = static_cast<uint32_t>(rng());
    c.ts = i % 3 != 0;
    c.client_ws = i % 4 == 0 ? -1 : 7;
    c.backend_ws = i % 5 == 0 ? -1 : 9;
    add(Side::kClient, ClientSyn(c));
    if (i < 6) {
      DriveToEstablished(h, &c, i == 2 ? 10 : 0);
    } else {
      DriveToSynSent(h, &c);
    }
    add(Side::kClient, ClientHandshakeAck(c, 20));
    add(Side::kServer, BackendSynAck(c));
    const uint32_t cs = c.client_isn + 1, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
    add(Side::kClient, c.C().Seq(cs).Ack(ks).PayloadFill(100, 'x').Timestamps(c.client_tsval, c.synack_tsval)
                           .SackBlocks({ks + 10, ks + 20, ks + 30, ks + 40}));
    add(Side::kServer, c.S().Seq(bs).Ack(cs).PayloadFill(200, 'x').Timestamps(c.backend_tsval, c.client_tsval));
    add(Side::kClient, c.C().Seq(cs).Ack(ks).Flags(kTcpFin | kTcpAck));
    add(Side::kServer, c.S().Seq(bs).Ack(cs).Flags(kTcpFin | kTcpAck));
    add(Side::kClient, c.C().Seq(cs).Ack(0).Flags(kTcpRst));
    add(Side::kServer, c.S().Seq(bs).Ack(cs).Flags(kTcpRst | kTcpAck));
    add(Side::kServer, c.S().Seq(bs).Ack(0).Flags(kTcpSyn).WindowScale(3));
  }
  // Passthrough and unprotected traffic.
  add(Side::kServer, FromServer().Ports(kServerPort, 2000).Seq(1).Ack(0).Flags(kTcpSyn).WindowScale(5));
  add(Side::kClient, FromClient().Ports(2000, kServerPort).Seq(9).Ack(2).Flags(kTcpSyn | kTcpAck));
  add(Side::kClient, FromClient().Ports(1, 81).PayloadFill(30, 'x'));
  add(Side::kClient, FromClient(true).Vlan(7, net::kEtherTypeQinQ).Vlan(8).Flags(kTcpSyn).Mss(1400).WindowScale(14).FastOpenRequest());
  return corpus;
}

void RepairChecksums(Frame* f) {
  net::PacketView v;
  if (net::ParseFrame(f->buf, f->len, &v) != net::ParseError::kOk) return;
  if (v.l3 == net::L3::kIpv4) net::FillIpv4HeaderChecksum(v);
  if (v.is_tcp) net::FillTcpChecksum(v);
}

void Mutate(Frame* f, std::mt19937_64& rng) {
  auto rnd = [&](uint64_t n) { return n ? rng() % n : 0; };
  const int ops = 1 + static_cast<int>(rnd(3));
  for (int k = 0; k < ops; ++k) {
    switch (rnd(8)) {
      case 0: {  // bit flips
        const int flips = 1 + static_cast<int>(rnd(4));
        for (int i = 0; i < flips && f->len; ++i) f->buf[rnd(f->len)] ^= uint8_t(1u << rnd(8));
        break;
      }
      case 1:  // truncation
        f->len = static_cast<uint16_t>(rnd(f->len + 1u));
        break;
      case 2: {  // random option bytes
        net::PacketView v;
        if (net::ParseFrame(f->buf, f->len, &v) == net::ParseError::kOk && v.is_tcp &&
            v.tcp_header_len > 20) {
          const int n = 1 + static_cast<int>(rnd(8));
          for (int i = 0; i < n; ++i) {
            v.tcp()[20 + rnd(v.tcp_header_len - 20u)] = static_cast<uint8_t>(rng());
          }
        } else if (f->len) {
          f->buf[rnd(f->len)] = static_cast<uint8_t>(rng());
        }
        break;
      }
      case 3: {  // random length, with garbage beyond the old end
        const uint16_t n = static_cast<uint16_t>(rnd(kMaxFrame + 1));
        for (uint16_t i = f->len; i < n; ++i) f->buf[i] = static_cast<uint8_t>(rng());
        f->len = n;
        break;
      }
      case 4: {  // random flags
        net::PacketView v;
        if (net::ParseFrame(f->buf, f->len, &v) == net::ParseError::kOk && v.is_tcp) {
          v.tcp()[13] = static_cast<uint8_t>(rng());
        }
        break;
      }
      case 5: {  // nudge seq or ack
        net::PacketView v;
        if (net::ParseFrame(f->buf, f->len, &v) == net::ParseError::kOk && v.is_tcp) {
          const uint16_t off = rnd(2) ? 4 : 8;
          const int32_t d = rnd(4) == 0 ? static_cast<int32_t>(rng())
                                        : static_cast<int32_t>(rnd(200000)) - 100000;
          net::StoreBe32(v.tcp() + off, net::LoadBe32(v.tcp() + off) + static_cast<uint32_t>(d));
        }
        break;
      }
      case 6: {  // random data offset or IP length field
        net::PacketView v;
        if (net::ParseFrame(f->buf, f->len, &v) == net::ParseError::kOk && v.l3 != net::L3::kOther) {
          if (v.is_tcp && rnd(2)) {
            v.tcp()[12] = static_cast<uint8_t>(rng());
          } else {
            net::StoreBe16(v.ip() + (v.ipv6() ? 4 : 2), static_cast<uint16_t>(rng()));
          }
        }
        break;
      }
      default: {  // pure garbage
        f->len = static_cast<uint16_t>(rnd(200));
        for (uint16_t i = 0; i < f->len; ++i) f->buf[i] = static_cast<uint8_t>(rng());
        if (f->len >= 14 && rnd(2)) net::StoreBe16(f->buf + 12, rnd(2) ? 0x0800 : 0x86dd);
        break;
      }
    }
  }
  if (rnd(2)) RepairChecksums(f);
}

// Without and with the SYN cache (whose entries, retransmissions and mode
// switches then see the same corrupted traffic).
class EngineFuzzTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(SynCache, EngineFuzzTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

TEST_P(EngineFuzzTest, CorruptedFramesNeverBreakInvariants) {
  EngineConfig cfg = DefaultConfig();
  cfg.syn_cache_entries = GetParam() ? 64 : 0;
  cfg.flow_capacity = 64;
  cfg.held_slots = 16;
  Harness h(cfg);
  std::mt19937_64 rng(0x6d6f6174);  // "moat"
  uint16_t base_port = 50000;
  std::vector<Sample> corpus = BuildCorpus(h, rng, base_port);
  std::vector<bool> is_drop(kNumCounters);
  for (size_t i = 0; i < kNumCounters; ++i) is_drop[i] = IsDropCounter(i);

  Output out;
  int failures = 0;
  uint64_t now = h.now();
  size_t verdicts[4] = {};
  for (int it = 0; it < kIterations && failures < 10; ++it) {
    const Sample& s = corpus[rng() % corpus.size()];
    Frame f = s.frame;
    const bool mutate = rng() % 8 != 0;  // some valid traffic keeps flows alive
    if (mutate) Mutate(&f, rng);
    const Side side = rng() % 16 == 0 ? Other(s.side) : s.side;

    uint64_t before[kNumCounters];
    for (size_t i = 0; i < kNumCounters; ++i) before[i] = h.engine().stats().Load(i);
    const Verdict v = h.engine().Process(side, f.buf, &f.len, sizeof(f.buf), now, &out);
    uint64_t drops = 0;
    for (size_t i = 0; i < kNumCounters; ++i) {
      if (is_drop[i]) drops += h.engine().stats().Load(i) - before[i];
    }
    const auto raw = static_cast<uint8_t>(v);
    if (raw > static_cast<uint8_t>(Verdict::kConsumed)) {
      ADD_FAILURE() << "iteration " << it << ": verdict " << int(raw);
      ++failures;
      continue;
    }
    ++verdicts[raw];
    if (v == Verdict::kDrop ? drops != 1 : drops != 0) {
      ADD_FAILURE() << "iteration " << it << ": verdict " << int(raw) << " bumped " << drops
                    << " drop counters";
      ++failures;
    }
    if (f.len > sizeof(f.buf)) {
      ADD_FAILURE() << "length grew past the capacity";
      ++failures;
    }
    if (v == Verdict::kReflect) {
      // Reflected frames are built by moat: they must be well-formed.
      net::PacketView pv;
      if (net::ParseFrame(f.buf, f.len, &pv) != net::ParseError::kOk || !pv.is_tcp ||
          !net::VerifyTcpChecksum(pv)) {
        ADD_FAILURE() << "iteration " << it << ": malformed reflected frame";
        ++failures;
      }
    }
    for (size_t i = 0; i < out.size(); ++i) {
      const Emitted e = out[i];
      Frame g;
      std::memcpy(g.buf, e.data, e.len);
      net::PacketView pv;
      if (e.len > kMaxFrame || net::ParseFrame(g.buf, e.len, &pv) != net::ParseError::kOk ||
          !pv.is_tcp || !net::VerifyTcpChecksum(pv)) {
        ADD_FAILURE() << "iteration " << it << ": malformed emitted frame";
        ++failures;
      }
    }
    out.Clear();
    if (it % 500 == 0) {
      now += (rng() % 3000) * kMs;
      while (h.engine().Tick(now, &out)) out.Clear();
      out.Clear();
    }
    if (it % 20000 == 19999) {
      // Refill: new live flows so later mutations hit established state.
      h.set_now(now);
      base_port = static_cast<uint16_t>(base_port + 16);
      std::vector<Sample> more = BuildCorpus(h, rng, base_port);
      corpus.insert(corpus.end(), more.begin(), more.end());
    }
    EXPECT_EQ(h.engine().stats().Load(Counter::k_flows_active), h.engine().flow_count());
    if (h.engine().syn_cache() != nullptr) {
      EXPECT_EQ(h.Count(Counter::k_syn_cache_entries), h.engine().syn_cache()->size());
    }
  }
  EXPECT_EQ(failures, 0);
  // Coverage summary, for whoever reads the log.
  std::string summary;
  for (size_t i = 0; i < kNumCounters; ++i) {
    if (h.engine().stats().Load(i) != 0) {
      summary += std::string(kCounterNames[i]) + "=" + std::to_string(h.engine().stats().Load(i)) + " ";
    }
  }
  RecordProperty("counters", summary);
  std::printf("verdicts fwd=%zu reflect=%zu drop=%zu consumed=%zu\n%s\n", verdicts[0],
              verdicts[1], verdicts[2], verdicts[3], summary.c_str());
  // All four verdicts were exercised.
  for (size_t i = 0; i < 4; ++i) EXPECT_GT(verdicts[i], 0u) << "verdict " << i;
  EXPECT_GT(h.Count(Counter::k_drop_parse), 0u);
  EXPECT_GT(h.Count(Counter::k_drop_bad_checksum), 0u);
  EXPECT_GT(h.Count(Counter::k_fwd_client_to_server), 0u);
  EXPECT_GT(h.Count(Counter::k_fwd_server_to_client), 0u);

  // Time runs out: every flow and every held slot comes back.
  for (int i = 0; i < 200; ++i) {
    now += 60 * kSec;
    while (h.engine().Tick(now, &out)) out.Clear();
    out.Clear();
  }
  EXPECT_EQ(h.engine().flow_count(), 0u);
  EXPECT_EQ(h.Count(Counter::k_flows_active), 0u);
  EXPECT_EQ(h.engine().held_free(), cfg.held_slots);
  if (h.engine().syn_cache() != nullptr) {
    EXPECT_GT(h.Count(Counter::k_syn_cache_inserted), 0u);
    EXPECT_EQ(h.engine().syn_cache()->size(), 0u);
  }
}

}  // namespace
}  // namespace moat::proxy::testing
