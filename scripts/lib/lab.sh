# The lab: real Linux TCP peers in network namespaces, moat in between.
# shellcheck shell=bash
#
#   client ns "<name>-c"            root ns                 server ns "<name>-s"
#   eth0 198.18.0.1/24  <-veth->  <name>c  [moat]  <name>s  <-veth->  eth0 198.18.0.2/24
#        2001:2::1/64              net_af_xdp (or net_af_packet) x2     2001:2::2/64
#
# moat drives the two root-side veth ends and bridges them, so client and
# server share one L2 subnet. In "bridge" mode a plain Linux bridge joins
# the root ends instead (the control experiment).
# Addresses are from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48
# (RFC 2544, RFC 5180); nothing leaves the namespaces this file creates.
#
# Which PMD drives the veth ends (LAB_PMD=auto|af_xdp|af_packet, default
# auto):
#   net_af_xdp     an AF_XDP socket per port. DPDK's PMD attaches libxdp's
#                  default program (xsk_def_prog: redirect to the XSK bound
#                  to the frame's RX queue, XDP_PASS if there is none) to
#                  the root end in native (driver) mode; veth implements
#                  XDP itself, and with a program attached the peer's
#                  transmit goes through the root end's ptr_ring to its
#                  NAPI poll, where the program redirects each frame into
#                  moat's UMEM (a copy) before the root namespace's stack
#                  or any socket sees it. veth has no zero-copy, so the
#                  socket binds in copy mode and moat's TX is one sendto()
#                  kick per burst, each frame copied into an skb for the
#                  peer. veth refuses the program while the peer's MTU is
#                  above about a page (a frame must fit one page without
#                  multi-buffer XDP), so jumbo-frame labs fall back. Nothing is needed on the
#                  namespace-side (peer) end: XDP on the peer matters only
#                  for XDP_REDIRECT *into* a veth (ndo_xdp_xmit), which this
#                  path never does (checked on this kernel: ping and TCP
#                  pass with no program on the peer). Vdev args:
#                  iface=X,start_queue=0,queue_count=1; the veths are
#                  created with one RX and one TX queue because veth puts
#                  a frame on the RX queue numbered like the sender's TX
#                  queue, and a frame on a queue with no XSK bound would be
#                  passed to the root namespace's stack, i.e. lost. The UMEM
#                  is moat's own mempool (hugepages, which the lab uses
#                  anyway). No xdp_prog (the default program is right);
#                  busy_budget stays at the PMD's default (deferring the
#                  veth's NAPI so that moat's polls would drive it only
#                  made things slower, bench/attack/README.md).
#   net_af_packet  a PACKET_MMAP socket per port: every frame is an skb and
#                  two socket hops (the fallback; also the only PMD for
#                  LAB_QUEUES>1: veth has no RSS, its RX queue is the
#                  sender's TX queue, which Linux picks per socket, so the
#                  two directions of a flow would reach different workers;
#                  af_packet's fanout hash is symmetric).
# auto probes once per shell (the first lab_moat_start): moat on
# net_af_xdp, and a ping through it must come back within 5 s; if moat
# fails to start, hangs, or the ping is lost, moat is stopped, any XDP
# program left on the veths removed, and moat started on net_af_packet.
# LAB_PMD_USED says which one runs (also logged); a forced LAB_PMD=af_xdp
# that fails is a test failure, not a fallback.
# LAB_MTU=N (default: the kernel's 1500) sets all four veth ends to MTU N
# and, for N above 1500, gives net_af_packet ring frames that hold such a
# frame (framesz, blocksz: lib/dataplane/port.h); moat itself still needs
# --mtu=N. net_af_xdp refuses MTUs above a page (moat says so), so auto
# falls back to net_af_packet for jumbo labs.
# Offloads (checksum, GSO, TSO, GRO) are off on all four ends: the
# namespaces must put whole frames with real checksums on the wire, as
# DPDK's veth-facing PMDs neither segment nor fill checksums.

LAB_ROOT=${LAB_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LAB_MOAT=${LAB_MOAT:-$LAB_ROOT/build/app/moat}
LAB_CLIENT4=198.18.0.1
LAB_SERVER4=198.18.0.2
LAB_CLIENT6=2001:2::1
LAB_SERVER6=2001:2::2
LAB_PMD=${LAB_PMD:-auto}
case $LAB_PMD in auto|af_xdp|af_packet) ;; *) echo "lab: LAB_PMD=$LAB_PMD: want auto, af_xdp or af_packet" >&2; exit 2 ;; esac
LAB_PMD_PROBED=${LAB_PMD_PROBED:-}  # auto's verdict, once per shell (exported to children)
LAB_PMD_USED=""
LAB_MTU=${LAB_MTU:-}

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
  # One queue each way (see net_af_xdp above).
  ip link add "$LAB_CIF" numtxqueues 1 numrxqueues 1 type veth peer name eth0 numtxqueues 1 numrxqueues 1 netns "$LAB_C"
  ip link add "$LAB_SIF" numtxqueues 1 numrxqueues 1 type veth peer name eth0 numtxqueues 1 numrxqueues 1 netns "$LAB_S"
  local side ns addr4 addr6
  for side in c s; do
    if [ $side = c ]; then ns=$LAB_C addr4=$LAB_CLIENT4 addr6=$LAB_CLIENT6; else ns=$LAB_S addr4=$LAB_SERVER4 addr6=$LAB_SERVER6; fi
    ip -n "$ns" link set lo up
    # No duplicate address detection: addresses are usable at once.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.accept_dad=0
    [ -z "$LAB_MTU" ] || ip -n "$ns" link set eth0 mtu "$LAB_MTU"
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$addr4/24" dev eth0
    ip -n "$ns" addr add "$addr6/64" dev eth0 nodad
    _lab_quiet_offloads "$ns" eth0
  done
  for ifc in "$LAB_CIF" "$LAB_SIF"; do
    # The root ends carry no addresses and no IPv6, so the root kernel
    # adds no router solicitations or ND of its own to the wire.
    sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1"
    [ -z "$LAB_MTU" ] || ip link set "$ifc" mtu "$LAB_MTU"
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

# lab_vdevs PMD QUEUES: the two --vdev arguments for moat's ports.
lab_vdevs() {
  local pmd=$1 q=${2:-1}
  if [ "$pmd" = af_xdp ]; then
    echo "--vdev=net_af_xdp0,iface=$LAB_CIF,start_queue=0,queue_count=$q"
    echo "--vdev=net_af_xdp1,iface=$LAB_SIF,start_queue=0,queue_count=$q"
  else
    local ring=""
    if [ -n "$LAB_MTU" ] && [ "$LAB_MTU" -gt 1500 ]; then
      # A whole frame (two VLAN tags) 66 bytes into each ring frame, 32
      # frames a block (AfPacketFrameSize in lib/dataplane/port.cc).
      local framesz=$(( (LAB_MTU + 22 + 66 + 127) / 128 * 128 ))
      ring=",framesz=$framesz,blocksz=$((32 * framesz))"
    fi
    echo "--vdev=net_af_packet0,iface=$LAB_CIF,qpairs=$q$ring"
    echo "--vdev=net_af_packet1,iface=$LAB_SIF,qpairs=$q$ring"
  fi
}

# lab_pmd_wanted QUEUES: the PMD to try first.
lab_pmd_wanted() {
  local q=${1:-1}
  if [ "$q" -gt 1 ]; then
    [ "$LAB_PMD" = af_xdp ] && lab_log "LAB_PMD=af_xdp: $q queues need af_packet's symmetric fanout (veth has no RSS); using net_af_packet"
    echo af_packet
  elif [ "$LAB_PMD" = auto ]; then
    echo "${LAB_PMD_PROBED:-af_xdp}"
  else
    echo "$LAB_PMD"
  fi
}

# _lab_xdp_off: removes XDP programs a killed moat left on the veth ends.
_lab_xdp_off() {
  ip link set dev "$LAB_CIF" xdp off 2>/dev/null || true
  ip link set dev "$LAB_SIF" xdp off 2>/dev/null || true
}

# _lab_moat_launch PMD QUEUES [moat flags...]: starts moat in the
# background and waits (10 s at most) for "moat: running". Returns 1 if it
# exited or hung (then it is gone), 0 when it runs.
_lab_moat_launch() {
  local pmd=$1 q=$2 lcores vdevs
  shift 2
  if [ "$q" -gt 1 ]; then lcores="--lcores=0@0,(1-$q)@1"; else lcores="-l 0,1"; fi
  mapfile -t vdevs < <(lab_vdevs "$pmd" "$q")
  # shellcheck disable=SC2086
  "$LAB_MOAT" $lcores --no-pci --file-prefix="moat-$LAB_NAME" ${LAB_EAL:-} "${vdevs[@]}" -- \
    --protect="${LAB_PROTECT:-$LAB_SERVER4:80-81,$LAB_SERVER4:2222,$LAB_SERVER4:5201,[$LAB_SERVER6]:80-81}" \
    --idle_sleep_us=20 --queues="$q" "$@" >"$LAB_DIR/moat.log" 2>&1 &
  LAB_MOAT_PID=$!
  local i
  for i in $(seq 1 100); do
    grep -q "moat: running" "$LAB_DIR/moat.log" 2>/dev/null && return 0
    if ! kill -0 "$LAB_MOAT_PID" 2>/dev/null; then
      wait "$LAB_MOAT_PID" 2>/dev/null || true
      LAB_MOAT_PID=""
      return 1
    fi
    sleep 0.1
  done
  lab_log "moat on net_$pmd did not start within 10 s"
  kill -9 "$LAB_MOAT_PID" 2>/dev/null || true
  wait "$LAB_MOAT_PID" 2>/dev/null || true
  LAB_MOAT_PID=""
  return 1
}

# _lab_start_error: why moat did not start, from its log (one line).
_lab_start_error() {
  local e
  e=$( { grep -E "^moat: error:|Kernel error message" "$LAB_DIR/moat.log" 2>/dev/null || true; } | head -2 | tr '\n' ' ')
  echo "${e:-no error printed (hung, or killed)}"
}

# _lab_frames_pass: one ICMP echo through moat, client -> server and back,
# within 5 s (ping -w: the first reply ends it).
_lab_frames_pass() {
  lab_c ping -q -c 1 -w 5 "$LAB_SERVER4" >/dev/null 2>&1
}

# lab_moat_start [moat flags...]: moat inline on the two root ends, on the
# PMD LAB_PMD selects (see the top of this file; the choice is logged and
# left in LAB_PMD_USED). LAB_EAL may add EAL options; LAB_QUEUES=N gives N
# queue pairs.
lab_moat_start() {
  local q=${LAB_QUEUES:-1} pmd fell_back=0
  [ -x "$LAB_MOAT" ] || lab_fail "$LAB_MOAT is not built"
  pmd=$(lab_pmd_wanted "$q")
  if [ "$pmd" = af_xdp ] && [ -z "$LAB_PMD_PROBED" ]; then
    # The probe: moat on af_xdp must start and pass a ping.
    local why=""
    if ! _lab_moat_launch af_xdp "$q" "$@"; then
      why="moat did not start on it: $(_lab_start_error)"
    elif ! _lab_frames_pass; then
      why="a ping through moat got no answer within 5 s"
      kill -9 "$LAB_MOAT_PID" 2>/dev/null || true
      wait "$LAB_MOAT_PID" 2>/dev/null || true
      LAB_MOAT_PID=""
    fi
    if [ -z "$why" ]; then
      LAB_PMD_PROBED=af_xdp
      export LAB_PMD_PROBED
      LAB_PMD_USED=af_xdp
      lab_log "moat on net_af_xdp (probed: moat started and a ping passed)"
      return 0
    fi
    _lab_xdp_off
    cp "$LAB_DIR/moat.log" "$LAB_DIR/moat-af_xdp.log" 2>/dev/null || true
    [ "$LAB_PMD" = af_xdp ] && { cat "$LAB_DIR/moat.log" >&2; lab_fail "LAB_PMD=af_xdp: $why"; }
    lab_log "net_af_xdp unusable ($why); falling back to net_af_packet"
    LAB_PMD_PROBED=af_packet
    export LAB_PMD_PROBED
    pmd=af_packet
    fell_back=1
  fi
  if ! _lab_moat_launch "$pmd" "$q" "$@"; then
    cat "$LAB_DIR/moat.log" >&2
    [ "$pmd" = af_xdp ] && _lab_xdp_off
    lab_fail "moat did not start on net_$pmd (exited, or no \"moat: running\" within 10 s)"
  fi
  LAB_PMD_USED=$pmd
  local how="LAB_PMD=$LAB_PMD"
  [ "$LAB_PMD" = auto ] && how="auto: probed earlier in this shell"
  [ $fell_back -eq 1 ] && how="auto: the fallback"
  [ "$q" -gt 1 ] && how="$q queues"
  lab_log "moat on net_$pmd ($how)"
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

# lab_counter_ge NAME MIN [worker]: true once moat's counter NAME >= MIN.
lab_counter_ge() {
  local v
  v=$(lab_counter "$1" "${3:-}" 2>/dev/null) || return 1
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge "$2" ]
}

# lab_wait_for SECONDS WHAT CMD...: runs CMD every 0.1 s until it succeeds;
# fails the test naming WHAT if SECONDS pass first. Tests wait on
# conditions like this, never on a fixed sleep.
lab_wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || lab_fail "$what: not within $secs s"
    sleep 0.1
  done
}

# lab_listening s|c tcp|udp PORT: true once a socket in the server (s) or
# client (c) namespace listens on (TCP) or is bound to (UDP) PORT.
lab_listening() {
  local ns=$LAB_S opt=-Hltn
  [ "$1" = c ] && ns=$LAB_C
  [ "$2" = udp ] && opt=-Hlun
  [ -n "$(ip netns exec "$ns" ss $opt "sport = :$3" 2>/dev/null)" ]
}

# lab_wait_listen s|c tcp|udp PORT: waits (10 s at most) for lab_listening.
lab_wait_listen() {
  lab_wait_for 10 "a $2 listener on port $3 in the $1 namespace" lab_listening "$@"
}

# lab_sha256_sink PORT [SECS]: a one-connection TCP server on
# $LAB_SERVER4:PORT in the server namespace that answers the sha256 of
# everything it received once the client shuts down its sending side (an
# upload checked end to end). Runs in the background, bounded by SECS
# (default 120); returns once it listens.
lab_sha256_sink() {
  local port=$1 secs=${2:-120}
  lab_s timeout "$secs" /usr/bin/python3 -c '
import hashlib, socket, sys
addr, port, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port)); s.listen(1); s.settimeout(wait)
c, _ = s.accept(); c.settimeout(wait); h = hashlib.sha256()
while True:
    d = c.recv(1 << 16)
    if not d: break
    h.update(d)
c.sendall(h.hexdigest().encode()); c.close()' "$LAB_SERVER4" "$port" $((secs * 5 / 6)) &
  lab_wait_listen s tcp "$port"
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
  lab_wait_listen s tcp 80
}

# lab_curl URL: one request from the client namespace; prints the HTTP code.
lab_curl() {
  lab_c curl -s -o /dev/null -m "${LAB_CURL_TIMEOUT:-5}" -w '%{http_code}\n' "$1" || echo 000
}
