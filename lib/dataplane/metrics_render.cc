// The Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): per
// family one "# HELP", one "# TYPE" and then all its samples, contiguous.
// No DPDK here, so the unit test renders fake counters without EAL.

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstring>
#include <string_view>

#include "moat/dataplane/metrics.h"
#include "moat/net/packet.h"

namespace moat::dataplane {

namespace {

const char* const kPortMetricNames[kNumPortMetrics] = {
#define MOAT_PORT_METRIC_NAME(name, help) #name,
    MOAT_PORT_METRICS(MOAT_PORT_METRIC_NAME)
#undef MOAT_PORT_METRIC_NAME
};
const char* const kPortMetricHelp[kNumPortMetrics] = {
#define MOAT_PORT_METRIC_HELP(name, help) help,
    MOAT_PORT_METRICS(MOAT_PORT_METRIC_HELP)
#undef MOAT_PORT_METRIC_HELP
};

constexpr std::string_view kGaugePrefix = "gauge: ";

// Appends text and integers without temporaries (absl::StrAppend would
// too, but this abseil's string_view is not std::string_view).
void Put1(std::string* out, std::string_view s) { out->append(s); }
void Put1(std::string* out, const char* s) { out->append(s); }
template <std::integral T>
void Put1(std::string* out, T v) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
}
template <typename... Args>
void Put(std::string* out, const Args&... args) {
  (Put1(out, args), ...);
}

// Engine and dataplane gauges say so in their help text (as
// proxy::IsGauge reads it); the HELP line drops the marker, TYPE carries it.
bool HelpIsGauge(std::string_view help) { return help.starts_with("gauge:"); }
std::string_view StripGauge(std::string_view help) {
  if (help.starts_with(kGaugePrefix)) return help.substr(kGaugePrefix.size());
  if (help.starts_with("gauge:")) return help.substr(6);
  return help;
}

// "# HELP moat_<name><suffix> help\n# TYPE moat_<name><suffix> type\n"
void Header(std::string_view name, std::string_view suffix, std::string_view help, const char* type,
            std::string* out) {
  Put(out, "# HELP moat_", name, suffix, " ");
  AppendEscapedHelp(help, out);
  Put(out, "\n# TYPE moat_", name, suffix, " ", type, "\n");
}

void AppendDouble(double v, std::string* out) {
  // The format spells non-finite values the way Go's ParseFloat reads them.
  if (std::isnan(v)) {
    out->append("NaN");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? "+Inf" : "-Inf");
  } else {
    char buf[32];
    // Shortest text that reads back as the same double: a start time in
    // seconds keeps its milliseconds, an integral value prints as one.
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
    out->append(buf, ec == std::errc() ? static_cast<size_t>(end - buf) : 0);
  }
}

// One counter or gauge of every worker, as one family.
template <typename LoadFn>
void WorkerFamily(const MetricsInput& in, std::string_view name, std::string_view help, bool gauge,
                  LoadFn load, std::string* out) {
  Header(name, gauge ? "" : "_total", StripGauge(help), gauge ? "gauge" : "counter", out);
  for (const WorkerMetrics& w : in.workers) {
    const uint64_t v = load(w);
    Put(out, "moat_", name, gauge ? "" : "_total", "{worker=\"", w.index, "\"} ");
    // A gauge is a level: a transient underflow reads as a small negative
    // number, not as 1.8e19.
    if (gauge) {
      Put(out, static_cast<int64_t>(v), "\n");
    } else {
      Put(out, v, "\n");
    }
  }
}

}  // namespace

void AppendEscapedHelp(std::string_view s, std::string* out) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
}

void AppendEscapedLabelValue(std::string_view s, std::string* out) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"') {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

void RenderMetrics(const MetricsInput& in, std::string* out) {
  for (size_t i = 0; i < proxy::kNumCounters; ++i) {
    WorkerFamily(
        in, proxy::kCounterNames[i], proxy::kCounterHelp[i],
        proxy::IsGauge(static_cast<proxy::Counter>(i)),
        [i](const WorkerMetrics& w) { return w.engine != nullptr ? w.engine->Load(i) : 0; }, out);
  }

  // drop_parse by reason: one family with a reason label, so a dashboard
  // sums or splits it without knowing the list (net::ParseError; kOk,
  // index 0, is not a drop).
  Header("parse_error", "_total", "malformed frames dropped, by reason (drop_parse broken down)",
         "counter", out);
  for (const WorkerMetrics& w : in.workers) {
    for (size_t r = 1; r < net::kNumParseErrors; ++r) {
      Put(out, "moat_parse_error_total{worker=\"", w.index, "\",reason=\"",
          net::ParseErrorName(static_cast<net::ParseError>(r)), "\"} ",
          w.engine != nullptr ? w.engine->LoadParse(r) : 0, "\n");
    }
  }

  for (size_t i = 0; i < kNumDataplaneCounters; ++i) {
    WorkerFamily(
        in, kDataplaneCounterNames[i], kDataplaneCounterHelp[i],
        HelpIsGauge(kDataplaneCounterHelp[i]),
        [i](const WorkerMetrics& w) { return w.dataplane != nullptr ? w.dataplane->Load(i) : 0; },
        out);
  }

  for (size_t i = 0; i < kNumPortMetrics; ++i) {
    const std::string_view name = kPortMetricNames[i];
    Put(out, "# HELP moat_port_", name, "_total ");
    AppendEscapedHelp(kPortMetricHelp[i], out);
    Put(out, "\n# TYPE moat_port_", name, "_total counter\n");
    for (const PortMetrics& p : in.ports) {
      if (!p.valid) continue;
      Put(out, "moat_port_", name, "_total{port=\"", p.id, "\",side=\"");
      AppendEscapedLabelValue(p.side, out);
      Put(out, "\"} ", p.value[i], "\n");
    }
  }

  for (const GaugeMetric& g : in.gauges) {
    const std::string_view suffix = g.counter ? "_total" : "";
    Header(g.name, suffix, g.help, g.counter ? "counter" : "gauge", out);
    Put(out, "moat_", g.name, suffix, " ");
    AppendDouble(g.value, out);
    out->push_back('\n');
  }

  Header("build_info", "", "moat's version and the DPDK it runs on; always 1", "gauge", out);
  out->append("moat_build_info{version=\"");
  AppendEscapedLabelValue(in.version, out);
  out->append("\",dpdk=\"");
  AppendEscapedLabelValue(in.dpdk_version, out);
  out->append("\"} 1\n");
}

}  // namespace moat::dataplane
