// The burst entry point against the one-packet one. ProcessBurst() parses
// and hashes a whole burst before it runs the state machine, so a flow
// created, established or removed by one frame must still be seen by the
// next frame of the same burst, and the Output must be drained between
// calls when the burst fills it. Whatever the traffic, the verdicts, the
// frames rewritten in place, the frames generated (in order) and every
// counter must be those of Process() called on each frame in turn.

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine_harness.h"
#include "gtest/gtest.h"

namespace moat::proxy::testing {
namespace {

using net::kTcpAck;
using net::kTcpFin;
using net::kTcpPsh;
using net::kTcpRst;
using net::kTcpSyn;

// What one side's frames did to an engine.
struct Outcome {
  std::vector<Verdict> verdicts;
  std::vector<Frame> frames;  // the inputs afterwards, rewritten in place
  std::vector<Seen> emitted;  // generated frames, in order
  int calls = 0;              // ProcessBurst() calls it took
};

Outcome OneByOne(Harness& h, Side in, std::vector<Frame> frames) {
  Outcome o;
  for (Frame& f : frames) {
    o.verdicts.push_back(h.Send(in, f));
    o.emitted.insert(o.emitted.end(), h.emitted().begin(), h.emitted().end());
    ++o.calls;
  }
  o.frames = std::move(frames);
  return o;
}

// ProcessBurst() over all of `frames`, draining the Output whenever it
// stops early, as the dataplane does.
Outcome Burst(Harness& h, Side in, std::vector<Frame> frames) {
  Outcome o;
  const uint16_t n = static_cast<uint16_t>(frames.size());
  std::vector<uint8_t*> ptrs;
  std::vector<uint16_t> lens;
  for (Frame& f : frames) {
    ptrs.push_back(f.buf);
    lens.push_back(f.len);
  }
  o.verdicts.resize(n);
  h.ClearEmitted();
  uint16_t done = 0;
  while (done < n) {
    const uint16_t k = h.engine().ProcessBurst(in, ptrs.data() + done, lens.data() + done,
                                               kMaxFrame, static_cast<uint16_t>(n - done), h.now(),
                                               o.verdicts.data() + done, h.out());
    ++o.calls;
    const bool had_output = h.out()->size() != 0;
    h.Drain();
    if (k == 0 && !had_output) {
      ADD_FAILURE() << "ProcessBurst() stopped with an empty Output";
      break;
    }
    done = static_cast<uint16_t>(done + k);
  }
  for (size_t i = 0; i < frames.size(); ++i) frames[i].len = lens[i];
  o.frames = std::move(frames);
  o.emitted = h.emitted();
  return o;
}

// Two engines with the same config and clock, fed the same frames: one
// through Process(), one through ProcessBurst().
class BurstVsOneByOne {
 public:
  explicit BurstVsOneByOne(const EngineConfig& config = DefaultConfig())
      : single_(config), burst_(config) {}

  // Runs `frames` from side `in` through both and expects the same of
  // each; returns what Process() did.
  Outcome Run(Side in, const std::vector<Frame>& frames) {
    Outcome one = OneByOne(single_, in, frames);
    Outcome many = Burst(burst_, in, frames);
    EXPECT_EQ(one.verdicts.size(), many.verdicts.size());
    for (size_t i = 0; i < std::min(one.verdicts.size(), many.verdicts.size()); ++i) {
      SCOPED_TRACE(::testing::Message() << "frame " << i);
      EXPECT_EQ(one.verdicts[i], many.verdicts[i]);
      EXPECT_EQ(one.frames[i].len, many.frames[i].len);
      EXPECT_EQ(std::memcmp(one.frames[i].buf, many.frames[i].buf, one.frames[i].len), 0);
    }
    EXPECT_EQ(one.emitted.size(), many.emitted.size());
    for (size_t i = 0; i < std::min(one.emitted.size(), many.emitted.size()); ++i) {
      SCOPED_TRACE(::testing::Message() << "generated frame " << i);
      const Frame& a = *one.emitted[i].frame;
      const Frame& b = *many.emitted[i].frame;
      EXPECT_EQ(one.emitted[i].side, many.emitted[i].side);
      EXPECT_EQ(a.len, b.len);
      EXPECT_EQ(std::memcmp(a.buf, b.buf, a.len), 0);
    }
    // No counter may differ (ExpectCounterDeltas names the one that does).
    ExpectCounterDeltas(single_.Snapshot(), burst_.Snapshot(), {});
    EXPECT_EQ(single_.engine().flow_count(), burst_.engine().flow_count());
    max_calls_ = std::max(max_calls_, many.calls);
    return one;
  }

  uint64_t Count(Counter c) const { return single_.Count(c); }
  int max_calls() const { return max_calls_; }

 private:
  Harness single_;
  Harness burst_;
  int max_calls_ = 0;
};

// One connection of the scenario and how far each end has sent.
struct Peer {
  Conn c;
  uint32_t client_sent = 0;  // bytes after the handshake
  uint32_t server_sent = 0;
  bool open = true;  // not refused or reset during the handshake

  uint32_t client_next() const { return c.client_isn + 1 + client_sent; }
  uint32_t server_next() const { return c.backend_isn + 1 + server_sent; }
  uint32_t cookie_next() const { return c.cookie_isn + 1 + server_sent; }
  TcpPacket ClientData(uint16_t n) const {
    TcpPacket s = c.C().Seq(client_next()).Ack(cookie_next()).Window(c.client_win);
    if (c.ts) s.Timestamps(c.client_tsval + 1, c.synack_tsval + 1);
    if (n != 0) s.PayloadFill(n, 'c').Flags(kTcpAck | kTcpPsh);
    return s;
  }
  TcpPacket ServerData(uint16_t n) const {
    TcpPacket s = c.S().Seq(server_next()).Ack(client_next()).Window(c.backend_win);
    if (c.ts) s.Timestamps(c.backend_tsval + 1, c.client_tsval);
    if (n != 0) s.PayloadFill(n, 's').Flags(kTcpAck | kTcpPsh);
    return s;
  }
};

// With and without the SYN cache: whichever mode answers a SYN, and
// whether a handshake ACK finds its entry, a burst must come out as one
// frame at a time does.
class EngineBurstModeTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(SynCache, EngineBurstModeTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

TEST_P(EngineBurstModeTest, BurstMatchesOneByOne) {
  BurstVsOneByOne t(GetParam() ? CacheConfig(256) : DefaultConfig());

  // 1. A client burst of what a flood leaves: SYNs, guessed cookies, other
  //    services, runts; 40 frames, more than one internal chunk of 32.
  {
    std::vector<Frame> frames;
    for (int i = 0; i < 40; ++i) {
      Conn c;
      c.client_port = static_cast<uint16_t>(41000 + i);
      c.client_isn = 0xFFFFFFF0u + i;
      switch (i % 4) {
        case 0:
          frames.push_back(ClientSyn(c).BuildFrame());
          break;
        case 1:  // a guessed cookie
          frames.push_back(c.C().Seq(5).Ack(6).BuildFrame());
          break;
        case 2:
          frames.push_back(FromClient().Ports(1, 81).BuildFrame());
          break;
        default: {
          Frame runt;
          runt.len = 12;
          frames.push_back(runt);
        }
      }
    }
    t.Run(Side::kClient, frames);
  }

  // 2. SYNs of 24 connections (both families, with and without timestamps
  //    and window scaling), one retransmitted: cookie SYN-ACKs, no state.
  constexpr int kPeers = 24;
  std::vector<Peer> peers(kPeers);
  {
    std::vector<Frame> frames;
    for (int k = 0; k < kPeers; ++k) {
      Conn& c = peers[k].c;
      c.v6 = k % 5 == 0;
      c.ts = k % 7 != 3;
      c.client_ws = k % 6 == 4 ? -1 : 7;
      c.client_port = static_cast<uint16_t>(42000 + k);
      c.client_isn = 0xFFFFFFF0u + 3u * static_cast<uint32_t>(k);
      c.backend_isn = 0xFFFFFF80u + 0x1000u * static_cast<uint32_t>(k);
      frames.push_back(ClientSyn(c).BuildFrame());
      if (k == 7) frames.push_back(ClientSyn(c).BuildFrame());
    }
    const Outcome o = t.Run(Side::kClient, frames);
    // The cookies, from the SYN-ACKs the engine reflected.
    for (int k = 0, i = 0; k < kPeers; ++k, ++i) {
      ASSERT_EQ(o.verdicts[i], Verdict::kReflect);
      Frame copy = o.frames[i];
      const Seen synack = ParseSeen(Side::kClient, copy.buf, copy.len);
      peers[k].c.cookie_isn = synack.seq();
      peers[k].c.synack_tsval = synack.opts.tsval;
      if (k == 7) ++i;
    }
    EXPECT_EQ(t.Count(Counter::k_synack_sent), 10u + kPeers + 1);
  }

  // 3. Their cookie ACKs, which create the flows and emit 24 backend SYNs
  //    (more than one Output's worth). In the same burst: data and a
  //    duplicate ACK for flows created a few frames earlier, a RST that
  //    removes one, guessed cookies and a new SYN.
  {
    std::vector<Frame> frames;
    for (int k = 0; k < kPeers; ++k) {
      Peer& p = peers[k];
      switch (k % 4) {
        case 0:
          frames.push_back(ClientHandshakeAck(p.c).BuildFrame());
          break;
        case 1:  // data on the handshake ACK: kept
          frames.push_back(ClientHandshakeAck(p.c, 100).BuildFrame());
          p.client_sent = 100;
          break;
        case 2:  // a duplicate ACK (absorbed), then data (kept)
          frames.push_back(ClientHandshakeAck(p.c).BuildFrame());
          frames.push_back(ClientHandshakeAck(p.c).BuildFrame());
          frames.push_back(p.ClientData(50).BuildFrame());
          p.client_sent = 50;
          break;
        default:
          frames.push_back(ClientHandshakeAck(p.c).BuildFrame());
          break;
      }
      if (k % 5 == 1) {  // a guessed cookie, for a tuple with no flow
        Conn guess = p.c;
        guess.client_port = static_cast<uint16_t>(45000 + k);
        frames.push_back(guess.C().Seq(9).Ack(p.c.cookie_isn + 7).BuildFrame());
      }
    }
    // The client of peer 3 gives up before the backend answers.
    frames.push_back(peers[3].c.C().Seq(peers[3].client_next()).Ack(0).Flags(kTcpRst).BuildFrame());
    peers[3].open = false;
    Conn late;
    late.client_port = 43000;
    frames.push_back(ClientSyn(late).BuildFrame());
    t.Run(Side::kClient, frames);
    EXPECT_EQ(t.Count(Counter::k_flows_created), static_cast<uint64_t>(kPeers));
    EXPECT_EQ(t.Count(Counter::k_backend_syn_sent), static_cast<uint64_t>(kPeers));
    EXPECT_EQ(t.Count(Counter::k_handshake_acks_absorbed), 6u);
    EXPECT_EQ(t.Count(Counter::k_cookie_invalid), 10u + 5);
    EXPECT_EQ(t.Count(Counter::k_held_segments), 12u);
    EXPECT_EQ(t.Count(Counter::k_server_rst_sent), 1u);
  }

  // 4. The backends answer: SYN-ACKs that establish flows and release the
  //    kept data (filling the Output), retransmitted SYN-ACKs and data
  //    right behind the SYN-ACK that established the flow, a refusal, a
  //    stale connection reset, a stray ACK and a backend-opened flow.
  {
    std::vector<Frame> frames;
    for (int k = 0; k < kPeers; ++k) {
      Peer& p = peers[k];
      if (!p.open) continue;
      if (k == 5) {  // refused: the client is reset, its kept data freed
        frames.push_back(
            p.c.S().Seq(0).Ack(p.c.client_isn + 1).Flags(kTcpRst | kTcpAck).BuildFrame());
        p.open = false;
        continue;
      }
      if (k == 9) {  // an older connection on the tuple: reset first
        frames.push_back(p.c.S().Seq(777).Ack(12345).BuildFrame());
      }
      frames.push_back(BackendSynAck(p.c).BuildFrame());
      if (k % 4 == 2) {
        frames.push_back(BackendSynAck(p.c).BuildFrame());
        frames.push_back(p.ServerData(100).BuildFrame());
        p.server_sent = 100;
      }
    }
    frames.push_back(FromServer().Ports(kServerPort, 44000).Seq(1).Ack(2).BuildFrame());
    frames.push_back(FromServer()
                         .Ports(kServerPort, 3333)
                         .Seq(5000)
                         .Ack(0)
                         .Flags(kTcpSyn)
                         .Mss(1460)
                         .WindowScale(7)
                         .BuildFrame());
    t.Run(Side::kServer, frames);
    EXPECT_EQ(t.Count(Counter::k_backend_synack), static_cast<uint64_t>(kPeers - 2));
    EXPECT_EQ(t.Count(Counter::k_backend_synack_dup), 6u);
    EXPECT_EQ(t.Count(Counter::k_backend_refused), 1u);
    EXPECT_EQ(t.Count(Counter::k_backend_stale_reset), 1u);
    EXPECT_EQ(t.Count(Counter::k_held_released), 11u);  // peer 5's was freed
    EXPECT_EQ(t.Count(Counter::k_drop_no_flow_server), 1u);
    EXPECT_EQ(t.Count(Counter::k_flows_passthrough), 1u);
  }

  // 5. Spliced data from the servers; one closes.
  {
    std::vector<Frame> frames;
    for (int k = 0; k < kPeers; ++k) {
      Peer& p = peers[k];
      if (!p.open) continue;
      TcpPacket s = p.ServerData(200);
      if (k == 6) s.Flags(kTcpAck | kTcpPsh | kTcpFin);
      frames.push_back(s.BuildFrame());
      p.server_sent += 200 + (k == 6 ? 1 : 0);
    }
    t.Run(Side::kServer, frames);
  }

  // 6. The clients answer with data, SACK blocks and timestamps; one acks
  //    the FIN and closes too, one resets at its exact sequence number, and
  //    the backend-opened flow's client answers its SYN.
  {
    std::vector<Frame> frames;
    for (int k = 0; k < kPeers; ++k) {
      Peer& p = peers[k];
      if (!p.open) continue;
      if (k == 7) {
        frames.push_back(p.c.C().Seq(p.client_next()).Ack(0).Flags(kTcpRst).BuildFrame());
        continue;
      }
      const uint32_t ks = p.c.cookie_isn + 1;
      TcpPacket s = p.ClientData(30);
      if (p.c.sack) s.SackBlocks({ks + 10, ks + 20});
      if (k == 6) s.Flags(kTcpAck | kTcpPsh | kTcpFin);
      frames.push_back(s.BuildFrame());
      p.client_sent += 30;
    }
    frames.push_back(FromClient()
                         .Ports(3333, kServerPort)
                         .Seq(9000)
                         .Ack(5001)
                         .Flags(kTcpSyn | kTcpAck)
                         .WindowScale(7)
                         .BuildFrame());
    t.Run(Side::kClient, frames);
    EXPECT_EQ(t.Count(Counter::k_rst_teardown), 2u);  // peers 3 and 7
    EXPECT_EQ(t.Count(Counter::k_passthrough_forwarded), 2u);
  }

  // The scenario reached what it set out to: traffic both ways through
  // flows the bursts created, with bursts that had to resume.
  EXPECT_GT(t.Count(Counter::k_fwd_server_to_client), static_cast<uint64_t>(kPeers));
  EXPECT_GT(t.Count(Counter::k_fwd_client_to_server), static_cast<uint64_t>(kPeers));
  EXPECT_GT(t.max_calls(), 2);
}

TEST(EngineBurstTest, BurstStopsWhenOutputIsNearlyFull) {
  Harness h;
  // Less than one packet's worth of room left.
  h.FillOutput(kMaxEmittedPerPacket - 1);
  Frame f = ClientSyn(Conn{}).BuildFrame();
  uint8_t* ptrs[1] = {f.buf};
  uint16_t lens[1] = {f.len};
  Verdict verdicts[1];
  EXPECT_EQ(
      h.engine().ProcessBurst(Side::kClient, ptrs, lens, kMaxFrame, 1, h.now(), verdicts, h.out()),
      0);
}

}  // namespace
}  // namespace moat::proxy::testing
