#!/usr/bin/env bash
# Lab test 1: HTTP over IPv4 and IPv6 through moat to a real nginx.
# Hundreds of sequential and parallel requests all succeed, the backend
# logs the real client address (moat does not NAT), and the handshakes are
# spliced: the ISN the client sees in its SYN-ACK is moat's cookie, not the
# backend's ISN.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lh
trap lab_down EXIT
lab_up moat
lab_nginx
lab_moat_start

# Capture the handshakes on both sides of moat for the splice check.
# Inside the namespaces: af_packet's qdisc bypass hides moat's TX from
# taps on the root ends.
timeout 20 ip netns exec "$LAB_C" tcpdump -i eth0 -nn -c 2 -w "$LAB_DIR/c.pcap" 'tcp[tcpflags] & (tcp-syn) != 0 and tcp[tcpflags] & (tcp-ack) != 0' 2>"$LAB_DIR/c.tcpdump" &
cdump=$!
timeout 20 ip netns exec "$LAB_S" tcpdump -i eth0 -nn -c 2 -w "$LAB_DIR/s.pcap" 'tcp[tcpflags] & (tcp-syn) != 0 and tcp[tcpflags] & (tcp-ack) != 0' 2>"$LAB_DIR/s.tcpdump" &
sdump=$!
# tcpdump says "listening on" once its capture is open.
capturing() { grep -q "listening on" "$LAB_DIR/c.tcpdump" && grep -q "listening on" "$LAB_DIR/s.tcpdump"; }
lab_wait_for 10 "tcpdump in both namespaces" capturing

ok=0
for i in $(seq 1 200); do
  [ "$(lab_curl "http://$LAB_SERVER4/")" = 200 ] && ok=$((ok + 1))
done
[ $ok -eq 200 ] || lab_fail "sequential IPv4: $ok/200 succeeded"
echo "sequential IPv4: 200/200"

ok=$(seq 1 200 | xargs -P 16 -I{} ip netns exec "$LAB_C" curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://$LAB_SERVER4/" | grep -c '^200$' || true)
[ "$ok" -eq 200 ] || lab_fail "parallel IPv4: $ok/200 succeeded"
echo "parallel IPv4 (16 at a time): 200/200"

ok=$(seq 1 200 | xargs -P 16 -I{} ip netns exec "$LAB_C" curl -s -o /dev/null -m 5 -w '%{http_code}\n' "http://[$LAB_SERVER6]/" | grep -c '^200$' || true)
[ "$ok" -eq 200 ] || lab_fail "parallel IPv6: $ok/200 succeeded"
echo "parallel IPv6 (16 at a time): 200/200"

grep -q "^$LAB_CLIENT4 " "$LAB_DIR/nginx/access.log" || lab_fail "backend never saw the client's IPv4 address"
grep -q "^$LAB_CLIENT6 " "$LAB_DIR/nginx/access.log" || lab_fail "backend never saw the client's IPv6 address"
echo "backend sees the real client addresses"

wait $cdump $sdump || true
c_isn=$(tcpdump -r "$LAB_DIR/c.pcap" -nn -S 2>/dev/null | head -1 | sed -n 's/.*seq \([0-9]*\).*/\1/p')
s_isn=$(tcpdump -r "$LAB_DIR/s.pcap" -nn -S 2>/dev/null | head -1 | sed -n 's/.*seq \([0-9]*\).*/\1/p')
[ -n "$c_isn" ] && [ -n "$s_isn" ] || lab_fail "no SYN-ACK captured (client side '$c_isn', server side '$s_isn')"
[ "$c_isn" != "$s_isn" ] || lab_fail "client and backend SYN-ACK ISNs are equal ($c_isn): not spliced"
echo "spliced: client saw SYN-ACK ISN $c_isn, backend sent $s_isn"

created=$(lab_counter flows_created)
[ "$created" -ge 600 ] || lab_fail "flows_created=$created, expected >= 600"
invalid=$(lab_counter cookie_invalid)
[ "$invalid" -eq 0 ] || lab_fail "cookie_invalid=$invalid on a clean run"
lab_moat_stop
echo "PASS: 600 requests, flows_created=$created"
