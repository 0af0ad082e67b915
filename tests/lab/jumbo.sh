#!/usr/bin/env bash
# Lab test: jumbo frames (issue 11 item 5). All four veth ends at MTU 9000,
# moat with --mtu=9000 --mss=8960: a 64 MiB download (nginx) and a 64 MiB
# upload arrive intact (sha256), and captures in both namespaces show
# frames above 1514 bytes that crossed moat in each direction (server ->
# client seen in the client namespace, client -> server in the server
# namespace), the SYN-ACK moat sent advertising MSS 8960 and the backend
# SYN carrying it. moat counts no chained mbuf and no oversized held
# segment.
# Then the PMDs' side of it: net_af_xdp refuses MTU 9000 with a clear
# error (DPDK 22.11's AF_XDP keeps a frame in one page; under LAB_PMD=auto
# the lab falls back to net_af_packet, which carries it), and on net_pcap
# a 9014-byte frame passes whole with --mtu=9000 while --mtu=1500 drops it
# as a chained mbuf (drop_multiseg): the mbuf data room is what --mtu sets.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
if [ "$LAB_PMD" = af_xdp ]; then
  echo "SKIP: LAB_PMD=af_xdp: net_af_xdp cannot carry a 9000-byte MTU in DPDK 22.11 (one page per frame)"
  exit 77
fi
lab_init lj
trap lab_down EXIT
LAB_MTU=9000
lab_up moat
lab_nginx
dd if=/dev/urandom of="$LAB_DIR/www/big" bs=1M count=64 status=none
dd if=/dev/urandom of="$LAB_DIR/up" bs=1M count=64 status=none
chmod 644 "$LAB_DIR/www/big"

# Headers only (-s 128): enough for lengths and options.
capture() {  # capture NS FILE
  ip netns exec "$1" tcpdump -i eth0 -nn -s 128 -U -w "$2" tcp >/dev/null 2>"$2.err" &
}
capture "$LAB_C" "$LAB_DIR/client.pcap"
cap_c=$!
capture "$LAB_S" "$LAB_DIR/server.pcap"
cap_s=$!
capturing() { grep -q "listening on" "$LAB_DIR/client.pcap.err" && grep -q "listening on" "$LAB_DIR/server.pcap.err"; }
lab_wait_for 10 "tcpdump in both namespaces" capturing

probed_here=0
[ -z "$LAB_PMD_PROBED" ] && [ "$LAB_PMD" = auto ] && probed_here=1
lab_moat_start --mtu=9000 --mss=8960 2> >(tee "$LAB_DIR/start.err" >&2)
[ "$LAB_PMD_USED" = af_packet ] || lab_fail "MTU 9000 ran on net_$LAB_PMD_USED"
grep -q "MTU 9000" "$LAB_DIR/moat.log" || lab_fail "moat's ports do not say MTU 9000"
if [ $probed_here -eq 1 ]; then
  # The probe tried net_af_xdp first: refused in one clear line.
  grep -q "^moat: error: --mtu=9000: client port 0 (net_af_xdp0, net_af_xdp) carries at most MTU [0-9]* (DPDK 22.11's AF_XDP keeps a frame in one page" \
    "$LAB_DIR/moat-af_xdp.log" || { cat "$LAB_DIR/moat-af_xdp.log" >&2; lab_fail "net_af_xdp at MTU 9000: not refused clearly"; }
  echo "net_af_xdp: $(grep -m1 '^moat: error:' "$LAB_DIR/moat-af_xdp.log")"
  ! ip link show "$LAB_CIF" | grep -q "prog/xdp" || lab_fail "an XDP program was left on $LAB_CIF"
fi

# A first request teaches moat that the backend answers timestamps
# (backend_learned): until then moat's backend SYN keeps 12 bytes of its
# MSS for a timestamp option it might have to insert (PlanTsRoom in
# lib/proxy/backends.cc), and the download below would not fill 9014-byte
# frames.
[ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] || lab_fail "the first request failed"
lab_wait_for 10 "moat learned the backend" lab_counter_ge backend_learned 1

t0=$(date +%s.%N)
want=$(sha256sum "$LAB_DIR/www/big" | cut -d' ' -f1)
got=$(lab_c curl -s -m 120 "http://$LAB_SERVER4/big" | sha256sum | cut -d' ' -f1)
[ "$want" = "$got" ] || lab_fail "64 MiB download: sha256 mismatch"
t1=$(date +%s.%N)
echo "64 MiB download: sha256 ok ($(echo "$t0 $t1" | awk '{printf "%.2f s", $2 - $1}'))"

lab_sha256_sink 81 120
t0=$(date +%s.%N)
up=$(lab_c timeout 120 /usr/bin/python3 -c '
import socket
c = socket.create_connection(("'"$LAB_SERVER4"'", 81), timeout=100)
print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG), end=" ")
with open("'"$LAB_DIR/up"'", "rb") as f:
    c.sendfile(f)
c.shutdown(socket.SHUT_WR)
print(c.recv(100).decode())')
t1=$(date +%s.%N)
mss=${up%% *}
up=${up#* }
[ "$up" = "$(sha256sum "$LAB_DIR/up" | cut -d' ' -f1)" ] || lab_fail "64 MiB upload: sha256 mismatch ($up)"
echo "64 MiB upload: sha256 ok ($(echo "$t0 $t1" | awk '{printf "%.2f s", $2 - $1}')), client MSS $mss"
# 8960 less the 12 bytes of timestamps the segments carry.
[ "$mss" -ge 8900 ] || lab_fail "the client's MSS through moat is $mss, not a jumbo one"

lab_moat_stop
kill -INT $cap_c $cap_s 2>/dev/null || true
wait $cap_c $cap_s 2>/dev/null || true
for f in client server; do
  [ -s "$LAB_DIR/$f.pcap" ] || lab_fail "no capture in the $f namespace"
done
# tcpdump's "greater N" is the frame length (>= N).
big() { tcpdump -r "$1" -nn "$2 and greater 1515" 2>/dev/null | wc -l; }
down_big=$(big "$LAB_DIR/client.pcap" "src host $LAB_SERVER4")
up_big=$(big "$LAB_DIR/server.pcap" "src host $LAB_CLIENT4")
largest() {  # the longest frame from SRC in a capture
  tcpdump -r "$1" -nn -e "src host $2" 2>/dev/null | sed -n 's/.*ethertype IPv4 ([^)]*), length \([0-9]*\): .*/\1/p' | sort -n | tail -1
}
down_max=$(largest "$LAB_DIR/client.pcap" "$LAB_SERVER4")
up_max=$(largest "$LAB_DIR/server.pcap" "$LAB_CLIENT4")
echo "frames above 1514 bytes after crossing moat: server->client $down_big (largest $down_max), client->server $up_big (largest $up_max)"
[ "$down_big" -gt 1000 ] || lab_fail "server -> client: only $down_big frames above 1514 bytes reached the client"
[ "$up_big" -gt 1000 ] || lab_fail "client -> server: only $up_big frames above 1514 bytes reached the server"
[ "$down_max" -eq 9014 ] || lab_fail "server -> client: the largest frame was $down_max bytes, not 9014"
[ "$up_max" -eq 9014 ] || lab_fail "client -> server: the largest frame was $up_max bytes, not 9014"
# moat's SYN-ACK to the client and moat's SYN to the backend carry 8960.
tcpdump -r "$LAB_DIR/client.pcap" -nn -v "src host $LAB_SERVER4 and tcp[tcpflags] & tcp-syn != 0" 2>/dev/null |
  grep -q "mss 8960" || lab_fail "moat's SYN-ACK did not advertise MSS 8960"
tcpdump -r "$LAB_DIR/server.pcap" -nn -v "src host $LAB_CLIENT4 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn" 2>/dev/null |
  grep -q "mss 8960" || lab_fail "moat's backend SYN did not carry MSS 8960"
counter() { sed -n "s/^ *$1 *\([0-9]*\)$/\1/p" "$LAB_DIR/moat.log" | tail -1; }
[ "$(counter drop_multiseg)" = 0 ] || lab_fail "moat dropped $(counter drop_multiseg) chained mbufs"
[ "$(counter drop_held_oversize)" = 0 ] || lab_fail "moat dropped $(counter drop_held_oversize) oversized held segments"
[ "$(counter flows_created)" -ge 2 ] || lab_fail "the transfers were not spliced by moat (flows_created=$(counter flows_created))"
echo "moat: flows_created=$(counter flows_created) held_segments=$(counter held_segments) drop_multiseg=0 drop_held_oversize=0"

# --- net_pcap: the data room ------------------------------------------------
# A 9014-byte UDP frame (bridged: moat protects no UDP) and a 9014-byte TCP
# frame to an unprotected port, replayed from a pcap.
/usr/bin/python3 - "$LAB_DIR" <<'PY'
import sys
import struct
from scapy.all import Ether, IP, UDP, TCP, Raw, wrpcap
d = sys.argv[1]
e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
f1 = e / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=5000, dport=5001) / Raw(b"u" * (9000 - 28))
f2 = e / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=5000, dport=9999, flags="A") / Raw(b"t" * (9000 - 40))
assert len(f1) == 9014 and len(f2) == 9014
wrpcap(d + "/jumbo-in.pcap", [f1, f2])
# A capture with no frames: the server side receives nothing.
with open(d + "/empty.pcap", "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
PY
pcap_run() {  # pcap_run MTU: moat on two net_pcap ports; TX of the server side in out-MTU.pcap
  local mtu=$1 i
  rm -f "$LAB_DIR/out-c-$mtu.pcap" "$LAB_DIR/out-s-$mtu.pcap"
  "$LAB_MOAT" -l 0,1 --no-huge -m 512 --no-shconf --no-pci --file-prefix="moat-$LAB_NAME-pcap" \
    --vdev="net_pcap0,rx_pcap=$LAB_DIR/jumbo-in.pcap,tx_pcap=$LAB_DIR/out-c-$mtu.pcap" \
    --vdev="net_pcap1,rx_pcap=$LAB_DIR/empty.pcap,tx_pcap=$LAB_DIR/out-s-$mtu.pcap" -- \
    --protect="$LAB_SERVER4:80" --mtu="$mtu" --stats_period=1 --idle_sleep_us=100 \
    >"$LAB_DIR/pcap-$mtu.log" 2>&1 &
  local pid=$!
  # Both frames were received (whole or as a chain) once rx_frames or
  # drop_multiseg add up to 2, or moat gave up.
  seen() {
    local rx ms
    rx=$(sed -n 's/^ *rx_frames *\([0-9]*\)$/\1/p' "$LAB_DIR/pcap-$mtu.log" | tail -1)
    ms=$(sed -n 's/^ *drop_multiseg *\([0-9]*\)$/\1/p' "$LAB_DIR/pcap-$mtu.log" | tail -1)
    [ $(( ${rx:-0} + ${ms:-0} )) -ge 2 ] || ! kill -0 $pid 2>/dev/null
  }
  lab_wait_for 30 "moat on net_pcap at --mtu=$mtu to take both frames" seen
  kill -INT $pid 2>/dev/null || true
  local rc=0
  wait $pid || rc=$?
  [ $rc -eq 0 ] || { cat "$LAB_DIR/pcap-$mtu.log" >&2; lab_fail "moat on net_pcap at --mtu=$mtu exited with $rc"; }
}
pcap_frames() {  # pcap_frames FILE: "count longest" of a capture
  /usr/bin/python3 -c '
import sys
from scapy.all import rdpcap
p = rdpcap(sys.argv[1])
print(len(p), max([len(x) for x in p] or [0]))' "$1"
}
pcap_run 9000
read -r n longest < <(pcap_frames "$LAB_DIR/out-s-9000.pcap")
[ "$n" -eq 2 ] && [ "$longest" -eq 9014 ] || lab_fail "net_pcap --mtu=9000: $n frames out, longest $longest (want 2 of 9014)"
cmp -s <(/usr/bin/python3 -c 'import sys; from scapy.all import rdpcap; [sys.stdout.buffer.write(bytes(p)) for p in rdpcap(sys.argv[1])]' "$LAB_DIR/jumbo-in.pcap") \
  <(/usr/bin/python3 -c 'import sys; from scapy.all import rdpcap; [sys.stdout.buffer.write(bytes(p)) for p in rdpcap(sys.argv[1])]' "$LAB_DIR/out-s-9000.pcap") ||
  lab_fail "net_pcap --mtu=9000: the frames changed on the way"
grep -q "MTU 9000" "$LAB_DIR/pcap-9000.log" || lab_fail "net_pcap: the ports do not say MTU 9000"
echo "net_pcap --mtu=9000: both 9014-byte frames passed byte for byte"
pcap_run 1500
read -r n longest < <(pcap_frames "$LAB_DIR/out-s-1500.pcap")
ms=$(sed -n 's/^ *drop_multiseg *\([0-9]*\)$/\1/p' "$LAB_DIR/pcap-1500.log" | tail -1)
[ "$n" -eq 0 ] && [ "${ms:-0}" -eq 2 ] || lab_fail "net_pcap --mtu=1500: $n frames out, drop_multiseg=${ms:-0} (want 0 and 2)"
echo "net_pcap --mtu=1500: both dropped as chained mbufs (drop_multiseg=$ms): 2 KiB mbufs cannot hold them"
echo "PASS: 64 MiB each way at MTU 9000 through moat, jumbo frames both ways; net_af_xdp refused, net_pcap carries them with --mtu=9000 only"
