// The /metrics endpoint. libmicrohttpd runs one internal polling thread
// (epoll) for every connection: the handler, the scrape scratch buffers and
// the gauge callbacks are only ever touched by that thread, so nothing here
// locks. Workers are never involved: their counters are read in place.

#include "moat/dataplane/metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <rte_ethdev.h>
#include <rte_version.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdarg>
#include <cstring>
#include <ctime>
#include <mutex>

#include "absl/strings/str_format.h"
#include "moat/dataplane/dataplane.h"
#include "moat/dataplane/log.h"

namespace moat::dataplane {

namespace {

absl::Status BadListen(std::string_view flag, std::string_view value, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "--%s=%s: %s (expected IPV4:PORT or [IPV6]:PORT, e.g. 127.0.0.1:9101 or [::1]:9101)", flag,
      value, why));
}

// Bounds for a control-plane endpoint that a flood must not tie up: a few
// scrapers at a time, idle connections dropped after a while.
constexpr unsigned kMaxConnections = 16;
constexpr unsigned kConnectionTimeoutS = 10;
constexpr int kListenBacklog = 16;

// libmicrohttpd reports every malformed request; whoever can reach the
// port could fill the log with them, so at most one line a second.
void LogFromMhd(void*, const char* fmt, va_list ap) {
  static std::atomic<int64_t> last_s{INT64_MIN};
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t prev = last_s.load(std::memory_order_relaxed);
  if (ts.tv_sec == prev ||
      !last_s.compare_exchange_strong(prev, ts.tv_sec, std::memory_order_relaxed)) {
    return;
  }
  rte_log(RTE_LOG_WARNING, log_type_main, "moat: metrics: ");
  rte_vlog(RTE_LOG_WARNING, log_type_main, fmt, ap);
}

MHD_Result Reply(MHD_Connection* c, unsigned status, std::string_view body,
                 const char* allow = nullptr) {
  MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                    MHD_RESPMEM_MUST_COPY);
  if (r == nullptr) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          status == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
                                                : "text/plain; charset=utf-8");
  if (allow != nullptr) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  const MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

MHD_Result Handle(void* cls, MHD_Connection* c, const char* url, const char* method,
                  const char* /*version*/, const char* /*upload_data*/, size_t* upload_size,
                  void** con_cls) {
  // Refusals go out at once (MHD then discards any body and closes).
  if (std::strcmp(url, "/metrics") != 0) {
    return Reply(c, MHD_HTTP_NOT_FOUND, "moat serves /metrics only\n");
  }
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
    return Reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "/metrics answers GET only\n", "GET");
  }
  // A GET is answered on the second call, once the request has been read
  // to its end: answering earlier makes MHD close the connection, and
  // Prometheus would reconnect for every scrape instead of keeping it.
  static int seen;
  if (*con_cls == nullptr) {
    *con_cls = &seen;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0;  // a body on a GET: ignored
    return MHD_YES;
  }
  return Reply(c, MHD_HTTP_OK, static_cast<MetricsServer*>(cls)->Scrape());
}

}  // namespace

int ReadPortStats(uint16_t port_id, rte_eth_stats* stats) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  return rte_eth_stats_get(port_id, stats);
}

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view flag, std::string_view value) {
  ListenAddress out;
  out.text = std::string(value);
  std::string host;
  std::string_view port;
  const bool v6 = value.starts_with('[');
  if (v6) {
    const size_t close = value.find("]:");
    if (close == std::string_view::npos) return BadListen(flag, value, "no ']:PORT'");
    host = std::string(value.substr(1, close - 1));
    port = value.substr(close + 2);
  } else {
    const size_t colon = value.rfind(':');
    if (colon == std::string_view::npos) return BadListen(flag, value, "no ':PORT'");
    host = std::string(value.substr(0, colon));
    port = value.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return BadListen(flag, value, "an IPv6 address needs brackets");
    }
  }
  unsigned p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 ||
      p > 65535) {
    return BadListen(flag, value, "the port must be a number in 1-65535");
  }
  if (v6) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&out.addr);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(static_cast<uint16_t>(p));
    if (inet_pton(AF_INET6, host.c_str(), &sa->sin6_addr) != 1) {
      return BadListen(flag, value, "'" + host + "' is not a numeric IPv6 address");
    }
    out.len = sizeof(sockaddr_in6);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in*>(&out.addr);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(static_cast<uint16_t>(p));
    if (inet_pton(AF_INET, host.c_str(), &sa->sin_addr) != 1) {
      return BadListen(flag, value, "'" + host + "' is not a numeric IPv4 address");
    }
    out.len = sizeof(sockaddr_in);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Listen(const ListenAddress& addr) {
  const int family = addr.addr.ss_family;
  const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  auto fail = [&](const char* what) {
    const int err = errno;
    if (fd >= 0) close(fd);
    return absl::UnavailableError(
        absl::StrFormat("--metrics_listen=%s: cannot %s: %s", addr.text, what, std::strerror(err)));
  };
  if (fd < 0) return fail("create a socket");
  const int one = 1;
  // A restarted moat rebinds at once instead of waiting out TIME_WAIT.
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // [::]:PORT means IPv6 only: the operator asked for exactly that address.
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr.addr), addr.len) != 0) return fail("bind");
  if (listen(fd, kListenBacklog) != 0) return fail("listen");
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) return fail("getsockname");
  const uint16_t port =
      ntohs(family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                               : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<MetricsServer>(new MetricsServer(fd, port, addr.text));
}

MetricsServer::~MetricsServer() { Stop(); }

absl::Status MetricsServer::Start(RenderFn render) {
  render_ = std::move(render);
  const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC |
                         MHD_USE_ERROR_LOG | (text_.starts_with('[') ? MHD_USE_IPv6 : 0);
  daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &Handle, this, MHD_OPTION_EXTERNAL_LOGGER,
                             &LogFromMhd, nullptr, MHD_OPTION_LISTEN_SOCKET, fd_,
                             MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,
                             MHD_OPTION_CONNECTION_TIMEOUT, kConnectionTimeoutS, MHD_OPTION_END);
  if (daemon_ == nullptr) {
    return absl::InternalError(absl::StrFormat(
        "--metrics_listen=%s: cannot start the HTTP server (libmicrohttpd)", text_));
  }
  return absl::OkStatus();
}

void MetricsServer::Stop() {
  if (daemon_ != nullptr) {
    // Take the listening socket back first, so it is closed exactly once,
    // here, whatever MHD does with sockets it did not open.
    MHD_quiesce_daemon(daemon_);
    MHD_stop_daemon(daemon_);
    daemon_ = nullptr;
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

const std::string& MetricsServer::Scrape() {
  body_.clear();  // keeps its capacity: the next scrape reuses it
  if (render_) render_(&body_);
  return body_;
}

DataplaneMetrics::DataplaneMetrics(const Dataplane* dp, std::string version)
    : dp_(dp), version_(std::move(version)) {
  // rte_version() is "DPDK 22.11.4"; the label carries the number.
  std::string_view v = rte_version();
  if (v.starts_with("DPDK ")) v.remove_prefix(5);
  dpdk_version_ = std::string(v);
  // The workers and their counters stay where they are for moat's life.
  for (const auto& w : dp->workers()) {
    workers_.push_back({w->index(), &w->engine_stats(), &w->stats()});
  }
}

void DataplaneMetrics::AddGauge(std::string name, std::string help, std::function<double()> value) {
  gauges_.push_back({std::move(name), std::move(help), std::move(value)});
}

void DataplaneMetrics::AddCounter(std::string name, std::string help,
                                  std::function<double()> value) {
  gauges_.push_back({std::move(name), std::move(help), std::move(value), /*counter=*/true});
}

void DataplaneMetrics::Render(std::string* out) {
  PortMetrics ports[2];
  for (int s = 0; s < 2; ++s) {
    const Port& p = dp_->port(static_cast<proxy::Side>(s));
    ports[s].id = p.id;
    ports[s].side = s == 0 ? "client" : "server";
    rte_eth_stats st{};
    ports[s].valid = ReadPortStats(p.id, &st) == 0;
    uint64_t* v = ports[s].value;
    v[static_cast<size_t>(PortMetric::k_rx_packets)] = st.ipackets;
    v[static_cast<size_t>(PortMetric::k_tx_packets)] = st.opackets;
    v[static_cast<size_t>(PortMetric::k_rx_bytes)] = st.ibytes;
    v[static_cast<size_t>(PortMetric::k_tx_bytes)] = st.obytes;
    v[static_cast<size_t>(PortMetric::k_rx_missed)] = st.imissed;
    v[static_cast<size_t>(PortMetric::k_rx_nombuf)] = st.rx_nombuf;
    v[static_cast<size_t>(PortMetric::k_rx_errors)] = st.ierrors;
    v[static_cast<size_t>(PortMetric::k_tx_errors)] = st.oerrors;
  }
  gauge_values_.resize(gauges_.size());
  for (size_t i = 0; i < gauges_.size(); ++i) {
    gauge_values_[i] = {gauges_[i].name, gauges_[i].help, gauges_[i].value(), gauges_[i].counter};
  }
  MetricsInput in;
  in.workers = workers_;
  in.ports = ports;
  in.gauges = gauge_values_;
  in.version = version_;
  in.dpdk_version = dpdk_version_;
  RenderMetrics(in, out);
}

}  // namespace moat::dataplane
