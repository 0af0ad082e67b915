#!/usr/bin/env bash
# Lab test: path MTU discovery for spliced flows. A router on the client
# side reports a smaller path MTU (ICMP Fragmentation Needed, RFC 1191)
# quoting a segment the backend sent, in moat's sequence space. The
# backend's TCP accepts such an error only if the quoted seq lies in its
# own send window (RFC 5927 §4.1), so moat must translate it: the backend
# then records the smaller MTU for the client, and its out-of-window ICMP
# counter stays where it was.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lp
trap lab_down EXIT
lab_up moat
lab_nginx
lab_moat_start
mac=$(ip -n "$LAB_S" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
oow() { lab_s nstat -az TcpExtOutOfWindowIcmps | awk '/OutOfWindowIcmps/ {print $2}'; }
lab_s ip route flush cache 2>/dev/null || true
before=$(oow)
out=$(lab_c /usr/bin/python3 "$here/pmtu.py" "$mac")
# The ICMP error has been sent; wait until moat has translated it and the
# backend has acted on it (or the deadline: then the checks below say why).
pmtu_taken() { lab_counter_ge icmp_translated 1 && lab_s ip route get "$LAB_CLIENT4" | grep -q "mtu 1280"; }
deadline=$((SECONDS + 10))
until pmtu_taken || [ $SECONDS -ge $deadline ]; do sleep 0.1; done
after=$(oow)
route=$(lab_s ip route get "$LAB_CLIENT4")
translated=$(lab_counter icmp_translated)
echo "icmp: $out; backend route: $route; icmp_translated=$translated; out-of-window ICMPs $before -> $after"
[ "$translated" -eq 1 ] || lab_fail "icmp_translated=$translated, expected 1"
[ "$after" -eq "$before" ] || lab_fail "the backend found the quoted seq out of window"
echo "$route" | grep -q "mtu 1280" || lab_fail "the backend did not take the smaller path MTU: $route"
lab_moat_stop
echo "PASS: the backend lowered its path MTU to the client to 1280"
