#!/usr/bin/env bash
# Lab test: checksum offloads on a PMD that has them. net_tap offers RX
# IPV4/TCP_CKSUM (the PMD checks each frame and sets the mbuf's GOOD/BAD
# flags) and TX IPV4+TCP_CKSUM (it completes the checksums from l2_len,
# l3_len and the TX flags), so moat takes the offload paths for real:
# the frames it builds (SYN-ACKs, backend SYN and third ACK) leave with
# only the pseudo-header sum, and the Linux peers, which verify every
# checksum (offloads off on their interfaces), accept them only if the
# PMD completed them. A SYN with a broken checksum is dropped and counted
# as drop_bad_checksum. (net_tap recomputes the pseudo-header sum itself,
# so the value moat leaves in the TCP field is checked by the unit tests,
# tests/dataplane and tests/net, not here.)
#
#   client ns eth0 <-veth-> ofc ==bridge ofbc== oftc (tap) [moat] ofts (tap) ==bridge ofbs== ofs <-veth-> eth0 server ns
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init of
BRC=${LAB_NAME}bc BRS=${LAB_NAME}bs TAPC=${LAB_NAME}tc TAPS=${LAB_NAME}ts
cleanup() {
  ip link del "$BRC" 2>/dev/null || true
  ip link del "$BRS" 2>/dev/null || true
  lab_down
}
trap cleanup EXIT
lab_up moat
lab_nginx

[ -x "$LAB_MOAT" ] || lab_fail "$LAB_MOAT is not built"
# shellcheck disable=SC2086
"$LAB_MOAT" -l 0,1 --no-pci --file-prefix="moat-$LAB_NAME" ${LAB_EAL:-} \
  --vdev=net_tap0,iface="$TAPC" --vdev=net_tap1,iface="$TAPS" -- \
  --protect="$LAB_SERVER4:80,[$LAB_SERVER6]:80" --idle_sleep_us=20 >"$LAB_DIR/moat.log" 2>&1 &
LAB_MOAT_PID=$!
running() {
  kill -0 "$LAB_MOAT_PID" 2>/dev/null || { cat "$LAB_DIR/moat.log" >&2; lab_fail "moat exited"; }
  grep -q "moat: running" "$LAB_DIR/moat.log" 2>/dev/null
}
lab_wait_for 10 "moat on net_tap" running

# Both ports got both offloads, and said so.
n=$(grep -c "port [01] (net_tap[01], net_tap): .*checksum offload RX ipv4+tcp TX ipv4+tcp" "$LAB_DIR/moat.log" || true)
[ "$n" -eq 2 ] || { cat "$LAB_DIR/moat.log" >&2; lab_fail "the port lines do not say RX ipv4+tcp TX ipv4+tcp for both taps"; }

# Join each tap to its veth root end. The kernel sums what it hands the
# taps (they have no offload features of their own).
for pair in "$BRC:$LAB_CIF:$TAPC" "$BRS:$LAB_SIF:$TAPS"; do
  IFS=: read -r br veth tap <<<"$pair"
  # No netfilter on the bridges: br_netfilter would drop the IPv4 header
  # with a broken checksum before moat sees it (where the global
  # bridge-nf-call sysctls are off; they override these when on).
  ip link add "$br" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0
  sysctl -qw "net.ipv6.conf.$br.disable_ipv6=1" "net.ipv6.conf.$tap.disable_ipv6=1" 2>/dev/null || true
  ip link set "$veth" master "$br"
  ip link set "$tap" master "$br"
  ip link set "$tap" up
  ip link set "$br" up
done
lab_wait_for 10 "a ping through moat" _lab_frames_pass

ok=0
for i in $(seq 1 20); do
  [ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] && ok=$((ok + 1))
  [ "$(lab_curl "http://[$LAB_SERVER6]/")" = 200 ] && ok=$((ok + 1))
done
[ $ok -eq 40 ] || lab_fail "HTTP through moat with TX offload: $ok/40 succeeded"
lab_counter_ge synack_sent 40 || lab_fail "synack_sent below 40: the requests did not go through moat's handshake"
lab_counter_ge flows_created 40 || lab_fail "flows_created below 40"
[ "$(lab_counter drop_bad_checksum)" = 0 ] || lab_fail "good frames counted as bad checksums"

# Broken TCP checksums on SYNs, IPv4 and IPv6: dropped, counted. (A broken
# IPv4 header checksum is the unit tests' business: br_netfilter, where
# loaded, drops it on the lab's bridges before moat would see it.)
before=$(lab_counter synack_sent)
lab_c /usr/bin/python3 -c '
import sys
from scapy.all import Ether, IP, IPv6, TCP, sendp, conf
conf.verb = 0
c4, s4, c6, s6 = sys.argv[1:5]
for i in range(5):
    sendp(Ether(dst="ff:ff:ff:ff:ff:ff") / IP(src=c4, dst=s4) / TCP(sport=30000 + i, dport=80, flags="S", chksum=0x1234), iface="eth0")
    sendp(Ether(dst="ff:ff:ff:ff:ff:ff") / IPv6(src=c6, dst=s6) / TCP(sport=31000 + i, dport=80, flags="S", chksum=0x1234), iface="eth0")
' "$LAB_CLIENT4" "$LAB_SERVER4" "$LAB_CLIENT6" "$LAB_SERVER6"
lab_wait_for 10 "drop_bad_checksum to reach 10" lab_counter_ge drop_bad_checksum 10
sent=$(lab_counter synack_sent)
[ "$sent" -eq "$before" ] || lab_fail "a SYN with a broken checksum was answered (synack_sent $before -> $sent)"

lab_moat_stop
echo "offload: HTTP 40/40 with RX and TX checksum offload on net_tap, 10 broken SYNs dropped"
