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
// The BM_Cookie_*Batch* benchmarks are the burst API the engine calls
// (CookieCodec::MakeIsnBatch / CheckIsnBatch, one call per burst; Arg =
// burst size) and the batch SipHash kernel alone: unsuffixed on the
// default path (the label says which: avx2 where the CPU has it), _Scalar
// forced to the scalar path. Compare them with BM_Cookie_Make_V4/32 and
// BM_Cookie_Check_V4/32, the one-at-a-time calls, in the same run.
//
//   build-cookie/bench/moat_bench --benchmark_filter=BM_Cookie_

#include <cstdint>
#include <cstring>
#include <random>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "moat/cookie/cookie.h"
#include "moat/cookie/siphash.h"
#include "moat/cookie/siphash_batch.h"

namespace moat::cookie {
namespace {

constexpr int kBurst = 32;        // a DPDK rx burst
constexpr int kMaxBurst = 64;     // inputs prepared (the batch benchmarks also run 64)
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

enum class Family { kV4, kV6, kMixed };

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

// The batch kernel alone on the same messages, column-wise (block j of
// message i at blocks[j][i]), one call per burst.
void BM_SipHashBatch(benchmark::State& state, size_t len, SipBatchPath path);

void BM_Cookie_SipHash13_V4(benchmark::State& s) { BM_SipHash<1, 3, kMsgLenV4>(s); }
void BM_Cookie_SipHash24_V4(benchmark::State& s) { BM_SipHash<2, 4, kMsgLenV4>(s); }
void BM_Cookie_SipHash13_V6(benchmark::State& s) { BM_SipHash<1, 3, kMsgLenV6>(s); }
void BM_Cookie_SipHash24_V6(benchmark::State& s) { BM_SipHash<2, 4, kMsgLenV6>(s); }
BENCHMARK(BM_Cookie_SipHash13_V4)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_SipHash24_V4)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_SipHash13_V6)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_SipHash24_V6)->Arg(1)->Arg(kBurst);

// The path the batch API takes by default here: avx2 where the CPU has
// it. The unsuffixed batch benchmarks run on it, the _Scalar ones force
// the scalar path, so one run compares both (on a CPU without AVX2 both
// are scalar, and nothing fails).
SipBatchPath DefaultPath() {
  return SipBatchPathSupported(SipBatchPath::kAvx2) ? SipBatchPath::kAvx2 : SipBatchPath::kScalar;
}

// Runs a benchmark body on one batch path, labelled with its name, and
// puts the previous path back.
class PathScope {
 public:
  PathScope(benchmark::State& state, SipBatchPath path) : saved_(ActiveSipBatchPath()) {
    SetSipBatchPath(path);
    state.SetLabel(SipBatchPathName(ActiveSipBatchPath()));
  }
  ~PathScope() { SetSipBatchPath(saved_); }

 private:
  SipBatchPath saved_;
};

void BM_SipHashBatch(benchmark::State& state, size_t len, SipBatchPath path) {
  const size_t burst = static_cast<size_t>(state.range(0));
  PathScope scope(state, path);
  static uint64_t blocks[kSipBatchMaxBlocks][kMaxBurst];
  std::mt19937_64 rng(42);
  for (auto& row : blocks) {
    for (auto& w : row) w = rng();
  }
  const size_t nb = len / 8 + 1;
  for (auto& w : blocks[nb - 1]) w = (w & ((uint64_t{1} << 56) - 1)) | (uint64_t{len} << 56);
  const SipKey keys[2] = {{0x0123456789abcdefull, 0xfedcba9876543210ull}, {1, 2}};
  uint64_t out[kMaxBurst];
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    benchmark::DoNotOptimize(blocks);
    SipHash13Batch(keys, nullptr, &blocks[0][0], nb, kMaxBurst, burst, out);
    benchmark::DoNotOptimize(out);
  }
  meter.Report(state, state.iterations() * static_cast<int64_t>(burst));
}
void BM_Cookie_SipHash13Batch_V4(benchmark::State& s) {
  BM_SipHashBatch(s, kMsgLenV4, DefaultPath());
}
void BM_Cookie_SipHash13Batch_V4_Scalar(benchmark::State& s) {
  BM_SipHashBatch(s, kMsgLenV4, SipBatchPath::kScalar);
}
void BM_Cookie_SipHash13Batch_V6(benchmark::State& s) {
  BM_SipHashBatch(s, kMsgLenV6, DefaultPath());
}
void BM_Cookie_SipHash13Batch_V6_Scalar(benchmark::State& s) {
  BM_SipHashBatch(s, kMsgLenV6, SipBatchPath::kScalar);
}
BENCHMARK(BM_Cookie_SipHash13Batch_V4)->Arg(kBurst);
BENCHMARK(BM_Cookie_SipHash13Batch_V4_Scalar)->Arg(kBurst);
BENCHMARK(BM_Cookie_SipHash13Batch_V6)->Arg(kBurst);
BENCHMARK(BM_Cookie_SipHash13Batch_V6_Scalar)->Arg(kBurst);

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
BENCHMARK(BM_Cookie_Make_V4)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_Make_V6)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_Check_V4)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_Check_V6)->Arg(1)->Arg(kBurst);
BENCHMARK(BM_Cookie_CheckInvalid_V4)->Arg(kBurst);

// Mixed: each item IPv4 or IPv6 at random (seeded), the worst case for
// the family split (no two neighbours predictably alike).
void FillFamily(Inputs* in, Family f) {
  Fill(in, f == Family::kV6);
  if (f != Family::kMixed) return;
  std::mt19937 rng(9);
  for (int i = 0; i < kMaxBurst; ++i) in->tuple[i].addr_len = (rng() & 1) ? 16 : 4;
}

// The burst API: one call per burst of `burst` SYNs.
void BM_MakeBatch(benchmark::State& state, Family f, SipBatchPath path) {
  const int burst = static_cast<int>(state.range(0));
  PathScope scope(state, path);
  static Inputs in;
  FillFamily(&in, f);
  KeySchedule keys(BenchSecret());
  const CookieCodec codec(&keys);
  uint32_t isns[kMaxBurst];
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    benchmark::DoNotOptimize(in.client_isn);
    codec.MakeIsnBatch(in.tuple, in.client_isn, in.opts, burst, kNow, isns);
    benchmark::DoNotOptimize(isns);
  }
  meter.Report(state, state.iterations() * burst);
}

void BM_CheckBatch(benchmark::State& state, Family f, SipBatchPath path, bool valid) {
  const int burst = static_cast<int>(state.range(0));
  PathScope scope(state, path);
  static Inputs in;
  FillFamily(&in, f);
  KeySchedule keys(BenchSecret());
  const CookieCodec codec(&keys);
  std::mt19937 rng(7);
  for (int i = 0; i < kMaxBurst; ++i) {
    in.cookie_isn[i] =
        valid ? codec.MakeIsn(in.tuple[i], in.client_isn[i], in.opts[i], kNow) : rng();
  }
  SynOptions out[kMaxBurst];
  bool ok[kMaxBurst];
  int64_t accepted = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    benchmark::DoNotOptimize(in.cookie_isn);
    accepted += codec.CheckIsnBatch(in.tuple, in.client_isn, in.cookie_isn, burst, kNow, out, ok);
    benchmark::DoNotOptimize(out);
    benchmark::DoNotOptimize(ok);
  }
  if (valid && accepted != state.iterations() * burst) state.SkipWithError("cookie rejected");
  meter.Report(state, state.iterations() * burst);
}

const SipBatchPath kVec = DefaultPath();
constexpr SipBatchPath kScal = SipBatchPath::kScalar;
void BM_Cookie_MakeIsnBatch(benchmark::State& s) { BM_MakeBatch(s, Family::kV4, kVec); }
void BM_Cookie_MakeIsnBatch_Scalar(benchmark::State& s) { BM_MakeBatch(s, Family::kV4, kScal); }
void BM_Cookie_MakeIsnBatch_V6(benchmark::State& s) { BM_MakeBatch(s, Family::kV6, kVec); }
void BM_Cookie_MakeIsnBatch_V6_Scalar(benchmark::State& s) { BM_MakeBatch(s, Family::kV6, kScal); }
void BM_Cookie_MakeIsnBatch_Mixed(benchmark::State& s) { BM_MakeBatch(s, Family::kMixed, kVec); }
void BM_Cookie_MakeIsnBatch_Mixed_Scalar(benchmark::State& s) {
  BM_MakeBatch(s, Family::kMixed, kScal);
}
void BM_Cookie_CheckIsnBatch(benchmark::State& s) { BM_CheckBatch(s, Family::kV4, kVec, true); }
void BM_Cookie_CheckIsnBatch_Scalar(benchmark::State& s) {
  BM_CheckBatch(s, Family::kV4, kScal, true);
}
void BM_Cookie_CheckIsnBatch_V6(benchmark::State& s) { BM_CheckBatch(s, Family::kV6, kVec, true); }
void BM_Cookie_CheckIsnBatch_V6_Scalar(benchmark::State& s) {
  BM_CheckBatch(s, Family::kV6, kScal, true);
}
void BM_Cookie_CheckIsnBatch_Invalid(benchmark::State& s) {
  BM_CheckBatch(s, Family::kV4, kVec, false);
}
void BM_Cookie_CheckIsnBatch_Invalid_Scalar(benchmark::State& s) {
  BM_CheckBatch(s, Family::kV4, kScal, false);
}
BENCHMARK(BM_Cookie_MakeIsnBatch)->Arg(8)->Arg(32)->Arg(64);
BENCHMARK(BM_Cookie_MakeIsnBatch_Scalar)->Arg(32);
BENCHMARK(BM_Cookie_MakeIsnBatch_V6)->Arg(32);
BENCHMARK(BM_Cookie_MakeIsnBatch_V6_Scalar)->Arg(32);
BENCHMARK(BM_Cookie_MakeIsnBatch_Mixed)->Arg(32);
BENCHMARK(BM_Cookie_MakeIsnBatch_Mixed_Scalar)->Arg(32);
BENCHMARK(BM_Cookie_CheckIsnBatch)->Arg(32);
BENCHMARK(BM_Cookie_CheckIsnBatch_Scalar)->Arg(32);
BENCHMARK(BM_Cookie_CheckIsnBatch_V6)->Arg(32);
BENCHMARK(BM_Cookie_CheckIsnBatch_V6_Scalar)->Arg(32);
BENCHMARK(BM_Cookie_CheckIsnBatch_Invalid)->Arg(32);
BENCHMARK(BM_Cookie_CheckIsnBatch_Invalid_Scalar)->Arg(32);

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
