#!/usr/bin/python3
"""Helpers for tests/lab/metrics.sh (run with /usr/bin/python3).

  metrics_check.py parse FILE
      Parses a /metrics body with prometheus_client's own text parser and
      checks the families moat promises (README "Metrics"): types, labels,
      HELP text. Prints "families=N samples=M".
  metrics_check.py query PROM_URL EXPR
      One instant query over Prometheus's HTTP API (/api/v1/query); prints
      the value of a single-sample result, or "none" for an empty one.
  metrics_check.py dashboard DASHBOARD FILE PROM_URL DEADLINE_S
      Every PromQL expression of the Grafana dashboard: the metric names it
      uses exist in the scrape FILE, and Prometheus evaluates it to a
      non-empty result (waiting up to DEADLINE_S for rate windows to fill).
"""

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def families_of(text):
    fams = {}
    for f in text_string_to_metric_families(text):
        if f.name in fams:
            fail(f"family {f.name} appears twice")
        fams[f.name] = f
    return fams


def cmd_parse(path):
    text = open(path).read()
    fams = families_of(text)
    # prometheus_client names a counter family without its _total suffix.
    want = {
        "moat_syn_received": ("counter", {"worker"}),
        "moat_synack_sent": ("counter", {"worker"}),
        "moat_cookie_valid": ("counter", {"worker"}),
        "moat_cookie_invalid": ("counter", {"worker"}),
        "moat_drop_parse": ("counter", {"worker"}),
        "moat_flows_active": ("gauge", {"worker"}),
        "moat_parse_error": ("counter", {"worker", "reason"}),
        "moat_rx_frames": ("counter", {"worker"}),
        "moat_drop_tx_full": ("counter", {"worker"}),
        "moat_port_rx_packets": ("counter", {"port", "side"}),
        "moat_port_tx_packets": ("counter", {"port", "side"}),
        "moat_port_rx_bytes": ("counter", {"port", "side"}),
        "moat_port_tx_bytes": ("counter", {"port", "side"}),
        "moat_port_rx_missed": ("counter", {"port", "side"}),
        "moat_port_rx_nombuf": ("counter", {"port", "side"}),
        "moat_port_rx_errors": ("counter", {"port", "side"}),
        "moat_port_tx_errors": ("counter", {"port", "side"}),
        "moat_build_info": ("gauge", {"version", "dpdk"}),
        "moat_workers": ("gauge", set()),
        "moat_start_time_seconds": ("gauge", set()),
        "moat_key_epoch": ("gauge", set()),
        "moat_key_rotation_seconds": ("gauge", set()),
    }
    for name, (typ, labels) in want.items():
        f = fams.get(name)
        if f is None:
            fail(f"no family {name}")
        if f.type != typ:
            fail(f"{name} is a {f.type}, expected {typ}")
        if not f.documentation:
            fail(f"{name} has no HELP")
        if not f.samples:
            fail(f"{name} has no samples")
        for s in f.samples:
            if set(s.labels) != labels:
                fail(f"{s.name} labels {sorted(s.labels)}, expected {sorted(labels)}")
    for f in fams.values():
        if not f.name.startswith("moat_"):
            fail(f"family {f.name} outside the moat_ namespace")
        if f.type not in ("counter", "gauge"):
            fail(f"{f.name} has type {f.type}")
        if f.type == "counter":
            for s in f.samples:
                if not s.name.endswith("_total"):
                    fail(f"counter sample {s.name} without _total")
    sides = {s.labels["side"] for s in fams["moat_port_rx_packets"].samples}
    if sides != {"client", "server"}:
        fail(f"port sides {sides}")
    build = fams["moat_build_info"].samples[0]
    if build.value != 1 or not build.labels["version"] or not build.labels["dpdk"]:
        fail(f"moat_build_info {build}")
    now = time.time()
    start = fams["moat_start_time_seconds"].samples[0].value
    if not now - 600 < start <= now:
        fail(f"moat_start_time_seconds={start}, now {now}")
    rot = fams["moat_key_rotation_seconds"].samples[0].value
    epoch = fams["moat_key_epoch"].samples[0].value
    # The engines' epoch: wall clock over the rotation period (a scrape a
    # moment ago may sit just before a boundary).
    if epoch not in (int(now // rot), int(now // rot) - 1):
        fail(f"moat_key_epoch={epoch}, expected {int(now // rot)} for rotation {rot}s")
    n = sum(len(f.samples) for f in fams.values())
    print(f"families={len(fams)} samples={n}")


def query(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:  # 400/422: Prometheus explains in JSON
        raise ValueError(f"{expr}: HTTP {e.code} {e.read().decode(errors='replace')}") from None
    if body.get("status") != "success":
        raise ValueError(f"{expr}: {body}")
    return body["data"]["result"]


def cmd_query(prom, expr):
    try:
        res = query(prom, expr)
    except OSError:  # not up yet: the caller retries until its deadline
        print("none")
        return
    if len(res) == 1:
        v = float(res[0]["value"][1])
        print(int(v) if v.is_integer() else v)
    else:
        print("none" if not res else f"{len(res)} series")


def dashboard_exprs(path):
    d = json.load(open(path))
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q)
            if not m:
                fail(f"variable {v['name']}: cannot check query {q}")
            out.append((f"variable {v['name']}", m.group(1)))
    return out


def cmd_dashboard(path, scrape, prom, deadline_s):
    names = set(families_of(open(scrape).read()))
    # Sample names as exported (counters with _total).
    exported = set()
    for line in open(scrape):
        if line and not line.startswith("#"):
            exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    exprs = dashboard_exprs(path)
    if not exprs:
        fail("the dashboard has no queries")
    for title, expr in exprs:
        # Names used directly, and __name__ regexes, must match the scrape.
        bare = re.sub(r'"[^"]*"', '""', expr)  # drop string literals
        for n in re.findall(r"\bmoat_[a-z0-9_]+\b", bare):
            if n not in exported:
                fail(f"{title}: {n} is not a metric moat exports")
        for rx in re.findall(r'__name__=~"([^"]+)"', expr):
            if not any(re.fullmatch(rx, n) for n in exported):
                fail(f"{title}: __name__=~{rx} matches nothing moat exports")
    subst = {"$__rate_interval": "15s", "$__interval": "1s", "$instance": ".+"}
    pending = []
    for title, expr in exprs:
        e = expr
        for k, v in subst.items():
            e = e.replace(k, v)
        if "$" in e.replace("$1", ""):
            fail(f"{title}: unknown variable in {expr}")
        pending.append((title, e))
    end = time.monotonic() + deadline_s
    while pending:
        still = []
        for title, e in pending:
            try:
                if not query(prom, e):
                    still.append((title, e))
            except Exception as ex:  # noqa: BLE001
                fail(f"{title}: Prometheus refused {e}: {ex}")
        pending = still
        if pending:
            if time.monotonic() > end:
                fail("empty result for: " + "; ".join(f"{t}: {e}" for t, e in pending))
            time.sleep(0.5)
    print(f"dashboard: {len(exprs)} queries, all names exported, all non-empty "
          f"({len(names)} families in the scrape)")


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "parse":
        cmd_parse(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "query":
        cmd_query(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "dashboard":
        cmd_dashboard(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
