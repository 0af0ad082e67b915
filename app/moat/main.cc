// moat: flags -> config -> EAL -> ports -> workers -> signals.
//
//   build/app/moat [EAL options] -- [moat flags]
//   build/app/moat --check --flagfile=FILE     (validate only, no EAL)
//
// SIGHUP (or the telemetry command /moat/reload) re-reads the flagfile and
// applies the flags in kReloadable to the running workers (Reload below);
// a file that does not parse, or that changes any other flag, changes
// nothing and is counted as reload_failed.
//
// moat's own flags are parsed and validated before EAL starts, so a typo or
// a bad --protect fails in one line without touching hugepages or ports
// (--check stops right there, like `nginx -t`). The metrics socket is
// bound then too. Then EAL, the ports (checked, configured, started) and
// one worker per queue; the main lcore only prints stats and waits for
// SIGINT/SIGTERM, and the metrics thread (pinned with it) serves /metrics.

#include <gflags/gflags.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_pdump.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "moat/cookie/key_schedule.h"
#include "moat/dataplane/dataplane.h"
#include "moat/dataplane/log.h"
#include "moat/dataplane/metrics.h"
#include "moat/dataplane/report.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"

// The command-line contract (docs/design.md): these names are relied on.
DEFINE_uint32(client_port, 0, "ethdev port facing the clients (EAL probe order)");
DEFINE_uint32(server_port, 1, "ethdev port facing the backends (EAL probe order)");
DEFINE_string(protect, "",
              "protected services, ADDR[/LEN][:PORT[-PORT]],... e.g. "
              "198.18.0.2:80,[2001:2::2]:80 (required)");
DEFINE_uint32(mss, 1460, "MSS moat advertises in its SYN-ACK (IPv6: mss - 20); must not "
                         "exceed the backends' MSS, nor --mtu - 40");
DEFINE_uint32(mtu, 1500,
              "MTU of both ports, 1280-9000 (1280: IPv6's minimum; 9000: jumbo frames): the "
              "largest IP packet moat carries. Sets the ports' MTU and the mbuf size; --mss "
              "must be at most mtu - 40");
DEFINE_uint32(wscale, 7, "window scale moat advertises in its SYN-ACK (0-14)");
DEFINE_bool(sack, true, "advertise SACK-permitted in the SYN-ACK");
DEFINE_bool(timestamps, true, "answer timestamps in the SYN-ACK (carries option bits in TSval)");
DEFINE_bool(ecn, true, "honour ECN setup from clients when it can be carried in the TSval");
DEFINE_uint32(stats_period, 0, "seconds between testpmd-style stats tables on stdout; 0 = off");
DEFINE_string(cookie_secret_file, "",
              "file with a >= 32-byte master secret shared by a fleet of moat instances "
              "(mode 0600 or 0400: group or other access is refused); random when absent");

// Sizing and timers.
DEFINE_uint32(queues, 0, "RX/TX queue pairs per port, one worker each; 0 = one per worker lcore");
DEFINE_uint32(rx_desc, 1024, "RX descriptors per queue");
DEFINE_uint32(tx_desc, 1024, "TX descriptors per queue");
DEFINE_uint32(pool_mbufs, 0,
              "mbufs per NUMA socket; 0 = sized from the rings (raise for net_pcap infinite_rx)");
DEFINE_uint32(burst, 32, "RX burst size (1-64)");
// TX flush policy (lib/dataplane/frame_path.h): a TX buffer goes out when
// it holds a full burst, and at the end of every poll round in which some
// RX queue returned less than a full burst, so at low rates a frame leaves
// in the round it arrived in. Only while every RX queue keeps returning
// full bursts do partial buffers wait for more, at most this long.
DEFINE_uint32(tx_drain_us, 100,
              "at full load (every RX queue returning full bursts), the longest a frame waits "
              "in a partly filled TX buffer (microseconds); below full load frames leave in the "
              "poll round they arrived in");
DEFINE_uint32(idle_sleep_us, 0,
              "when > 0, an idle worker sleeps this long instead of busy-polling "
              "(small machines; adds up to this much latency)");
DEFINE_uint32(flow_capacity, 65536, "flows per worker (fixed at start-up)");
DEFINE_uint32(held_slots, 4096,
              "client segments per worker kept while backend handshakes run");
DEFINE_uint32(backend_syn_rto_ms, 1000, "first backend SYN retransmission timeout (doubles)");
DEFINE_uint32(backend_syn_retries, 3, "backend SYN retransmissions before the client gets a RST");
DEFINE_uint32(time_wait_ms, 5000, "how long a closed flow lingers (late segments, reuse)");
DEFINE_uint32(idle_timeout_s, 300, "established flows idle this long are reset and removed");
DEFINE_uint32(half_closed_timeout_s, 60, "half-closed flows idle this long are removed");
DEFINE_uint32(key_rotation_s, 3600, "cookie key rotation period (the previous key stays valid)");
DEFINE_uint32(syn_cache_entries, 4096,
              "pending handshakes per worker whose exact options the SYN cache keeps "
              "(64 B each, rounded up to buckets of 8); 0 = cookies only");
DEFINE_uint32(syn_flood_rate, 20000,
              "SYNs per second per worker above which it answers with cookies only "
              "(also when the SYN cache is 75% full); back after a calm second below a "
              "quarter of it");
DEFINE_bool(fastopen, false,
            "TCP Fast Open (RFC 7413) for the protected services: cookies in SYN-ACKs, and "
            "data in a SYN with a valid cookie goes to the backend one round trip early. "
            "Only for services whose first request is idempotent (README)");
DEFINE_uint32(fastopen_max_pending, 1024,
              "Fast Open flows per worker that may wait for their backend at once");
DEFINE_bool(learn_backends, true,
            "offer clients only the options each backend's SYN-ACKs agreed to (timestamps, "
            "SACK, ECN, MSS; the flags stay the upper bound; records age out after 10 min)");
DEFINE_bool(verify_checksums, true, "verify IPv4 and TCP checksums of protected traffic");

// Anti-reflection and lists (reloadable).
DEFINE_uint32(synack_rate, 0,
              "at most this many SYN-ACKs per second (bursts of as many) towards one client "
              "source prefix; excess SYNs are dropped (drop_synack_rate); 0 = off");
DEFINE_uint32(synack_prefix_v4, 24, "IPv4 source prefix length --synack_rate counts by (0-32)");
DEFINE_uint32(synack_prefix_v6, 64, "IPv6 source prefix length --synack_rate counts by (0-128)");
DEFINE_string(allow, "",
              "client source prefixes never rate limited, ADDR[/LEN],... e.g. "
              "198.18.0.0/24,2001:2::/48");
DEFINE_string(deny, "",
              "client source prefixes whose SYNs are dropped (drop_denied), ADDR[/LEN],...");

// Operations.
DEFINE_string(metrics_listen, "",
              "serve Prometheus metrics on http://ADDR:PORT/metrics, ADDR:PORT being "
              "127.0.0.1:9101 or [::1]:9101 (numeric; bound only there); empty = off");
DEFINE_bool(check, false,
            "validate the flags (ranges, --protect, the secret file, --metrics_listen) and exit: "
            "0 and 'configuration OK', or the error; needs no EAL options "
            "(moat --check --flagfile=FILE)");

#ifndef MOAT_VERSION
#define MOAT_VERSION "unknown"
#endif

namespace {

volatile std::sig_atomic_t g_quit = 0;
volatile std::sig_atomic_t g_hup = 0;

void OnSignal(int) { g_quit = 1; }
void OnHangup(int) { g_hup = 1; }

uint64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// `--check` or `--check=true` (either dash count, as gflags takes them).
bool IsCheckFlag(const char* a) {
  if (*a == '-') ++a;
  if (*a == '-') ++a;
  return std::strcmp(a, "check") == 0 || std::strcmp(a, "check=true") == 0;
}

// A flagfile holds one flag a line ("--name=value"), '#' comments and
// blank lines (gflags' format). `list` is --flagfile's value,
// comma-separated files; nested --flagfile lines are followed up to 8
// deep. `visit` gets every other flag line (leading blanks removed), its
// flag name, and "--flagfile=PATH line N: " to start its errors with; the
// first error ends the walk. The one reader for --check, start-up and
// reloads, so they cannot disagree on what a file says.
using FlagLineVisitor = std::function<absl::Status(
    const std::string& line, const std::string& name, const std::string& where)>;

absl::Status ForEachFlagfileLine(const std::string& list, int depth,
                                 const FlagLineVisitor& visit) {
  if (depth > 8) return absl::InvalidArgumentError("--flagfile nests more than 8 deep");
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    const std::string path = list.substr(start, comma - start);
    start = comma + 1;
    if (path.empty()) continue;
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--flagfile=%s: %s", path, std::strerror(errno)));
    }
    char buf[4096];
    int line_no = 0;
    absl::Status status;
    while (status.ok() && std::fgets(buf, sizeof(buf), f) != nullptr) {
      ++line_no;
      std::string line(buf);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      const size_t first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] != '-') continue;  // blank, comment
      line = line.substr(first);
      const size_t name_at = std::min(line.find_first_not_of('-'), line.size());
      const size_t eq = std::min(line.find('=', name_at), line.size());
      std::string name = line.substr(name_at, eq - name_at);
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
      if (name == "flagfile") {
        status = ForEachFlagfileLine(eq < line.size() ? line.substr(eq + 1) : "", depth + 1, visit);
      } else {
        status = visit(line, name, absl::StrFormat("--flagfile=%s line %d: ", path, line_no));
      }
    }
    std::fclose(f);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

// Every name must be a flag of this program: a typo in a deployed
// flagfile must not pass silently.
absl::Status CheckFlagfiles(const std::string& list) {
  return ForEachFlagfileLine(
      list, 0, [](const std::string&, const std::string& name, const std::string& where) {
        gflags::CommandLineFlagInfo info;
        const bool known =
            gflags::GetCommandLineFlagInfo(name.c_str(), &info) ||
            (name.starts_with("no") && gflags::GetCommandLineFlagInfo(name.c_str() + 2, &info) &&
             info.type == "bool");
        if (known) return absl::OkStatus();
        return absl::InvalidArgumentError(absl::StrFormat(
            "%sunknown flag '--%s' (moat -h lists the flags)", where, name));
      });
}

[[noreturn]] void Die(const absl::Status& s) {
  std::fprintf(stderr, "moat: error: %s\n", std::string(s.message()).c_str());
  std::exit(1);
}

void PrintMoatUsage(const char* prog) {
  std::printf(
      "\nUsage: %s [EAL options] -- [moat flags]\n"
      "e.g.   %s -l 0,1 --no-pci --vdev=net_af_packet0,iface=veth0 --vdev=net_af_packet1,iface=veth1 "
      "-- --protect=198.18.0.2:80 --stats_period=1\n\nmoat flags (also from --flagfile=FILE):\n",
      prog, prog);
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  for (const auto& f : flags) {
    if (f.filename.find("app/moat/") == std::string::npos) continue;
    std::printf("  --%-22s %s (default: %s)\n", f.name.c_str(), f.description.c_str(),
                f.default_value.c_str());
  }
  std::printf("\n");
}

absl::Status CheckRange(const char* flag, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--%s=%u is out of range [%u, %u]", flag, v, lo, hi));
  }
  return absl::OkStatus();
}

absl::Status BuildConfig(moat::proxy::EngineConfig* ec, moat::dataplane::DataplaneConfig* dc,
                         std::optional<moat::dataplane::ListenAddress>* metrics) {
  if (FLAGS_protect.empty()) {
    return absl::InvalidArgumentError(
        "--protect is required, e.g. --protect=198.18.0.2:80,[2001:2::2]:80");
  }
  auto services = moat::proxy::ParseProtect(FLAGS_protect);
  if (!services.ok()) return services.status();
  ec->services = *services;
  // Flags wider than the config fields are range-checked before narrowing.
  struct {
    const char* name;
    uint64_t v, lo, hi;
  } const ranges[] = {
      {"client_port", FLAGS_client_port, 0, UINT16_MAX},
      {"server_port", FLAGS_server_port, 0, UINT16_MAX},
      {"mss", FLAGS_mss, 536, 9000},
      {"mtu", FLAGS_mtu, moat::proxy::kMinMtu, moat::proxy::kMaxMtu},
      {"wscale", FLAGS_wscale, 0, 14},
      {"stats_period", FLAGS_stats_period, 0, 86400},
      {"queues", FLAGS_queues, 0, 128},
      {"rx_desc", FLAGS_rx_desc, 32, 16384},
      {"tx_desc", FLAGS_tx_desc, 32, 16384},
      {"pool_mbufs", FLAGS_pool_mbufs, 0, 16u << 20},
      {"burst", FLAGS_burst, 1, moat::dataplane::Worker::kMaxBurst},
      {"tx_drain_us", FLAGS_tx_drain_us, 1, 100000},
      {"idle_sleep_us", FLAGS_idle_sleep_us, 0, 100000},
      {"synack_rate", FLAGS_synack_rate, 0, moat::proxy::kMaxSynAckRate},
      {"synack_prefix_v4", FLAGS_synack_prefix_v4, 0, 32},
      {"synack_prefix_v6", FLAGS_synack_prefix_v6, 0, 128},
  };
  for (const auto& r : ranges) {
    if (auto s = CheckRange(r.name, r.v, r.lo, r.hi); !s.ok()) return s;
  }
  // Also checked by Dataplane::Create; here so --check catches it too.
  if (FLAGS_client_port == FLAGS_server_port) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--client_port and --server_port are both %u: moat sits between two ports",
                        FLAGS_client_port));
  }
  ec->mss = static_cast<uint16_t>(FLAGS_mss);
  ec->mtu = static_cast<uint16_t>(FLAGS_mtu);
  ec->wscale = static_cast<uint8_t>(FLAGS_wscale);
  ec->sack = FLAGS_sack;
  ec->timestamps = FLAGS_timestamps;
  ec->ecn = FLAGS_ecn;
  ec->flow_capacity = FLAGS_flow_capacity;
  ec->held_slots = FLAGS_held_slots;
  ec->backend_syn_rto_ms = FLAGS_backend_syn_rto_ms;
  ec->backend_syn_retries = FLAGS_backend_syn_retries;
  ec->time_wait_ms = FLAGS_time_wait_ms;
  ec->idle_timeout_s = FLAGS_idle_timeout_s;
  ec->half_closed_timeout_s = FLAGS_half_closed_timeout_s;
  ec->key_rotation_s = FLAGS_key_rotation_s;
  ec->verify_checksums = FLAGS_verify_checksums;
  ec->syn_cache_entries = FLAGS_syn_cache_entries;
  ec->syn_flood_rate = FLAGS_syn_flood_rate;
  ec->fastopen = FLAGS_fastopen;
  ec->fastopen_max_pending = FLAGS_fastopen_max_pending;
  ec->learn_backends = FLAGS_learn_backends;
  ec->synack_rate = FLAGS_synack_rate;
  ec->synack_prefix_v4 = static_cast<uint8_t>(FLAGS_synack_prefix_v4);
  ec->synack_prefix_v6 = static_cast<uint8_t>(FLAGS_synack_prefix_v6);
  auto allow = moat::proxy::ParsePrefixList("allow", FLAGS_allow);
  if (!allow.ok()) return allow.status();
  ec->allow = *allow;
  auto deny = moat::proxy::ParsePrefixList("deny", FLAGS_deny);
  if (!deny.ok()) return deny.status();
  ec->deny = *deny;
  if (!FLAGS_cookie_secret_file.empty()) {
    auto secret = moat::cookie::LoadSecretFile(FLAGS_cookie_secret_file);
    if (!secret.ok()) return secret.status();
    ec->secret = *secret;
  } else {
    ec->secret = moat::cookie::RandomSecret();
  }
  if (auto s = moat::proxy::ValidateConfig(*ec); !s.ok()) return s;

  dc->client_port = static_cast<uint16_t>(FLAGS_client_port);
  dc->server_port = static_cast<uint16_t>(FLAGS_server_port);
  dc->queues = static_cast<uint16_t>(FLAGS_queues);
  dc->rx_desc = static_cast<uint16_t>(FLAGS_rx_desc);
  dc->tx_desc = static_cast<uint16_t>(FLAGS_tx_desc);
  dc->pool_mbufs = FLAGS_pool_mbufs;
  dc->mtu = static_cast<uint16_t>(FLAGS_mtu);
  dc->worker.burst = static_cast<uint16_t>(FLAGS_burst);
  dc->worker.tx_drain_us = FLAGS_tx_drain_us;
  dc->worker.idle_sleep_us = FLAGS_idle_sleep_us;

  if (!FLAGS_metrics_listen.empty()) {
    auto addr = moat::dataplane::ParseListenAddress("metrics_listen", FLAGS_metrics_listen);
    if (!addr.ok()) return addr.status();
    *metrics = *std::move(addr);
  }
  return absl::OkStatus();
}

// The process-wide gauges of /metrics; one AddGauge line each.
void AddProcessGauges(moat::dataplane::DataplaneMetrics* m, size_t workers) {
  const double start_s = static_cast<double>(RealtimeNs()) / 1e9;
  m->AddGauge("workers", "worker lcores, one engine and one RX queue pair each",
              [workers] { return static_cast<double>(workers); });
  m->AddGauge("start_time_seconds", "when moat started, seconds since the Unix epoch",
              [start_s] { return start_s; });
  // Values, not the flags: a reload re-parses the flags on another thread.
  const uint32_t rotation_s = FLAGS_key_rotation_s;
  m->AddGauge("key_rotation_seconds", "cookie key rotation period (--key_rotation_s)",
              [rotation_s] { return static_cast<double>(rotation_s); });
  // The engines' key epoch is a pure function of wall-clock time and the
  // rotation period (cookie/key_schedule.h: that is how a fleet agrees on
  // it), so a KeySchedule built with the same period computes the same
  // epoch every engine uses, without reaching into an engine. Its secret is
  // a dummy: only epoch() is read, never a key.
  m->AddGauge("key_epoch", "cookie key epoch now (wall clock / rotation period)",
              [ks = moat::cookie::KeySchedule(moat::cookie::MasterSecret{},
                                              static_cast<uint64_t>(rotation_s) *
                                                  moat::cookie::kNsPerSecond)]() mutable {
                ks.Refresh(RealtimeNs());
                return static_cast<double>(ks.epoch());
              });
}


// --- Reload (SIGHUP, /moat/reload) ------------------------------------------

// The flags a reload may change: the policy the engines take between two
// bursts (Engine::Reconfigure). Everything else sizes or wires something
// at start-up (ports, queues, descriptors, pools, flow and held capacity,
// timers, the cookie secret and rotation, what moat advertises in its
// SYN-ACK, the metrics socket): a reload that changes one of them is
// refused as a whole.
constexpr const char* kReloadable[] = {"protect",          "synack_rate", "synack_prefix_v4",
                                       "synack_prefix_v6", "allow",       "deny"};

bool IsReloadable(const std::string& name) {
  for (const char* r : kReloadable) {
    if (name == r) return true;
  }
  return false;
}

bool IsMoatFlag(const gflags::CommandLineFlagInfo& f) {
  return f.filename.find("app/moat/") != std::string::npos;
}

// Every moat flag's current value.
std::map<std::string, std::string> MoatFlagValues() {
  std::vector<gflags::CommandLineFlagInfo> all;
  gflags::GetAllFlags(&all);
  std::map<std::string, std::string> v;
  for (const auto& f : all) {
    if (IsMoatFlag(f)) v[f.name] = f.current_value;
  }
  return v;
}

// Sets one flag as gflags would from `--name[=value]`; `next` is the
// following argument, taken as the value of a non-bool flag without '='
// (*used set then). Errors name the flag and the value.
absl::Status ApplyFlag(const std::string& arg, const char* next, bool* used,
                       const std::string& where) {
  size_t at = 0;
  while (at < arg.size() && at < 2 && arg[at] == '-') ++at;
  const size_t eq = arg.find('=', at);
  std::string name = arg.substr(at, eq == std::string::npos ? std::string::npos : eq - at);
  std::string value;
  bool has_value = eq != std::string::npos;
  if (has_value) value = arg.substr(eq + 1);
  gflags::CommandLineFlagInfo info;
  if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info)) {
    if (name.starts_with("no") && gflags::GetCommandLineFlagInfo(name.c_str() + 2, &info) &&
        info.type == "bool" && !has_value) {
      name = name.substr(2);
      value = "false";
      has_value = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("%sunknown flag '--%s' (moat -h lists the flags)", where, name));
    }
  }
  if (!has_value) {
    if (info.type == "bool") {
      value = "true";
    } else if (next != nullptr) {
      value = next;
      *used = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s--%s needs a value", where, name));
    }
  }
  if (gflags::SetCommandLineOption(name.c_str(), value.c_str()).empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%sbad value '%s' for --%s (a %s)", where, value, name, info.type));
  }
  return absl::OkStatus();
}

// Sets the flags of the files in `list`, in order (ForEachFlagfileLine).
absl::Status ApplyFlagfiles(const std::string& list) {
  return ForEachFlagfileLine(
      list, 0, [](const std::string& line, const std::string&, const std::string& where) {
        bool used = false;
        return ApplyFlag(line, nullptr, &used, where);
      });
}

class Reloader {
 public:
  // `args`: moat's own arguments as given (after "--"), re-applied in
  // order at each reload so command-line flags keep overriding the file
  // exactly as at start-up.
  Reloader(std::vector<std::string> args, moat::dataplane::Dataplane* dp)
      : args_(std::move(args)), dp_(dp), running_(MoatFlagValues()) {}

  moat::dataplane::ReloadResult Reload() {
    std::lock_guard<std::mutex> lock(mu_);
    moat::dataplane::ReloadResult r;
    auto changed = Prepare(&r.generation);
    r.ok = changed.ok();
    r.message = r.ok ? *changed : std::string(changed.status().message());
    dp_->config_channel().CountReload(r.ok);
    if (r.ok) {
      MOAT_LOG(INFO, "reload: %s", r.message.c_str());
    } else {
      MOAT_LOG(ERR, "reload failed, running configuration unchanged: %s", r.message.c_str());
    }
    return r;
  }

 private:
  // Reads the flags into a scratch copy (FlagSaver puts every flag back
  // afterwards), checks them, and hands the policy to the workers.
  // Returns what changed.
  absl::StatusOr<std::string> Prepare(uint64_t* generation) {
    gflags::FlagSaver saver;
    std::vector<gflags::CommandLineFlagInfo> all;
    gflags::GetAllFlags(&all);
    for (const auto& f : all) {
      if (IsMoatFlag(f)) gflags::SetCommandLineOption(f.name.c_str(), f.default_value.c_str());
    }
    for (size_t i = 0; i < args_.size(); ++i) {
      std::string a = args_[i];
      if ((a == "--flagfile" || a == "-flagfile") && i + 1 < args_.size()) {
        a = "--flagfile=" + args_[++i];  // gflags' `--flagfile FILE`
      }
      const size_t at = a.find_first_not_of('-');
      if (at != std::string::npos && a.compare(at, 9, "flagfile=") == 0) {
        const std::string list = a.substr(at + 9);
        if (auto s = CheckFlagfiles(list); !s.ok()) return s;
        if (auto s = ApplyFlagfiles(list); !s.ok()) return s;
        continue;
      }
      bool used = false;
      const char* next = i + 1 < args_.size() ? args_[i + 1].c_str() : nullptr;
      if (auto s = ApplyFlag(a, next, &used, "command line: "); !s.ok()) return s;
      if (used) ++i;
    }
    moat::proxy::EngineConfig ec;
    moat::dataplane::DataplaneConfig dc;
    std::optional<moat::dataplane::ListenAddress> metrics;
    if (auto s = BuildConfig(&ec, &dc, &metrics); !s.ok()) return s;
    const std::map<std::string, std::string> now = MoatFlagValues();
    std::string changed;
    for (const auto& [name, value] : now) {
      if (name == "flagfile" || name == "check") continue;
      const std::string& was = running_[name];
      if (value == was) continue;
      if (!IsReloadable(name)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "--%s cannot change at run time (running '%s', now '%s'): restart moat for it",
            name, was, value));
      }
      absl::StrAppendFormat(&changed, "%s--%s=%s", changed.empty() ? "" : " ", name, value);
    }
    auto outcome = dp_->Reconfigure(ec, /*wait_ms=*/2000);
    if (!outcome.ok()) return outcome.status();
    *generation = outcome->generation;
    for (const char* name : kReloadable) running_[name] = now.at(name);
    return absl::StrFormat("generation %d %s: %s", outcome->generation,
                           outcome->applied ? "applied by every worker"
                                            : "published (workers not all switched yet)",
                           changed.empty() ? "no change" : changed);
  }

  std::mutex mu_;
  const std::vector<std::string> args_;
  moat::dataplane::Dataplane* dp_;
  std::map<std::string, std::string> running_;  // every moat flag's running value
};

}  // namespace

int main(int argc, char** argv) {
  // Split at "--": EAL's options before it, moat's after. gflags must not
  // see EAL's short options (-l, -a), and EAL must not see moat's.
  int sep = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      sep = i;
      break;
    }
  }
  // `moat --check --flagfile=F` has no "--" and no EAL options: then every
  // argument is a moat flag.
  if (sep == argc) {
    for (int i = 1; i < argc; ++i) {
      if (IsCheckFlag(argv[i])) {
        sep = 0;
        break;
      }
    }
  }
  std::vector<char*> moat_args = {argv[0]};
  for (int i = sep + 1; i < argc; ++i) moat_args.push_back(argv[i]);
  const std::vector<std::string> reload_args(moat_args.begin() + 1, moat_args.end());
  std::vector<char*> eal_args(argv, argv + std::max(sep, 1));

  // `moat -h` / `moat --help`: EAL prints its options, then ours through
  // the usage hook, and exits.
  rte_set_application_usage_hook(PrintMoatUsage);
  for (char* a : eal_args) {
    if (std::strcmp(a, "-h") == 0 || std::strcmp(a, "--help") == 0) {
      int n = static_cast<int>(eal_args.size());
      rte_eal_init(n, eal_args.data());
      return 0;
    }
  }

  // gflags skips unknown names inside a flagfile without a word and
  // reports an unreadable one without naming the flag: check first.
  for (size_t i = 1; i < moat_args.size(); ++i) {
    const char* a = moat_args[i];
    if (*a == '-') ++a;
    if (*a == '-') ++a;
    if (std::strncmp(a, "flagfile=", 9) == 0) {
      if (auto s = CheckFlagfiles(a + 9); !s.ok()) Die(s);
    }
  }
  gflags::SetUsageMessage("[EAL options] -- [moat flags]   (a DPDK TCP SYN proxy)");
  int moat_argc = static_cast<int>(moat_args.size());
  char** moat_argv = moat_args.data();
  gflags::ParseCommandLineNonHelpFlags(&moat_argc, &moat_argv, /*remove_flags=*/true);
  std::string help;
  if ((gflags::GetCommandLineOption("help", &help) && help == "true") ||
      (gflags::GetCommandLineOption("helpshort", &help) && help == "true")) {
    PrintMoatUsage(argv[0]);
    return 0;
  }
  if (moat_argc > 1) {
    Die(absl::InvalidArgumentError(absl::StrFormat(
        "unexpected argument '%s' (moat flags look like --name=value; EAL options go before "
        "--)",
        moat_argv[1])));
  }

  moat::proxy::EngineConfig engine_config;
  moat::dataplane::DataplaneConfig dp_config;
  std::optional<moat::dataplane::ListenAddress> metrics_addr;
  if (auto s = BuildConfig(&engine_config, &dp_config, &metrics_addr); !s.ok()) Die(s);
  if (FLAGS_check) {
    // Everything that needs no EAL and no port has been checked. The
    // metrics address is not bound: a running moat may hold it.
    std::printf("moat: configuration OK\n");
    return 0;
  }
  // Bound before EAL: a port already taken fails here, in one line.
  std::unique_ptr<moat::dataplane::MetricsServer> metrics;
  std::unique_ptr<moat::dataplane::DataplaneMetrics> metrics_source;
  if (metrics_addr) {
    auto m = moat::dataplane::MetricsServer::Listen(*metrics_addr);
    if (!m.ok()) Die(m.status());
    metrics = *std::move(m);
  }

  int eal_argc = static_cast<int>(eal_args.size());
  if (rte_eal_init(eal_argc, eal_args.data()) < 0) {
    Die(absl::InternalError(absl::StrFormat(
        "EAL initialisation failed: %s (see the EAL messages above)", rte_strerror(rte_errno))));
  }
  // dpdk-dumpcap attaches as a secondary process; without multi-process
  // support (--in-memory, --no-shconf) there is nothing to attach to.
  if (rte_pdump_init() != 0) {
    MOAT_LOG(INFO, "packet capture (dpdk-dumpcap) unavailable: %s", rte_strerror(rte_errno));
  }

  auto dp = moat::dataplane::Dataplane::Create(dp_config, engine_config);
  if (!dp.ok()) {
    std::fprintf(stderr, "moat: error: %s\n", std::string(dp.status().message()).c_str());
    rte_eal_cleanup();
    return 1;
  }
  // Lives as long as the process, like the Dataplane (telemetry's thread
  // may run /moat/reload until exit).
  Reloader* reloader = new Reloader(reload_args, dp->get());
  moat::dataplane::SetReloadHandler([reloader] { return reloader->Reload(); });
  if (auto s = moat::dataplane::RegisterTelemetry(dp->get()); !s.ok()) {
    MOAT_LOG(WARNING, "%s", std::string(s.message()).c_str());
  }

  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = OnHangup;
  sigaction(SIGHUP, &sa, nullptr);

  if (auto s = (*dp)->Start(); !s.ok()) {
    std::fprintf(stderr, "moat: error: %s\n", std::string(s.message()).c_str());
    dp->reset();
    rte_eal_cleanup();
    return 1;
  }
  if (metrics) {
    // From the main lcore after rte_eal_init: the server thread inherits
    // its CPU affinity and never competes with a worker.
    metrics_source = std::make_unique<moat::dataplane::DataplaneMetrics>(dp->get(), MOAT_VERSION);
    AddProcessGauges(metrics_source.get(), (*dp)->workers().size());
    const moat::dataplane::ConfigChannel* ch = &(*dp)->config_channel();
    metrics_source->AddCounter("reload_ok", "reloads applied (SIGHUP, /moat/reload)",
                               [ch] { return static_cast<double>(ch->reload_ok()); });
    metrics_source->AddCounter("reload_failed",
                               "reloads refused: bad file or a flag that cannot change at run "
                               "time (configuration unchanged)",
                               [ch] { return static_cast<double>(ch->reload_failed()); });
    metrics_source->AddGauge("config_generation",
                             "configuration generation every worker runs (1 at start, +1 per "
                             "applied reload)",
                             [ch] { return static_cast<double>(ch->applied()); });
    auto* src = metrics_source.get();
    if (auto s = metrics->Start([src](std::string* out) { src->Render(out); }); !s.ok()) {
      std::fprintf(stderr, "moat: error: %s\n", std::string(s.message()).c_str());
      (*dp)->Stop();
      metrics.reset();
      moat::dataplane::UnregisterTelemetry();
      dp->reset();
      rte_eal_cleanup();
      return 1;
    }
    MOAT_LOG(INFO, "metrics: http://%s/metrics", FLAGS_metrics_listen.c_str());
  }
  MOAT_LOG(INFO, "protecting %s: client port %u, server port %u, %zu worker(s)",
           FLAGS_protect.c_str(), dp_config.client_port, dp_config.server_port,
           (*dp)->workers().size());
  MOAT_LOG(INFO, "%s", (*dp)->memory_plan().c_str());
  MOAT_LOG(INFO, "per worker: SYN cache %u entries, cookie-only above %u SYN/s",
           engine_config.syn_cache_entries, engine_config.syn_flood_rate);
  std::printf("moat: running (Ctrl-C to stop)\n");
  std::fflush(stdout);

  // The main lcore does control work only and sleeps between ticks.
  moat::dataplane::StatsReporter reporter(dp->get());
  const uint64_t period_ms = static_cast<uint64_t>(FLAGS_stats_period) * 1000;
  uint64_t since_ms = 0;
  // Each worker's SYN-cache mode, logged once per change (the workers only
  // set a gauge; nothing logs on the packet path).
  std::vector<uint64_t> cookie_mode((*dp)->workers().size(), 0);
  while (!g_quit) {
    timespec ts{0, 50 * 1000 * 1000};
    nanosleep(&ts, nullptr);
    if (g_hup) {
      g_hup = 0;
      reloader->Reload();
    }
    since_ms += 50;
    for (size_t w = 0; w < cookie_mode.size(); ++w) {
      const auto& st = (*dp)->workers()[w]->engine_stats();
      const uint64_t mode = st.Load(moat::proxy::Counter::k_syn_cache_cookie_mode);
      if (mode == cookie_mode[w]) continue;
      cookie_mode[w] = mode;
      MOAT_LOG(NOTICE, "worker %zu: %s (SYN cache %" PRIu64 " entries, %" PRIu64 " switches)", w,
               mode ? "SYN flood: answering with cookies only" : "calm: SYN cache on again",
               st.Load(moat::proxy::Counter::k_syn_cache_entries),
               st.Load(moat::proxy::Counter::k_syn_cache_to_cookie) +
                   st.Load(moat::proxy::Counter::k_syn_cache_to_cache));
    }
    if (period_ms != 0 && since_ms >= period_ms) {
      reporter.Print(stdout, /*final=*/false);
      since_ms = 0;
    }
  }

  (*dp)->Stop();
  moat::dataplane::SetReloadHandler(nullptr);
  reporter.Print(stdout, /*final=*/true);
  if (metrics) metrics->Stop();
  moat::dataplane::UnregisterTelemetry();
  (*dp)->ClosePorts();
  rte_eal_cleanup();
  // The Dataplane (engines, flow tables) goes with the process: telemetry's
  // control thread may still hold a reference until exit.
  (void)dp->release();
  return 0;
}
