#include "moat/dataplane/report.h"

#include <arpa/inet.h>
#include <rte_ethdev.h>
#include <rte_telemetry.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <vector>

namespace moat::dataplane {

namespace {

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

const char* SideName(int side) { return side == 0 ? "client" : "server"; }

// Parse errors are reported as parse_<name> under drop_parse.
void PrintCounters(std::FILE* out, const CounterSnapshot& s, bool all) {
  std::fprintf(out, "  moat counters (all workers)\n");
  for (size_t i = 0; i < proxy::kNumCounters; ++i) {
    if (all || s.engine[i] != 0) {
      std::fprintf(out, "    %-32s %" PRIu64 "\n", proxy::kCounterNames[i], s.engine[i]);
    }
  }
  for (size_t i = 1; i < net::kNumParseErrors; ++i) {
    if (s.parse[i] != 0) {
      std::fprintf(out, "    parse_%-26s %" PRIu64 "\n",
                   net::ParseErrorName(static_cast<net::ParseError>(i)), s.parse[i]);
    }
  }
  for (size_t i = 0; i < kNumDataplaneCounters; ++i) {
    if (all || s.dataplane[i] != 0) {
      std::fprintf(out, "    %-32s %" PRIu64 "\n", kDataplaneCounterNames[i], s.dataplane[i]);
    }
  }
}

// -Dstage_cycles=true builds: where each worker's TSC cycles went, per
// frame received, summed over workers. "other" is the loop itself (the
// round's clock reads, the stop flag) and anything between stages; "loop"
// is the whole Run() loop, so the lines add up to it. One line per stage,
// "stage NAME CYCLES_PER_FRAME ITEMS", for bench/throughput/run --stages.
[[maybe_unused]] void PrintStageCycles(std::FILE* out, const Dataplane& dp) {
  StageStats sum;
  uint64_t frames = 0;
  for (const auto& w : dp.workers()) {
    const StageStats& s = w->stage_stats();
    for (size_t i = 0; i < kNumStages; ++i) {
      sum.cycles[i] += s.cycles[i];
      sum.items[i] += s.items[i];
    }
    sum.loop_cycles += s.loop_cycles;
    sum.rounds += s.rounds;
    frames += w->stats().Load(DpCounter::k_rx_frames);
  }
  const double per = frames != 0 ? 1.0 / static_cast<double>(frames) : 0;
  std::fprintf(
      out,
      "  worker cycles per received frame (%" PRIu64 " frames, %" PRIu64
      " rounds, %.1f frames/round)\n",
      frames, sum.rounds,
      sum.rounds != 0 ? static_cast<double>(frames) / static_cast<double>(sum.rounds) : 0.0);
  uint64_t staged = 0;
  for (size_t i = 0; i < kNumStages; ++i) {
    staged += sum.cycles[i];
    std::fprintf(out, "    stage %-10s %8.1f %12" PRIu64 "   %s\n", kStageNames[i],
                 static_cast<double>(sum.cycles[i]) * per, sum.items[i], kStageHelp[i]);
  }
  const uint64_t other = sum.loop_cycles > staged ? sum.loop_cycles - staged : 0;
  std::fprintf(out, "    stage %-10s %8.1f %12u   %s\n", "other", static_cast<double>(other) * per,
               0u, "the loop and clock reads between stages");
  std::fprintf(out, "    stage %-10s %8.1f %12" PRIu64 "   %s\n", "loop",
               static_cast<double>(sum.loop_cycles) * per, frames, "the whole worker loop");
}

std::atomic<const Dataplane*> g_dp{nullptr};

void FillDict(const CounterSnapshot& s, rte_tel_data* d) {
  rte_tel_data_start_dict(d);
  for (size_t i = 0; i < proxy::kNumCounters; ++i) {
    rte_tel_data_add_dict_u64(d, proxy::kCounterNames[i], s.engine[i]);
  }
  char name[64];
  for (size_t i = 1; i < net::kNumParseErrors; ++i) {
    std::snprintf(name, sizeof(name), "parse_%s",
                  net::ParseErrorName(static_cast<net::ParseError>(i)));
    rte_tel_data_add_dict_u64(d, name, s.parse[i]);
  }
  for (size_t i = 0; i < kNumDataplaneCounters; ++i) {
    rte_tel_data_add_dict_u64(d, kDataplaneCounterNames[i], s.dataplane[i]);
  }
}

// Process-level: the reload counters and the configuration generation.
void AddReloadCounters(const Dataplane* dp, rte_tel_data* d) {
  const ConfigChannel& ch = dp->config_channel();
  rte_tel_data_add_dict_u64(d, "reload_ok", ch.reload_ok());
  rte_tel_data_add_dict_u64(d, "reload_failed", ch.reload_failed());
  rte_tel_data_add_dict_u64(d, "config_generation", ch.generation());
  rte_tel_data_add_dict_u64(d, "config_generation_applied", ch.applied());
}

int TelStats(const char*, const char*, rte_tel_data* d) {
  const Dataplane* dp = g_dp.load(std::memory_order_acquire);
  if (dp == nullptr) return -1;
  FillDict(dp->Snapshot(), d);
  AddReloadCounters(dp, d);
  return 0;
}

std::mutex g_reload_mu;
ReloadHandler g_reload;

int TelReload(const char*, const char*, rte_tel_data* d) {
  const Dataplane* dp = g_dp.load(std::memory_order_acquire);
  ReloadHandler handler;
  {
    std::lock_guard<std::mutex> lock(g_reload_mu);
    handler = g_reload;
  }
  if (dp == nullptr || !handler) return -1;
  const ReloadResult r = handler();
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "result", r.ok ? "ok" : "failed");
  // Telemetry strings are short (RTE_TEL_MAX_STRING_LEN); the log has the
  // whole line.
  std::string msg = r.message.substr(0, RTE_TEL_MAX_STRING_LEN - 1);
  rte_tel_data_add_dict_string(d, "message", msg.c_str());
  AddReloadCounters(dp, d);
  return 0;
}

int TelWorker(const char*, const char* params, rte_tel_data* d) {
  const Dataplane* dp = g_dp.load(std::memory_order_acquire);
  if (dp == nullptr || params == nullptr || *params == '\0') return -1;
  char* end = nullptr;
  const unsigned long w = std::strtoul(params, &end, 10);
  if (*end != '\0' || w >= dp->workers().size()) return -1;
  FillDict(dp->WorkerSnapshot(w), d);
  rte_tel_data_add_dict_u64(d, "flows_in_table", dp->workers()[w]->flow_count());
  rte_tel_data_add_dict_u64(d, "queue", dp->workers()[w]->queue());
  return 0;
}

// What one backend record says about one option: "no" only when the
// backend refused it the last time moat asked.
const char* Answer(const proxy::BackendInfo& b, uint8_t bit) {
  if (!(b.asked & bit)) return "unknown";
  return (b.has & bit) ? "yes" : "no";
}

// /moat/backends[,worker]: what each worker learned about its backends
// (proxy::BackendTable), one string per record (telemetry dict keys allow
// neither dots nor colons). Copied by the worker itself at its next timer
// tick (backend_view.h), so reading never races it.
int TelBackends(const char*, const char* params, rte_tel_data* d) {
  const Dataplane* dp = g_dp.load(std::memory_order_acquire);
  if (dp == nullptr) return -1;
  size_t first = 0, last = dp->workers().size();
  if (params != nullptr && *params != '\0') {
    char* end = nullptr;
    const unsigned long w = std::strtoul(params, &end, 10);
    if (*end != '\0' || w >= dp->workers().size()) return -1;
    first = w;
    last = w + 1;
  }
  rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
  std::vector<proxy::BackendInfo> records;
  for (size_t w = first; w < last; ++w) {
    uint64_t now_ns = 0;
    if (!dp->workers()[w]->CopyBackends(std::chrono::milliseconds(500), &records, &now_ns)) {
      return -1;  // the worker is not running its loop
    }
    for (const proxy::BackendInfo& b : records) {
      char addr[INET6_ADDRSTRLEN];
      inet_ntop(b.addr_len == 16 ? AF_INET6 : AF_INET, b.addr, addr, sizeof(addr));
      // At most ~115 characters (a full IPv6 address, "unknown" thrice).
      char line[2 * RTE_TEL_MAX_STRING_LEN];
      const uint64_t age_s = (now_ns - b.learned_ns) / 1000000000ull;
      std::snprintf(line, sizeof(line),
                    "worker=%zu backend=%s%s%s:%u mss=%u ts=%s sack=%s ecn=%s "
                    "age_s=%" PRIu64 "%s",
                    w, b.addr_len == 16 ? "[" : "", addr, b.addr_len == 16 ? "]" : "", b.port,
                    b.mss, Answer(b, proxy::BackendInfo::kTs), Answer(b, proxy::BackendInfo::kSack),
                    Answer(b, proxy::BackendInfo::kEcn), age_s,
                    now_ns - b.learned_ns >= proxy::BackendTable::kTtlNs ? " expired" : "");
      // Full (RTE_TEL_MAX_ARRAY_ENTRIES): the rest is left out.
      if (rte_tel_data_add_array_string(d, line) != 0) return 0;
    }
  }
  return 0;
}

int TelInfo(const char*, const char*, rte_tel_data* d) {
  const Dataplane* dp = g_dp.load(std::memory_order_acquire);
  if (dp == nullptr) return -1;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_u64(d, "workers", dp->workers().size());
  rte_tel_data_add_dict_u64(d, "client_port", dp->port(proxy::Side::kClient).id);
  rte_tel_data_add_dict_u64(d, "server_port", dp->port(proxy::Side::kServer).id);
  return 0;
}

}  // namespace

StatsReporter::StatsReporter(const Dataplane* dp)
    : dp_(dp), start_ns_(MonotonicNs()), last_ns_(start_ns_) {
  for (int s = 0; s < 2; ++s) {
    rte_eth_stats st;
    if (rte_eth_stats_get(dp_->port(static_cast<proxy::Side>(s)).id, &st) == 0) {
      prev_[s].ipackets = st.ipackets;
      prev_[s].opackets = st.opackets;
    }
  }
}

void StatsReporter::Print(std::FILE* out, bool final) {
  const uint64_t now = MonotonicNs();
  const double dt = static_cast<double>(now - last_ns_) / 1e9;
  last_ns_ = now;
  std::fprintf(out, "\n  ######################## moat %s (%.1f s) ########################\n",
               final ? "final stats" : "stats", static_cast<double>(now - start_ns_) / 1e9);
  for (int s = 0; s < 2; ++s) {
    const Port& p = dp_->port(static_cast<proxy::Side>(s));
    rte_eth_stats st{};
    rte_eth_stats_get(p.id, &st);
    const double rx_pps = dt > 0 ? static_cast<double>(st.ipackets - prev_[s].ipackets) / dt : 0;
    const double tx_pps = dt > 0 ? static_cast<double>(st.opackets - prev_[s].opackets) / dt : 0;
    prev_[s].ipackets = st.ipackets;
    prev_[s].opackets = st.opackets;
    std::fprintf(out, "  port %u (%s, %s)\n", p.id, SideName(s), p.name.c_str());
    std::fprintf(out,
                 "    RX-packets: %-12" PRIu64 " RX-missed: %-10" PRIu64 " RX-nombuf: %-10" PRIu64
                 " RX-errors: %-8" PRIu64 " RX-pps: %.0f\n",
                 st.ipackets, st.imissed, st.rx_nombuf, st.ierrors, rx_pps);
    std::fprintf(out,
                 "    TX-packets: %-12" PRIu64 " TX-errors: %-10" PRIu64
                 "                                          TX-pps: %.0f\n",
                 st.opackets, st.oerrors, tx_pps);
  }
  const CounterSnapshot snap = dp_->Snapshot();
  PrintCounters(out, snap, final);
  if (final) {
    for (const auto& w : dp_->workers()) {
      std::fprintf(out, "  worker %u (queue %u): %u flows in table\n", w->index(), w->queue(),
                   w->flow_count());
    }
    if constexpr (kStageCycles) PrintStageCycles(out, *dp_);
  }
  std::fprintf(out, "  ##########################################################################\n");
  std::fflush(out);
}

absl::Status RegisterTelemetry(const Dataplane* dp) {
  g_dp.store(dp, std::memory_order_release);
  static bool registered = false;
  if (registered) return absl::OkStatus();
  if (rte_telemetry_register_cmd("/moat/stats", TelStats,
                                 "moat counters summed over workers. Takes no parameters") != 0 ||
      rte_telemetry_register_cmd("/moat/worker", TelWorker,
                                 "moat counters of one worker. Parameters: int worker_id") != 0 ||
      rte_telemetry_register_cmd("/moat/backends", TelBackends,
                                 "what each worker learned about its backends, one line per "
                                 "backend. Parameters: int worker_id (optional)") != 0 ||
      rte_telemetry_register_cmd("/moat/info", TelInfo,
                                 "moat workers and ports. Takes no parameters") != 0 ||
      rte_telemetry_register_cmd("/moat/reload", TelReload,
                                 "re-read the flagfile and apply --protect, the rate limit and "
                                 "--allow/--deny, like SIGHUP. Takes no parameters") != 0) {
    return absl::InternalError("cannot register the /moat/* telemetry commands");
  }
  registered = true;
  return absl::OkStatus();
}

void UnregisterTelemetry() { g_dp.store(nullptr, std::memory_order_release); }

void SetReloadHandler(ReloadHandler handler) {
  std::lock_guard<std::mutex> lock(g_reload_mu);
  g_reload = std::move(handler);
}

}  // namespace moat::dataplane
