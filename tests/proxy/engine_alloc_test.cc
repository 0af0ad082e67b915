// Zero-allocation test: after Create() and a warm-up, a whole connection
// life (cookie SYN-ACK, cookie ACK with data, backend SYN-ACK, data both
// ways, FIN, TIME_WAIT, SYN retransmit and give-up, idle expiry, a burst)
// runs without one call to the global operator new. The binary links the
// shared allocation counter (tests/testing/alloc_counter.h), which counts
// only inside an AllocationScope, opened around engine calls: building
// test frames and parsing output allocates freely outside.

#include <cstring>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"
#include "testing/alloc_counter.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpFin;
using net::kTcpSyn;

using moat::testing::AllocationScope;
using moat::testing::CountedAllocations;

// Engine calls with counting on; frames emitted are parsed (outside).
class Driver {
 public:
  explicit Driver(Engine* e) : e_(e) {}

  Verdict Send(Side in, Frame& f) {
    Verdict v;
    {
      AllocationScope counting;
      v = e_->Process(in, f.buf, &f.len, sizeof(f.buf), now, &out_);
    }
    Collect();
    return v;
  }
  Verdict Send(Side in, const TcpPacket& s) {
    Frame f = s.BuildFrame();
    return Send(in, f);
  }
  Verdict Send(Side in, const TcpPacket& s, Seen* rewritten) {
    Frame f = s.BuildFrame();
    const Verdict v = Send(in, f);
    *rewritten = ParseSeen(v == Verdict::kReflect ? in : Other(in), f.buf, f.len);
    return v;
  }
  void Tick() {
    bool more = true;
    while (more) {
      {
        AllocationScope counting;
        more = e_->Tick(now, &out_);
      }
      Collect();
    }
  }
  uint16_t Burst(Side in, std::vector<Frame>& frames, std::vector<Verdict>* verdicts) {
    std::vector<uint8_t*> ptrs;
    std::vector<uint16_t> lens;
    for (Frame& f : frames) {
      ptrs.push_back(f.buf);
      lens.push_back(f.len);
    }
    verdicts->resize(frames.size());
    uint16_t n;
    {
      AllocationScope counting;
      n = e_->ProcessBurst(in, ptrs.data(), lens.data(), kMaxFrame,
                           static_cast<uint16_t>(frames.size()), now, verdicts->data(), &out_);
    }
    Collect();
    return n;
  }

  std::vector<Seen> emitted;
  uint64_t now = kT0;

 private:
  void Collect() {
    emitted.clear();
    for (size_t i = 0; i < out_.size(); ++i) {
      emitted.push_back(ParseSeen(out_[i].out, out_[i].data, out_[i].len));
    }
    out_.Clear();
  }
  Engine* e_;
  Output out_;
};

// One full connection life through the engine, driven with `d`.
void Lifecycle(Driver& d, bool v6, uint16_t port) {
  Conn c;
  c.v6 = v6;
  c.client_port = port;
  Seen synack;
  ASSERT_EQ(d.Send(Side::kClient, ClientSyn(c), &synack), Verdict::kReflect);
  c.cookie_isn = synack.seq();
  c.synack_tsval = synack.opts.tsval;
  ASSERT_EQ(d.Send(Side::kClient, ClientHandshakeAck(c, 100)), Verdict::kConsumed);
  ASSERT_EQ(d.emitted.size(), 1u);
  ASSERT_EQ(d.Send(Side::kServer, BackendSynAck(c)), Verdict::kConsumed);
  ASSERT_EQ(d.emitted.size(), 2u);
  const uint32_t cs = c.client_isn + 101, bs = c.backend_isn + 1, ks = c.cookie_isn + 1;
  ASSERT_EQ(d.Send(Side::kServer, c.S().Seq(bs).Ack(cs).PayloadFill(500, 'x')
                                      .Timestamps(c.backend_tsval + 1, c.client_tsval)),
            Verdict::kForward);
  ASSERT_EQ(d.Send(Side::kClient, c.C().Seq(cs).Ack(ks + 500).PayloadFill(10, 'x')
                                      .Timestamps(c.client_tsval + 1, c.synack_tsval + 1)
                                      .SackBlocks({ks + 100, ks + 200})),
            Verdict::kForward);
  ASSERT_EQ(d.Send(Side::kClient, c.C().Seq(cs + 10).Ack(ks + 500).Flags(kTcpFin | kTcpAck)
                                      .Timestamps(c.client_tsval + 2, c.synack_tsval + 1)),
            Verdict::kForward);
  ASSERT_EQ(d.Send(Side::kServer, c.S().Seq(bs + 500).Ack(cs + 11).Flags(kTcpFin | kTcpAck)
                                      .Timestamps(c.backend_tsval + 2, c.client_tsval + 2)),
            Verdict::kForward);
  ASSERT_EQ(d.Send(Side::kClient, c.C().Seq(cs + 11).Ack(ks + 501)
                                      .Timestamps(c.client_tsval + 3, c.synack_tsval + 2)),
            Verdict::kForward);
  d.now += 6 * kSec;
  d.Tick();  // TIME_WAIT ends

  // A backend that never answers: retransmissions, then a RST.
  Conn q = c;
  q.client_port = static_cast<uint16_t>(port + 1);
  ASSERT_EQ(d.Send(Side::kClient, ClientSyn(q), &synack), Verdict::kReflect);
  q.cookie_isn = synack.seq();
  q.synack_tsval = synack.opts.tsval;
  ASSERT_EQ(d.Send(Side::kClient, ClientHandshakeAck(q)), Verdict::kConsumed);
  for (int i = 0; i < 5; ++i) {
    d.now += 8 * kSec;
    d.Tick();
  }
  // An idle flow: expiry with RSTs both ways.
  Conn r = c;
  r.client_port = static_cast<uint16_t>(port + 2);
  ASSERT_EQ(d.Send(Side::kClient, ClientSyn(r), &synack), Verdict::kReflect);
  r.cookie_isn = synack.seq();
  r.synack_tsval = synack.opts.tsval;
  ASSERT_EQ(d.Send(Side::kClient, ClientHandshakeAck(r)), Verdict::kConsumed);
  ASSERT_EQ(d.Send(Side::kServer, BackendSynAck(r)), Verdict::kConsumed);
  d.now += 301 * kSec;
  d.Tick();
  ASSERT_EQ(d.emitted.size(), 2u);
  // A burst of mixed traffic.
  std::vector<Frame> frames;
  for (int i = 0; i < 40; ++i) {
    Conn b = c;
    b.client_port = static_cast<uint16_t>(port + 10 + i);
    frames.push_back(i % 2 ? ClientSyn(b).BuildFrame() : b.C().Seq(1).Ack(2).BuildFrame());
  }
  std::vector<Verdict> verdicts;
  ASSERT_EQ(d.Burst(Side::kClient, frames, &verdicts), frames.size());
}

TEST(EngineAllocTest, HotPathNeverAllocates) {
  auto e = Engine::Create(DefaultConfig(), kT0);
  ASSERT_TRUE(e.ok());
  Driver d(e->get());
  // Warm-up: the same paths once, uncounted... (counted too, to see them).
  Lifecycle(d, false, 20000);
  const size_t before = CountedAllocations();
  Lifecycle(d, false, 21000);
  Lifecycle(d, true, 22000);
  EXPECT_EQ(CountedAllocations() - before, 0u) << "operator new called on the hot path";
  EXPECT_EQ((*e)->flow_count(), 0u);
}

// A SYN to the v4 service from 198.18.<net>.<host>.
Frame SynFromV4(uint8_t net, uint8_t host, uint16_t sport) {
  const uint8_t src[4] = {198, 18, net, host};
  net::TcpFrameSpec s;
  s.src_mac = kClientMac;
  s.dst_mac = kServerMac;
  s.src_addr = src;
  s.dst_addr = kServerV4;
  s.src_port = sport;
  s.dst_port = kServerPort;
  s.seq = 77;
  s.flags = kTcpSyn;
  s.window = 1000;
  Frame f;
  f.len = static_cast<uint16_t>(net::BuildTcpFrame(f.buf, sizeof(f.buf), s));
  return f;
}

TEST(EngineAllocTest, RateLimitListsAndReconfigureNeverAllocate) {
  EngineConfig c = DefaultConfig();
  c.synack_rate = 4;
  c.allow = *ParsePrefixList("allow", "198.18.0.0/24");
  c.deny = *ParsePrefixList("deny", "198.18.9.0/24,2001:2:0:9::/64");
  EngineConfig moved = c;
  moved.services = *ParseProtect("198.18.1.2:81,[2001:2::2]:81");
  moved.synack_rate = 8;
  auto e = Engine::Create(c, kT0);
  ASSERT_TRUE(e.ok());
  Driver d(e->get());
  Lifecycle(d, false, 20000);  // warm-up
  const size_t before = CountedAllocations();
  // A flood from a few hundred /24s: answered, limited, denied.
  for (int i = 0; i < 600; ++i) {
    Frame f = SynFromV4(static_cast<uint8_t>(i % 12), static_cast<uint8_t>(i),
                        static_cast<uint16_t>(1000 + i));
    d.Send(Side::kClient, f);
  }
  {
    AllocationScope counting;
    (*e)->Reconfigure(moved);
    (*e)->Reconfigure(c);
  }
  d.now += 2 * kSec;  // the limited v6 client gets its burst back
  Lifecycle(d, false, 21000);
  Lifecycle(d, true, 22000);
  EXPECT_EQ(CountedAllocations() - before, 0u) << "operator new called on the hot path";
  EXPECT_GT((*e)->stats().Load(Counter::k_drop_synack_rate), 0u);
  EXPECT_GT((*e)->stats().Load(Counter::k_drop_denied), 0u);
  EXPECT_EQ((*e)->stats().Load(Counter::k_config_reloads), 2u);
}

TEST(EngineAllocTest, SynCacheNeverAllocates) {
  EngineConfig cfg = DefaultConfig();
  cfg.syn_cache_entries = 64;
  cfg.syn_flood_rate = 1000;
  auto e = Engine::Create(cfg, kT0);
  ASSERT_TRUE(e.ok());
  Driver d(e->get());
  Lifecycle(d, false, 20000);
  const size_t before = CountedAllocations();
  // Entries made and taken by third ACKs, a burst of SYNs.
  Lifecycle(d, false, 21000);
  Lifecycle(d, true, 22000);
  // Unanswered SYNs (evictions, the switch to cookie-only mode), their
  // retransmissions and expiry, and the switch back.
  for (uint16_t i = 0; i < 200; ++i) {
    Conn c;
    c.client_port = static_cast<uint16_t>(30000 + i);
    d.Send(Side::kClient, ClientSyn(c));
  }
  for (int i = 0; i < 100; ++i) {
    d.now += 100 * kMs;
    d.Tick();
  }
  EXPECT_EQ(CountedAllocations() - before, 0u) << "operator new called on the hot path";
  EXPECT_FALSE((*e)->cookie_only());
  EXPECT_EQ((*e)->syn_cache()->size(), 0u);
  EXPECT_GT((*e)->stats().Load(Counter::k_syn_cache_to_cache), 0u);
}

TEST(EngineAllocTest, FastOpenNeverAllocates) {
  EngineConfig cfg = DefaultConfig();
  cfg.syn_cache_entries = 64;
  cfg.fastopen = true;
  auto e = Engine::Create(cfg, kT0);
  ASSERT_TRUE(e.ok());
  Driver d(e->get());
  Conn c;
  Seen synack;
  ASSERT_EQ(d.Send(Side::kClient, ClientSyn(c).FastOpenRequest(), &synack), Verdict::kReflect);
  // The cookie: the last 8 bytes of the options (moat appends it).
  uint8_t k[8];
  std::memcpy(k, synack.v.tcp() + synack.v.tcp_header_len - 8, 8);
  const size_t before = CountedAllocations();
  for (uint16_t i = 0; i < 20; ++i) {
    Conn t = c;
    t.client_port = static_cast<uint16_t>(45000 + i);
    TcpPacket s = ClientSyn(t).Opt({34, 10, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]}).PayloadFill(64, 'x');
    ASSERT_EQ(d.Send(Side::kClient, s, &synack), Verdict::kReflect);
    ASSERT_EQ(synack.ack(), t.client_isn + 65);
    ASSERT_EQ(d.Send(Side::kClient, s), Verdict::kConsumed);  // SYN again
    ASSERT_EQ(d.Send(Side::kServer, BackendSynAck(t)), Verdict::kConsumed);
    ASSERT_EQ(d.emitted.size(), 2u);
  }
  EXPECT_EQ(CountedAllocations() - before, 0u) << "operator new called on the hot path";
  EXPECT_EQ((*e)->stats().Load(Counter::k_fastopen_accepted), 20u);
}

TEST(EngineAllocTest, CounterSeesAllocations) {
  // The counter is linked into this binary and works: a vector growing
  // under counting is seen (without it, HotPathNeverAllocates would pass
  // whatever the engine did).
  size_t n;
  {
    AllocationScope counting;
    std::vector<int> v(100);
    n = counting.count();
  }
  EXPECT_GT(n, 0u);
}

}  // namespace
}  // namespace moat::proxy::testing
