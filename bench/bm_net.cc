// lib/net on the hot path: parsing, checksums (full and RFC 1624
// incremental), option parsing and frame building. Every received frame
// pays ParseFrame (which also walks the TCP options); every protected TCP
// frame pays one full checksum verify; every translated segment pays a few
// incremental updates; every generated frame pays BuildTcpFrame.
//
// Each iteration handles a burst of 32 different frames, built before the
// timed loop, so the numbers are per packet with the branch predictor and
// caches in the state a worker's rx burst leaves them in.
//
//   build/bench/moat_bench --benchmark_filter=BM_Net_

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "moat/net/builder.h"
#include "moat/net/checksum.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "testing/packet_builder.h"

namespace moat::net {
namespace {

constexpr int kBurst = 32;
constexpr size_t kCap = 2048;

enum class Kind { kSynV4, kSynV6, kDataV4, kDataV6, kSyn4Vlan };

// Linux-like SYN options (MSS, SACK-permitted, timestamps, window scale),
// or an established segment's timestamps plus one SACK block.
void Options(bool syn, uint32_t r, moat::testing::TcpPacket& p) {
  if (syn) {
    p.Mss(1460).SackPermitted().Timestamps(r, 0).Nop().WindowScale(7);
  } else {
    p.Nop().Nop().Timestamps(r, r ^ 0x5555).Nop().Nop().SackBlocks({r + 1000, r + 2000});
  }
}

struct Frames {
  alignas(64) uint8_t buf[kBurst][kCap];
  uint16_t len[kBurst];

  // Random addresses, ports and numbers; the rng is drawn in a fixed order
  // so every run gets the same frames.
  Frames(Kind kind, uint16_t payload_len) {
    std::mt19937 rng(1);
    for (int i = 0; i < kBurst; ++i) {
      uint8_t src[16], dst[16];
      for (auto& b : src) b = static_cast<uint8_t>(rng());
      for (auto& b : dst) b = static_cast<uint8_t>(rng());
      const bool syn = kind == Kind::kSynV4 || kind == Kind::kSynV6 || kind == Kind::kSyn4Vlan;
      moat::testing::TcpPacket p;
      p.Macs(MacAddr{{0, 0, 0, 0, 0, 1}}, MacAddr{{0, 0, 0, 0, 0, 2}})
          .Addresses(kind == Kind::kSynV6 || kind == Kind::kDataV6, src, dst);
      if (kind == Kind::kSyn4Vlan) p.Vlan(100);
      const uint16_t src_port = static_cast<uint16_t>(rng());
      const uint32_t seq = rng();
      const uint32_t ack = syn ? 0 : rng();
      p.Ports(src_port, 80).Seq(seq).Ack(ack).Window(502)
          .Flags(syn ? kTcpSyn : (kTcpAck | kTcpPsh))
          .PayloadFill(payload_len, 0);
      Options(syn, rng(), p);
      len[i] = static_cast<uint16_t>(p.BuildInto(buf[i], kCap));
    }
  }
};

void BM_Parse(benchmark::State& state, Kind kind) {
  auto f = std::make_unique<Frames>(kind, kind == Kind::kDataV4 || kind == Kind::kDataV6 ? 64 : 0);
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      PacketView v;
      ParseError e = ParseFrame(f->buf[i], f->len[i], &v);
      benchmark::DoNotOptimize(e);
      benchmark::DoNotOptimize(v);
    }
  }
  meter.Report(state, state.iterations() * kBurst);
}
void BM_Net_ParseFrame_SynV4(benchmark::State& s) { BM_Parse(s, Kind::kSynV4); }
void BM_Net_ParseFrame_SynV6(benchmark::State& s) { BM_Parse(s, Kind::kSynV6); }
void BM_Net_ParseFrame_SynV4Vlan(benchmark::State& s) { BM_Parse(s, Kind::kSyn4Vlan); }
void BM_Net_ParseFrame_DataV4(benchmark::State& s) { BM_Parse(s, Kind::kDataV4); }
void BM_Net_ParseFrame_DataV6(benchmark::State& s) { BM_Parse(s, Kind::kDataV6); }
BENCHMARK(BM_Net_ParseFrame_SynV4);
BENCHMARK(BM_Net_ParseFrame_SynV6);
BENCHMARK(BM_Net_ParseFrame_SynV4Vlan);
BENCHMARK(BM_Net_ParseFrame_DataV4);
BENCHMARK(BM_Net_ParseFrame_DataV6);

// The options walk on its own (ParseFrame runs it too, to reject malformed
// lists; the engine runs it again to read the values it needs).
void BM_Net_ParseTcpOptions_Syn(benchmark::State& state) {
  static Frames f(Kind::kSynV4, 0);
  PacketView v[kBurst];
  for (int i = 0; i < kBurst; ++i) ParseFrame(f.buf[i], f.len[i], &v[i]);
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      TcpOptions o;
      ParseError e = ParseTcpOptions(v[i].tcp(), v[i].tcp_header_len, &o);
      benchmark::DoNotOptimize(e);
      benchmark::DoNotOptimize(o);
    }
  }
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Net_ParseTcpOptions_Syn);

// Full TCP checksum verify (pseudo-header + segment): what every protected
// frame that can change state costs without RX checksum offload. Arg =
// payload bytes.
void BM_ChecksumTcpVerify(benchmark::State& state, Kind kind) {
  auto f = std::make_unique<Frames>(kind, static_cast<uint16_t>(state.range(0)));
  PacketView v[kBurst];
  for (int i = 0; i < kBurst; ++i) ParseFrame(f->buf[i], f->len[i], &v[i]);
  int64_t bad = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) bad += !VerifyTcpChecksum(v[i]);
  }
  if (bad != 0) state.SkipWithError("checksum mismatch");
  meter.Report(state, state.iterations() * kBurst);
  state.SetBytesProcessed(state.iterations() * kBurst * (v[0].l3_end - v[0].l3_offset));
}
void BM_Net_ChecksumTcpVerify_V4(benchmark::State& s) { BM_ChecksumTcpVerify(s, Kind::kDataV4); }
void BM_Net_ChecksumTcpVerify_V6(benchmark::State& s) { BM_ChecksumTcpVerify(s, Kind::kDataV6); }
BENCHMARK(BM_Net_ChecksumTcpVerify_V4)->Arg(0)->Arg(64)->Arg(1460);
BENCHMARK(BM_Net_ChecksumTcpVerify_V6)->Arg(64);

void BM_Net_ChecksumIpv4Header(benchmark::State& state) {
  static Frames f(Kind::kSynV4, 0);
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      uint16_t c = Ipv4HeaderChecksum(f.buf[i] + kEthernetHeaderLen, kIpv4HeaderLen);
      benchmark::DoNotOptimize(c);
    }
  }
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Net_ChecksumIpv4Header);

// RFC 1624 incremental updates, as the splice does per segment: seq and
// ack (32-bit) and the window (16-bit) rewritten in place.
void BM_Net_ChecksumIncremental_SeqAckWin(benchmark::State& state) {
  static Frames f(Kind::kDataV4, 64);
  PacketView v[kBurst];
  for (int i = 0; i < kBurst; ++i) ParseFrame(f.buf[i], f.len[i], &v[i]);
  uint32_t delta = 0x9e3779b9u;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      v[i].SetSeq(net::SeqNum(v[i].seq().value() + delta));
      v[i].SetAck(net::SeqNum(v[i].ack().value() - delta));
      v[i].SetWindow(static_cast<uint16_t>(v[i].window() ^ 1));
    }
    benchmark::ClobberMemory();
  }
  for (int i = 0; i < kBurst; ++i) {
    if (!VerifyTcpChecksum(v[i])) state.SkipWithError("incremental update broke the checksum");
  }
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Net_ChecksumIncremental_SeqAckWin);

// A whole SYN-ACK-sized frame written from a spec, checksums included.
// _Offload: checksums left to the NIC (Checksums::kOffload, the
// pseudo-header sum only).
void BM_BuildSynAck(benchmark::State& state, Checksums checksums) {
  uint8_t opts[40];
  TcpOptionWriter w(opts, 40);
  w.Mss(1460);
  w.SackPermitted();
  w.Timestamps(1, 2);
  w.Nop();
  w.WindowScale(7);
  const uint8_t olen = static_cast<uint8_t>(w.Finish());
  static uint8_t out[kBurst][kCap];
  const uint8_t src[4] = {198, 18, 0, 2}, dst[4] = {198, 19, 1, 2};
  uint32_t seq = 1;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < kBurst; ++i) {
      TcpFrameSpec s;
      s.src_addr = src;
      s.dst_addr = dst;
      s.src_port = 80;
      s.dst_port = static_cast<uint16_t>(1024 + i);
      s.seq = seq++;
      s.ack = 7;
      s.flags = kTcpSyn | kTcpAck;
      s.window = 65535;
      s.options = opts;
      s.options_len = olen;
      size_t n = BuildTcpFrame(out[i], kCap, s, checksums);
      benchmark::DoNotOptimize(n);
    }
  }
  meter.Report(state, state.iterations() * kBurst);
}
void BM_Net_BuildTcpFrame_SynAckV4(benchmark::State& s) { BM_BuildSynAck(s, Checksums::kFull); }
void BM_Net_BuildTcpFrame_SynAckV4_Offload(benchmark::State& s) {
  BM_BuildSynAck(s, Checksums::kOffload);
}
BENCHMARK(BM_Net_BuildTcpFrame_SynAckV4);
BENCHMARK(BM_Net_BuildTcpFrame_SynAckV4_Offload);

}  // namespace
}  // namespace moat::net
