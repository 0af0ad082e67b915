#pragma once
// Prometheus metrics from moat's own process: `--metrics_listen=ADDR:PORT`
// serves `GET /metrics` in the text exposition format 0.0.4 from one
// control thread (libmicrohttpd's internal polling thread), never from a
// worker.
//
// Two halves, so the text can be tested without ports or EAL:
//   - RenderMetrics() turns plain structs (pointers to the workers' live
//     WorkerStats/DataplaneStats, port counters, process gauges) into text.
//     It reads the counters with Load() (relaxed atomic loads against the
//     workers' relaxed stores): a scrape never waits for a worker and
//     takes no lock a worker could hold. Its cost is O(workers x
//     counters), never O(flows).
//   - MetricsServer binds the socket (before EAL, so a taken port fails in
//     one line), then serves from its own thread; DataplaneMetrics fills
//     those structs from the Dataplane and ReadPortStats() at each
//     scrape.
//
// What is exported (names are moat_ + the counter's name):
//   every engine counter (proxy/stats.h)    moat_<name>_total{worker}   counter
//   engine gauges ("gauge:" help)           moat_<name>{worker}         gauge
//   drop_parse by net::ParseError           moat_parse_error_total{worker,reason}
//   every dataplane counter (worker.h)      moat_<name>_total{worker}   counter
//   port counters (rte_eth_stats)           moat_port_<name>_total{port,side}
//   process gauges (DataplaneMetrics::AddGauge) moat_<name>
//   process counters (AddCounter)           moat_<name>_total
//   build                                   moat_build_info{version,dpdk} 1
//
// Adding a per-worker gauge is one line in MOAT_COUNTERS with help text
// starting "gauge:"; adding a process-wide gauge is one AddGauge() call.

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "moat/dataplane/worker.h"
#include "moat/proxy/stats.h"

struct MHD_Daemon;
struct rte_eth_stats;

namespace moat::dataplane {

class Dataplane;

// Port counters from rte_eth_stats, X(name, help). Each becomes
// moat_port_<name>_total{port="N",side="client|server"}.
#define MOAT_PORT_METRICS(X)                                                       \
  X(rx_packets, "frames received by the port")                                     \
  X(tx_packets, "frames sent by the port")                                         \
  X(rx_bytes, "bytes received by the port")                                        \
  X(tx_bytes, "bytes sent by the port")                                            \
  X(rx_missed, "frames the NIC dropped: RX queue full (workers too slow)")         \
  X(rx_nombuf, "frames the NIC dropped: no mbuf to receive into (pool too small)") \
  X(rx_errors, "erroneous frames received")                                        \
  X(tx_errors, "frames the port failed to send")

enum class PortMetric : uint8_t {
#define MOAT_PORT_METRIC_ENUM(name, help) k_##name,
  MOAT_PORT_METRICS(MOAT_PORT_METRIC_ENUM)
#undef MOAT_PORT_METRIC_ENUM
};
inline constexpr size_t kNumPortMetrics = 0
#define MOAT_PORT_METRIC_COUNT(name, help) +1
    MOAT_PORT_METRICS(MOAT_PORT_METRIC_COUNT)
#undef MOAT_PORT_METRIC_COUNT
    ;

// One worker as the renderer sees it: its live counters, read with Load().
struct WorkerMetrics {
  unsigned index = 0;
  const proxy::WorkerStats* engine = nullptr;
  const DataplaneStats* dataplane = nullptr;
};

struct PortMetrics {
  uint16_t id = 0;
  const char* side = "";  // "client" or "server"
  bool valid = false;     // rte_eth_stats_get answered; otherwise not exported
  uint64_t value[kNumPortMetrics] = {};
};

// A process-wide gauge: exported as moat_<name>; or, with `counter`, a
// process-wide counter exported as moat_<name>_total.
struct GaugeMetric {
  std::string_view name;
  std::string_view help;
  double value = 0;
  bool counter = false;
};

struct MetricsInput {
  std::span<const WorkerMetrics> workers;
  std::span<const PortMetrics> ports;
  std::span<const GaugeMetric> gauges;
  std::string_view version;       // moat's, from meson
  std::string_view dpdk_version;  // e.g. "22.11.4"
};

// Appends the exposition text to *out (which keeps its capacity between
// scrapes, so a steady-state scrape does not grow it).
void RenderMetrics(const MetricsInput& in, std::string* out);

// Escaping of the text format 0.0.4: HELP text escapes backslash and
// newline; label values also escape the double quote.
void AppendEscapedHelp(std::string_view s, std::string* out);
void AppendEscapedLabelValue(std::string_view s, std::string* out);

// The address of --metrics_listen: "IPV4:PORT" or "[IPV6]:PORT" with a
// numeric address (no names: moat binds exactly where it is told) and a
// port in 1-65535.
struct ListenAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // as given
};
// Errors name the flag: "--metrics_listen=...: expected ...".
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view flag, std::string_view value);

// rte_eth_stats_get() under one process-wide lock. ethdev calls are not
// thread-safe per port, and some PMDs read clear-on-read registers and
// accumulate in software: two control threads reading at once (the metrics
// thread and the stats table on the main lcore) could lose counts. Every
// moat caller should go through this; returns rte_eth_stats_get's result.
int ReadPortStats(uint16_t port_id, rte_eth_stats* stats);

// The HTTP endpoint: GET /metrics answers with what `render` appends, other
// paths 404, other methods 405. One thread serves every connection (at
// most a handful at once, idle ones dropped), so `render` needs no lock.
class MetricsServer {
 public:
  using RenderFn = std::function<void(std::string* out)>;

  // Binds and listens (no thread yet): an address in use or not on this
  // host fails here, before EAL starts.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Listen(const ListenAddress& addr);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The port actually bound (what was asked for, or the kernel's choice
  // for port 0, which only tests use).
  uint16_t port() const { return port_; }

  // Starts the server thread. It inherits the caller's CPU affinity: moat
  // calls this on the main lcore after rte_eal_init(), so it never runs on
  // a worker's core.
  absl::Status Start(RenderFn render);
  // Stops the thread and closes the socket. Idempotent.
  void Stop();

  // One response body, rendered now (the handler's work; public for tests).
  const std::string& Scrape();

 private:
  MetricsServer(int fd, uint16_t port, std::string text)
      : fd_(fd), port_(port), text_(std::move(text)) {}

  int fd_;  // the listening socket
  uint16_t port_;
  std::string text_;  // the address, for messages
  MHD_Daemon* daemon_ = nullptr;
  RenderFn render_;
  std::string body_;  // reused by every scrape: keeps its capacity
};

// What a running moat exports: its workers' counters, both ports'
// rte_eth_stats, build info and the process gauges added here.
class DataplaneMetrics {
 public:
  // `dp` must outlive this object and every Render().
  DataplaneMetrics(const Dataplane* dp, std::string version);

  // Registers moat_<name>, read at each scrape. Before the server starts.
  void AddGauge(std::string name, std::string help, std::function<double()> value);
  // The same for a process-wide counter, exported as moat_<name>_total.
  void AddCounter(std::string name, std::string help, std::function<double()> value);

  // Collects and renders; called on the server thread only.
  void Render(std::string* out);

 private:
  struct Gauge {
    std::string name, help;
    std::function<double()> value;
    bool counter = false;
  };
  const Dataplane* dp_;
  std::string version_;
  std::string dpdk_version_;
  std::vector<Gauge> gauges_;
  std::vector<WorkerMetrics> workers_;
  std::vector<GaugeMetric> gauge_values_;  // scratch, reused
};

}  // namespace moat::dataplane
