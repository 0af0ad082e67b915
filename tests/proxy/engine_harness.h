#pragma once
// Test scaffolding for the engine, on top of the shared packet builder
// (tests/testing/packet_builder.h, so every input has correct checksums
// unless a test breaks them on purpose): the test connection's endpoints
// and segment defaults, a harness that runs Process()/Tick() and keeps
// what the engine emitted, counter snapshots and their expected deltas,
// and drivers that bring a flow to a given state.

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/builder.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"
#include "testing/packet_builder.h"

namespace moat::proxy::testing {

inline constexpr uint8_t kClientV4[4] = {198, 18, 0, 1};
inline constexpr uint8_t kServerV4[4] = {198, 18, 1, 2};
inline constexpr uint8_t kOtherV4[4] = {198, 18, 1, 3};
inline constexpr uint8_t kClientV6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
inline constexpr uint8_t kServerV6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
inline constexpr net::MacAddr kClientMac = {{0x02, 0, 0, 0, 0, 0x01}};
inline constexpr net::MacAddr kServerMac = {{0x02, 0, 0, 0, 0, 0x02}};
inline constexpr uint16_t kClientPort = 40000;
inline constexpr uint16_t kServerPort = 80;
inline constexpr uint64_t kMs = 1'000'000;
inline constexpr uint64_t kSec = 1'000'000'000;
// Far from 0 so the cookie's time slot and key epoch have predecessors.
inline constexpr uint64_t kT0 = 100'000 * kSec;

using moat::testing::Endpoints;
using moat::testing::Frame;
using moat::testing::TcpPacket;
static_assert(sizeof(Frame::buf) == kMaxFrame, "test frames are engine-sized");

// The test connection's ends: client kClientV4/kClientV6 on `client_port`,
// the protected service kServerV4/kServerV6:80.
inline Endpoints EndpointsFor(bool v6, uint16_t client_port = kClientPort) {
  Endpoints e = Endpoints::Make(v6, v6 ? kClientV6 : kClientV4, client_port,
                                v6 ? kServerV6 : kServerV4, kServerPort);
  e.client_mac = kClientMac;
  e.server_mac = kServerMac;
  return e;
}

// The engine tests' segment defaults: seq 0, ack 0, ACK, window 1000, and
// options laid out NOP-aligned as BSD-style stacks send them.
inline TcpPacket SegmentDefaults(TcpPacket p) {
  p.Seq(0).Ack(0).Flags(net::kTcpAck).Window(1000).AlignOptions();
  return p;
}
inline TcpPacket FromClient(bool v6 = false) {
  return SegmentDefaults(EndpointsFor(v6).FromClient());
}
inline TcpPacket FromServer(bool v6 = false) {
  return SegmentDefaults(EndpointsFor(v6).FromServer());
}

// A frame the engine emitted (or rewrote), parsed.
struct Seen {
  Side side = Side::kClient;
  std::shared_ptr<Frame> frame;
  net::PacketView v;
  net::TcpOptions opts;

  uint8_t flags() const { return v.tcp_flags(); }
  uint32_t seq() const { return v.seq().value(); }
  uint32_t ack() const { return v.ack().value(); }
  uint16_t win() const { return v.window(); }
  uint16_t payload_len() const { return v.payload_len; }
};

inline Seen ParseSeen(Side side, const uint8_t* data, uint16_t len) {
  Seen s;
  s.side = side;
  s.frame = std::make_shared<Frame>();
  std::memcpy(s.frame->buf, data, len);
  s.frame->len = len;
  EXPECT_EQ(net::ParseFrame(s.frame->buf, len, &s.v), net::ParseError::kOk);
  EXPECT_TRUE(s.v.is_tcp);
  if (s.v.is_tcp) {
    EXPECT_TRUE(net::VerifyTcpChecksum(s.v)) << "bad TCP checksum in output";
    if (s.v.l3 == net::L3::kIpv4) {
      EXPECT_TRUE(net::VerifyIpv4HeaderChecksum(s.v));
    }
    EXPECT_EQ(net::ParseTcpOptions(s.v.tcp(), s.v.tcp_header_len, &s.opts), net::ParseError::kOk);
  }
  return s;
}

inline EngineConfig DefaultConfig() {
  EngineConfig c;
  auto services = ParseProtect("198.18.1.2:80,[2001:2::2]:80");
  EXPECT_TRUE(services.ok());
  c.services = *services;
  for (size_t i = 0; i < sizeof(c.secret.bytes); ++i) c.secret.bytes[i] = uint8_t(i * 7 + 1);
  c.flow_capacity = 1024;
  c.held_slots = 64;
  c.hash_seed = 12345;
  // The scenarios test the cookie path, the SYN cache's fallback; the
  // cache's own tests (syn_cache_test.cc) turn it on.
  c.syn_cache_entries = 0;
  // Likewise they fix what moat offers; backend learning has its own tests
  // (backend_learning_test.cc), where a first SYN-ACK changes later offers.
  c.learn_backends = false;
  return c;
}

// The SYN cache on, as in production.
inline EngineConfig CacheConfig(uint32_t entries = 64) {
  EngineConfig c = DefaultConfig();
  c.syn_cache_entries = entries;
  return c;
}

class Harness {
 public:
  explicit Harness(const EngineConfig& config = DefaultConfig(), uint64_t now = kT0) : now_(now) {
    auto e = Engine::Create(config, now);
    EXPECT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    out_ = std::make_unique<Output>();
  }

  // Runs Process(); what it emitted lands in emitted(); the (possibly
  // rewritten) input frame is parsed into *rewritten when it was passed on.
  Verdict Send(Side in, Frame& f, Seen* rewritten = nullptr) {
    emitted_.clear();
    const Verdict verdict = engine_->Process(in, f.buf, &f.len, sizeof(f.buf), now_, out_.get());
    Drain();
    if (rewritten != nullptr && (verdict == Verdict::kForward || verdict == Verdict::kReflect)) {
      const Side out_side = verdict == Verdict::kForward ? Other(in) : in;
      *rewritten = ParseSeen(out_side, f.buf, f.len);
    }
    return verdict;
  }
  Verdict Send(Side in, const TcpPacket& s, Seen* rewritten = nullptr) {
    Frame f = s.BuildFrame();
    return Send(in, f, rewritten);
  }

  void Tick() {
    emitted_.clear();
    while (engine_->Tick(now_, out_.get())) Drain();
    Drain();
  }
  void Advance(uint64_t ns) {
    now_ += ns;
    Tick();
  }

  // Two clocks (engine.h): now() is the monotonic time every call gets;
  // the wall clock (cookies, key epochs, moat's TSval) is now() + an
  // offset, 0 until a test sets one. StepWall() steps the wall clock as
  // `date -s` would, and tells the engine as the dataplane does at its
  // next timer tick; monotonic time goes on unchanged.
  void SetWall(uint64_t wall) {
    wall_offset_ = wall - now_;
    engine_->SyncWallClock(now_, wall);
  }
  void StepWall(int64_t ns) { SetWall(wall() + static_cast<uint64_t>(ns)); }
  uint64_t wall() const { return now_ + wall_offset_; }

  const std::vector<Seen>& emitted() const { return emitted_; }
  uint64_t Count(Counter c) const { return engine_->stats().Load(c); }
  Engine& engine() { return *engine_; }
  uint64_t now() const { return now_; }
  void set_now(uint64_t now) { now_ = now; }
  Output* out() { return out_.get(); }

  // Every counter, for before/after comparisons.
  std::vector<uint64_t> Snapshot() const {
    std::vector<uint64_t> v(kNumCounters);
    for (size_t i = 0; i < kNumCounters; ++i) v[i] = engine_->stats().Load(i);
    return v;
  }

  // Parses what the engine appended to the Output into emitted() (after
  // what is there already) and clears the Output.
  void Drain() {
    for (size_t i = filler_; i < out_->size(); ++i) {
      const Emitted e = (*out_)[i];
      emitted_.push_back(ParseSeen(e.out, e.data, e.len));
    }
    out_->Clear();
    filler_ = 0;
  }
  void ClearEmitted() { emitted_.clear(); }

  // Occupies the Output with placeholder frames until only `room` is left,
  // as a dataplane that broke the drain contract would leave it; Drain()
  // skips (and removes) them.
  void FillOutput(size_t room) {
    while (out_->room() > room) {
      out_->Commit(Side::kClient, 1);
      ++filler_;
    }
  }

 private:
  uint64_t now_;
  uint64_t wall_offset_ = 0;  // wall() - now(), modulo 2^64
  size_t filler_ = 0;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Output> out_;
  std::vector<Seen> emitted_;
};

// One expected counter change between two snapshots (negative: a gauge
// that went down).
struct CounterDelta {
  Counter counter;
  int64_t by;
};

// Expects that from `before` to `after` exactly the listed counters moved,
// each by its amount, and every other counter stayed put; names each
// counter that did otherwise.
inline void ExpectCounterDeltas(const std::vector<uint64_t>& before,
                                const std::vector<uint64_t>& after,
                                std::initializer_list<CounterDelta> expected) {
  ASSERT_EQ(before.size(), kNumCounters);
  ASSERT_EQ(after.size(), kNumCounters);
  std::vector<int64_t> want(kNumCounters, 0);
  for (const CounterDelta& d : expected) want[static_cast<size_t>(d.counter)] += d.by;
  for (size_t i = 0; i < kNumCounters; ++i) {
    EXPECT_EQ(static_cast<int64_t>(after[i] - before[i]), want[i]) << "counter " << kCounterNames[i];
  }
}

inline bool IsDropCounter(size_t i) {
  const std::string name = kCounterNames[i];
  return name.rfind("drop_", 0) == 0 || name == "cookie_invalid";
}

inline flow::FlowKey KeyFor(bool v6, uint16_t client_port = kClientPort) {
  return flow::FlowKey::Make(v6 ? 16 : 4, v6 ? kClientV6 : kClientV4, client_port,
                             v6 ? kServerV6 : kServerV4, kServerPort);
}

// Options and numbers of one proxied connection. Defaults sit next to the
// 2^32 wrap so every translation crosses it.
struct Conn {
  bool v6 = false;
  uint32_t client_isn = 0xFFFFFFF0u;
  uint32_t backend_isn = 0xFFFFFF80u;
  bool ts = true;
  uint32_t client_tsval = 0xFFFFFFF8u;
  uint32_t backend_tsval = 0x00000010u;
  int client_ws = 7;   // -1: no option
  int backend_ws = 7;  // -1: no option
  bool sack = true;
  bool ecn = false;
  uint16_t mss = 1460;
  uint16_t backend_mss = 1460;
  bool backend_ts = true;  // the backend answers timestamps when the client sent them
  uint16_t client_win = 502;
  uint16_t backend_win = 509;
  uint16_t client_port = kClientPort;

  // Learnt while driving.
  uint32_t cookie_isn = 0;
  uint32_t synack_tsval = 0;  // moat's TSval in the SYN-ACK (ts_ours)

  uint32_t delta() const { return cookie_isn - backend_isn; }
  uint32_t ts_delta() const { return synack_tsval - backend_tsval; }
  TcpPacket C() const { return SegmentDefaults(EndpointsFor(v6, client_port).FromClient()); }
  TcpPacket S() const { return SegmentDefaults(EndpointsFor(v6, client_port).FromServer()); }
  flow::FlowKey key() const { return KeyFor(v6, client_port); }
};

inline TcpPacket ClientSyn(const Conn& c) {
  TcpPacket s = c.C().Seq(c.client_isn).Ack(0).Flags(net::kTcpSyn).Window(64240);
  if (c.ecn) s.Flags(net::kTcpSyn | net::kTcpEce | net::kTcpCwr);
  s.Mss(c.mss);
  if (c.sack) s.SackPermitted();
  if (c.ts) s.Timestamps(c.client_tsval - 10, 0);
  if (c.client_ws >= 0) s.WindowScale(static_cast<uint8_t>(c.client_ws));
  return s;
}

// SYN -> cookie SYN-ACK. Fills c->cookie_isn and c->synack_tsval.
inline Seen DoSyn(Harness& h, Conn* c) {
  Seen synack;
  EXPECT_EQ(h.Send(Side::kClient, ClientSyn(*c), &synack), Verdict::kReflect);
  c->cookie_isn = synack.seq();
  c->synack_tsval = synack.opts.tsval;
  return synack;
}

// The client's third ACK (optionally with data).
inline TcpPacket ClientHandshakeAck(const Conn& c, size_t payload = 0) {
  TcpPacket s = c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Window(c.client_win);
  if (c.ts) s.Timestamps(c.client_tsval, c.synack_tsval);
  if (payload) s.PayloadFill(payload, 'x').Flags(net::kTcpAck | net::kTcpPsh);
  return s;
}

// SYN, SYN-ACK, ACK: the flow is in SynSent and the backend SYN was sent.
inline Seen DriveToSynSent(Harness& h, Conn* c, size_t payload = 0) {
  DoSyn(h, c);
  const Verdict v = h.Send(Side::kClient, ClientHandshakeAck(*c, payload));
  EXPECT_EQ(v, Verdict::kConsumed);
  EXPECT_FALSE(h.emitted().empty());
  return h.emitted().empty() ? Seen{} : h.emitted()[0];
}

inline TcpPacket BackendSynAck(const Conn& c) {
  TcpPacket s = c.S().Seq(c.backend_isn).Ack(c.client_isn + 1).Flags(net::kTcpSyn | net::kTcpAck)
              .Window(65160).Mss(c.backend_mss);
  if (c.sack) s.SackPermitted();
  if (c.ts && c.backend_ts) s.Timestamps(c.backend_tsval, c.client_tsval);
  if (c.backend_ws >= 0) s.WindowScale(static_cast<uint8_t>(c.backend_ws));
  return s;
}

// ... and the backend's SYN-ACK: Established. Returns what was emitted.
inline std::vector<Seen> DriveToEstablished(Harness& h, Conn* c, size_t payload = 0) {
  DriveToSynSent(h, c, payload);
  EXPECT_EQ(h.Send(Side::kServer, BackendSynAck(*c)), Verdict::kConsumed);
  return h.emitted();
}

// The base of engine tests that run once per address family: the
// parameter says IPv6. Instantiate with MOAT_FAMILIES(Suite).
class FamilyTest : public ::testing::TestWithParam<bool> {
 protected:
  bool v6() const { return GetParam(); }
  // A connection of this family from `port`, Conn's defaults otherwise.
  Conn MakeConn(uint16_t port = kClientPort) const {
    Conn c;
    c.v6 = v6();
    c.client_port = port;
    return c;
  }
};

inline std::string FamilyName(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "Ipv6" : "Ipv4";
}

}  // namespace moat::proxy::testing

#define MOAT_FAMILIES(suite)                                    \
  INSTANTIATE_TEST_SUITE_P(Families, suite, ::testing::Bool(), \
                           ::moat::proxy::testing::FamilyName)
