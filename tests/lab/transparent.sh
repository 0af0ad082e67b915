#!/usr/bin/env bash
# Lab test: moat is a bump in the wire for everything it does not protect.
# Frames it cannot parse (three VLAN tags, nine IPv6 extension headers, a
# malformed TCP option, a bad IPv4 length) or parses but does not protect
# (IP options, two VLAN tags, an unknown EtherType, ARP behind three tags)
# go from the client side towards other ports or hosts; a capture on the
# backend side must hold each one byte for byte. The same malformed frames
# towards the protected service must not arrive, and are counted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../scripts/lib/lab.sh"
lab_init lt
trap lab_down EXIT
lab_up moat
lab_moat_start

server_mac=$(ip -n "$LAB_S" -br link show eth0 | awk '{print $3}')
lab_s tcpdump -i eth0 -U -w "$LAB_DIR/far.pcap" >"$LAB_DIR/tcpdump.log" 2>&1 &
dump=$!
for i in $(seq 1 50); do
  grep -q "listening on" "$LAB_DIR/tcpdump.log" && break
  sleep 0.1
done
grep -q "listening on" "$LAB_DIR/tcpdump.log" || lab_fail "tcpdump did not start"
lab_c /usr/bin/python3 "$here/transparent.py" send "$server_mac" "$LAB_DIR/sent.json"
want=$(/usr/bin/python3 -c "import json; print(sum(s['passes'] for s in json.load(open('$LAB_DIR/sent.json'))))")
# Until every frame that should pass was counted through moat.
for i in $(seq 1 100); do
  n=$(( $(lab_counter bridged) + $(lab_counter bridged_unparsed) ))
  [ "$n" -ge "$want" ] && break
  sleep 0.1
done
sleep 0.5  # tcpdump -U writes each packet as it is captured; let the last land
kill "$dump" 2>/dev/null || true
wait "$dump" 2>/dev/null || true
/usr/bin/python3 "$here/transparent.py" check "$LAB_DIR/sent.json" "$LAB_DIR/far.pcap" ||
  lab_fail "a frame moat does not protect was dropped or changed, or a protected one passed"
for c in bridged_unparsed parse_too_many_vlans parse_ipv6_too_many_ext_headers parse_tcp_option_bad_length; do
  echo "$c=$(lab_counter $c)"
  [ "$(lab_counter $c)" -ge 1 ] || lab_fail "$c not counted"
done
lab_moat_stop
echo "PASS: everything moat does not protect passed byte for byte; malformed frames for the service were dropped and counted"
