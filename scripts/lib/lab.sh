# The lab: real Linux TCP peers in network namespaces, moat in between.
# shellcheck shell=bash
#
#   client ns "<name>-c"            root ns                 server ns "<name>-s"
#   eth0 198.18.0.1/24  <-veth->  <name>c  [moat]  <name>s  <-veth->  eth0 198.18.0.2/24
#        2001:2::1/64                 net_af_packet x2                  2001:2::2/64
#
# moat drives the two root-side veth ends with net_af_packet and bridges
# them, so client and server share one L2 subnet. In "bridge" mode a plain
# Linux bridge joins the root ends instead (the control experiment).
# Addresses are from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48
# (RFC 2544, RFC 5180); nothing leaves the namespaces this file creates.

LAB_ROOT=${LAB_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LAB_MOAT=${LAB_MOAT:-$LAB_ROOT/build/app/moat}
LAB_CLIENT4=198.18.0.1
LAB_SERVER4=198.18.0.2
LAB_CLIENT6=2001:2::1
LAB_SERVER6=2001:2::2

lab_log() { echo "lab[$LAB_NAME]: $*" >&2; }
lab_fail() { echo "FAIL[$LAB_NAME]: $*" >&2; exit 1; }

# lab_init NAME: sets the names every other function uses. NAME is short
# (interface names are at most 15 characters).
lab_init() {
  LAB_NAME=$1
  LAB_C="$1-c"
  LAB_S="$1-s"
  LAB_CIF="${1}c"
  LAB_SIF="${1}s"
  LAB_BR="${1}br"
  LAB_DIR=$(mktemp -d "/tmp/moat-lab-$1.XXXXXX")
  chmod 755 "$LAB_DIR"  # nginx workers run as www-data
  LAB_MOAT_PID=""
}

lab_c() { ip netns exec "$LAB_C" "$@"; }
lab_s() { ip netns exec "$LAB_S" "$@"; }

_lab_quiet_offloads() {  # [ns] iface: whole frames, software checksums
  local ns=$1 ifc=$2
  if [ -n "$ns" ]; then
    ip netns exec "$ns" ethtool -K "$ifc" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  else
    ethtool -K "$ifc" tx off rx off gso off tso off gro off >/dev/null 2>&1 || true
  fi
}

# lab_up [moat|bridge]
lab_up() {
  local mode=${1:-moat}
  lab_down_links
  ip netns add "$LAB_C"
  ip netns add "$LAB_S"
  ip link add "$LAB_CIF" type veth peer name eth0 netns "$LAB_C"
  ip link add "$LAB_SIF" type veth peer name eth0 netns "$LAB_S"
  local side ns addr4 addr6
  for side in c s; do
    if [ $side = c ]; then ns=$LAB_C addr4=$LAB_CLIENT4 addr6=$LAB_CLIENT6; else ns=$LAB_S addr4=$LAB_SERVER4 addr6=$LAB_SERVER6; fi
    ip -n "$ns" link set lo up
    # No duplicate address detection: addresses are usable at once.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$addr4/24" dev eth0
    ip -n "$ns" addr add "$addr6/64" dev eth0 nodad
    _lab_quiet_offloads "$ns" eth0
  done
  for ifc in "$LAB_CIF" "$LAB_SIF"; do
    # The root ends carry no addresses and no IPv6, so the root kernel
    # adds no router solicitations or ND of its own to the wire.
    sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1"
    ip link set "$ifc" up
    _lab_quiet_offloads "" "$ifc"
  done
  if [ "$mode" = bridge ]; then
    ip link add "$LAB_BR" type bridge
    sysctl -qw "net.ipv6.conf.$LAB_BR.disable_ipv6=1" 2>/dev/null || true
    ip link set "$LAB_CIF" master "$LAB_BR"
    ip link set "$LAB_SIF" master "$LAB_BR"
    ip link set "$LAB_BR" up
  fi
  # A default route via a host that never answers: replies to spoofed
  # sources are attempted (as on a real network) but go nowhere.
  ip -n "$LAB_C" route add default via 198.18.0.254 2>/dev/null || true
  ip -n "$LAB_S" route add default via 198.18.0.254 2>/dev/null || true
}

lab_down_links() {
  ip link del "$LAB_CIF" 2>/dev/null || true
  ip link del "$LAB_SIF" 2>/dev/null || true
  ip link del "$LAB_BR" 2>/dev/null || true
  local ns
  for ns in "$LAB_C" "$LAB_S"; do
    if ip netns list | grep -qw "^$ns"; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

# Stops moat and every process in the namespaces, removes links and
# namespaces. Safe to call twice (traps call it).
lab_down() {
  lab_moat_stop >/dev/null 2>&1 || true
  lab_down_links
  [ -n "${LAB_KEEP:-}" ] || rm -rf "$LAB_DIR"
}

# lab_moat_start [moat flags...]: moat inline on the two root ends.
# LAB_EAL may add EAL options; LAB_QUEUES=N gives N queue pairs.
lab_moat_start() {
  local q=${LAB_QUEUES:-1} lcores
  [ -x "$LAB_MOAT" ] || lab_fail "$LAB_MOAT is not built"
  if [ "$q" -gt 1 ]; then lcores="--lcores=0@0,(1-$q)@1"; else lcores="-l 0,1"; fi
  # shellcheck disable=SC2086
  "$LAB_MOAT" $lcores --no-pci --file-prefix="moat-$LAB_NAME" ${LAB_EAL:-} \
    --vdev="net_af_packet0,iface=$LAB_CIF,qpairs=$q" \
    --vdev="net_af_packet1,iface=$LAB_SIF,qpairs=$q" -- \
    --protect="${LAB_PROTECT:-$LAB_SERVER4:80-81,$LAB_SERVER4:2222,$LAB_SERVER4:5201,[$LAB_SERVER6]:80-81}" \
    --idle_sleep_us=20 --queues="$q" "$@" >"$LAB_DIR/moat.log" 2>&1 &
  LAB_MOAT_PID=$!
  local i
  for i in $(seq 1 100); do
    grep -q "moat: running" "$LAB_DIR/moat.log" 2>/dev/null && return 0
    kill -0 "$LAB_MOAT_PID" 2>/dev/null || { cat "$LAB_DIR/moat.log" >&2; lab_fail "moat exited at start-up"; }
    sleep 0.1
  done
  cat "$LAB_DIR/moat.log" >&2
  lab_fail "moat did not start within 10 s"
}

# Sends SIGINT and checks moat exits 0 with its final stats.
lab_moat_stop() {
  [ -n "$LAB_MOAT_PID" ] || return 0
  kill -INT "$LAB_MOAT_PID" 2>/dev/null || true
  local rc=0 i
  for i in $(seq 1 100); do
    kill -0 "$LAB_MOAT_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$LAB_MOAT_PID" 2>/dev/null; then
    kill -9 "$LAB_MOAT_PID" 2>/dev/null || true
    LAB_MOAT_PID=""
    lab_fail "moat did not stop within 10 s of SIGINT"
  fi
  wait "$LAB_MOAT_PID" || rc=$?
  LAB_MOAT_PID=""
  [ $rc -eq 0 ] || lab_fail "moat exited with status $rc"
  grep -q "moat final stats" "$LAB_DIR/moat.log" || lab_fail "moat printed no final stats"
}

# lab_stats [worker]: moat's counters as JSON, through DPDK telemetry.
lab_stats() {
  local cmd="/moat/stats"
  [ -n "${1:-}" ] && cmd="/moat/worker,$1"
  echo "$cmd" | dpdk-telemetry.py -f "moat-$LAB_NAME" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.dumps(list(json.load(sys.stdin).values())[0]))'
}

# lab_counter NAME [worker]: one counter's value.
lab_counter() {
  lab_stats "${2:-}" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', 0))"
}

# lab_nginx: nginx in the server namespace on :80 (v4 and v6), serving
# $LAB_DIR/www, logging the client address of every request.
lab_nginx() {
  local backlog=${1:-511}
  mkdir -p "$LAB_DIR/www" "$LAB_DIR/nginx"
  echo "hello from the backend" >"$LAB_DIR/www/index.html"
  cat >"$LAB_DIR/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $LAB_DIR/nginx/nginx.pid;
error_log $LAB_DIR/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $LAB_DIR/nginx/access.log;
  client_body_temp_path $LAB_DIR/nginx/body;
  proxy_temp_path $LAB_DIR/nginx/proxy;
  fastcgi_temp_path $LAB_DIR/nginx/fastcgi;
  uwsgi_temp_path $LAB_DIR/nginx/uwsgi;
  scgi_temp_path $LAB_DIR/nginx/scgi;
  server {
    listen $LAB_SERVER4:80 backlog=$backlog;
    listen [$LAB_SERVER6]:80 backlog=$backlog;
    root $LAB_DIR/www;
  }
}
EOF
  lab_s nginx -c "$LAB_DIR/nginx/nginx.conf" || lab_fail "nginx did not start"
  local i
  for i in $(seq 1 50); do
    lab_s ss -ltn | grep -q "$LAB_SERVER4:80" && return 0
    sleep 0.1
  done
  lab_fail "nginx is not listening"
}

# lab_curl URL: one request from the client namespace; prints the HTTP code.
lab_curl() {
  lab_c curl -s -o /dev/null -m "${LAB_CURL_TIMEOUT:-5}" -w '%{http_code}\n' "$1" || echo 000
}
