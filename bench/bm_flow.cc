// lib/flow: the per-worker flow table at 1K, 64K and 1M flows (Arg =
// occupancy), with moat's real value type (proxy::Flow, two cache lines).
// At 1K everything sits in L1/L2; at 1M the buckets (8 B each) and keys
// (40 B) are far beyond the LLC of this machine, so the numbers show what a
// cache miss per lookup costs and how much the burst prefetch buys back.
//
//   Lookup          hits, random order, one at a time
//   LookupBurst     hits, hash + prefetch a burst of 32 first (the engine's
//                   ProcessBurst pattern, after DPDK's l3fwd)
//   LookupMiss      keys not in the table (a SYN or flood packet's probe)
//   Insert/Erase    4096 new flows inserted (or erased) on top of the
//                   occupancy; the opposite operation runs untimed
//   Churn           insert one, erase the oldest: steady state under
//                   connection churn, occupancy constant
//
// Keys and hashes are computed before the timed loop, except where the
// hash is part of the operation measured (HashKey).
//
//   build/bench/moat_bench --benchmark_filter=BM_Flow_

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "bench/bench_util.h"
#include "benchmark/benchmark.h"
#include "moat/flow/flow_key.h"
#include "moat/flow/flow_table.h"
#include "moat/proxy/flow_state.h"

namespace moat::flow {
namespace {

using Table = FlowTable<proxy::Flow>;
constexpr uint32_t kBatch = 4096;
constexpr int kBurst = 32;
constexpr uint64_t kSeed = 0x243f6a8885a308d3ull;

// Distinct IPv4 client tuples towards one service, as a flood or a busy
// VIP produces: source address and port vary.
std::vector<FlowKey> MakeKeys(size_t n, uint8_t salt) {
  std::vector<FlowKey> keys(n);
  const uint8_t server[4] = {198, 18, 0, 2};
  for (size_t i = 0; i < n; ++i) {
    // The low 24 bits of i in the address keep keys unique (n <= 2^24);
    // the salt keeps different sets disjoint.
    const uint8_t client[4] = {salt, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8),
                               static_cast<uint8_t>(i)};
    keys[i] =
        FlowKey::Make(4, client, static_cast<uint16_t>(1024 + (i * 7919) % 60000), server, 80);
  }
  return keys;
}

struct Filled {
  std::unique_ptr<Table> table;
  std::vector<FlowKey> keys;
  std::vector<uint32_t> hashes;
};

// A table holding `occupancy` flows, with room for kBatch more.
Filled Fill(uint32_t occupancy) {
  Filled f;
  f.table = *Table::Create(occupancy + kBatch, kSeed);
  f.keys = MakeKeys(occupancy, 198);
  f.hashes.resize(occupancy);
  for (uint32_t i = 0; i < occupancy; ++i) {
    f.hashes[i] = f.table->Hash(f.keys[i]);
    f.table->Insert(f.keys[i], f.hashes[i]);
  }
  return f;
}

// A random visiting order, so hits do not walk memory sequentially.
std::vector<uint32_t> Shuffled(uint32_t n) {
  std::vector<uint32_t> order(n);
  for (uint32_t i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  return order;
}

void BM_Flow_HashKey(benchmark::State& state) {
  const auto keys = MakeKeys(1024, 198);
  size_t i = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    uint64_t h = HashFlowKey(keys[i++ & 1023], kSeed);
    benchmark::DoNotOptimize(h);
  }
  meter.Report(state, state.iterations());
}
BENCHMARK(BM_Flow_HashKey);

void BM_Flow_Lookup(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Filled f = Fill(n);
  const auto order = Shuffled(n);
  size_t i = 0;
  int64_t misses = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    const uint32_t k = order[i];
    i = i + 1 == n ? 0 : i + 1;
    misses += f.table->Find(f.keys[k], f.hashes[k]) == nullptr;
  }
  if (misses) state.SkipWithError("lookup missed a key that is in the table");
  meter.Report(state, state.iterations());
}
BENCHMARK(BM_Flow_Lookup)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

void BM_Flow_LookupBurst(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Filled f = Fill(n);
  const auto order = Shuffled(n);
  size_t i = 0;
  int64_t misses = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    uint32_t k[kBurst];
    for (int j = 0; j < kBurst; ++j) {
      k[j] = order[i];
      i = i + 1 == n ? 0 : i + 1;
      f.table->Prefetch(f.hashes[k[j]]);
    }
    for (int j = 0; j < kBurst; ++j) {
      misses += f.table->Find(f.keys[k[j]], f.hashes[k[j]]) == nullptr;
    }
  }
  if (misses) state.SkipWithError("lookup missed a key that is in the table");
  meter.Report(state, state.iterations() * kBurst);
}
BENCHMARK(BM_Flow_LookupBurst)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

void BM_Flow_LookupMiss(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Filled f = Fill(n);
  const auto absent = MakeKeys(kBatch, 199);
  std::vector<uint32_t> hashes(kBatch);
  for (uint32_t i = 0; i < kBatch; ++i) hashes[i] = f.table->Hash(absent[i]);
  size_t i = 0;
  int64_t hits = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    hits += f.table->Find(absent[i], hashes[i]) != nullptr;
    i = (i + 1) & (kBatch - 1);
  }
  if (hits) state.SkipWithError("found a key that was never inserted");
  meter.Report(state, state.iterations());
}
BENCHMARK(BM_Flow_LookupMiss)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// kBatch flows inserted on top of the occupancy and erased again; only
// `timed` (the insert or the erase) is measured.
enum class Op { kInsert, kErase };
void BM_InsertErase(benchmark::State& state, Op timed) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  Filled f = Fill(n);
  const auto extra = MakeKeys(kBatch, 200);
  std::vector<uint32_t> hashes(kBatch);
  for (uint32_t i = 0; i < kBatch; ++i) hashes[i] = f.table->Hash(extra[i]);
  std::vector<proxy::Flow*> added(kBatch);
  auto insert = [&] {
    for (uint32_t i = 0; i < kBatch; ++i) added[i] = f.table->Insert(extra[i], hashes[i]);
  };
  auto erase = [&] {
    for (uint32_t i = 0; i < kBatch; ++i) f.table->Erase(added[i]);
  };
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    if (timed == Op::kInsert) insert();
    meter.Pause();
    state.PauseTiming();
    if (timed == Op::kInsert)
      erase();
    else
      insert();
    state.ResumeTiming();
    meter.Resume();
    if (timed == Op::kErase) erase();
  }
  meter.Report(state, state.iterations() * kBatch);
}
void BM_Flow_Insert(benchmark::State& s) { BM_InsertErase(s, Op::kInsert); }
void BM_Flow_Erase(benchmark::State& s) { BM_InsertErase(s, Op::kErase); }
BENCHMARK(BM_Flow_Insert)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_Flow_Erase)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

// Insert a new flow and erase the oldest one, FIFO: a table at constant
// occupancy under connection churn. Keys cycle through 2x the occupancy so
// every insert is of a key absent at that moment.
void BM_Flow_Churn(benchmark::State& state) {
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  auto table = *Table::Create(n + kBatch, kSeed);
  const auto keys = MakeKeys(2 * size_t{n}, 201);
  std::vector<uint32_t> hashes(2 * size_t{n});
  for (size_t i = 0; i < keys.size(); ++i) hashes[i] = table->Hash(keys[i]);
  std::vector<proxy::Flow*> live(n);  // ring of live flows, oldest at `head`
  for (uint32_t i = 0; i < n; ++i) live[i] = table->Insert(keys[i], hashes[i]);
  size_t next = n, head = 0;
  moat::bench::PacketMeter meter;
  for (auto _ : state) {
    table->Erase(live[head]);
    live[head] = table->Insert(keys[next], hashes[next]);
    head = head + 1 == n ? 0 : head + 1;
    next = next + 1 == keys.size() ? 0 : next + 1;
  }
  meter.Report(state, state.iterations());
}
BENCHMARK(BM_Flow_Churn)->Arg(1 << 10)->Arg(1 << 16)->Arg(1 << 20);

}  // namespace
}  // namespace moat::flow
