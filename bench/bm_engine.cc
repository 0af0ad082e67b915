// lib/proxy: the engine per path, through the same ProcessBurst() entry
// the workers use, on frames as Linux peers send them (MSS, SACK-permitted,
// timestamps, window scale; established segments with timestamps and a
// SACK block). Items are packets in; cycles/pkt is the TSC budget.
//
//   SynToSynAck          a random-source SYN flood answered with cookies
//   InvalidAck           a flood of ACKs with wrong cookies (counted drops)
//   AckToBackendSyn      valid cookie ACKs: flow created, backend SYN out
//   SynAckToEstablished  backend SYN-ACKs: third ACK out, flow established
//   Established_C2S/S2C  spliced data segments translated (seq/ack, TS,
//                        SACK), Arg = established flows in the table
//   MixedBurst           a worker under attack: half established data,
//                        a quarter flood SYNs, a quarter invalid ACKs
//   *_Offload            SynToSynAck_V4 / AckToBackendSyn_V4 with the NIC's
//                        RX verdict GOOD (Arg bit 1) and/or TX checksum
//                        offload (Arg bit 2), against Arg 0 (software)
//   SynRateLimit         SynToSynAck with --synack_rate on (Arg 1) or off
//                        (Arg 0): 16K distinct sources, none over the rate,
//                        so the difference is the limiter's lookup
//
// The engine rewrites frames in place, so every burst starts with a copy
// of its input frames from templates (~120 bytes per packet, what an rx
// burst leaves in the mbufs); paths that create state re-create the engine
// untimed when they run out of fresh flows. The clock and the secret are
// fixed, so cookies made at set-up validate in the timed loop.
//
//   build/bench/moat_bench --benchmark_filter=BM_Engine_

#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"
#include "testing/packet_builder.h"

namespace moat::proxy {
namespace {

using moat::testing::TcpPacket;

constexpr int kBurst = 32;
constexpr uint16_t kPayload = 64;
constexpr uint64_t kNow = 1'700'000'000ull * 1'000'000'000ull;
constexpr size_t kSlot = 256;  // template slot; every frame here is < 200 bytes

constexpr uint8_t kServerV4[4] = {198, 18, 0, 2};
constexpr uint8_t kServerV6[16] = {0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

EngineConfig Config(uint32_t capacity) {
  EngineConfig cfg;
  cfg.services = *ParseProtect("198.18.0.2:80,[2001:2::2]:80");
  for (size_t i = 0; i < cookie::kSecretBytes; ++i) cfg.secret.bytes[i] = static_cast<uint8_t>(i);
  cfg.flow_capacity = capacity;
  cfg.held_slots = 1024;
  cfg.hash_seed = 0x1234;
  return cfg;
}

std::unique_ptr<Engine> NewEngine(uint32_t capacity) {
  auto e = Engine::Create(Config(capacity), kNow);
  if (!e.ok()) std::abort();
  return std::move(*e);
}

// One client connection's frames, in both directions.
struct Conn {
  uint8_t client[16];
  uint16_t port;
  uint32_t cisn, cookie, sisn, moat_tsval, client_tsval = 2000;
};

struct Frame {
  uint8_t b[kSlot];
  uint16_t len;
};

class Traffic {
 public:
  Traffic(bool ipv6, uint32_t n, uint32_t salt) : ipv6_(ipv6), conns_(n) {
    std::mt19937 rng(salt);
    for (uint32_t i = 0; i < n; ++i) {
      Conn& c = conns_[i];
      std::memset(c.client, 0, sizeof(c.client));
      if (ipv6) {
        c.client[0] = 0x20, c.client[1] = 0x01, c.client[3] = 0x02, c.client[5] = 1;
        c.client[13] = static_cast<uint8_t>(salt);
        c.client[14] = static_cast<uint8_t>(i >> 8), c.client[15] = static_cast<uint8_t>(i);
      } else {
        c.client[0] = 198;
        c.client[1] = static_cast<uint8_t>(19);
        c.client[2] = static_cast<uint8_t>(i >> 8);
        c.client[3] = static_cast<uint8_t>(i);
      }
      c.port = static_cast<uint16_t>(1024 + (i >> 16) * 7 + salt);
      // Near the 2^32 wrap, as real ISNs sometimes are.
      c.cisn = 0xffffff00u - i * 7919u;
      c.sisn = 0x7fffff00u + i * 104729u;
      (void)rng;
    }
  }

  uint32_t size() const { return static_cast<uint32_t>(conns_.size()); }

  // SYNs with Linux's options; answered by `oracle`, which records the
  // cookie and moat's TSval for the ACKs.
  Frame Syn(uint32_t i) const {
    const Conn& c = conns_[i];
    return Build(Segment(true, c).Seq(c.cisn).Ack(0).Flags(net::kTcpSyn)
                     .Mss(1460).SackPermitted().Timestamps(1000 + i, 0).Nop().WindowScale(7));
  }
  void Answer(Engine* oracle) {
    for (uint32_t i = 0; i < size(); ++i) {
      Frame f = Syn(i);
      Output out;
      if (oracle->Process(Side::kClient, f.b, &f.len, kSlot, kNow, &out) != Verdict::kReflect) {
        std::abort();
      }
      net::PacketView v;
      net::ParseFrame(f.b, f.len, &v);
      net::TcpOptions to;
      net::ParseTcpOptions(v.tcp(), v.tcp_header_len, &to);
      conns_[i].cookie = v.seq().value();
      conns_[i].moat_tsval = to.tsval;
    }
  }
  // The client's third ACK: it carries the cookie (ack - 1) and echoes
  // moat's TSval, which carries the option bits.
  Frame Ack(uint32_t i) const {
    const Conn& c = conns_[i];
    return Build(Segment(true, c).Seq(c.cisn + 1).Ack(c.cookie + 1).Flags(net::kTcpAck)
                     .Nop().Nop().Timestamps(c.client_tsval, c.moat_tsval));
  }
  // The same ACK with a cookie off by one bit: what a flood of guesses is.
  Frame BadAck(uint32_t i) const {
    Frame f = Ack(i);
    const Conn& c = conns_[i];
    net::PacketView v;
    net::ParseFrame(f.b, f.len, &v);
    v.SetAck(net::SeqNum(c.cookie + 1 + (1u << (i % 24))));
    return f;
  }
  Frame BackendSynAck(uint32_t i) const {
    const Conn& c = conns_[i];
    return Build(Segment(false, c).Seq(c.sisn).Ack(c.cisn + 1).Flags(net::kTcpSyn | net::kTcpAck)
                     .Mss(1460).SackPermitted().Timestamps(5000, c.client_tsval).Nop()
                     .WindowScale(7));
  }
  // Client data with timestamps and a SACK block for server data (RFC
  // 2018), in moat's sequence space as the client sees it.
  Frame ClientData(uint32_t i) const {
    const Conn& c = conns_[i];
    return Build(Segment(true, c).Seq(c.cisn + 1).Ack(c.cookie + 1)
                     .Flags(net::kTcpAck | net::kTcpPsh)
                     .Nop().Nop().Timestamps(c.client_tsval + 1, c.moat_tsval)
                     .Nop().Nop().SackBlocks({c.cookie + 1 + 2 * kPayload,
                                              c.cookie + 1 + 3 * kPayload})
                     .PayloadFill(kPayload, 0));
  }
  Frame ServerData(uint32_t i) const {
    const Conn& c = conns_[i];
    return Build(Segment(false, c).Seq(c.sisn + 1).Ack(c.cisn + 1)
                     .Flags(net::kTcpAck | net::kTcpPsh)
                     .Nop().Nop().Timestamps(5001, c.client_tsval)
                     .Nop().Nop().SackBlocks({c.cisn + 1 + 2 * kPayload, c.cisn + 1 + 3 * kPayload})
                     .PayloadFill(kPayload, 0));
  }

 private:
  // A segment of connection `c` in one direction (MACs ..:01 and ..:02,
  // server :80, window 502, Linux's in established flows).
  TcpPacket Segment(bool from_client, const Conn& c) const {
    moat::testing::Endpoints e = moat::testing::Endpoints::Make(
        ipv6_, c.client, c.port, ipv6_ ? kServerV6 : kServerV4, 80);
    e.client_mac = net::MacAddr{{0, 0, 0, 0, 0, 1}};
    e.server_mac = net::MacAddr{{0, 0, 0, 0, 0, 2}};
    TcpPacket p = from_client ? e.FromClient() : e.FromServer();
    p.Window(502);
    return p;
  }
  static Frame Build(const TcpPacket& p) {
    Frame f;
    f.len = static_cast<uint16_t>(p.BuildInto(f.b, kSlot));
    if (f.len == 0) std::abort();
    return f;
  }

  bool ipv6_;
  std::vector<Conn> conns_;
};

// Work buffers for one burst: templates are copied in, the engine rewrites
// them in place. Spaced like mbufs in a DPDK mempool (64 B pool header,
// 128 B rte_mbuf, 128 B headroom, 2048 B data), not a power of two: with a
// 2 KiB stride every other buffer aliases at 4 KiB, and the false
// store-to-load dependencies that makes swing the results by ~1.6x
// between runs, depending on where ASLR puts the heap.
constexpr size_t kMbufStride = 64 + 128 + 128 + 2048;
struct Burst {
  alignas(64) uint8_t buf[kBurst][kMbufStride];
  uint8_t* ptr[kBurst];
  uint16_t len[kBurst];
  Verdict verdict[kBurst];
  FrameMeta meta[kBurst];
  Burst() {
    for (int i = 0; i < kBurst; ++i) ptr[i] = buf[i];
  }
  void Load(const Frame* const* f) {
    for (int i = 0; i < kBurst; ++i) {
      std::memcpy(buf[i], f[i]->b, f[i]->len);
      len[i] = f[i]->len;
    }
  }
  // ProcessBurst until the whole burst is done, draining *out as the
  // dataplane does (it would copy the frames into mbufs here).
  // With `with_meta`, meta[] goes along (NIC checksum verdicts in, TX
  // offload out), as the dataplane passes it.
  void Run(Engine* e, Side in, Output* out, bool with_meta = false) {
    uint16_t done = 0;
    while (done < kBurst) {
      done += e->ProcessBurst(in, ptr + done, len + done, kMaxFrame,
                              static_cast<uint16_t>(kBurst - done), kNow, verdict + done, out,
                              with_meta ? meta + done : nullptr);
      benchmark::DoNotOptimize(out->size());
      out->Clear();
    }
  }
  int Count(Verdict v) const {
    int n = 0;
    for (int i = 0; i < kBurst; ++i) n += verdict[i] == v;
    return n;
  }
};

// Brings every connection of `t` to ESTABLISHED in `e`.
void Establish(Engine* e, const Traffic& t) {
  auto out = std::make_unique<Output>();
  for (uint32_t i = 0; i < t.size(); ++i) {
    Frame a = t.Ack(i);
    out->Clear();
    e->Process(Side::kClient, a.b, &a.len, kSlot, kNow, out.get());
    Frame s = t.BackendSynAck(i);
    out->Clear();
    e->Process(Side::kServer, s.b, &s.len, kSlot, kNow, out.get());
  }
  if (e->stats().Load(Counter::k_backend_synack) != t.size()) std::abort();
}

std::vector<const Frame*> Pointers(const std::vector<Frame>& v) {
  std::vector<const Frame*> p(v.size());
  for (size_t i = 0; i < v.size(); ++i) p[i] = &v[i];
  return p;
}

// The timed loop of a path that creates state, so that each frame works
// once per engine: bursts of p[] into `in` of an engine from fresh(), and
// a new one, made untimed, whenever the frames run out. `counter` must
// grow by one per frame processed, or the benchmark reports `error`. `b`
// comes from the caller when its meta[] is set (`with_meta`).
template <typename Fresh>
void RunOnFreshEngines(benchmark::State& state, const std::vector<const Frame*>& p, Side in,
                       Fresh fresh, Counter counter, const char* error, Burst* b,
                       bool with_meta = false) {
  std::unique_ptr<Engine> e = fresh();
  auto out = std::make_unique<Output>();
  size_t next = 0;
  uint64_t counted = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    if (next == p.size()) {
      meter.Pause();
      state.PauseTiming();
      counted += e->stats().Load(counter);
      e = fresh();
      next = 0;
      state.ResumeTiming();
      meter.Resume();
    }
    b->Load(&p[next]);
    next += kBurst;
    b->Run(e.get(), in, out.get(), with_meta);
  }
  counted += e->stats().Load(counter);
  if (counted != static_cast<uint64_t>(state.iterations()) * kBurst) state.SkipWithError(error);
  meter.Report(state, state.iterations() * kBurst);
}

// Brings `e` into cookie-only mode as a SYN flood would: more SYNs in one
// 100 ms window than --syn_flood_rate allows (the clock stands still in
// these benchmarks, so the window never ends).
void Flood(Engine* e) {
  Traffic flood(false, 2 * Config(1024).syn_flood_rate / 10 + 64, 9);
  auto out = std::make_unique<Output>();
  for (uint32_t i = 0; i < flood.size() && !e->cookie_only(); ++i) {
    Frame f = flood.Syn(i);
    out->Clear();
    e->Process(Side::kClient, f.b, &f.len, kSlot, kNow, out.get());
  }
  if (!e->cookie_only()) std::abort();
}

// The flood path: SYN -> cookie SYN-ACK with the worker in cookie-only
// mode (with the SYN cache on, as by default): what every spoofed SYN
// costs. The name predates the SYN cache, so old and new binaries compare.
void BM_SynToSynAck(benchmark::State& state, bool ipv6) {
  constexpr uint32_t kSyns = 1024;
  Traffic t(ipv6, kSyns, 1);
  std::vector<Frame> syns;
  for (uint32_t i = 0; i < kSyns; ++i) syns.push_back(t.Syn(i));
  const auto p = Pointers(syns);
  auto e = NewEngine(1024);
  if (e->syn_cache() != nullptr) Flood(e.get());
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  uint32_t next = 0;
  int64_t answered = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    b->Load(&p[next]);
    next = (next + kBurst) % kSyns;
    b->Run(e.get(), Side::kClient, out.get());
    answered += b->Count(Verdict::kReflect);
  }
  if (answered != state.iterations() * kBurst) state.SkipWithError("a SYN was not answered");
  meter.Report(state, state.iterations() * kBurst);
}
void BM_Engine_SynToSynAck_V4(benchmark::State& s) { BM_SynToSynAck(s, false); }
void BM_Engine_SynToSynAck_V6(benchmark::State& s) { BM_SynToSynAck(s, true); }
BENCHMARK(BM_Engine_SynToSynAck_V4);
BENCHMARK(BM_Engine_SynToSynAck_V6);

// Checksum offloads on the flood path, same SYNs as SynToSynAck_V4. Arg is
// a bit mask: 1 = the NIC said RX GOOD (the software verify of the SYN's
// IPv4 header and TCP checksums is skipped), 2 = TX offload towards the
// client (the SYN-ACK built in place carries only the pseudo-header sum).
// Arg 0 passes the FrameMeta too, all UNKNOWN: the software path with the
// same call, so the ratios are the offloads alone.
void BM_Engine_SynToSynAck_Offload_V4(benchmark::State& state) {
  const bool rx = (state.range(0) & 1) != 0, tx = (state.range(0) & 2) != 0;
  constexpr uint32_t kSyns = 1024;
  Traffic t(false, kSyns, 1);
  std::vector<Frame> syns;
  for (uint32_t i = 0; i < kSyns; ++i) syns.push_back(t.Syn(i));
  const auto p = Pointers(syns);
  EngineConfig cfg = Config(1024);
  cfg.tx_checksum_offload[static_cast<int>(Side::kClient)] = tx;
  auto made = Engine::Create(cfg, kNow);
  if (!made.ok()) std::abort();
  auto e = std::move(*made);
  if (e->syn_cache() != nullptr) Flood(e.get());
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  for (FrameMeta& m : b->meta) {
    m.rx_ip = m.rx_l4 = rx ? HwChecksum::kGood : HwChecksum::kUnknown;
  }
  uint32_t next = 0;
  int64_t answered = 0, offloaded = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    b->Load(&p[next]);
    next = (next + kBurst) % kSyns;
    b->Run(e.get(), Side::kClient, out.get(), /*with_meta=*/true);
    answered += b->Count(Verdict::kReflect);
    offloaded += b->meta[0].tx.offloaded();
  }
  if (answered != state.iterations() * kBurst) state.SkipWithError("a SYN was not answered");
  if ((offloaded != 0) != tx) state.SkipWithError("TX offload not as configured");
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Engine_SynToSynAck_Offload_V4)->Arg(0)->Arg(1)->Arg(2)->Arg(3);

// Cache mode: 3008 SYNs per engine into a 16384-entry SYN cache (18% full:
// no bucket of 8 overflows for these inputs, nothing switches to cookies);
// the engine is re-made untimed after each round.
constexpr uint32_t kCacheSyns = 94 * kBurst;

EngineConfig CacheConfig() {
  EngineConfig cfg = Config(4096);
  cfg.syn_cache_entries = 16384;
  cfg.syn_flood_rate = 100'000'000;  // only occupancy could switch, and it stays low
  return cfg;
}

std::unique_ptr<Engine> NewCacheEngine() {
  auto e = Engine::Create(CacheConfig(), kNow);
  if (!e.ok()) std::abort();
  return std::move(*e);
}

void BM_Engine_SynToSynAck_Cache_V4(benchmark::State& state) {
  Traffic t(false, kCacheSyns, 4);
  std::vector<Frame> syns;
  for (uint32_t i = 0; i < kCacheSyns; ++i) syns.push_back(t.Syn(i));
  auto b = std::make_unique<Burst>();
  RunOnFreshEngines(state, Pointers(syns), Side::kClient, NewCacheEngine,
                    Counter::k_syn_cache_inserted, "a SYN did not get a SYN-cache entry", b.get());
}
BENCHMARK(BM_Engine_SynToSynAck_Cache_V4);

void BM_Engine_InvalidAck_V4(benchmark::State& state) {
  constexpr uint32_t kN = 1024;
  Traffic t(false, kN, 2);
  auto oracle = NewEngine(1024);
  t.Answer(oracle.get());
  std::vector<Frame> acks;
  for (uint32_t i = 0; i < kN; ++i) acks.push_back(t.BadAck(i));
  const auto p = Pointers(acks);
  auto e = NewEngine(1024);
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  uint32_t next = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    b->Load(&p[next]);
    next = (next + kBurst) % kN;
    b->Run(e.get(), Side::kClient, out.get());
  }
  if (e->stats().Load(Counter::k_cookie_invalid) !=
          static_cast<uint64_t>(state.iterations()) * kBurst ||
      e->flow_count() != 0) {
    state.SkipWithError("an invalid cookie was not dropped");
  }
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Engine_InvalidAck_V4);

// Valid cookie ACKs, each creating a flow and a backend SYN. 64K fresh
// connections per engine; the engine is re-made untimed when they run out.
void BM_Engine_AckToBackendSyn_V4(benchmark::State& state) {
  constexpr uint32_t kN = 1 << 16;
  Traffic t(false, kN, 3);
  auto oracle = NewEngine(1024);
  t.Answer(oracle.get());
  std::vector<Frame> acks;
  for (uint32_t i = 0; i < kN; ++i) acks.push_back(t.Ack(i));
  auto b = std::make_unique<Burst>();
  RunOnFreshEngines(
      state, Pointers(acks), Side::kClient, [] { return NewEngine(kN); },
      Counter::k_backend_syn_sent, "a valid ACK did not open a backend connection", b.get());
}
BENCHMARK(BM_Engine_AckToBackendSyn_V4);

// The same with checksum offloads (Arg as for SynToSynAck_Offload): RX
// GOOD skips the verify of the cookie ACK, TX offload towards the server
// leaves the backend SYN's checksums (built into the Output) to the NIC.
void BM_Engine_AckToBackendSyn_Offload_V4(benchmark::State& state) {
  const bool rx = (state.range(0) & 1) != 0, tx = (state.range(0) & 2) != 0;
  constexpr uint32_t kN = 1 << 16;
  Traffic t(false, kN, 3);
  auto oracle = NewEngine(1024);
  t.Answer(oracle.get());
  std::vector<Frame> acks;
  for (uint32_t i = 0; i < kN; ++i) acks.push_back(t.Ack(i));
  EngineConfig cfg = Config(kN);
  cfg.tx_checksum_offload[static_cast<int>(Side::kServer)] = tx;
  auto make = [&] {
    auto made = Engine::Create(cfg, kNow);
    if (!made.ok()) std::abort();
    return std::move(*made);
  };
  auto b = std::make_unique<Burst>();
  for (FrameMeta& m : b->meta) {
    m.rx_ip = m.rx_l4 = rx ? HwChecksum::kGood : HwChecksum::kUnknown;
  }
  RunOnFreshEngines(state, Pointers(acks), Side::kClient, make, Counter::k_backend_syn_sent,
                    "a valid ACK did not open a backend connection", b.get(),
                    /*with_meta=*/true);
}
BENCHMARK(BM_Engine_AckToBackendSyn_Offload_V4)->Arg(0)->Arg(1)->Arg(2)->Arg(3);

// Cache mode: third ACKs that find their SYN-cache entry (exact options),
// each creating a flow and a backend SYN. The SYNs are replayed into a
// fresh engine untimed for each round of 3008 ACKs.
void BM_Engine_AckToBackendSyn_Cache_V4(benchmark::State& state) {
  Traffic t(false, kCacheSyns, 5);
  auto oracle = NewEngine(1024);
  t.Answer(oracle.get());
  std::vector<Frame> syns, acks;
  for (uint32_t i = 0; i < kCacheSyns; ++i) {
    syns.push_back(t.Syn(i));
    acks.push_back(t.Ack(i));
  }
  auto out = std::make_unique<Output>();
  auto prime = [&] {
    auto e = NewCacheEngine();
    for (Frame f : syns) {
      out->Clear();
      e->Process(Side::kClient, f.b, &f.len, kSlot, kNow, out.get());
    }
    if (e->syn_cache()->size() != kCacheSyns) {
      std::fprintf(stderr, "SYN cache holds %u of %u: a bucket overflowed\n",
                   e->syn_cache()->size(), kCacheSyns);
      std::abort();
    }
    return e;
  };
  auto b = std::make_unique<Burst>();
  RunOnFreshEngines(state, Pointers(acks), Side::kClient, prime, Counter::k_syn_cache_hit,
                    "an ACK did not find its SYN-cache entry", b.get());
}
BENCHMARK(BM_Engine_AckToBackendSyn_Cache_V4);

// Backend SYN-ACKs for flows waiting in SYN_SENT: the delta is fixed, the
// third ACK goes to the backend, the flow is established.
void BM_Engine_SynAckToEstablished_V4(benchmark::State& state) {
  constexpr uint32_t kN = 1 << 14;
  Traffic t(false, kN, 4);
  auto oracle = NewEngine(1024);
  t.Answer(oracle.get());
  std::vector<Frame> acks, synacks;
  for (uint32_t i = 0; i < kN; ++i) {
    acks.push_back(t.Ack(i));
    synacks.push_back(t.BackendSynAck(i));
  }
  const auto pa = Pointers(acks);
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  // Every flow waits in SYN_SENT for its backend's answer.
  auto opened = [&] {
    auto e = NewEngine(kN);
    for (uint32_t i = 0; i < kN; i += kBurst) {
      b->Load(&pa[i]);
      b->Run(e.get(), Side::kClient, out.get());
    }
    return e;
  };
  RunOnFreshEngines(state, Pointers(synacks), Side::kServer, opened, Counter::k_backend_synack,
                    "a backend SYN-ACK did not establish its flow", b.get());
}
BENCHMARK(BM_Engine_SynAckToEstablished_V4);

// Spliced traffic: Arg = established flows in the table; each burst is 32
// different flows' segments, round-robin over all of them.
void BM_Established(benchmark::State& state, Side from, bool ipv6) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Traffic t(ipv6, n, 5);
  auto oracle = NewEngine(1024);
  t.Answer(oracle.get());
  auto e = NewEngine(n);
  Establish(e.get(), t);
  std::vector<Frame> data;
  for (uint32_t i = 0; i < n; ++i) {
    data.push_back(from == Side::kClient ? t.ClientData(i) : t.ServerData(i));
  }
  const auto p = Pointers(data);
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  uint32_t next = 0;
  int64_t forwarded = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    b->Load(&p[next]);
    next = (next + kBurst) % n;
    b->Run(e.get(), from, out.get());
    forwarded += b->Count(Verdict::kForward);
  }
  if (forwarded != state.iterations() * kBurst) state.SkipWithError("a segment was not forwarded");
  meter.Report(state, state.iterations() * kBurst);
}
void BM_Engine_Established_C2S_V4(benchmark::State& s) { BM_Established(s, Side::kClient, false); }
void BM_Engine_Established_S2C_V4(benchmark::State& s) { BM_Established(s, Side::kServer, false); }
void BM_Engine_Established_C2S_V6(benchmark::State& s) { BM_Established(s, Side::kClient, true); }
void BM_Engine_Established_S2C_V6(benchmark::State& s) { BM_Established(s, Side::kServer, true); }
BENCHMARK(BM_Engine_Established_C2S_V4)->Arg(1 << 10)->Arg(1 << 16);
BENCHMARK(BM_Engine_Established_S2C_V4)->Arg(1 << 10)->Arg(1 << 16);
BENCHMARK(BM_Engine_Established_C2S_V6)->Arg(1 << 10);
BENCHMARK(BM_Engine_Established_S2C_V6)->Arg(1 << 10);

// What one client-side rx burst looks like on a worker under a SYN flood
// while it serves established clients: 16 data segments of established
// flows, 8 flood SYNs, 8 ACKs with wrong cookies, interleaved.
void BM_Engine_MixedBurst_V4(benchmark::State& state) {
  constexpr uint32_t kN = 4096;
  Traffic good(false, kN, 6);
  Traffic flood(false, kN, 7);
  auto oracle = NewEngine(1024);
  good.Answer(oracle.get());
  flood.Answer(oracle.get());
  auto e = NewEngine(kN);
  Establish(e.get(), good);
  std::vector<Frame> frames;
  for (uint32_t i = 0; i < kN; ++i) {
    switch (i % 4) {
      case 0:
      case 2:
        frames.push_back(good.ClientData(i));
        break;
      case 1:
        frames.push_back(flood.Syn(i));
        break;
      default:
        frames.push_back(flood.BadAck(i));
        break;
    }
  }
  const auto p = Pointers(frames);
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  uint32_t next = 0;
  int64_t expected = 0, got = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    b->Load(&p[next]);
    next = (next + kBurst) % kN;
    b->Run(e.get(), Side::kClient, out.get());
    got += b->Count(Verdict::kForward) + b->Count(Verdict::kReflect) + b->Count(Verdict::kDrop);
    expected += kBurst;
  }
  if (got != expected) state.SkipWithError("unexpected verdict in the mixed burst");
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Engine_MixedBurst_V4);

// The SYN path with the anti-reflection limit on (Arg 1) and off (Arg 0),
// the same frames in the same run: quote the ratio of the two. 16K
// distinct sources, each its own prefix (/32) in a 64K-bucket array, at a
// rate none of them reaches: every SYN pays the hash and the bucket's
// read-modify-write and is answered.
void BM_Engine_SynRateLimit_V4(benchmark::State& state) {
  constexpr uint32_t kSyns = 1 << 14;
  Traffic t(false, kSyns, 8);
  std::vector<Frame> syns;
  for (uint32_t i = 0; i < kSyns; ++i) syns.push_back(t.Syn(i));
  const auto p = Pointers(syns);
  EngineConfig cfg = Config(1024);
  if (state.range(0) != 0) {
    cfg.synack_rate = kMaxSynAckRate;
    cfg.synack_prefix_v4 = 32;
  }
  auto created = Engine::Create(cfg, kNow);
  if (!created.ok()) std::abort();
  auto e = std::move(*created);
  auto out = std::make_unique<Output>();
  auto b = std::make_unique<Burst>();
  uint32_t next = 0;
  int64_t answered = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    b->Load(&p[next]);
    next = (next + kBurst) % kSyns;
    b->Run(e.get(), Side::kClient, out.get());
    answered += b->Count(Verdict::kReflect);
  }
  if (answered != state.iterations() * kBurst) state.SkipWithError("a SYN was not answered");
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Engine_SynRateLimit_V4)->Arg(0)->Arg(1);

}  // namespace
}  // namespace moat::proxy
