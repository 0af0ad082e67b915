#!/usr/bin/env bash
# Lab test: Prometheus metrics from moat (--metrics_listen) with a real
# Prometheus server (Debian's prometheus) scraping it every second.
#  - GET /metrics: the 0.0.4 content type, text that prometheus_client's
#    parser reads with every promised family; 404 elsewhere, 405 for POST;
#    the server thread runs on the main lcore's CPUs, not a worker's;
#  - after exactly N_SYN scapy SYNs and N_HTTP curl requests, PromQL over
#    /api/v1/query: sum(moat_syn_received_total) >= N_SYN + N_HTTP and
#    sum(moat_cookie_valid_total) == N_HTTP, equal to what telemetry says;
#  - every query of config/grafana-moat.json names only exported metrics
#    and evaluates to a non-empty result on that Prometheus;
#  - during a bounded hping3 SYN flood each scrape answers within 1 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lw
PROM_PID=""
FLOOD_PID=""
cleanup() {
  if [ -n "$FLOOD_PID" ]; then kill "$FLOOD_PID" 2>/dev/null || true; fi
  if [ -n "$PROM_PID" ]; then
    kill "$PROM_PID" 2>/dev/null || true
    wait "$PROM_PID" 2>/dev/null || true
  fi
  lab_down
}
trap cleanup EXIT
N_SYN=${N_SYN:-50}
N_HTTP=${N_HTTP:-20}
check=(/usr/bin/python3 "$here/metrics_check.py")

command -v prometheus >/dev/null || lab_fail "prometheus is not installed (scripts/lib/deps.sh)"
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null ||
  lab_fail "python3-prometheus-client is not installed (scripts/lib/deps.sh)"

# Two free loopback ports (the kernel's choice, released just before use).
read -r MPORT PPORT < <(/usr/bin/python3 -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
M="http://127.0.0.1:$MPORT"
P="http://127.0.0.1:$PPORT"

# wait_for WHAT SECONDS CMD...: CMD until it succeeds, or fail at the deadline.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null; do
    [ $SECONDS -lt $end ] || lab_fail "$what: not within ${secs}s"
    sleep 0.2
  done
}
q() { "${check[@]}" query "$P" "$1"; }
# q_at_least EXPR N: the query's value is a number >= N.
q_at_least() {
  local v
  v=$(q "$1")
  [[ "$v" =~ ^[0-9]+$ ]] && [ "$v" -ge "$2" ]
}

lab_up moat
lab_nginx
lab_moat_start --metrics_listen="127.0.0.1:$MPORT"
grep -q "metrics: http://127.0.0.1:$MPORT/metrics" "$LAB_DIR/moat.log" ||
  lab_fail "moat did not log its metrics address"

# --- the endpoint itself ---
curl -s -m 5 -D "$LAB_DIR/headers" -o "$LAB_DIR/scrape0" "$M/metrics" || lab_fail "GET /metrics failed"
grep -qi '^content-type: text/plain; version=0.0.4' "$LAB_DIR/headers" ||
  { cat "$LAB_DIR/headers" >&2; lab_fail "wrong Content-Type"; }
"${check[@]}" parse "$LAB_DIR/scrape0" || lab_fail "prometheus_client rejects the scrape"
[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$M/")" = 404 ] || lab_fail "GET / is not 404"
[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$M/metricsx")" = 404 ] || lab_fail "GET /metricsx is not 404"
[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' -X POST -d x "$M/metrics")" = 405 ] ||
  lab_fail "POST /metrics is not 405"
# Nothing listens anywhere else: the socket is bound to loopback only.
ss -Htln "sport = :$MPORT" | awk '{print $4}' | grep -qx "127.0.0.1:$MPORT" ||
  lab_fail "metrics socket not bound to exactly 127.0.0.1:$MPORT: $(ss -Htln "sport = :$MPORT")"
# The server thread (the one thread moat has beyond EAL's) inherits the
# main lcore's CPU set; the worker lcore's thread is pinned elsewhere.
main_cpus=$(awk '/Cpus_allowed_list/ {print $2}' "/proc/$LAB_MOAT_PID/status")
mhd_cpus=""
for t in /proc/"$LAB_MOAT_PID"/task/*; do
  case "$(cat "$t/comm")" in MHD*) mhd_cpus=$(awk '/Cpus_allowed_list/ {print $2}' "$t/status") ;; esac
done
[ -n "$mhd_cpus" ] || lab_fail "no libmicrohttpd thread in moat ($(cat /proc/"$LAB_MOAT_PID"/task/*/comm | tr '\n' ' '))"
[ "$mhd_cpus" = "$main_cpus" ] || lab_fail "metrics thread on CPUs $mhd_cpus, main lcore on $main_cpus"
echo "endpoint: 0.0.4 text parsed by prometheus_client, 404/405, bound to 127.0.0.1:$MPORT, thread on CPUs $mhd_cpus (main lcore)"

# --- a real Prometheus, scraping every second ---
mkdir -p "$LAB_DIR/prom/data"
cat >"$LAB_DIR/prom/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: moat
    scrape_timeout: 1s
    static_configs:
      - targets: ['127.0.0.1:$MPORT']
EOF
prometheus --config.file="$LAB_DIR/prom/prometheus.yml" --storage.tsdb.path="$LAB_DIR/prom/data" \
  --web.listen-address="127.0.0.1:$PPORT" --storage.tsdb.retention.time=1h \
  >"$LAB_DIR/prom/log" 2>&1 &
PROM_PID=$!
prom_ready() {
  kill -0 "$PROM_PID" 2>/dev/null || { tail -20 "$LAB_DIR/prom/log" >&2; lab_fail "prometheus exited"; }
  curl -sf -m 2 "$P/-/ready"
}
wait_for "Prometheus ready" 60 prom_ready
wait_for "Prometheus scraping moat (up == 1)" 30 q_at_least 'up{job="moat"}' 1
base_syn=$(q 'sum(moat_syn_received_total)')
base_valid=$(q 'sum(moat_cookie_valid_total)')
echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') on $P: moat target up; syn_received=$base_syn cookie_valid=$base_valid before traffic"
if [ "$base_syn" != 0 ] || [ "$base_valid" != 0 ]; then lab_fail "counters not zero before any traffic"; fi

# --- known traffic: N_SYN bare SYNs, then N_HTTP requests ---
server_mac=$(ip -n "$LAB_S" -br link show eth0 | awk '{print $3}')
lab_c /usr/bin/python3 - "$server_mac" "$N_SYN" <<'EOF'
import sys
from scapy.all import Ether, IP, TCP, conf, sendp
conf.verb = 0
mac, n = sys.argv[1], int(sys.argv[2])
# One SYN per source port: exactly n SYNs for the protected service.
sendp([Ether(dst=mac) / IP(src="198.18.0.1", dst="198.18.0.2") /
       TCP(sport=30000 + i, dport=80, flags="S", seq=1000 + i) for i in range(n)],
      iface="eth0")
EOF
ok=0
for _ in $(seq 1 "$N_HTTP"); do
  [ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] && ok=$((ok + 1))
done
[ "$ok" -eq "$N_HTTP" ] || lab_fail "only $ok/$N_HTTP requests succeeded"
want_syn=$((N_SYN + N_HTTP))
wait_for "sum(moat_syn_received_total) >= $want_syn" 30 q_at_least 'sum(moat_syn_received_total)' "$want_syn"
wait_for "sum(moat_cookie_valid_total) >= $N_HTTP" 30 q_at_least 'sum(moat_cookie_valid_total)' "$N_HTTP"
# No traffic since: once Prometheus has the last value it equals what
# telemetry reads from the workers.
tel_syn=$(lab_counter syn_received)
tel_valid=$(lab_counter cookie_valid)
same_as_telemetry() {
  [ "$(q 'sum(moat_syn_received_total)')" = "$tel_syn" ] &&
    [ "$(q 'sum(moat_cookie_valid_total)')" = "$tel_valid" ]
}
wait_for "PromQL equal to telemetry (syn_received=$tel_syn cookie_valid=$tel_valid)" 10 same_as_telemetry
prom_syn=$(q 'sum(moat_syn_received_total)')
prom_valid=$(q 'sum(moat_cookie_valid_total)')
[ "$prom_valid" -eq "$N_HTTP" ] || lab_fail "sum(moat_cookie_valid_total)=$prom_valid, expected exactly $N_HTTP"
[ "$prom_syn" -ge "$want_syn" ] || lab_fail "sum(moat_syn_received_total)=$prom_syn < $want_syn"
echo "PromQL after $N_SYN SYNs + $N_HTTP requests: sum(moat_syn_received_total)=$prom_syn (>= $want_syn)," \
  "sum(moat_cookie_valid_total)=$prom_valid (== $N_HTTP), flows_created=$(q 'sum(moat_flows_created_total)')"

# --- the dashboard against this scrape and this Prometheus ---
curl -s -m 5 -o "$LAB_DIR/scrape1" "$M/metrics" || lab_fail "GET /metrics failed"
"${check[@]}" parse "$LAB_DIR/scrape1" >/dev/null || lab_fail "prometheus_client rejects the scrape"
"${check[@]}" dashboard "$here/../../config/grafana-moat.json" "$LAB_DIR/scrape1" "$P" 60 ||
  lab_fail "config/grafana-moat.json does not match what moat exports"

# --- scrapes during a SYN flood (bounded in time) ---
syn_before=$(lab_counter syn_received)
timeout 8 ip netns exec "$LAB_C" hping3 -q -S -p 80 --flood --rand-source "$LAB_SERVER4" >/dev/null 2>&1 &
FLOOD_PID=$!
flooding() { [ "$(lab_counter syn_received)" -ge $((syn_before + 5000)) ]; }
wait_for "flood reaching moat" 6 flooding
slowest=0
for i in 1 2 3 4 5; do
  t=$(curl -s -m 5 -o "$LAB_DIR/scrape_flood" -w '%{http_code} %{time_total}' "$M/metrics") ||
    lab_fail "scrape $i during the flood failed"
  [ "${t%% *}" = 200 ] || lab_fail "scrape $i during the flood: HTTP ${t%% *}"
  grep -q '^moat_syn_received_total{worker="0"} ' "$LAB_DIR/scrape_flood" || lab_fail "scrape $i: no counters"
  secs=${t#* }
  /usr/bin/python3 -c "import sys; sys.exit(0 if $secs < 1.0 else 1)" ||
    lab_fail "scrape $i during the flood took ${secs}s (limit 1 s)"
  slowest=$(/usr/bin/python3 -c "print(max($slowest, $secs))")
done
kill -0 "$FLOOD_PID" 2>/dev/null || lab_fail "the flood ended before the scrapes did (raise its timeout)"
syn_during=$(($(lab_counter syn_received) - syn_before))
wait "$FLOOD_PID" || true
FLOOD_PID=""
# Prometheus kept its 1 s scrapes going through the flood.
q_at_least 'up{job="moat"}' 1 || lab_fail "Prometheus lost the moat target during the flood"
max_dur=$(q 'max_over_time(scrape_duration_seconds{job="moat"}[30s])')
echo "flood: $syn_during SYNs during 5 scrapes, slowest ${slowest}s; Prometheus's slowest scrape in 30 s: ${max_dur}s"
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$max_dur') < 1.0 else 1)" ||
  lab_fail "a Prometheus scrape took ${max_dur}s"

kill "$PROM_PID" 2>/dev/null || true
wait "$PROM_PID" 2>/dev/null || true
PROM_PID=""
lab_moat_stop
echo "PASS: metrics scraped by Prometheus; syn_received=$prom_syn cookie_valid=$prom_valid; flood scrapes <= ${slowest}s"
