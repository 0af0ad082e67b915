#!/usr/bin/env bash
# Lab test 8: what moat does not protect passes through unchanged: ARP,
# ICMP echo (IPv4 and IPv6, with ND), UDP, and TCP to an unprotected port.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/lab.sh"
lab_init lp
trap lab_down EXIT
lab_up moat
lab_moat_start

lab_c ping -c 3 -i 0.2 -W 2 "$LAB_SERVER4" >/dev/null || lab_fail "IPv4 ping through moat failed"
lab_c ping -6 -c 3 -i 0.2 -W 2 "$LAB_SERVER6" >/dev/null || lab_fail "IPv6 ping through moat failed"
echo "ICMP echo v4 and v6: ok"

# ARP (and ND) answers arrived unchanged: the client learned the server's
# real MAC.
server_mac=$(ip -n "$LAB_S" -br link show eth0 | awk '{print $3}')
learned=$(ip -n "$LAB_C" neigh show "$LAB_SERVER4" | awk '{print $5}')
[ "$server_mac" = "$learned" ] || lab_fail "client learned $learned for $LAB_SERVER4, server MAC is $server_mac"
learned6=$(ip -n "$LAB_C" -6 neigh show "$LAB_SERVER6" | awk '{print $5}')
[ "$server_mac" = "$learned6" ] || lab_fail "client learned $learned6 for $LAB_SERVER6 (ND), server MAC is $server_mac"
echo "ARP and ND: client learned $server_mac"

# UDP echo: the payload comes back byte for byte.
lab_s /usr/bin/python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("'"$LAB_SERVER4"'", 5353)); s.settimeout(10)
for _ in range(20):
    d, a = s.recvfrom(2048); s.sendto(d, a)
' &
udp=$!
lab_wait_listen s udp 5353
lab_c /usr/bin/python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
for i in range(20):
    d = os.urandom(1 + i * 60)
    s.sendto(d, ("'"$LAB_SERVER4"'", 5353))
    r, _ = s.recvfrom(2048)
    if r != d: sys.exit("UDP payload %d changed" % i)
' || lab_fail "UDP echo through moat failed"
wait $udp || true
echo "UDP: 20 datagrams echoed unchanged"

# TCP to a port moat does not protect: no cookie, plain bridging.
syn0=$(lab_counter syn_received)
lab_s /usr/bin/python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("'"$LAB_SERVER4"'", 8080)); s.listen(4); s.settimeout(10)
c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
' &
tcp=$!
lab_wait_listen s tcp 8080
out=$(lab_c /usr/bin/python3 -c '
import socket
s = socket.create_connection(("'"$LAB_SERVER4"'", 8080), timeout=5); s.sendall(b"unprotected"); print(s.recv(100).decode())')
wait $tcp || true
[ "$out" = unprotected ] || lab_fail "TCP to an unprotected port: got '$out'"
syn1=$(lab_counter syn_received)
[ "$syn0" = "$syn1" ] || lab_fail "moat answered a SYN for an unprotected port"
bridged=$(lab_counter bridged)
[ "$bridged" -gt 20 ] || lab_fail "bridged=$bridged, expected the traffic above"
lab_moat_stop
echo "PASS: ARP, ND, ICMP, UDP and unprotected TCP bridged (bridged=$bridged)"
