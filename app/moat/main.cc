// moat: flags -> config -> EAL -> ports -> workers -> signals.
//
//   build/app/moat [EAL options] -- [moat flags]
//
// moat's own flags are parsed and validated before EAL starts, so a typo or
// a bad --protect fails in one line without touching hugepages or ports.
// Then EAL, the ports (checked, configured, started) and one worker per
// queue; the main lcore only prints stats and waits for SIGINT/SIGTERM.

#include <gflags/gflags.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_pdump.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "moat/cookie/key_schedule.h"
#include "moat/dataplane/dataplane.h"
#include "moat/dataplane/log.h"
#include "moat/dataplane/report.h"
#include "moat/proxy/config.h"

// The command-line contract (DESIGN.md): these names are relied on.
DEFINE_uint32(client_port, 0, "ethdev port facing the clients (EAL probe order)");
DEFINE_uint32(server_port, 1, "ethdev port facing the backends (EAL probe order)");
DEFINE_string(protect, "",
              "protected services, ADDR[/LEN][:PORT[-PORT]],... e.g. "
              "198.18.0.2:80,[2001:2::2]:80 (required)");
DEFINE_uint32(mss, 1460, "MSS moat advertises in its SYN-ACK (IPv6: mss - 20); must not "
                         "exceed the backends' MSS");
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
DEFINE_bool(verify_checksums, true, "verify IPv4 and TCP checksums of protected traffic");

namespace {

volatile std::sig_atomic_t g_quit = 0;

void OnSignal(int) { g_quit = 1; }

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

absl::Status BuildConfig(moat::proxy::EngineConfig* ec, moat::dataplane::DataplaneConfig* dc) {
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
      {"wscale", FLAGS_wscale, 0, 14},
      {"stats_period", FLAGS_stats_period, 0, 86400},
      {"queues", FLAGS_queues, 0, 128},
      {"rx_desc", FLAGS_rx_desc, 32, 16384},
      {"tx_desc", FLAGS_tx_desc, 32, 16384},
      {"pool_mbufs", FLAGS_pool_mbufs, 0, 16u << 20},
      {"burst", FLAGS_burst, 1, moat::dataplane::Worker::kMaxBurst},
      {"tx_drain_us", FLAGS_tx_drain_us, 1, 100000},
      {"idle_sleep_us", FLAGS_idle_sleep_us, 0, 100000},
  };
  for (const auto& r : ranges) {
    if (auto s = CheckRange(r.name, r.v, r.lo, r.hi); !s.ok()) return s;
  }
  ec->mss = static_cast<uint16_t>(FLAGS_mss);
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
  dc->worker.burst = static_cast<uint16_t>(FLAGS_burst);
  dc->worker.tx_drain_us = FLAGS_tx_drain_us;
  dc->worker.idle_sleep_us = FLAGS_idle_sleep_us;
  return absl::OkStatus();
}

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
  std::vector<char*> moat_args = {argv[0]};
  for (int i = sep + 1; i < argc; ++i) moat_args.push_back(argv[i]);
  std::vector<char*> eal_args(argv, argv + sep);

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
  if (auto s = BuildConfig(&engine_config, &dp_config); !s.ok()) Die(s);

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
  if (auto s = moat::dataplane::RegisterTelemetry(dp->get()); !s.ok()) {
    MOAT_LOG(WARNING, "%s", std::string(s.message()).c_str());
  }

  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  if (auto s = (*dp)->Start(); !s.ok()) {
    std::fprintf(stderr, "moat: error: %s\n", std::string(s.message()).c_str());
    dp->reset();
    rte_eal_cleanup();
    return 1;
  }
  MOAT_LOG(INFO, "protecting %s: client port %u, server port %u, %zu worker(s)",
           FLAGS_protect.c_str(), dp_config.client_port, dp_config.server_port,
           (*dp)->workers().size());
  std::printf("moat: running (Ctrl-C to stop)\n");
  std::fflush(stdout);

  // The main lcore does control work only and sleeps between ticks.
  moat::dataplane::StatsReporter reporter(dp->get());
  const uint64_t period_ms = static_cast<uint64_t>(FLAGS_stats_period) * 1000;
  uint64_t since_ms = 0;
  while (!g_quit) {
    timespec ts{0, 50 * 1000 * 1000};
    nanosleep(&ts, nullptr);
    since_ms += 50;
    if (period_ms != 0 && since_ms >= period_ms) {
      reporter.Print(stdout, /*final=*/false);
      since_ms = 0;
    }
  }

  (*dp)->Stop();
  reporter.Print(stdout, /*final=*/true);
  moat::dataplane::UnregisterTelemetry();
  (*dp)->ClosePorts();
  rte_eal_cleanup();
  // The Dataplane (engines, flow tables) goes with the process: telemetry's
  // control thread may still hold a reference until exit.
  (void)dp->release();
  return 0;
}
