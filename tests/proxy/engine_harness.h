#pragma once
// Test scaffolding for the engine: a fluent segment builder (over
// net::BuildTcpFrame, so every input has correct checksums unless a test
// breaks them on purpose), a harness that runs Process()/Tick() and keeps
// what the engine emitted, and drivers that bring a flow to a given state.
//
// Local to tests/proxy: the shared builder in tests/testing did not exist
// when these were written; this one adds flow-level drivers on top.

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "moat/net/builder.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"

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

struct Frame {
  uint8_t buf[kMaxFrame] = {};
  uint16_t len = 0;
};

class Seg {
 public:
  static Seg FromClient(bool v6 = false) {
    Seg s;
    s.v6_ = v6;
    s.from_client_ = true;
    s.sport_ = kClientPort;
    s.dport_ = kServerPort;
    return s;
  }
  static Seg FromServer(bool v6 = false) {
    Seg s;
    s.v6_ = v6;
    s.from_client_ = false;
    s.sport_ = kServerPort;
    s.dport_ = kClientPort;
    return s;
  }
  Seg& Seq(uint32_t v) { seq_ = v; return *this; }
  Seg& Ack(uint32_t v) { ack_ = v; return *this; }
  Seg& Flags(uint8_t f) { flags_ = f; return *this; }
  Seg& Win(uint16_t w) { win_ = w; return *this; }
  // IPv4 TOS / IPv6 traffic class; the low two bits are ECN (RFC 3168 §5).
  Seg& Tos(uint8_t t) { tos_ = t; return *this; }
  Seg& Ports(uint16_t s, uint16_t d) { sport_ = s; dport_ = d; return *this; }
  Seg& Dst(const uint8_t* a) { dst_override_ = a; return *this; }
  Seg& Vlan(uint16_t tci) { vlans_.push_back(tci); return *this; }
  Seg& Mss(uint16_t m) { Opt({2, 4, uint8_t(m >> 8), uint8_t(m)}); return *this; }
  Seg& Ws(uint8_t s) { Opt({1, 3, 3, s}); return *this; }
  Seg& SackOk() { Opt({1, 1, 4, 2}); return *this; }
  Seg& Ts(uint32_t val, uint32_t ecr) {
    Opt({1, 1, 8, 10, uint8_t(val >> 24), uint8_t(val >> 16), uint8_t(val >> 8), uint8_t(val),
         uint8_t(ecr >> 24), uint8_t(ecr >> 16), uint8_t(ecr >> 8), uint8_t(ecr)});
    return *this;
  }
  Seg& Sack(std::initializer_list<uint32_t> edges) {
    std::vector<uint8_t> o = {1, 1, 5, uint8_t(2 + 4 * edges.size())};
    for (uint32_t e : edges) {
      o.push_back(uint8_t(e >> 24));
      o.push_back(uint8_t(e >> 16));
      o.push_back(uint8_t(e >> 8));
      o.push_back(uint8_t(e));
    }
    options_.insert(options_.end(), o.begin(), o.end());
    return *this;
  }
  Seg& Tfo() { Opt({34, 2}); return *this; }  // Fast Open cookie request
  Seg& Opt(std::initializer_list<uint8_t> bytes) {
    options_.insert(options_.end(), bytes.begin(), bytes.end());
    return *this;
  }
  Seg& Payload(size_t n, uint8_t fill = 'x') { payload_.assign(n, fill); return *this; }

  Frame Build() const {
    Frame f;
    std::vector<uint8_t> opts = options_;
    while (opts.size() % 4) opts.push_back(1);
    net::TcpFrameSpec s;
    s.src_mac = from_client_ ? kClientMac : kServerMac;
    s.dst_mac = from_client_ ? kServerMac : kClientMac;
    s.vlan_count = static_cast<uint8_t>(vlans_.size());
    for (size_t i = 0; i < vlans_.size(); ++i) {
      s.vlan_tci[i] = vlans_[i];
      s.vlan_tpid[i] = i == 0 && vlans_.size() == 2 ? 0x88a8 : 0x8100;
    }
    s.ipv6 = v6_;
    const uint8_t* c = v6_ ? kClientV6 : kClientV4;
    const uint8_t* sv = v6_ ? kServerV6 : kServerV4;
    s.src_addr = from_client_ ? c : sv;
    s.dst_addr = dst_override_ ? dst_override_ : (from_client_ ? sv : c);
    s.src_port = sport_;
    s.dst_port = dport_;
    s.tos_tclass = tos_;
    s.seq = seq_;
    s.ack = ack_;
    s.flags = flags_;
    s.window = win_;
    s.options = opts.data();
    s.options_len = static_cast<uint8_t>(opts.size());
    s.payload = payload_.data();
    s.payload_len = static_cast<uint16_t>(payload_.size());
    f.len = static_cast<uint16_t>(net::BuildTcpFrame(f.buf, sizeof(f.buf), s));
    EXPECT_NE(f.len, 0) << "segment did not build";
    return f;
  }

 private:
  bool v6_ = false;
  bool from_client_ = true;
  const uint8_t* dst_override_ = nullptr;
  uint16_t sport_ = 0, dport_ = 0;
  uint32_t seq_ = 0, ack_ = 0;
  uint8_t flags_ = net::kTcpAck;
  uint16_t win_ = 1000;
  uint8_t tos_ = 0;
  std::vector<uint16_t> vlans_;
  std::vector<uint8_t> options_;
  std::vector<uint8_t> payload_;
};

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
  Verdict Send(Side in, const Seg& s, Seen* rewritten = nullptr) {
    Frame f = s.Build();
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

  void Drain() {
    for (size_t i = 0; i < out_->size(); ++i) {
      const Emitted e = (*out_)[i];
      emitted_.push_back(ParseSeen(e.out, e.data, e.len));
    }
    out_->Clear();
  }

 private:
  uint64_t now_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Output> out_;
  std::vector<Seen> emitted_;
};

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
  uint16_t client_win = 502;
  uint16_t backend_win = 509;
  uint16_t client_port = kClientPort;

  // Learnt while driving.
  uint32_t cookie_isn = 0;
  uint32_t synack_tsval = 0;  // moat's TSval in the SYN-ACK (ts_ours)

  uint32_t delta() const { return cookie_isn - backend_isn; }
  uint32_t ts_delta() const { return synack_tsval - backend_tsval; }
  Seg C() const { return Seg::FromClient(v6).Ports(client_port, kServerPort); }
  Seg S() const { return Seg::FromServer(v6).Ports(kServerPort, client_port); }
  flow::FlowKey key() const { return KeyFor(v6, client_port); }
};

inline Seg ClientSyn(const Conn& c) {
  Seg s = c.C().Seq(c.client_isn).Ack(0).Flags(net::kTcpSyn).Win(64240);
  if (c.ecn) s.Flags(net::kTcpSyn | net::kTcpEce | net::kTcpCwr);
  s.Mss(c.mss);
  if (c.sack) s.SackOk();
  if (c.ts) s.Ts(c.client_tsval - 10, 0);
  if (c.client_ws >= 0) s.Ws(static_cast<uint8_t>(c.client_ws));
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
inline Seg ClientHandshakeAck(const Conn& c, size_t payload = 0) {
  Seg s = c.C().Seq(c.client_isn + 1).Ack(c.cookie_isn + 1).Win(c.client_win);
  if (c.ts) s.Ts(c.client_tsval, c.synack_tsval);
  if (payload) s.Payload(payload).Flags(net::kTcpAck | net::kTcpPsh);
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

inline Seg BackendSynAck(const Conn& c) {
  Seg s = c.S().Seq(c.backend_isn).Ack(c.client_isn + 1).Flags(net::kTcpSyn | net::kTcpAck)
              .Win(65160).Mss(1460);
  if (c.sack) s.SackOk();
  if (c.ts) s.Ts(c.backend_tsval, c.client_tsval);
  if (c.backend_ws >= 0) s.Ws(static_cast<uint8_t>(c.backend_ws));
  return s;
}

// ... and the backend's SYN-ACK: Established. Returns what was emitted.
inline std::vector<Seen> DriveToEstablished(Harness& h, Conn* c, size_t payload = 0) {
  DriveToSynSent(h, c, payload);
  EXPECT_EQ(h.Send(Side::kServer, BackendSynAck(*c)), Verdict::kConsumed);
  return h.emitted();
}

}  // namespace moat::proxy::testing
