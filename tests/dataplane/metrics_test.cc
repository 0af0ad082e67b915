// The /metrics text, built from fake counters (no EAL, no ports, no root)
// and parsed back line by line: names, labels, HELP/TYPE, escaping, one
// block per family. Then the HTTP side on loopback: 200 with the 0.0.4
// content type, 404 for other paths, 405 for other methods, and the
// --metrics_listen parser's errors.

#include "moat/dataplane/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "moat/dataplane/worker.h"
#include "moat/net/packet.h"
#include "moat/proxy/stats.h"

namespace moat::dataplane {
namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

struct Family {
  std::string help;
  std::string type;
  std::vector<Sample> samples;
};

// Undoes the format's escaping (backslash, newline; quote in label values).
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;
      out.push_back(s[i] == 'n' ? '\n' : s[i]);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

const std::regex kName("[a-zA-Z_:][a-zA-Z0-9_:]*");
const std::regex kLabelName("[a-zA-Z_][a-zA-Z0-9_]*");

// A strict reader of what RenderMetrics writes. Fails the test on anything
// a Prometheus server would reject or that breaks the one-block-per-family
// rule: samples before their TYPE, a family declared twice, a sample whose
// name does not belong to the family being read.
std::map<std::string, Family> Parse(const std::string& text) {
  std::map<std::string, Family> families;
  std::string current;
  EXPECT_TRUE(!text.empty() && text.back() == '\n') << "the text must end with a newline";
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string::npos ? text.size() : nl;
    if (end > pos) lines.push_back(std::string_view(text).substr(pos, end - pos));
    pos = end + 1;
  }
  for (std::string_view line : lines) {
    if (line.starts_with("# HELP ")) {
      line.remove_prefix(7);
      const size_t sp = line.find(' ');
      const std::string name(line.substr(0, sp));
      EXPECT_TRUE(std::regex_match(name, kName)) << name;
      EXPECT_EQ(families.count(name), 0u) << "family declared twice: " << name;
      // The escaped text holds no raw newline by construction (we split on
      // them); a lone backslash would be an escaping bug.
      const std::string_view help = sp == std::string_view::npos ? "" : line.substr(sp + 1);
      for (size_t i = 0; i < help.size(); ++i) {
        if (help[i] == '\\') {
          EXPECT_TRUE(i + 1 < help.size() && (help[i + 1] == '\\' || help[i + 1] == 'n'))
              << name << ": bad escape";
          ++i;
        }
      }
      families[name].help = Unescape(help);
      current = name;
    } else if (line.starts_with("# TYPE ")) {
      line.remove_prefix(7);
      const size_t sp = line.find(' ');
      const std::string name(line.substr(0, sp));
      EXPECT_EQ(name, current) << "TYPE must follow the family's HELP";
      EXPECT_TRUE(families[name].type.empty()) << "two TYPE lines for " << name;
      EXPECT_TRUE(families[name].samples.empty()) << "TYPE after samples for " << name;
      families[name].type = std::string(line.substr(sp + 1));
    } else {
      EXPECT_FALSE(line.starts_with("#")) << "unknown comment: " << line;
      Sample s;
      const size_t brace = line.find('{');
      const size_t sp =
          brace != std::string_view::npos ? line.find("} ", brace) + 1 : line.find(' ');
      s.name = std::string(line.substr(0, std::min(brace, sp)));
      s.value = std::string(line.substr(sp + 1));
      if (brace != std::string_view::npos && brace < sp) {
        std::string_view labels = line.substr(brace + 1, sp - brace - 2);
        while (!labels.empty()) {
          const size_t eq = labels.find("=\"");
          EXPECT_NE(eq, std::string_view::npos) << line;
          if (eq == std::string_view::npos) break;
          const std::string lname(labels.substr(0, eq));
          EXPECT_TRUE(std::regex_match(lname, kLabelName)) << lname;
          size_t end = eq + 2;
          while (end < labels.size() && labels[end] != '"') end += labels[end] == '\\' ? 2 : 1;
          EXPECT_LT(end, labels.size()) << "unterminated label value: " << line;
          EXPECT_EQ(s.labels.count(lname), 0u) << "label twice: " << line;
          s.labels[lname] = Unescape(labels.substr(eq + 2, end - eq - 2));
          labels.remove_prefix(std::min(labels.size(), end + 1));
          if (!labels.empty()) {
            EXPECT_EQ(labels.front(), ',') << line;
            labels.remove_prefix(1);
          }
        }
      }
      EXPECT_EQ(s.name, current) << "sample outside its family's block: " << line;
      EXPECT_FALSE(families[current].type.empty()) << "sample before TYPE: " << line;
      families[current].samples.push_back(std::move(s));
    }
  }
  for (const auto& [name, f] : families) {
    EXPECT_TRUE(f.type == "counter" || f.type == "gauge") << name << ": " << f.type;
    if (f.type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << "counter without _total: " << name;
    }
  }
  return families;
}

const Sample* Find(const Family& f, const std::map<std::string, std::string>& labels) {
  for (const Sample& s : f.samples) {
    if (s.labels == labels) return &s;
  }
  return nullptr;
}

// Two workers with distinct values for every counter, two ports (one of
// which did not answer), process gauges with awkward values.
class RenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (unsigned w = 0; w < 2; ++w) {
      for (size_t i = 0; i < proxy::kNumCounters; ++i) {
        engine_[w].Inc(static_cast<proxy::Counter>(i), 1000 * (w + 1) + i);
      }
      for (size_t r = 1; r < net::kNumParseErrors; ++r) {
        for (unsigned n = 0; n < 10 * (w + 1) + r; ++n) {
          engine_[w].IncParse(static_cast<net::ParseError>(r));
        }
      }
      for (size_t i = 0; i < kNumDataplaneCounters; ++i) {
        dp_[w].Inc(static_cast<DpCounter>(i), 500 * (w + 1) + i);
      }
      workers_.push_back({w + 3, &engine_[w], &dp_[w]});  // index != position
    }
    ports_[0].id = 0;
    ports_[0].side = "client";
    ports_[0].valid = true;
    for (size_t i = 0; i < kNumPortMetrics; ++i) ports_[0].value[i] = 77 + i;
    ports_[1].id = 5;
    ports_[1].side = "server";
    ports_[1].valid = false;
    gauges_ = {
        {"start_time_seconds", "when moat started", 1764500000.125},
        {"odd_help", "a \\ backslash\nand a newline", 0.5},
        {"not_a_number", "NaN is spelled NaN", std::nan("")},
        {"infinite", "+Inf", std::numeric_limits<double>::infinity()},
        {"workers", "workers", 2},
        {"reload_failed", "reloads refused", 3, /*counter=*/true},
    };
    in_.workers = workers_;
    in_.ports = ports_;
    in_.gauges = gauges_;
    in_.version = "1.2 \"rc\\1\"\nx";
    in_.dpdk_version = "22.11.4";
  }

  std::map<std::string, Family> Render() {
    std::string text;
    RenderMetrics(in_, &text);
    return Parse(text);
  }

  proxy::WorkerStats engine_[2];
  DataplaneStats dp_[2];
  std::vector<WorkerMetrics> workers_;
  PortMetrics ports_[2];
  std::vector<GaugeMetric> gauges_;
  MetricsInput in_;
};

TEST_F(RenderTest, EveryEngineCounterPerWorkerWithItsHelp) {
  const auto fam = Render();
  for (size_t i = 0; i < proxy::kNumCounters; ++i) {
    const bool gauge = proxy::IsGauge(static_cast<proxy::Counter>(i));
    const std::string name =
        std::string("moat_") + proxy::kCounterNames[i] + (gauge ? "" : "_total");
    ASSERT_EQ(fam.count(name), 1u) << name;
    const Family& f = fam.at(name);
    EXPECT_EQ(f.type, gauge ? "gauge" : "counter") << name;
    std::string help = proxy::kCounterHelp[i];
    if (gauge) help = help.substr(std::strlen("gauge: "));
    EXPECT_EQ(f.help, help) << name;
    ASSERT_EQ(f.samples.size(), 2u) << name;
    for (unsigned w = 0; w < 2; ++w) {
      const Sample* s = Find(f, {{"worker", std::to_string(w + 3)}});
      ASSERT_NE(s, nullptr) << name;
      uint64_t want = 1000 * (w + 1) + i;
      if (i == static_cast<size_t>(proxy::Counter::k_drop_parse)) {
        for (size_t r = 1; r < net::kNumParseErrors; ++r) want += 10 * (w + 1) + r;
      }
      EXPECT_EQ(s->value, std::to_string(want)) << name;
    }
  }
  EXPECT_EQ(fam.at("moat_flows_active").type, "gauge");
  EXPECT_EQ(fam.at("moat_syn_received_total").type, "counter");
}

TEST_F(RenderTest, ParseErrorsAsOneFamilyWithAReasonLabel) {
  const auto fam = Render();
  const Family& f = fam.at("moat_parse_error_total");
  EXPECT_EQ(f.type, "counter");
  EXPECT_EQ(f.samples.size(), 2 * (net::kNumParseErrors - 1));
  for (unsigned w = 0; w < 2; ++w) {
    for (size_t r = 1; r < net::kNumParseErrors; ++r) {
      const char* reason = net::ParseErrorName(static_cast<net::ParseError>(r));
      const Sample* s = Find(f, {{"worker", std::to_string(w + 3)}, {"reason", reason}});
      ASSERT_NE(s, nullptr) << reason;
      EXPECT_EQ(s->value, std::to_string(10 * (w + 1) + r)) << reason;
    }
  }
  // kOk is not a drop.
  EXPECT_EQ(Find(f, {{"worker", "3"}, {"reason", net::ParseErrorName(net::ParseError::kOk)}}),
            nullptr);
}

TEST_F(RenderTest, DataplaneCountersPerWorker) {
  const auto fam = Render();
  for (size_t i = 0; i < kNumDataplaneCounters; ++i) {
    const std::string name = std::string("moat_") + kDataplaneCounterNames[i] + "_total";
    ASSERT_EQ(fam.count(name), 1u) << name;
    EXPECT_EQ(fam.at(name).type, "counter");
    EXPECT_EQ(fam.at(name).help, kDataplaneCounterHelp[i]);
    for (unsigned w = 0; w < 2; ++w) {
      const Sample* s = Find(fam.at(name), {{"worker", std::to_string(w + 3)}});
      ASSERT_NE(s, nullptr) << name;
      EXPECT_EQ(s->value, std::to_string(500 * (w + 1) + i));
    }
  }
}

TEST_F(RenderTest, PortCountersOnlyForPortsThatAnswered) {
  const auto fam = Render();
  const char* names[] = {"rx_packets", "tx_packets", "rx_bytes",  "tx_bytes",
                         "rx_missed",  "rx_nombuf",  "rx_errors", "tx_errors"};
  static_assert(std::size(names) == kNumPortMetrics);
  for (size_t i = 0; i < kNumPortMetrics; ++i) {
    const std::string name = std::string("moat_port_") + names[i] + "_total";
    ASSERT_EQ(fam.count(name), 1u) << name;
    const Family& f = fam.at(name);
    EXPECT_EQ(f.type, "counter");
    EXPECT_FALSE(f.help.empty());
    ASSERT_EQ(f.samples.size(), 1u) << name;  // port 5 did not answer
    const Sample* s = Find(f, {{"port", "0"}, {"side", "client"}});
    ASSERT_NE(s, nullptr) << name;
    EXPECT_EQ(s->value, std::to_string(77 + i));
  }
}

TEST_F(RenderTest, ProcessGaugesAndBuildInfoWithEscaping) {
  const auto fam = Render();
  EXPECT_EQ(fam.at("moat_start_time_seconds").samples.at(0).value, "1764500000.125");
  EXPECT_EQ(fam.at("moat_workers").samples.at(0).value, "2");
  EXPECT_EQ(fam.at("moat_not_a_number").samples.at(0).value, "NaN");
  EXPECT_EQ(fam.at("moat_infinite").samples.at(0).value, "+Inf");
  EXPECT_EQ(fam.at("moat_odd_help").help, "a \\ backslash\nand a newline");
  EXPECT_EQ(fam.at("moat_odd_help").type, "gauge");
  const Family& b = fam.at("moat_build_info");
  EXPECT_EQ(b.type, "gauge");
  ASSERT_EQ(b.samples.size(), 1u);
  EXPECT_EQ(b.samples[0].value, "1");
  EXPECT_EQ(b.samples[0].labels.at("version"), "1.2 \"rc\\1\"\nx");
  EXPECT_EQ(b.samples[0].labels.at("dpdk"), "22.11.4");
}

TEST_F(RenderTest, ProcessCountersEndInTotal) {
  const auto fam = Render();
  ASSERT_EQ(fam.count("moat_reload_failed"), 0u);
  const Family& f = fam.at("moat_reload_failed_total");
  EXPECT_EQ(f.type, "counter");
  EXPECT_EQ(f.help, "reloads refused");
  EXPECT_EQ(f.samples.at(0).value, "3");
}

TEST_F(RenderTest, RawEscapesOnTheWire) {
  std::string text;
  RenderMetrics(in_, &text);
  EXPECT_NE(text.find("# HELP moat_odd_help a \\\\ backslash\\nand a newline\n"),
            std::string::npos);
  EXPECT_NE(text.find("moat_build_info{version=\"1.2 \\\"rc\\\\1\\\"\\nx\",dpdk=\"22.11.4\"} 1\n"),
            std::string::npos);
}

TEST_F(RenderTest, GaugeBelowZeroReadsNegative) {
  proxy::WorkerStats es;
  es.Dec(proxy::Counter::k_flows_active);
  WorkerMetrics w{0, &es, nullptr};
  MetricsInput in;
  in.workers = {&w, 1};
  std::string text;
  RenderMetrics(in, &text);
  EXPECT_NE(text.find("moat_flows_active{worker=\"0\"} -1\n"), std::string::npos);
  // A worker without dataplane counters renders zeros, not a crash.
  EXPECT_NE(text.find("moat_rx_frames_total{worker=\"0\"} 0\n"), std::string::npos);
}

TEST_F(RenderTest, AppendsAndReusesTheBuffer) {
  std::string text = "# prefix kept\n";
  RenderMetrics(in_, &text);
  EXPECT_TRUE(text.starts_with("# prefix kept\n# HELP moat_"));
  // A second scrape into the cleared buffer needs no more room: the
  // steady state does not grow it.
  const size_t cap = text.capacity();
  const size_t size = text.size();
  text.clear();
  text += "# prefix kept\n";
  RenderMetrics(in_, &text);
  EXPECT_EQ(text.size(), size);
  EXPECT_EQ(text.capacity(), cap);
}

TEST(ListenAddressTest, AcceptsNumericV4AndBracketedV6) {
  auto v4 = ParseListenAddress("metrics_listen", "127.0.0.1:9101");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->addr.ss_family, AF_INET);
  EXPECT_EQ(v4->len, sizeof(sockaddr_in));
  const auto* sa = reinterpret_cast<const sockaddr_in*>(&v4->addr);
  EXPECT_EQ(ntohs(sa->sin_port), 9101);
  EXPECT_EQ(ntohl(sa->sin_addr.s_addr), 0x7f000001u);

  auto v6 = ParseListenAddress("metrics_listen", "[::1]:9101");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->addr.ss_family, AF_INET6);
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6*>(&v6->addr)->sin6_port), 9101);
  EXPECT_TRUE(ParseListenAddress("metrics_listen", "0.0.0.0:65535").ok());
  EXPECT_TRUE(ParseListenAddress("metrics_listen", "[2001:2::1]:1").ok());
}

TEST(ListenAddressTest, RefusesWithTheFlagName) {
  for (const char* bad :
       {"", "9101", "localhost:9101", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:91x", "127.0.0.1:-1", "::1:9101", "[::1]", "[::1]9101",
        "[::1]:", "[localhost]:1", "[127.0.0.1]:9101", "256.0.0.1:9101", "127.0.0.1:9101 "}) {
    auto a = ParseListenAddress("metrics_listen", bad);
    ASSERT_FALSE(a.ok()) << "'" << bad << "' accepted";
    const std::string msg(a.status().message());
    EXPECT_TRUE(msg.starts_with(std::string("--metrics_listen=") + bad + ":")) << msg;
    EXPECT_NE(msg.find("127.0.0.1:9101"), std::string::npos) << msg;
  }
}

// HTTP over loopback against a fake renderer.

ListenAddress Loopback(int family) {
  ListenAddress a;
  if (family == AF_INET) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&a.addr);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof(sockaddr_in);
    a.text = "127.0.0.1:0";
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&a.addr);
    sa->sin6_family = AF_INET6;
    sa->sin6_addr = in6addr_loopback;
    a.len = sizeof(sockaddr_in6);
    a.text = "[::1]:0";
  }
  return a;
}

// One HTTP/1.0 request; returns the whole response (the server closes).
std::string Request(int family, uint16_t port, const std::string& request) {
  ListenAddress a = Loopback(family);
  if (family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&a.addr)->sin_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&a.addr)->sin6_port = htons(port);
  }
  const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  timeval tv{10, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  EXPECT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len), 0)
      << std::strerror(errno);
  EXPECT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

class ServerTest : public ::testing::TestWithParam<int> {};

TEST_P(ServerTest, ServesMetricsAndRefusesTheRest) {
  auto server = MetricsServer::Listen(Loopback(GetParam()));
  if (!server.ok() && GetParam() == AF_INET6) {
    GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  }
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_NE((*server)->port(), 0);
  std::atomic<int> renders = 0;
  ASSERT_TRUE((*server)
                  ->Start([&renders](std::string* out) {
                    ++renders;
                    out->append("# HELP moat_x x\n# TYPE moat_x gauge\nmoat_x 1\n");
                  })
                  .ok());
  const uint16_t port = (*server)->port();

  std::string r = Request(GetParam(), port, "GET /metrics HTTP/1.0\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.0 200") || r.starts_with("HTTP/1.1 200")) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << r;
  EXPECT_TRUE(r.ends_with("\r\n\r\n# HELP moat_x x\n# TYPE moat_x gauge\nmoat_x 1\n")) << r;

  // The query string is not part of the path.
  r = Request(GetParam(), port, "GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
  EXPECT_NE(r.find(" 200 "), std::string::npos) << r;

  r = Request(GetParam(), port, "GET / HTTP/1.0\r\n\r\n");
  EXPECT_NE(r.find(" 404 "), std::string::npos) << r;
  r = Request(GetParam(), port, "GET /metrics/x HTTP/1.0\r\n\r\n");
  EXPECT_NE(r.find(" 404 "), std::string::npos) << r;

  r = Request(GetParam(), port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(r.find(" 405 "), std::string::npos) << r;
  EXPECT_NE(r.find("Allow: GET"), std::string::npos) << r;
  r = Request(GetParam(), port, "DELETE /metrics HTTP/1.0\r\n\r\n");
  EXPECT_NE(r.find(" 405 "), std::string::npos) << r;

  // Garbage is answered (400) or dropped, and the server keeps serving.
  Request(GetParam(), port, "\x01\x02 nonsense\r\n\r\n");
  r = Request(GetParam(), port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(r.find(" 200 "), std::string::npos) << r;

  EXPECT_EQ(renders, 3);  // only the three GET /metrics rendered
  (*server)->Stop();
  (*server)->Stop();  // idempotent
}

// Prometheus keeps its connection between scrapes: two requests on one
// HTTP/1.1 connection both get their answer.
TEST(KeepAliveTest, TwoScrapesOnOneConnection) {
  auto server = MetricsServer::Listen(Loopback(AF_INET));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->Start([](std::string* out) { out->append("moat_x 1\n"); }).ok());
  ListenAddress a = Loopback(AF_INET);
  reinterpret_cast<sockaddr_in*>(&a.addr)->sin_port = htons((*server)->port());
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&a.addr), a.len), 0);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
    // One response: headers, then the 9-byte body.
    std::string r;
    char buf[4096];
    while (r.find("\r\n\r\n") == std::string::npos || !r.ends_with("moat_x 1\n")) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      ASSERT_GT(n, 0) << "connection closed after " << i << " response(s): " << r;
      r.append(buf, static_cast<size_t>(n));
    }
    EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
    EXPECT_EQ(r.find("Connection: close"), std::string::npos) << r;
  }
  close(fd);
}

INSTANTIATE_TEST_SUITE_P(Families, ServerTest, ::testing::Values(AF_INET, AF_INET6),
                         [](const auto& info) { return info.param == AF_INET ? "v4" : "v6"; });

TEST(ServerTest, AnAddressInUseIsOneLineNamingTheFlag) {
  auto first = MetricsServer::Listen(Loopback(AF_INET));
  ASSERT_TRUE(first.ok()) << first.status();
  ListenAddress again = Loopback(AF_INET);
  reinterpret_cast<sockaddr_in*>(&again.addr)->sin_port = htons((*first)->port());
  again.text = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = MetricsServer::Listen(again);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(std::string(second.status().message()),
            "--metrics_listen=" + again.text + ": cannot bind: Address already in use");
}

}  // namespace
}  // namespace moat::dataplane
