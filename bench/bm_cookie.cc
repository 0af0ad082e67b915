// Cookie PRF and codec cost. The PRF choice in cookie.h rests on the
// BM_Cookie_SipHash13_* vs BM_Cookie_SipHash24_* pairs: the same message
// the codec hashes (23 bytes for IPv4, 47 for IPv6), through the same
// inlined, constant-length template the codec uses.
//
// Arg = burst size: 1 is one cookie at a time (latency-ish, what a lone
// SYN costs), 32 is a DPDK rx burst of independent SYNs (throughput: the
// CPU overlaps independent hashes). Items are cookies, so the rate column
// reads as SYNs (or ACKs) per second per core.
//
//   build-cookie/bench/moat_bench --benchmark_filter=BM_Cookie_

#include <cstdint>
#include <cstring>
#include <random>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "moat/cookie/cookie.h"
#include "moat/cookie/siphash.h"

namespace moat::cookie {
namespace {

constexpr int kMaxBurst = 32;
constexpr size_t kMsgLenV4 = 23;  // cookie.cc: addrs 8 + ports 4 + ISN 4 + meta 1 + slot 6
constexpr size_t kMsgLenV6 = 47;  // addrs 32 + 15
constexpr uint64_t kNow = 1'700'000'000ull * kNsPerSecond;

struct Inputs {
  uint8_t msg[kMaxBurst][64];
  uint8_t client[kMaxBurst][16];
  uint8_t server[kMaxBurst][16];
  CookieTuple tuple[kMaxBurst];
  uint32_t client_isn[kMaxBurst];
  uint32_t cookie_isn[kMaxBurst];
  SynOptions opts[kMaxBurst];
};

MasterSecret BenchSecret() {
  MasterSecret s;
  for (size_t i = 0; i < kSecretBytes; ++i) s.bytes[i] = static_cast<uint8_t>(0xa5 ^ i);
  return s;
}

void Fill(Inputs* in, bool ipv6) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < kMaxBurst; ++i) {
    for (auto& b : in->msg[i]) b = static_cast<uint8_t>(rng());
    for (auto& b : in->client[i]) b = static_cast<uint8_t>(rng());
    for (auto& b : in->server[i]) b = static_cast<uint8_t>(rng());
    in->tuple[i] = CookieTuple{static_cast<uint8_t>(ipv6 ? 16 : 4), in->client[i], in->server[i],
                               static_cast<uint16_t>(rng()), 80};
    in->client_isn[i] = static_cast<uint32_t>(rng());
    in->opts[i] = SynOptions{1460, 7, true, true, false};
  }
}

template <int C, int D, size_t kLen>
void BM_SipHash(benchmark::State& state) {
  const int burst = static_cast<int>(state.range(0));
  static Inputs in;
  Fill(&in, false);
  const SipKey key{0x0123456789abcdefull, 0xfedcba9876543210ull};
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < burst; ++i) {
      benchmark::DoNotOptimize(in.msg[i]);
      uint64_t h = internal::SipHash<C, D>(key, in.msg[i], kLen);
      benchmark::DoNotOptimize(h);
    }
  }
  meter.Report(state, state.iterations() * burst);
}

void BM_Cookie_SipHash13_V4(benchmark::State& s) { BM_SipHash<1, 3, kMsgLenV4>(s); }
void BM_Cookie_SipHash24_V4(benchmark::State& s) { BM_SipHash<2, 4, kMsgLenV4>(s); }
void BM_Cookie_SipHash13_V6(benchmark::State& s) { BM_SipHash<1, 3, kMsgLenV6>(s); }
void BM_Cookie_SipHash24_V6(benchmark::State& s) { BM_SipHash<2, 4, kMsgLenV6>(s); }
BENCHMARK(BM_Cookie_SipHash13_V4)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_SipHash24_V4)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_SipHash13_V6)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_SipHash24_V6)->Arg(1)->Arg(kMaxBurst);

void BM_Make(benchmark::State& state, bool ipv6) {
  const int burst = static_cast<int>(state.range(0));
  static Inputs in;
  Fill(&in, ipv6);
  KeySchedule keys(BenchSecret());
  const CookieCodec codec(&keys);
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < burst; ++i) {
      benchmark::DoNotOptimize(in.client_isn[i]);
      uint32_t isn = codec.MakeIsn(in.tuple[i], in.client_isn[i], in.opts[i], kNow);
      benchmark::DoNotOptimize(isn);
    }
  }
  meter.Report(state, state.iterations() * burst);
}

// valid = genuine cookies (the ACK of a real client); invalid = a flood of
// random ACKs, which costs the same MAC and is rejected at the compare.
void BM_Check(benchmark::State& state, bool ipv6, bool valid) {
  const int burst = static_cast<int>(state.range(0));
  static Inputs in;
  Fill(&in, ipv6);
  KeySchedule keys(BenchSecret());
  const CookieCodec codec(&keys);
  std::mt19937 rng(7);
  for (int i = 0; i < kMaxBurst; ++i) {
    in.cookie_isn[i] =
        valid ? codec.MakeIsn(in.tuple[i], in.client_isn[i], in.opts[i], kNow) : rng();
  }
  int64_t accepted = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    for (int i = 0; i < burst; ++i) {
      benchmark::DoNotOptimize(in.cookie_isn[i]);
      SynOptions out;
      accepted += codec.CheckIsn(in.tuple[i], in.client_isn[i], in.cookie_isn[i], kNow, &out);
      benchmark::DoNotOptimize(out);
    }
  }
  if (valid && accepted != state.iterations() * burst) state.SkipWithError("cookie rejected");
  meter.Report(state, state.iterations() * burst);
}

void BM_Cookie_Make_V4(benchmark::State& s) { BM_Make(s, false); }
void BM_Cookie_Make_V6(benchmark::State& s) { BM_Make(s, true); }
void BM_Cookie_Check_V4(benchmark::State& s) { BM_Check(s, false, true); }
void BM_Cookie_Check_V6(benchmark::State& s) { BM_Check(s, true, true); }
void BM_Cookie_CheckInvalid_V4(benchmark::State& s) { BM_Check(s, false, false); }
BENCHMARK(BM_Cookie_Make_V4)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_Make_V6)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_Check_V4)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_Check_V6)->Arg(1)->Arg(kMaxBurst);
BENCHMARK(BM_Cookie_CheckInvalid_V4)->Arg(kMaxBurst);

// The TSval codec is a few ALU ops; measured to show it is free.
void BM_Cookie_EncodeTsval(benchmark::State& state) {
  SynOptions o{1460, 7, true, true, true};
  uint32_t clock = 12345;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    benchmark::DoNotOptimize(clock);
    uint32_t ts = CookieCodec::EncodeTsval(clock++, o);
    benchmark::DoNotOptimize(ts);
  }
  meter.Report(state, state.iterations());
}
BENCHMARK(BM_Cookie_EncodeTsval);

}  // namespace
}  // namespace moat::cookie
